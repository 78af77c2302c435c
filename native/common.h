// Shared pieces of the semaim addon: the tensor handle, argument readers and the error guard.
// Every exported function runs inside GUARD so that no C++ exception ever reaches N-API
// (an uncaught c10::Error would abort the Node process).
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

 private:
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

// Wraps a tensor into a fresh JS handle that owns one reference to it.
Napi::Value wrap(Napi::Env env, at::Tensor t);
Napi::Value wrapList(Napi::Env env, const std::vector<at::Tensor>& ts);

// Argument readers. They throw std::invalid_argument with a message naming the position.
const at::Tensor& argTensor(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Tensor> argOptTensor(const Napi::CallbackInfo& info, size_t i);
std::vector<at::Tensor> argTensorList(const Napi::CallbackInfo& info, size_t i);
double argDouble(const Napi::CallbackInfo& info, size_t i);
c10::optional<double> argOptDouble(const Napi::CallbackInfo& info, size_t i);
int64_t argInt(const Napi::CallbackInfo& info, size_t i);
c10::optional<int64_t> argOptInt(const Napi::CallbackInfo& info, size_t i);
bool argBool(const Napi::CallbackInfo& info, size_t i);
std::vector<int64_t> argIntList(const Napi::CallbackInfo& info, size_t i);
c10::optional<std::vector<int64_t>> argOptIntList(const Napi::CallbackInfo& info, size_t i);
at::Scalar argScalar(const Napi::CallbackInfo& info, size_t i);
std::string argString(const Napi::CallbackInfo& info, size_t i);
at::ScalarType argDtype(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::ScalarType> argOptDtype(const Napi::CallbackInfo& info, size_t i);
at::Device argDevice(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Generator> argOptGenerator(const Napi::CallbackInfo& info, size_t i);
at::TensorOptions argOptions(const Napi::CallbackInfo& info, size_t dtype_i, size_t device_i);

at::ScalarType parseDtype(const std::string& s);
const char* dtypeName(at::ScalarType t);

// Converts any in-flight C++ exception into a JS exception carrying .code and .op.
[[noreturn]] void rethrowAsJs(Napi::Env env, const char* op);

// One function per op: `OP(add, at::add(argTensor(info,0), argTensor(info,1)))`.
#define SEMAIM_GUARD(opname, ...)                  \
  try {                                            \
    __VA_ARGS__                                    \
  } catch (const Napi::Error&) {                   \
    throw;                                         \
  } catch (...) {                                  \
    ::semaim::rethrowAsJs(info.Env(), opname);     \
  }

#define OP(name, ...)                                                       \
  static Napi::Value op_##name(const Napi::CallbackInfo& info) {           \
    SEMAIM_GUARD(#name, return ::semaim::wrap(info.Env(), (__VA_ARGS__));) \
  }

#define FN(name, ...)                                             \
  static Napi::Value op_##name(const Napi::CallbackInfo& info) {  \
    SEMAIM_GUARD(#name, __VA_ARGS__)                              \
  }

#define EXPORT(name) exports.Set(#name, Napi::Function::New(env, op_##name, #name))

// Registration hooks of each translation unit.
void registerCore(Napi::Env env, Napi::Object exports);
void registerMath(Napi::Env env, Napi::Object exports);
void registerNN(Napi::Env env, Napi::Object exports);
void registerOptim(Napi::Env env, Napi::Object exports);
void registerCuda(Napi::Env env, Napi::Object exports);
void registerAllocator(Napi::Env env, Napi::Object exports);
void registerDist(Napi::Env env, Napi::Object exports);

}  // namespace semaim
