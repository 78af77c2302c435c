// Tensor handles, argument parsing, errors, and the ops of native/ops.yaml's `core` unit: creation,
// data transfer, autograd, RNG and runtime settings.
#include "common.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace semaim {

std::atomic<int64_t> g_live_handles{0};
std::atomic<int64_t> g_live_bytes{0};

// ---------------------------------------------------------------- handles

// Host bytes (of storages >= 1 KiB) are accounted once per storage (views, detach() and .grad aliases share it): the first
// handle of a storage adds its size, the last one to go subtracts it.
namespace {
std::mutex g_storage_mu;
std::unordered_map<const void*, std::pair<int64_t, int64_t>> g_storages;  // key -> (handles, bytes)

int64_t shareStorage(const void* key, int64_t bytes) {
  std::lock_guard<std::mutex> lock(g_storage_mu);
  auto& e = g_storages[key];
  if (e.first++ == 0) {
    e.second = bytes;
    return bytes;
  }
  return 0;
}

int64_t unshareStorage(const void* key) {
  std::lock_guard<std::mutex> lock(g_storage_mu);
  auto it = g_storages.find(key);
  if (it == g_storages.end()) return 0;
  if (--it->second.first > 0) return 0;
  int64_t bytes = it->second.second;
  g_storages.erase(it);
  return bytes;
}
}  // namespace

TensorHandle::~TensorHandle() { release(nullptr); }

const at::Tensor& TensorHandle::get(const char* what) const {
  if (!tensor_.defined()) throw std::invalid_argument(std::string(what) + ": tensor was disposed");
  return tensor_;
}

void TensorHandle::set(Napi::Env env, at::Tensor t) {
  tensor_ = std::move(t);
  counted_ = true;
  g_live_handles++;
  countStorage(env);
}

// Storages under 1 KiB are not accounted: they do not matter to the GC and skipping them keeps
// the per-op cost down (a lock and a hash-map update).
void TensorHandle::countStorage(Napi::Env env) {
  if (tensor_.device().is_cpu() && tensor_.has_storage() && tensor_.storage().nbytes() >= 1024) {
    storage_key_ = tensor_.storage().unsafeGetStorageImpl();
    int64_t added = shareStorage(storage_key_, static_cast<int64_t>(tensor_.storage().nbytes()));
    if (added > 0) {
      g_live_bytes += added;
      Napi::MemoryManagement::AdjustExternalMemory(env, added);
    }
  }
}

void TensorHandle::uncountStorage(Napi::Env* env) {
  if (storage_key_) {
    int64_t removed = unshareStorage(storage_key_);
    storage_key_ = nullptr;
    if (removed > 0) {
      g_live_bytes -= removed;
      if (env != nullptr) Napi::MemoryManagement::AdjustExternalMemory(*env, -removed);
    }
  }
}

void TensorHandle::recount(Napi::Env env) {
  if (!tensor_.defined()) return;
  uncountStorage(&env);
  countStorage(env);
}

void TensorHandle::release(Napi::Env* env) {
  if (!tensor_.defined()) return;
  tensor_.reset();
  if (counted_) g_live_handles--;
  counted_ = false;
  uncountStorage(env);
}

Napi::Function GeneratorHandle::Define(Napi::Env env) {
  return DefineClass(env, "GeneratorHandle",
                     {InstanceMethod("seed", &GeneratorHandle::Seed),
                      InstanceMethod("getState", &GeneratorHandle::GetState),
                      InstanceMethod("setState", &GeneratorHandle::SetState)});
}

GeneratorHandle::GeneratorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorHandle>(info) {
  uint64_t seed = info.Length() > 0 && info[0].IsNumber() ? static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value())
                                                         : 67280421310721ULL;
  gen = at::make_generator<at::CPUGeneratorImpl>(seed);
}

