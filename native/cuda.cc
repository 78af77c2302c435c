// CUDA runtime queries (the `cuda` unit of native/ops.yaml). Compiled in every build; the CUDA-only
// parts only when libtorch has CUDA.
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

namespace impl {

static void cudaSynchronize() {
  if (torch::cuda::is_available()) torch::cuda::synchronize();
}

// cudaMemory(device) -> { allocated, peakAllocated, reserved } in bytes (zeros without CUDA).
static CudaMemoryResult cudaMemory(c10::optional<int64_t> device) {
  CudaMemoryResult r{0, 0, 0};
#ifdef SEMAIM_CUDA
  if (torch::cuda::is_available()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<int>(device.value_or(0)));
    // StatType::AGGREGATE is 0 in every version, but the enum moved: c10::cuda::CUDACachingAllocator
    // (2.1-2.4), c10::CachingDeviceAllocator (2.5 on). Index by value so both compile.
    constexpr size_t agg = 0;
    r.allocated = static_cast<double>(stats.allocated_bytes[agg].current);
    r.peakAllocated = static_cast<double>(stats.allocated_bytes[agg].peak);
    r.reserved = static_cast<double>(stats.reserved_bytes[agg].current);
  }
#endif
  return r;
}

static void cudaResetPeak(c10::optional<int64_t> device) {
#ifdef SEMAIM_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<int>(device.value_or(0)));
#endif
}

static void cudaEmptyCache() {
#ifdef SEMAIM_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

// The default CUDA generator's state of a device (what the global-RNG draws on that device use, e.g.
// drop path), as a uint8 CPU tensor for checkpoints, and back.
static at::Tensor cudaGetRngState(c10::optional<int64_t> device) {
#ifdef SEMAIM_CUDA
  auto gen = at::cuda::detail::getDefaultCUDAGenerator(static_cast<c10::DeviceIndex>(device.value_or(0)));
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
#else
  throw std::invalid_argument("cudaGetRngState: this libtorch has no CUDA");
#endif
}
static void cudaSetRngState(const at::Tensor& state, c10::optional<int64_t> device) {
#ifdef SEMAIM_CUDA
  auto gen = at::cuda::detail::getDefaultCUDAGenerator(static_cast<c10::DeviceIndex>(device.value_or(0)));
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
#else
  throw std::invalid_argument("cudaSetRngState: this libtorch has no CUDA");
#endif
}

// cudaDeviceProperties(device) -> { name, major, minor, totalMemory } (compute capability; what
// --precision auto needs: bf16 tensor cores from 8.0 on). Through the CUDA runtime that libtorch_cuda
// already loads, not ATen's CUDAContext (whose header also wants the cuBLAS/cuSPARSE/cuSOLVER headers).
static CudaDevicePropertiesResult cudaDeviceProperties(c10::optional<int64_t> device) {
#ifdef SEMAIM_CUDA
  cudaDeviceProp prop;
  cudaError_t err = cudaGetDeviceProperties(&prop, static_cast<int>(device.value_or(0)));
  if (err != cudaSuccess) throw std::invalid_argument(std::string("cudaDeviceProperties: ") + cudaGetErrorString(err));
  return {std::string(prop.name), prop.major, prop.minor, static_cast<double>(prop.totalGlobalMem)};
#else
  throw std::invalid_argument("cudaDeviceProperties: this libtorch has no CUDA");
#endif
}

// cuDNN's autotuner (torch.backends.cudnn.benchmark): times the convolution algorithms once per
// input shape and keeps the fastest. Pays off when shapes repeat (training at a fixed image size).
static bool cudnnBenchmark(c10::optional<bool> enabled) {
  if (enabled) at::globalContext().setBenchmarkCuDNN(*enabled);
  return at::globalContext().benchmarkCuDNN();
}

// TF32 on the tensor cores for float32 work (torch.backends.cudnn.allow_tf32 and
// torch.backends.cuda.matmul.allow_tf32; PyTorch's defaults: on for cuDNN convolutions, off for matmuls).
// These are plain Context flags, present on CPU-only builds too (where they change nothing).
static bool cudnnAllowTF32(c10::optional<bool> enabled) {
  if (enabled) at::globalContext().setAllowTF32CuDNN(*enabled);
  return at::globalContext().allowTF32CuDNN();
}

static bool matmulAllowTF32(c10::optional<bool> enabled) {
  if (enabled) at::globalContext().setAllowTF32CuBLAS(*enabled);
  return at::globalContext().allowTF32CuBLAS();
}

}  // namespace impl

}  // namespace semaim

#include "generated/cuda.inc"
