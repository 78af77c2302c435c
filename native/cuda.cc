// CUDA runtime queries (the `cuda` unit of native/ops.yaml). Compiled in every build; the CUDA-only
// parts only when libtorch has CUDA.
#include "common.h"

#include <torch/cuda.h>

#include <mutex>
#include <stdexcept>

#ifdef SEMAIM_CUDA
#include <cuda_runtime_api.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAStream.h>

#include <map>
#include <memory>
#include <optional>
#include <vector>
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

// ---------------------------------------------------------------- event timing
// Events in numbered slots (created on first use, with timing), recorded on the current stream: the
// bench's phase timer marks phase boundaries without synchronising, then reads the elapsed times once
// the step has finished.
#ifdef SEMAIM_CUDA
static void checkCuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}
static std::vector<cudaEvent_t>& eventSlots() {
  static auto* slots = new std::vector<cudaEvent_t>();  // never destroyed: outlives CUDA's shutdown
  return *slots;
}
#endif

static void cudaEventRecordSlot(int64_t slot) {
#ifdef SEMAIM_CUDA
  if (slot < 0 || slot > 100000) throw std::invalid_argument("cudaEventRecordSlot: slot out of range");
  auto& slots = eventSlots();
  while (static_cast<int64_t>(slots.size()) <= slot) {
    cudaEvent_t e;
    checkCuda(cudaEventCreate(&e), "cudaEventCreate");
    slots.push_back(e);
  }
  checkCuda(cudaEventRecord(slots[static_cast<size_t>(slot)], c10::cuda::getCurrentCUDAStream().stream()), "cudaEventRecord");
#else
  (void)slot;
  throw std::invalid_argument("cudaEventRecordSlot: this libtorch has no CUDA");
#endif
}

// Milliseconds between two recorded slots; waits for the later one.
static double cudaEventElapsed(int64_t start, int64_t end) {
#ifdef SEMAIM_CUDA
  auto& slots = eventSlots();
  if (start < 0 || end < 0 || start >= static_cast<int64_t>(slots.size()) || end >= static_cast<int64_t>(slots.size()))
    throw std::invalid_argument("cudaEventElapsed: slot never recorded");
  checkCuda(cudaEventSynchronize(slots[static_cast<size_t>(end)]), "cudaEventSynchronize");
  float ms = 0;
  checkCuda(cudaEventElapsedTime(&ms, slots[static_cast<size_t>(start)], slots[static_cast<size_t>(end)]), "cudaEventElapsedTime");
  return ms;
#else
  (void)start;
  (void)end;
  throw std::invalid_argument("cudaEventElapsed: this libtorch has no CUDA");
#endif
}

// ---------------------------------------------------------------- CUDA graphs
// A step is captured on a side stream (capture needs a non-default stream; warm-up runs there too),
// then replayed. The side stream stays current between cudaSideStream(true) and cudaSideStream(false),
// which order it after, then before, the stream that was current.
#ifdef SEMAIM_CUDA
struct SideStream {
  c10::cuda::CUDAStream previous;
  c10::cuda::CUDAStream side;
};
static std::optional<SideStream>& sideStream() {
  static std::optional<SideStream> s;
  return s;
}
static void streamWaits(const c10::cuda::CUDAStream& waiter, const c10::cuda::CUDAStream& on) {
  cudaEvent_t e;
  checkCuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  checkCuda(cudaEventRecord(e, on.stream()), "cudaEventRecord");
  checkCuda(cudaStreamWaitEvent(waiter.stream(), e, 0), "cudaStreamWaitEvent");
  checkCuda(cudaEventDestroy(e), "cudaEventDestroy");
}
static std::map<int64_t, std::unique_ptr<at::cuda::CUDAGraph>>& graphs() {
  static auto* g = new std::map<int64_t, std::unique_ptr<at::cuda::CUDAGraph>>();
  return *g;
}
static at::cuda::CUDAGraph& graphAt(int64_t id, const char* op) {
  auto it = graphs().find(id);
  if (it == graphs().end()) throw std::invalid_argument(std::string(op) + ": no CUDA graph " + std::to_string(id));
  return *it->second;
}
#endif

static void cudaSideStream(bool enter) {
#ifdef SEMAIM_CUDA
  auto& s = sideStream();
  if (enter) {
    if (s) throw std::logic_error("cudaSideStream: already on the side stream");
    const auto previous = c10::cuda::getCurrentCUDAStream();
    const auto side = c10::cuda::getStreamFromPool();
    streamWaits(side, previous);
    c10::cuda::setCurrentCUDAStream(side);
    s = SideStream{previous, side};
  } else {
    if (!s) throw std::logic_error("cudaSideStream: not on the side stream");
    streamWaits(s->previous, s->side);
    c10::cuda::setCurrentCUDAStream(s->previous);
    s.reset();
  }
#else
  (void)enter;
  throw std::invalid_argument("cudaSideStream: this libtorch has no CUDA");
#endif
}

static int64_t cudaGraphCreate() {
#ifdef SEMAIM_CUDA
  static int64_t next = 1;
  graphs().emplace(next, std::make_unique<at::cuda::CUDAGraph>());
  return next++;
#else
  throw std::invalid_argument("cudaGraphCreate: this libtorch has no CUDA");
#endif
}

static void cudaGraphCaptureBegin(int64_t id) {
#ifdef SEMAIM_CUDA
  auto& g = graphAt(id, "cudaGraphCaptureBegin");
  if (!sideStream()) throw std::logic_error("cudaGraphCaptureBegin: capture on the side stream (cudaSideStream(true) first)");
  g.capture_begin();
#else
  (void)id;
  throw std::invalid_argument("cudaGraphCaptureBegin: this libtorch has no CUDA");
#endif
}

static void cudaGraphCaptureEnd(int64_t id) {
#ifdef SEMAIM_CUDA
  graphAt(id, "cudaGraphCaptureEnd").capture_end();
#else
  (void)id;
  throw std::invalid_argument("cudaGraphCaptureEnd: this libtorch has no CUDA");
#endif
}

static void cudaGraphReplay(int64_t id) {
#ifdef SEMAIM_CUDA
  graphAt(id, "cudaGraphReplay").replay();
#else
  (void)id;
  throw std::invalid_argument("cudaGraphReplay: this libtorch has no CUDA");
#endif
}

static void cudaGraphDestroy(int64_t id) {
#ifdef SEMAIM_CUDA
  graphs().erase(id);
#else
  (void)id;
  throw std::invalid_argument("cudaGraphDestroy: this libtorch has no CUDA");
#endif
}

// Whether the current stream is being captured (work issued now would be recorded, not run).
static bool cudaStreamCapturing() {
#ifdef SEMAIM_CUDA
  if (!torch::cuda::is_available()) return false;
  return c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
#else
  return false;
#endif
}

}  // namespace impl

}  // namespace semaim

#include "generated/cuda.inc"