Napi::Value GeneratorHandle::Seed(const Napi::CallbackInfo& info) {
  SEMAIM_GUARD("Generator.seed", {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(static_cast<uint64_t>(argInt(info, 0)));
    return info.Env().Undefined();
  })
}

Napi::Value GeneratorHandle::GetState(const Napi::CallbackInfo& info) {
  SEMAIM_GUARD("Generator.getState", {
    std::lock_guard<std::mutex> lock(gen.mutex());
    return wrap(info.Env(), gen.get_state());
  })
}

Napi::Value GeneratorHandle::SetState(const Napi::CallbackInfo& info) {
  SEMAIM_GUARD("Generator.setState", {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(argTensor(info, 0));
    return info.Env().Undefined();
  })
}

// ---------------------------------------------------------------- handle table

// A tensor handle, as JS sees it, is a BigInt: kHandleTag | (generation << 32) | slot. Not an N-API external: Node
// gives every external a V8 weak reference, which costs the scavenger ~0.3 µs per op — as much as a
// small op. BigInts need none, stay distinct from the numbers used for scalars, and a stale or forged
// id is detected (its generation no longer matches) instead of touching freed memory. Slots and their
// TensorHandle objects are reused; slot 0 is the handle every disposed Tensor points at. The tag (bit 63)
// keeps every id far from the BigInts a caller may pass as numbers: 2n is a scalar, never slot 2.
namespace {
constexpr uint64_t kHandleTag = 1ULL << 63;
constexpr uint32_t kGenMask = 0x7fffffff;
TensorHandle g_disposed_handle;
struct Slot {
  TensorHandle* h;
  uint32_t gen;
};
thread_local std::vector<Slot> t_slots{{&g_disposed_handle, 0}};
thread_local std::vector<uint32_t> t_free;
std::atomic<int64_t> g_backstops{0};  // GC finalizers attached and not yet run

// The handle for `id`: nullptr when it names no slot, the disposed handle when stale.
TensorHandle* lookup(uint64_t id) {
  uint32_t idx = static_cast<uint32_t>(id);
  if (!(id & kHandleTag) || idx >= t_slots.size()) return nullptr;
  const Slot& s = t_slots[idx];
  return s.gen == (static_cast<uint32_t>(id >> 32) & kGenMask) ? s.h : &g_disposed_handle;
}

TensorHandle* handleOf(const Napi::Value& v) {
  if (!v.IsBigInt()) return nullptr;
  bool lossless;
  uint64_t id = v.As<Napi::BigInt>().Uint64Value(&lossless);
  return lossless ? lookup(id) : nullptr;
}

// Drops the tensor of handle `id` and frees its slot; stale ids and slot 0 are ignored.
void disposeId(Napi::Env* env, uint64_t id) {
  uint32_t idx = static_cast<uint32_t>(id);
  if (!(id & kHandleTag) || idx == 0 || idx >= t_slots.size()) return;
  Slot& s = t_slots[idx];
  if (s.gen != (static_cast<uint32_t>(id >> 32) & kGenMask)) return;
  s.h->release(env);
  s.gen = (s.gen + 1) & kGenMask;
  t_free.push_back(idx);
}
}  // namespace

Napi::Value wrap(Napi::Env env, at::Tensor t) {
  if (!t.defined()) return env.Null();
  uint32_t idx;
  if (!t_free.empty()) {
    idx = t_free.back();
    t_free.pop_back();
  } else {
    idx = static_cast<uint32_t>(t_slots.size());
    t_slots.push_back({new TensorHandle(), 0});
  }
  Slot& s = t_slots[idx];
  s.h->set(env, std::move(t));
  return Napi::BigInt::New(env, kHandleTag | (static_cast<uint64_t>(s.gen) << 32) | idx);
}

static uint64_t disposedHandleId() { return kHandleTag; }

