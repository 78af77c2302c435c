// Shared pieces of the semaim addon: the tensor handle, argument readers, result conversions and the
// error guard. The addon's functions are declared in native/ops.yaml; native/gen-ops.js generates their
// glue, which runs every op inside a guard so that no C++ exception ever reaches N-API (an uncaught
// c10::Error would abort the Node process).
#pragma once

#include <ATen/ATen.h>
#include <torch/version.h>
#include <napi.h>

#include <atomic>
#include <c10/util/Optional.h>
#include <string>
#include <vector>

// True when compiling against libtorch >= major.minor (TORCH_VERSION_* from torch/version.h).
#define SEMAIM_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace semaim {

// Live handle and byte counters, for leak tests (process-wide; handles never cross threads).
extern std::atomic<int64_t> g_live_handles;
extern std::atomic<int64_t> g_live_bytes;

// Per-environment state (context-aware addon: nothing JS-side is static).
struct AddonData {
  Napi::FunctionReference generator_ctor;
};

// One libtorch tensor reference owned by one TS Tensor. JS sees a handle as a BigInt id into a table
// of these (see "handle table" in core.cc): the Tensor disposes its handle deterministically and
// attaches a GC finalizer (backstop) only when it outlives its scope.
class TensorHandle {
 public:
  ~TensorHandle();
  const at::Tensor& get(const char* what) const;
  void set(Napi::Env env, at::Tensor t);
  // Drops the tensor reference; env is null where no N-API call is allowed (GC finalizers).
  void release(Napi::Env* env);
  bool disposed() const { return !tensor_.defined(); }
  // After the tensor's storage changed under the handle (set_data): the bytes of the storage it counted
  // go, the current storage's come, by the rule of set().
  void recount(Napi::Env env);
  bool holds(const c10::TensorImpl* impl) const { return tensor_.defined() && tensor_.unsafeGetTensorImpl() == impl; }

 private:
  void countStorage(Napi::Env env);
  void uncountStorage(Napi::Env* env);
  at::Tensor tensor_;
  const void* storage_key_ = nullptr;  // the storage whose bytes this handle shares in the accounting
  bool counted_ = false;
};

class GeneratorHandle : public Napi::ObjectWrap<GeneratorHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit GeneratorHandle(const Napi::CallbackInfo& info);
  at::Generator gen;

 private:
  Napi::Value Seed(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
};

// Wraps a tensor into a fresh JS handle that owns one reference to it (an undefined tensor: null).
Napi::Value wrap(Napi::Env env, at::Tensor t);
Napi::Value wrapList(Napi::Env env, const std::vector<at::Tensor>& ts);

// A tensor-or-scalar argument: `tensor` points into the handle table for the duration of the call.
struct TensorOrScalar {
  const at::Tensor* tensor = nullptr;
  at::Scalar scalar;
};
// f(the tensor) or f(the scalar): generated glue compiles an op's expression for both.
template <typename F>
auto dispatch(const TensorOrScalar& x, F&& f) {
  return x.tensor ? f(*x.tensor) : f(x.scalar);
}

// Argument readers, used by the generated glue (native/generated/*.inc). They throw
// std::invalid_argument with a message naming the position.
const at::Tensor& argTensor(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Tensor> argOptTensor(const Napi::CallbackInfo& info, size_t i);
std::vector<at::Tensor> argTensorList(const Napi::CallbackInfo& info, size_t i);
c10::optional<std::vector<at::Tensor>> argOptTensorList(const Napi::CallbackInfo& info, size_t i);
TensorOrScalar argTensorOrScalar(const Napi::CallbackInfo& info, size_t i);
double argDouble(const Napi::CallbackInfo& info, size_t i);
c10::optional<double> argOptDouble(const Napi::CallbackInfo& info, size_t i);
int64_t argInt(const Napi::CallbackInfo& info, size_t i);
c10::optional<int64_t> argOptInt(const Napi::CallbackInfo& info, size_t i);
bool argBool(const Napi::CallbackInfo& info, size_t i);
c10::optional<bool> argOptBool(const Napi::CallbackInfo& info, size_t i);
std::vector<int64_t> argIntList(const Napi::CallbackInfo& info, size_t i);
c10::optional<std::vector<int64_t>> argOptIntList(const Napi::CallbackInfo& info, size_t i);
at::Scalar argScalar(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Scalar> argOptScalar(const Napi::CallbackInfo& info, size_t i);
std::string argString(const Napi::CallbackInfo& info, size_t i);
// A string that must be one of `allowed` (an 'a'|'b' parameter of native/ops.yaml): another value throws,
// naming the parameter and the allowed values.
std::string argEnum(const Napi::CallbackInfo& info, size_t i, const char* param, std::initializer_list<const char*> allowed);
at::ScalarType argDtype(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::ScalarType> argOptDtype(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Device> argOptDevice(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Generator> argOptGenerator(const Napi::CallbackInfo& info, size_t i);
Napi::TypedArray argTypedArray(const Napi::CallbackInfo& info, size_t i);
Napi::Object argObject(const Napi::CallbackInfo& info, size_t i);
uint64_t argHandle(const Napi::CallbackInfo& info, size_t i);

// Result conversions (besides wrap/wrapList) used by the generated glue.
Napi::Value scalarToJs(Napi::Env env, const at::Scalar& s);
Napi::Value intListToJs(Napi::Env env, at::IntArrayRef values);
// A copy of the bytes of a contiguous CPU tensor.
Napi::Value bufferToJs(Napi::Env env, const at::Tensor& t);
// The memory of a contiguous CPU tensor, zero-copy: the ArrayBuffer keeps the storage alive.
Napi::Value sharedBufferToJs(Napi::Env env, const at::Tensor& t);

at::ScalarType parseDtype(const std::string& s);
const char* dtypeName(at::ScalarType t);

// Converts any in-flight C++ exception into a JS exception carrying .code and .op.
[[noreturn]] void rethrowAsJs(Napi::Env env, const char* op);

// The error guard of hand-written N-API callbacks (the Generator class); the generated glue has its own.
#define SEMAIM_GUARD(opname, ...)                  \
  try {                                            \
    __VA_ARGS__                                    \
  } catch (const Napi::Error&) {                   \
    throw;                                         \
  } catch (...) {                                  \
    ::semaim::rethrowAsJs(info.Env(), opname);     \
  }

// Installs the caching CPU allocator (native/allocator.cc) unless SEMAIM_CPU_ALLOCATOR=system; throws
// std::invalid_argument when SEMAIM_CPU_CACHE_MB is not a whole number of MiB.
void installCpuAllocator();

// The distributed handle classes (ProcessGroup, GradReducer) of native/dist.cc, when built with c10d.
void registerDistHandles(Napi::Env env, Napi::Object exports);

}  // namespace semaim

// Result structs and the export functions of each translation unit, from native/ops.yaml.
#include "generated/ops.h"
