// Module entry point: per-environment state and the export table.
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
  registerAllocator(env, exports);
  registerCore(env, exports);
  registerMath(env, exports);
  registerNN(env, exports);
  registerOptim(env, exports);
  registerCuda(env, exports);
  registerDist(env, exports);
  return exports;
}

}  // namespace semaim

static Napi::Object InitSemaim(Napi::Env env, Napi::Object exports) { return semaim::Init(env, exports); }

NODE_API_MODULE(semaim, InitSemaim)