// Recounts every handle of the TensorImpl `impl` (a tensor and its aliases from a no-op to() or
// contiguous()) after set_data gave it another storage.
static void recountHandlesOf(Napi::Env env, const c10::TensorImpl* impl) {
  for (size_t k = 1; k < t_slots.size(); k++) {
    if (t_slots[k].h->holds(impl)) t_slots[k].h->recount(env);
  }
}

// Whether v is a BigInt shaped like a handle id (live or not); other BigInts are numbers.
static bool isHandleId(const Napi::Value& v) {
  if (!v.IsBigInt()) return false;
  bool lossless;
  return (v.As<Napi::BigInt>().Uint64Value(&lossless) & kHandleTag) && lossless;
}

Napi::Value wrapList(Napi::Env env, const std::vector<at::Tensor>& ts) {
  Napi::Array arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); i++) arr.Set(i, wrap(env, ts[i]));
  return arr;
}

namespace impl {

// dispose(handle): drops the tensor reference now and frees the handle (idempotent).
static void dispose(Napi::Env env, uint64_t handle) { disposeId(&env, handle); }

// backstop(owner, handle): disposes the handle when `owner` (its TS Tensor) is garbage collected,
// unless it was disposed before. No N-API calls in there: the env may be shutting down.
static void backstop(Napi::Object owner, uint64_t handle) {
  owner.AddFinalizer([](Napi::Env, uint64_t* p) {
    disposeId(nullptr, *p);
    delete p;
    g_backstops--;
  }, new uint64_t(handle));
  g_backstops++;
}

}  // namespace impl

// An integer a number cannot hold exactly comes back as a BigInt, which the TS layer refuses.
Napi::Value scalarToJs(Napi::Env env, const at::Scalar& s) {
  if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
  if (s.isIntegral(false) && (s.toLong() > 9007199254740991LL || s.toLong() < -9007199254740991LL)) return Napi::BigInt::New(env, s.toLong());
  return Napi::Number::New(env, s.toDouble());
}

Napi::Value intListToJs(Napi::Env env, at::IntArrayRef values) {
  Napi::Array a = Napi::Array::New(env, values.size());
  for (size_t k = 0; k < values.size(); k++) a.Set(k, Napi::Number::New(env, static_cast<double>(values[k])));
  return a;
}

// To JS: a copy into a fresh ArrayBuffer.
Napi::Value bufferToJs(Napi::Env env, const at::Tensor& t) {
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, t.nbytes());
  if (t.nbytes()) std::memcpy(buf.Data(), t.data_ptr(), t.nbytes());
  return buf;
}

Napi::Value sharedBufferToJs(Napi::Env env, const at::Tensor& t) {
  if (t.nbytes() == 0) return Napi::ArrayBuffer::New(env, 0);
  auto* keep = new at::Tensor(t);
  return Napi::ArrayBuffer::New(env, keep->data_ptr(), keep->nbytes(), [](Napi::Env, void*, at::Tensor* hint) { delete hint; }, keep);
}

// ---------------------------------------------------------------- argument readers

static std::string where(size_t i) { return "argument " + std::to_string(i); }

// Accepts a handle (what the TS layer passes) or a TS Tensor (an object whose `h` is the handle).
static TensorHandle* unwrapTensor(const Napi::Value& v, const std::string& what) {
  TensorHandle* p = handleOf(v.IsObject() ? v.As<Napi::Object>().Get("h") : v);
  if (p == nullptr) throw std::invalid_argument(what + ": expected a tensor");
  if (p->disposed()) throw std::invalid_argument(what + ": tensor was disposed");
  return p;
}

const at::Tensor& argTensor(const Napi::CallbackInfo& info, size_t i) {
  TensorHandle* p = handleOf(info[i]);  // fast path: a live handle
  if (p != nullptr && !p->disposed()) return p->get("tensor");
  return unwrapTensor(info[i], where(i))->get("tensor");
}

c10::optional<at::Tensor> argOptTensor(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return argTensor(info, i);
}

c10::optional<std::vector<at::Tensor>> argOptTensorList(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return argTensorList(info, i);
}

