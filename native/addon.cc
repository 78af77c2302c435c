// Module entry point: per-environment state, the Generator class and the ops of native/ops.yaml.
#include "common.h"

namespace semaim {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  Napi::Function genCtor = GeneratorHandle::Define(env);
  data->generator_ctor = Napi::Persistent(genCtor);
  env.SetInstanceData<AddonData>(data);
  exports.Set("Generator", genCtor);
  exports.Set("cudaBuild", Napi::Boolean::New(env,
#ifdef SEMAIM_CUDA
      true
#else
      false
#endif
      ));
  // A bad SEMAIM_CPU_CACHE_MB fails the load with its message (only a Napi::Error may leave Init).
  try {
    installCpuAllocator();
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  registerOps(env, exports);
  registerDistHandles(env, exports);
  return exports;
}

}  // namespace semaim

static Napi::Object InitSemaim(Napi::Env env, Napi::Object exports) { return semaim::Init(env, exports); }

// Node's module-registration macro defines functions without declarations (the addon builds with
// -Werror=missing-declarations, which keeps ops out of the C++ unless native/ops.yaml declares them).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-declarations"
NODE_API_MODULE(semaim, InitSemaim)
#pragma GCC diagnostic pop
