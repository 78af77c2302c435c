// CUDA runtime queries. Compiled in every build; the CUDA-only parts only when libtorch has CUDA.
#include "common.h"

#include <torch/cuda.h>

#include <mutex>
#include <stdexcept>

#ifdef SEMAIM_CUDA
#include <cuda_runtime_api.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace semaim {

FN(cudaAvailable, { return Napi::Boolean::New(info.Env(), torch::cuda::is_available()); })
FN(cudaDeviceCount, { return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count())); })
FN(cudaSynchronize, {
  if (torch::cuda::is_available()) torch::cuda::synchronize();
  return info.Env().Undefined();
})

// cudaMemory(device) -> { allocated, peakAllocated, reserved } in bytes (zeros without CUDA).
FN(cudaMemory, {
  Napi::Object o = Napi::Object::New(info.Env());
  double alloc = 0, peak = 0, reserved = 0;
#ifdef SEMAIM_CUDA
  if (torch::cuda::is_available()) {
    int dev = static_cast<int>(argOptInt(info, 0).value_or(0));
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
    // StatType::AGGREGATE is 0 in every version, but the enum moved: c10::cuda::CUDACachingAllocator
    // (2.1-2.4), c10::CachingDeviceAllocator (2.5 on). Index by value so both compile.
    constexpr size_t agg = 0;
    alloc = static_cast<double>(stats.allocated_bytes[agg].current);
    peak = static_cast<double>(stats.allocated_bytes[agg].peak);
    reserved = static_cast<double>(stats.reserved_bytes[agg].current);
  }
#endif
  o.Set("allocated", alloc);
  o.Set("peakAllocated", peak);
  o.Set("reserved", reserved);
  return o;
})

FN(cudaResetPeak, {
#ifdef SEMAIM_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<int>(argOptInt(info, 0).value_or(0)));
#endif
  return info.Env().Undefined();
})

FN(cudaEmptyCache, {
#ifdef SEMAIM_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  return info.Env().Undefined();
})

// The default CUDA generator's state of a device (what the global-RNG draws on that device use, e.g.
// drop path), as a uint8 CPU tensor for checkpoints, and back.
FN(cudaGetRngState, {
#ifdef SEMAIM_CUDA
  auto gen = at::cuda::detail::getDefaultCUDAGenerator(static_cast<c10::DeviceIndex>(argOptInt(info, 0).value_or(0)));
  std::lock_guard<std::mutex> lock(gen.mutex());
  return wrap(info.Env(), gen.get_state());
#else
  throw std::invalid_argument("cudaGetRngState: this libtorch has no CUDA");
#endif
})
FN(cudaSetRngState, {
#ifdef SEMAIM_CUDA
  auto gen = at::cuda::detail::getDefaultCUDAGenerator(static_cast<c10::DeviceIndex>(argOptInt(info, 1).value_or(0)));
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(argTensor(info, 0));
  return info.Env().Undefined();
#else
  throw std::invalid_argument("cudaSetRngState: this libtorch has no CUDA");
#endif
})

// cudaDeviceProperties(device) -> { name, major, minor, totalMemory } (compute capability; what
// --precision auto needs: bf16 tensor cores from 8.0 on). Through the CUDA runtime that libtorch_cuda
// already loads, not ATen's CUDAContext (whose header also wants the cuBLAS/cuSPARSE/cuSOLVER headers).
FN(cudaDeviceProperties, {
#ifdef SEMAIM_CUDA
  cudaDeviceProp prop;
  cudaError_t err = cudaGetDeviceProperties(&prop, static_cast<int>(argOptInt(info, 0).value_or(0)));
  if (err != cudaSuccess) throw std::invalid_argument(std::string("cudaDeviceProperties: ") + cudaGetErrorString(err));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("name", std::string(prop.name));
  o.Set("major", prop.major);
  o.Set("minor", prop.minor);
  o.Set("totalMemory", static_cast<double>(prop.totalGlobalMem));
  return o;
#else
  throw std::invalid_argument("cudaDeviceProperties: this libtorch has no CUDA");
#endif
})

// cuDNN's autotuner (torch.backends.cudnn.benchmark): times the convolution algorithms once per
// input shape and keeps the fastest. Pays off when shapes repeat (training at a fixed image size).
FN(cudnnBenchmark, {
  if (info.Length() > 0 && !info[0].IsUndefined()) at::globalContext().setBenchmarkCuDNN(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(info.Env(), at::globalContext().benchmarkCuDNN());
})

// TF32 on the tensor cores for float32 work (torch.backends.cudnn.allow_tf32 and
// torch.backends.cuda.matmul.allow_tf32; PyTorch's defaults: on for cuDNN convolutions, off for matmuls).
// These are plain Context flags, present on CPU-only builds too (where they change nothing).
FN(cudnnAllowTF32, {
  if (info.Length() > 0 && !info[0].IsUndefined()) at::globalContext().setAllowTF32CuDNN(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(info.Env(), at::globalContext().allowTF32CuDNN());
})

FN(matmulAllowTF32, {
  if (info.Length() > 0 && !info[0].IsUndefined()) at::globalContext().setAllowTF32CuBLAS(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(info.Env(), at::globalContext().allowTF32CuBLAS());
})

void registerCuda(Napi::Env env, Napi::Object exports) {
  EXPORT(cudaAvailable); EXPORT(cudaDeviceCount); EXPORT(cudaSynchronize); EXPORT(cudaMemory); EXPORT(cudaResetPeak);
  EXPORT(cudaEmptyCache); EXPORT(cudnnBenchmark); EXPORT(cudnnAllowTF32); EXPORT(matmulAllowTF32);
  EXPORT(cudaGetRngState); EXPORT(cudaSetRngState); EXPORT(cudaDeviceProperties);
}

}  // namespace semaim