// A BigInt that is not a handle id, as a number: exact in the safe integer range, refused beyond it
// (a JS number could not hold it either; an int64 tensor can).
static int64_t bigIntNumber(const Napi::CallbackInfo& info, size_t i) {
  bool lossless;
  int64_t n = info[i].As<Napi::BigInt>().Int64Value(&lossless);
  if (!lossless || n > 9007199254740991LL || n < -9007199254740991LL)
    throw std::invalid_argument(where(i) + ": the BigInt " + info[i].ToString().Utf8Value() +
                                " is outside the safe integer range (±(2^53 - 1)); pass an int64 tensor instead");
  return n;
}

// A number, boolean or non-handle BigInt is a scalar; a handle (or TS Tensor) is a tensor.
TensorOrScalar argTensorOrScalar(const Napi::CallbackInfo& info, size_t i) {
  TensorOrScalar x;
  if (info[i].IsNumber() || info[i].IsBoolean() || (info[i].IsBigInt() && !isHandleId(info[i]))) x.scalar = argScalar(info, i);
  else x.tensor = &argTensor(info, i);
  return x;
}

std::vector<at::Tensor> argTensorList(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsArray()) throw std::invalid_argument(where(i) + ": expected an array of tensors");
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    out.push_back(unwrapTensor(a.Get(k), where(i) + "[" + std::to_string(k) + "]")->get("tensor"));
  }
  return out;
}

double argDouble(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsBigInt() && !isHandleId(info[i])) return static_cast<double>(bigIntNumber(info, i));
  if (!info[i].IsNumber()) throw std::invalid_argument(where(i) + ": expected a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

c10::optional<double> argOptDouble(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return argDouble(info, i);
}

// Whether d is an integer an int64 holds (casting any other double to int64 is undefined behaviour).
static bool isInt64(double d) { return d == std::trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0; }

int64_t argInt(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsBigInt()) {
    bool lossless;
    int64_t n = info[i].As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throw std::invalid_argument(where(i) + ": the BigInt " + info[i].ToString().Utf8Value() + " is outside the int64 range");
    return n;
  }
  if (!info[i].IsNumber()) throw std::invalid_argument(where(i) + ": expected an integer");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!isInt64(d)) throw std::invalid_argument(where(i) + ": expected an integer in the int64 range, got " + info[i].ToString().Utf8Value());
  return static_cast<int64_t>(d);
}

c10::optional<int64_t> argOptInt(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return argInt(info, i);
}

bool argBool(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsUndefined()) return false;
  return info[i].ToBoolean().Value();
}

c10::optional<bool> argOptBool(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return argBool(info, i);
}

std::vector<int64_t> argIntList(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsNumber()) return {argInt(info, i)};
  if (!info[i].IsArray()) throw std::invalid_argument(where(i) + ": expected an array of integers");
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!isInt64(d)) throw std::invalid_argument(where(i) + "[" + std::to_string(k) + "]: expected an integer in the int64 range, got " + v.ToString().Utf8Value());
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

c10::optional<std::vector<int64_t>> argOptIntList(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return argIntList(info, i);
}

at::Scalar argScalar(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsBoolean()) return at::Scalar(info[i].As<Napi::Boolean>().Value());
  if (info[i].IsBigInt()) {
    if (isHandleId(info[i])) throw std::invalid_argument(where(i) + ": expected a number, got a tensor");
    return at::Scalar(bigIntNumber(info, i));
  }
  // JS has one number type: integral values become integer scalars (as Python's `1`), so they keep
  // integer tensors integral; type promotion still gives float results for float tensors.
  double d = argDouble(info, i);
  if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9007199254740992.0) return at::Scalar(static_cast<int64_t>(d));
  return at::Scalar(d);
}

c10::optional<at::Scalar> argOptScalar(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return argScalar(info, i);
}

std::string argString(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsString()) throw std::invalid_argument(where(i) + ": expected a string");
  return info[i].As<Napi::String>().Utf8Value();
}

std::string argEnum(const Napi::CallbackInfo& info, size_t i, const char* param, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) list += std::string(list.empty() ? "'" : ", '") + a + "'";
  if (info[i].IsString()) {
    std::string s = info[i].As<Napi::String>().Utf8Value();
    for (const char* a : allowed)
      if (s == a) return s;
  }
  throw std::invalid_argument(std::string(param) + " must be one of " + list + ", got " +
                              (info[i].IsString() ? "'" + info[i].As<Napi::String>().Utf8Value() + "'" : info[i].ToString().Utf8Value()));
}

at::ScalarType parseDtype(const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "float64") return at::kDouble;
  if (s == "float16") return at::kHalf;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "int64") return at::kLong;
  if (s == "int32") return at::kInt;
  if (s == "int16") return at::kShort;
  if (s == "int8") return at::kChar;
  if (s == "uint8") return at::kByte;
  if (s == "bool") return at::kBool;
  throw std::invalid_argument("unknown dtype '" + s + "'");
}

const char* dtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return "unsupported";
  }
}

at::ScalarType argDtype(const Napi::CallbackInfo& info, size_t i) { return parseDtype(argString(info, i)); }

c10::optional<at::ScalarType> argOptDtype(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return argDtype(info, i);
}

c10::optional<at::Device> argOptDevice(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return at::Device(argString(info, i));
}

c10::optional<at::Generator> argOptGenerator(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  auto* data = info.Env().GetInstanceData<AddonData>();
  if (!info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(data->generator_ctor.Value()))
    throw std::invalid_argument(where(i) + ": expected a Generator");
  return GeneratorHandle::Unwrap(info[i].As<Napi::Object>())->gen;
}

Napi::TypedArray argTypedArray(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsTypedArray()) throw std::invalid_argument(where(i) + ": expected a typed array");
  return info[i].As<Napi::TypedArray>();
}

Napi::Object argObject(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsObject()) throw std::invalid_argument(where(i) + ": expected an object");
  return info[i].As<Napi::Object>();
}

// A raw handle id, not looked up (dispose and backstop accept stale ids).
uint64_t argHandle(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsBigInt()) throw std::invalid_argument(where(i) + ": expected a tensor handle");
  bool lossless;
  return info[i].As<Napi::BigInt>().Uint64Value(&lossless);
}

// ---------------------------------------------------------------- errors

[[noreturn]] void rethrowAsJs(Napi::Env env, const char* op) {
  std::string code = "ERR_TORCH";
  std::string msg;
  try {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    code = "ERR_TORCH_OOM"; msg = e.what_without_backtrace();
  } catch (const c10::IndexError& e) {
    code = "ERR_TORCH_INDEX"; msg = e.what_without_backtrace();
  } catch (const c10::ValueError& e) {
    code = "ERR_TORCH_VALUE"; msg = e.what_without_backtrace();
  } catch (const c10::TypeError& e) {
    code = "ERR_TORCH_TYPE"; msg = e.what_without_backtrace();
  } catch (const c10::NotImplementedError& e) {
    code = "ERR_TORCH_NOT_IMPLEMENTED"; msg = e.what_without_backtrace();
  } catch (const c10::Error& e) {
    msg = e.what_without_backtrace();
    // Moving a tensor or model to CUDA on a CPU-only libtorch: the same failure as creating a CUDA
    // tensor there (a backend this build lacks), so the same code
    if (!at::hasCUDA() && msg.find("not linked with support for cuda devices") != std::string::npos) code = "ERR_TORCH_NOT_IMPLEMENTED";
  } catch (const std::invalid_argument& e) {
    code = "ERR_ARG"; msg = e.what();
  } catch (const std::exception& e) {
    code = "ERR_NATIVE"; msg = e.what();
  } catch (...) {
    code = "ERR_NATIVE"; msg = "unknown native exception";
  }
  // Keep the first line block of libtorch's message; drop "Exception raised from ..." trailers.
  auto cut = msg.find("\nException raised from");
  if (cut != std::string::npos) msg = msg.substr(0, cut);
  // A CPU-only libtorch answers a CUDA tensor with its whole dispatcher table: say what it means.
  if (code == "ERR_TORCH_NOT_IMPLEMENTED" && msg.find("from the 'CUDA' backend") != std::string::npos && !at::hasCUDA())
    msg = "this libtorch was built without CUDA, so it has no CUDA tensors (use a CUDA build: $LIBTORCH, or the libtorch of a CUDA PyTorch)";
  // Many of the addon's own messages already begin with the op's name: name it once.
  const std::string prefix = std::string(op) + ": ";
  Napi::Error err = Napi::Error::New(env, msg.rfind(prefix, 0) == 0 ? msg : prefix + msg);
  err.Set("code", Napi::String::New(env, code));
  err.Set("op", Napi::String::New(env, op));
  throw err;
}

// ---------------------------------------------------------------- creation

// Creation options: float32 and the CPU unless given.
static at::TensorOptions options(c10::optional<at::ScalarType> dtype, c10::optional<at::Device> device) {
  return at::TensorOptions().dtype(dtype.value_or(at::kFloat)).device(device.value_or(at::Device(at::kCPU)));
}

// Host staging memory for a copy to `dev`: page-locked (pinned) for CUDA, so the copy can run
// asynchronously on the current stream instead of blocking the host until the GPU is idle. Freeing
// the staging tensor right after is safe: the copy records an event on the pinned block and
// libtorch's caching host allocator reuses it only after that event. Plain memory elsewhere, or if
// pinning fails (no CUDA runtime for the host allocator).
static at::Tensor stagingFor(at::IntArrayRef shape, at::ScalarType dtype, const at::Device& dev) {
  auto opts = at::TensorOptions().dtype(dtype);
  if (dev.is_cuda()) {
    try {
      return at::empty(shape, opts.pinned_memory(true));
    } catch (const c10::Error&) { /* fall back to pageable memory */ }
  }
  return at::empty(shape, opts);
}

// Random creation: generators are CPU generators; for another device the values are drawn on the
// host (into pinned staging memory for CUDA) and copied without blocking, so a seeded generator gives
// the same numbers on every device and drawing order noise each step does not stall the GPU queue.
static at::Tensor drawOnHost(at::IntArrayRef sizes, at::ScalarType dtype, const at::Device& dev,
                             const std::function<void(at::Tensor&)>& fill) {
  at::Tensor host = stagingFor(sizes, dtype, dev);
  fill(host);
  return dev.is_cpu() ? host : host.to(dev, /*non_blocking=*/host.is_pinned());
}
static void copyFromHost(const at::Tensor& t, const std::function<void(at::Tensor&)>& fill) {
  at::Tensor host = stagingFor(t.sizes(), t.scalar_type(), t.device());
  fill(host);
  t.copy_(host, /*non_blocking=*/host.is_pinned());
}

namespace impl {

static at::Tensor rand(const std::vector<int64_t>& size, c10::optional<at::ScalarType> dtype, c10::optional<at::Device> device,
                       const c10::optional<at::Generator>& gen) {
  auto opts = options(dtype, device);
  return gen ? drawOnHost(size, opts.dtype().toScalarType(), opts.device(), [&](at::Tensor& h) { h.uniform_(0, 1, gen); })
             : at::rand(size, opts);
}
static at::Tensor randn(const std::vector<int64_t>& size, c10::optional<at::ScalarType> dtype, c10::optional<at::Device> device,
                        const c10::optional<at::Generator>& gen) {
  auto opts = options(dtype, device);
  return gen ? drawOnHost(size, opts.dtype().toScalarType(), opts.device(), [&](at::Tensor& h) { h.normal_(0, 1, gen); })
             : at::randn(size, opts);
}
// randint and randperm: int64 unless given, as PyTorch.
static at::Tensor randint(int64_t low, int64_t high, const std::vector<int64_t>& size, c10::optional<at::ScalarType> dtype,
                          c10::optional<at::Device> device, const c10::optional<at::Generator>& gen) {
  auto opts = options(dtype.value_or(at::kLong), device);
  return gen ? drawOnHost(size, opts.dtype().toScalarType(), opts.device(), [&](at::Tensor& h) { h.random_(low, high, gen); })
             : at::randint(low, high, size, opts);
}
static at::Tensor randperm(int64_t n, c10::optional<at::ScalarType> dtype, c10::optional<at::Device> device, const c10::optional<at::Generator>& gen) {
  auto opts = options(dtype.value_or(at::kLong), device);
  return gen ? drawOnHost({n}, opts.dtype().toScalarType(), opts.device(), [&](at::Tensor& h) { at::randperm_out(h, h.size(0), gen); })
             : at::randperm(n, opts);
}
static void uniform_(const at::Tensor& t, double low, double high, const c10::optional<at::Generator>& gen) {
  if (gen && !t.device().is_cpu()) copyFromHost(t, [&](at::Tensor& h) { h.uniform_(low, high, gen); });
  else t.uniform_(low, high, gen);
}
static void normal_(const at::Tensor& t, double mean, double stddev, const c10::optional<at::Generator>& gen) {
  if (gen && !t.device().is_cpu()) copyFromHost(t, [&](at::Tensor& h) { h.normal_(mean, stddev, gen); });
  else t.normal_(mean, stddev, gen);
}
// Shaped like t; t's dtype and device unless given.
static at::Tensor bernoulli(const at::Tensor& t, double p, c10::optional<at::ScalarType> dtype, c10::optional<at::Device> device,
                            const c10::optional<at::Generator>& gen) {
  const at::ScalarType dt = dtype.value_or(t.scalar_type());
  const at::Device dev = device.value_or(t.device());
  return gen && !dev.is_cpu() ? drawOnHost(t.sizes(), dt, dev, [&](at::Tensor& h) { h.bernoulli_(p, gen); })
                              : at::empty_like(t, at::TensorOptions().dtype(dt).device(dev)).bernoulli_(p, gen);
}

// From a JS typed array: always one copy (the JS buffer may be detached or reused; a tensor
// must own its memory because autograd may free it on another thread). To CUDA: one host copy
// into pinned memory, then an asynchronous host-to-device copy.
static at::Tensor fromBuffer(Napi::TypedArray data, const std::vector<int64_t>& size, at::ScalarType dtype,
                             c10::optional<at::Device> device) {
  at::Device dev = device.value_or(at::Device(at::kCPU));
  at::Tensor t = stagingFor(size, dtype, dev);
  size_t need = t.nbytes();
  if (data.ByteLength() != need)
    throw std::invalid_argument("fromBuffer: buffer has " + std::to_string(data.ByteLength()) + " bytes, shape and dtype need " + std::to_string(need));
  // The data pointer straight from the typed array: data.ArrayBuffer() refuses a SharedArrayBuffer's.
  void* raw = nullptr;
  if (napi_get_typedarray_info(data.Env(), data, nullptr, nullptr, &raw, nullptr, nullptr) != napi_ok)
    throw std::invalid_argument("fromBuffer: cannot read the typed array's memory");
  const uint8_t* src = static_cast<const uint8_t*>(raw);
  if (need) std::memcpy(t.data_ptr(), src, need);
  if (dev.is_cpu()) return t;
  return t.to(dev, /*non_blocking=*/t.is_pinned());
}

static at::Tensor sharedBuffer(const at::Tensor& self) {
  if (!self.device().is_cpu() || !self.is_contiguous())
    throw std::invalid_argument("sharedBuffer: needs a contiguous CPU tensor (call .contiguous().cpu() first)");
  return self.detach();
}

static at::Scalar item(const at::Tensor& self) {
  if (self.numel() != 1) throw std::invalid_argument("item: tensor has " + std::to_string(self.numel()) + " elements, expected 1");
  return self.item();
}

// ---------------------------------------------------------------- properties

static std::string format(const at::Tensor& self) {
  std::ostringstream os;
  os << self;
  return os.str();
}

// ---------------------------------------------------------------- autograd

static void setGrad(const at::Tensor& t, const c10::optional<at::Tensor>& g) {
  // As PyTorch refuses it: backward would accumulate the gradient into the tensor's own values.
  if (g && g->unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) throw std::invalid_argument("setGrad: a tensor cannot be its own gradient");
  if (g && (g->sizes() != t.sizes() || g->scalar_type() != t.scalar_type() || g->device() != t.device())) {
    std::ostringstream os;
    os << "setGrad: gradient must match the tensor: tensor " << t.sizes() << " " << dtypeName(t.scalar_type()) << " " << t.device()
       << ", gradient " << g->sizes() << " " << dtypeName(g->scalar_type()) << " " << g->device();
    throw std::invalid_argument(os.str());
  }
  t.mutable_grad() = g ? *g : at::Tensor();
}

// PyTorch's `t.data = src`. The handles of t counted the storage t had (by its address): left so, the
// bytes of src's storage went uncounted once src was disposed, and the old storage's address, free
// again, kept a count that a new storage there would inherit.
static void setData(Napi::Env env, const at::Tensor& self, const at::Tensor& src) {
  self.set_data(src);
  recountHandlesOf(env, self.unsafeGetTensorImpl());
}

// Autocast (mixed precision) hides the 1.x / 2.x API difference: enable(deviceType, dtype).
static void setAutocast(bool on, const std::string& dev, at::ScalarType dtype, bool clearCache) {
#if SEMAIM_TORCH_AT_LEAST(2, 4)  // (DeviceType, ...) API; the per-device setters are deprecated there
  at::DeviceType dt = dev == "cuda" ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(dt, dtype);
  at::autocast::set_autocast_enabled(dt, on);
#else
  if (dev == "cuda") {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(on);
  }
#endif
  // The cache of float32 weights cast to the autocast dtype: dropped when the outermost region ends.
  if (clearCache) at::autocast::clear_cache();
}

// getAutocast(device) -> [enabled, dtype]: the state an autocast region restores when it ends.
static std::tuple<bool, at::ScalarType> getAutocast(const std::string& dev) {
#if SEMAIM_TORCH_AT_LEAST(2, 4)
  at::DeviceType dt = dev == "cuda" ? at::kCUDA : at::kCPU;
  return {at::autocast::is_autocast_enabled(dt), at::autocast::get_autocast_dtype(dt)};
#else
  if (dev == "cuda") return {at::autocast::is_enabled(), at::autocast::get_autocast_gpu_dtype()};
  return {at::autocast::is_cpu_enabled(), at::autocast::get_autocast_cpu_dtype()};
#endif
}

// ---------------------------------------------------------------- runtime

static at::Tensor getRngState() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}
static void setRngState(const at::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// at::set_num_threads takes an int: a larger count is refused, not wrapped (2^32 + 1 was 1 thread).
static void setNumThreads(int64_t n) {
  if (n < 1 || n > std::numeric_limits<int>::max())
    throw std::invalid_argument("setNumThreads: expected a thread count in 1.." + std::to_string(std::numeric_limits<int>::max()) + ", got " + std::to_string(n));
  at::set_num_threads(static_cast<int>(n));
}

static VersionResult version() {
  return {TORCH_VERSION, TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, at::show_config(), at::get_parallel_info()};
}

}  // namespace impl

}  // namespace semaim

#include "generated/core.inc"
