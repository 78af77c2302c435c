// Fused elementwise ops (the `fused` unit of native/ops.yaml): LayerNorm with an optional residual add,
// GELU with its bias's gradient, and the pixel targets. Each op takes `fused`:
//   false  the unfused libtorch composition, exactly the ops the TypeScript model runs without fusion
//          (through the dispatcher, so autocast applies as before);
//   true   a custom autograd function whose forward runs one CUDA kernel of native/kernels/fused.cu
//          (compiled at run time by NVRTC) on CUDA tensors, and the same arithmetic as libtorch ops
//          elsewhere (how the CPU tests check the function's backward), and whose backward is made of
//          libtorch ops (LayerNorm's backward, sums); LayerNorm's takes `fusedBackward`
//          too: its backward then runs one kernel on CUDA tensors (the same arithmetic as libtorch ops
//          elsewhere), else libtorch's LayerNorm backward.
// GELU after a bias and q, k, v from qkv are the exceptions: their forward is always libtorch's (GELU;
// views) and their backward always gives the Linear's bias its gradient; `fused` picks the backward's
// kernel on CUDA tensors (libtorch's ops and a sum without it).
// The kernels need a CUDA libtorch (SEMAIM_CUDA) and, at run time, libnvrtc and libcuda; both are opened
// with dlopen, so the addon builds without the NVRTC or driver headers and loads without the libraries.
#include "common.h"

#include <torch/csrc/autograd/custom_function.h>

#include <array>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/launch.h"

#ifdef SEMAIM_CUDA
#include <cuda_runtime_api.h>
#include <torch/cuda.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <dlfcn.h>
#include <glob.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "generated/kernels.inc"
#endif

namespace semaim {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---------------------------------------------------------------- the CUDA kernels (NVRTC)

#ifdef SEMAIM_CUDA
// The NVRTC and driver entry points the kernels need. Opaque handles as void*; results as int (C enums).
// These C functions have kept their signatures from CUDA 11 to 13.
struct CudaApi {
  int (*nvrtcCreateProgram)(void**, const char*, const char*, int, const char* const*, const char* const*) = nullptr;
  int (*nvrtcCompileProgram)(void*, int, const char* const*) = nullptr;
  int (*nvrtcGetProgramLogSize)(void*, size_t*) = nullptr;
  int (*nvrtcGetProgramLog)(void*, char*) = nullptr;
  int (*nvrtcGetCUBINSize)(void*, size_t*) = nullptr;  // CUDA >= 11.1; without it, PTX for the driver to JIT
  int (*nvrtcGetCUBIN)(void*, char*) = nullptr;
  int (*nvrtcGetPTXSize)(void*, size_t*) = nullptr;
  int (*nvrtcGetPTX)(void*, char*) = nullptr;
  int (*nvrtcDestroyProgram)(void**) = nullptr;
  const char* (*nvrtcGetErrorString)(int) = nullptr;
  int (*nvrtcVersion)(int*, int*) = nullptr;
  int (*cuModuleLoadData)(void**, const void*) = nullptr;
  int (*cuModuleGetFunction)(void**, void*, const char*) = nullptr;
  int (*cuLaunchKernel)(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, cudaStream_t, void**, void**) = nullptr;
  int (*cuGetErrorString)(int, const char**) = nullptr;
  int (*cuCtxGetCurrent)(void**) = nullptr;
  std::string nvrtcPath;
  int nvrtcMajor = 0, nvrtcMinor = 0;
};

template <typename F>
bool bind(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

std::vector<std::string> globPaths(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g;
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  return out;
}

std::string dirOf(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Where libnvrtc may be: $SEMAIM_NVRTC; the loader's search path; next to a pip PyTorch
// (site-packages/nvidia/*/lib, found from the loaded libc10_cuda); the CUDA toolkit.
std::vector<std::string> nvrtcCandidates() {
  std::vector<std::string> c;
  if (const char* env = std::getenv("SEMAIM_NVRTC")) c.emplace_back(env);
  for (const char* name : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}) c.emplace_back(name);
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&c10::cuda::device_count), &info) && info.dli_fname) {
    const std::string sitePackages = dirOf(dirOf(dirOf(info.dli_fname)));  // <site-packages>/torch/lib/libc10_cuda.so
    for (const auto& p : globPaths(sitePackages + "/nvidia/*/lib/libnvrtc.so*")) {
      if (p.find("builtins") == std::string::npos) c.push_back(p);
    }
  }
  for (const auto& p : globPaths("/usr/local/cuda/lib64/libnvrtc.so*")) {
    if (p.find("builtins") == std::string::npos) c.push_back(p);
  }
  return c;
}

// Loads the libraries once; returns the API or throws with what was tried.
const CudaApi& cudaApi() {
  static std::mutex mutex;
  static CudaApi* api = nullptr;
  static std::string error;
  std::lock_guard<std::mutex> lock(mutex);
  if (api) return *api;
  if (!error.empty()) throw std::runtime_error(error);
  auto a = std::make_unique<CudaApi>();
  void* nvrtc = nullptr;
  std::string tried;
  for (const auto& name : nvrtcCandidates()) {
    nvrtc = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (nvrtc) {
      a->nvrtcPath = name;
      break;
    }
    tried += (tried.empty() ? "" : ", ") + name;
  }
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!nvrtc || !driver) {
    error = !nvrtc ? "fused kernels: libnvrtc not found (tried " + tried + "; set SEMAIM_NVRTC to its path)"
                   : "fused kernels: the CUDA driver library libcuda.so.1 cannot be opened";
    throw std::runtime_error(error);
  }
  // libnvrtc opens its builtins library by name; a pip wheel keeps it in the same folder.
  Dl_info info;
  void* version = dlsym(nvrtc, "nvrtcVersion");
  if (version && dladdr(version, &info) && info.dli_fname) {
    a->nvrtcPath = info.dli_fname;
    for (const auto& p : globPaths(dirOf(info.dli_fname) + "/libnvrtc-builtins.so*")) dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL);
  }
  bool ok = bind(nvrtc, "nvrtcCreateProgram", a->nvrtcCreateProgram) && bind(nvrtc, "nvrtcCompileProgram", a->nvrtcCompileProgram) &&
            bind(nvrtc, "nvrtcGetProgramLogSize", a->nvrtcGetProgramLogSize) && bind(nvrtc, "nvrtcGetProgramLog", a->nvrtcGetProgramLog) &&
            bind(nvrtc, "nvrtcGetPTXSize", a->nvrtcGetPTXSize) && bind(nvrtc, "nvrtcGetPTX", a->nvrtcGetPTX) &&
            bind(nvrtc, "nvrtcDestroyProgram", a->nvrtcDestroyProgram) && bind(nvrtc, "nvrtcGetErrorString", a->nvrtcGetErrorString) &&
            bind(nvrtc, "nvrtcVersion", a->nvrtcVersion) && bind(driver, "cuModuleLoadData", a->cuModuleLoadData) &&
            bind(driver, "cuModuleGetFunction", a->cuModuleGetFunction) && bind(driver, "cuLaunchKernel", a->cuLaunchKernel) &&
            bind(driver, "cuGetErrorString", a->cuGetErrorString) && bind(driver, "cuCtxGetCurrent", a->cuCtxGetCurrent);
  if (!ok) {
    error = "fused kernels: " + a->nvrtcPath + " or libcuda.so.1 lacks an expected function";
    throw std::runtime_error(error);
  }
  bind(nvrtc, "nvrtcGetCUBINSize", a->nvrtcGetCUBINSize);
  bind(nvrtc, "nvrtcGetCUBIN", a->nvrtcGetCUBIN);
  a->nvrtcVersion(&a->nvrtcMajor, &a->nvrtcMinor);
  api = a.release();
  return *api;
}

std::string driverError(const CudaApi& api, int r) {
  const char* s = nullptr;
  api.cuGetErrorString(r, &s);
  return s ? s : "CUDA driver error " + std::to_string(r);
}

// The primary context must be current on the calling thread (the main thread or autograd's device
// thread) for driver calls; the runtime makes it so on first use.
void ensureContext(const CudaApi& api) {
  void* ctx = nullptr;
  if (api.cuCtxGetCurrent(&ctx) != 0 || ctx == nullptr) cudaFree(nullptr);
}

// The compiled module of a device: NVRTC runs once per device and process, or is read from the cache.
struct KernelModule {
  void* module = nullptr;
  std::map<std::string, void*> functions;
  std::string arch;
};

// The compiled cubins are kept on disk, so that NVRTC's seconds (10-20 s for the whole source on a slow
// core) are paid once per machine, not once per process: $SEMAIM_KERNEL_CACHE (empty: no cache), else
// $XDG_CACHE_HOME/semaim/kernels, else ~/.cache/semaim/kernels. A file's name holds a hash of the source,
// the target and the NVRTC version, so an edited kernel or another NVRTC compiles anew. Any failure to
// read, load or write a cached file only means compiling, as without the cache.
std::string kernelCacheFile(const std::string& arch, const CudaApi& api) {
  std::string dir;
  if (const char* e = std::getenv("SEMAIM_KERNEL_CACHE")) {
    dir = e;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    dir = std::string(x) + "/semaim/kernels";
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    dir = std::string(h) + "/.cache/semaim/kernels";
  }
  if (dir.empty()) return "";
  uint64_t hash = 1469598103934665603ull;  // FNV-1a over the source, the target and the NVRTC version
  const std::string key = std::string(kKernelSource_fused) + '\0' + arch + '\0' + std::to_string(api.nvrtcMajor) + "." + std::to_string(api.nvrtcMinor);
  for (const unsigned char c : key) hash = (hash ^ c) * 1099511628211ull;
  std::ostringstream name;
  name << dir << "/fused-" << std::hex << hash << "-" << arch.substr(arch.find('=') + 1) << ".cubin";
  return name.str();
}

std::string readCachedKernels(const std::string& file) {
  if (file.empty()) return "";
  std::ifstream in(file, std::ios::binary);
  if (!in) return "";
  std::ostringstream image;
  image << in.rdbuf();
  return in.bad() ? "" : image.str();
}

// Written to a temporary name and renamed into place: a reader sees the whole file or none.
void storeCachedKernels(const std::string& file, const std::string& image) {
  if (file.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(file).parent_path(), ec);
  if (ec) return;
  const std::string tmp = file + ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(image.data(), static_cast<std::streamsize>(image.size()));
    if (!out.good()) {
      out.close();
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, file, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

KernelModule compileFor(const CudaApi& api, int device) {
  // The module is loaded into the current context: that of `device`, not of whichever device is current
  // (--device cuda:1 in one process loaded it into device 0's, and launching it on device 1 then failed).
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) throw std::runtime_error("fused kernels: cannot read the device properties");
  const std::string cc = std::to_string(prop.major) + std::to_string(prop.minor);
  // A cubin for this GPU where NVRTC can write one; PTX (JIT-compiled by the driver) otherwise.
  for (const bool cubin : {true, false}) {
    if (cubin && !api.nvrtcGetCUBIN) continue;
    const std::string arch = std::string("--gpu-architecture=") + (cubin ? "sm_" : "compute_") + cc;
    const std::string cacheFile = cubin ? kernelCacheFile(arch, api) : "";
    if (const std::string cached = readCachedKernels(cacheFile); !cached.empty()) {
      KernelModule m;
      ensureContext(api);
      if (api.cuModuleLoadData(&m.module, cached.data()) == 0) {
        m.arch = arch + " (cached: " + cacheFile + ")";
        return m;
      }
    }
    const char* opts[] = {arch.c_str(), "--std=c++17"};
    void* prog = nullptr;
    int r = api.nvrtcCreateProgram(&prog, kKernelSource_fused, "fused.cu", 0, nullptr, nullptr);
    if (r != 0) throw std::runtime_error(std::string("fused kernels: nvrtcCreateProgram: ") + api.nvrtcGetErrorString(r));
    r = api.nvrtcCompileProgram(prog, 2, opts);
    size_t logSize = 0;
    api.nvrtcGetProgramLogSize(prog, &logSize);
    std::string log(logSize, '\0');
    if (logSize) api.nvrtcGetProgramLog(prog, &log[0]);
    if (r != 0) {
      api.nvrtcDestroyProgram(&prog);
      if (cubin) continue;  // e.g. an NVRTC older than this GPU: try PTX for the newest it knows
      throw std::runtime_error("fused kernels: NVRTC " + std::to_string(api.nvrtcMajor) + "." + std::to_string(api.nvrtcMinor) + " (" +
                               api.nvrtcPath + ") failed for " + arch + ": " + api.nvrtcGetErrorString(r) + "\n" + log);
    }
    size_t size = 0;
    (cubin ? api.nvrtcGetCUBINSize : api.nvrtcGetPTXSize)(prog, &size);
    std::string image(size, '\0');
    (cubin ? api.nvrtcGetCUBIN : api.nvrtcGetPTX)(prog, &image[0]);
    api.nvrtcDestroyProgram(&prog);
    KernelModule m;
    m.arch = arch;
    ensureContext(api);
    r = api.cuModuleLoadData(&m.module, image.data());
    if (r != 0) throw std::runtime_error("fused kernels: loading the " + arch + " module: " + driverError(api, r));
    if (cubin) storeCachedKernels(cacheFile, image);
    return m;
  }
  throw std::runtime_error("fused kernels: no NVRTC target for compute capability " + cc);
}

std::mutex g_moduleMutex;
std::map<int, KernelModule>& modules() {
  static auto* m = new std::map<int, KernelModule>();  // never destroyed: outlives CUDA's shutdown
  return *m;
}

KernelModule& moduleFor(int device) {
  const CudaApi& api = cudaApi();
  std::lock_guard<std::mutex> lock(g_moduleMutex);
  auto it = modules().find(device);
  if (it == modules().end()) it = modules().emplace(device, compileFor(api, device)).first;
  return it->second;
}

void launchKernel(const std::string& name, const semaim_launch::Launch& l, const at::Tensor& like, std::vector<void*> args) {
  if (l.sharedBytes > semaim_launch::kMaxSharedBytes) throw std::invalid_argument("fused kernels: " + name + " needs too much shared memory");
  const CudaApi& api = cudaApi();
  const int device = like.device().index();
  KernelModule& m = moduleFor(device);
  void* fn = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_moduleMutex);
    auto it = m.functions.find(name);
    if (it == m.functions.end()) {
      const int r = api.cuModuleGetFunction(&fn, m.module, name.c_str());
      if (r != 0) throw std::runtime_error("fused kernels: no kernel " + name + ": " + driverError(api, r));
      it = m.functions.emplace(name, fn).first;
    }
    fn = it->second;
  }
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  ensureContext(api);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
  const int r = api.cuLaunchKernel(fn, l.grid, 1, 1, l.block, 1, 1, static_cast<unsigned>(l.sharedBytes), stream, args.data(), nullptr);
  if (r != 0) throw std::runtime_error("fused kernels: launching " + name + ": " + driverError(api, r));
}
#endif  // SEMAIM_CUDA

// The storage code of a kernel type, or "" where no kernel exists for it (double, integers).
std::string kernelCode(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "f32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "f16";
    default: return "";
  }
}

// Whether `t` runs on the CUDA kernels (a CUDA tensor of a kernel type in a CUDA build).
bool onKernels(const at::Tensor& t) {
#ifdef SEMAIM_CUDA
  return t.is_cuda() && !kernelCode(t.scalar_type()).empty();
#else
  (void)t;
  return false;
#endif
}

at::ScalarType accType(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// The column sums of `t` seen as rows of `width` values, in accType: a bias's gradient from its output's.
at::Tensor sumOverRows(const at::Tensor& t, int64_t width) {
  const std::vector<int64_t> rowsDim{0};
  return at::sum(t.reshape({-1, width}), rowsDim, false, accType(t.scalar_type()));
}

#ifdef SEMAIM_CUDA
// x and r (same shape) as rows of their last dimension for the LayerNorm kernel: a 3-D tensor as
// [batch, rowsPerBatch] rows with its own strides (a narrowed sequence is read without a copy), any
// other as one batch of contiguous rows.
struct RowLayout {
  at::Tensor t;
  int64_t sB, sT;
};
RowLayout rowLayout(const at::Tensor& t) {
  const int64_t D = t.size(-1);
  if (t.dim() == 3) {
    if (t.stride(2) == 1) return {t, t.stride(0), t.stride(1)};
    return {t.contiguous(), t.size(1) * D, D};
  }
  return {t.contiguous(), 0, D};
}
int64_t rowsPerBatch(const at::Tensor& t) {
  const int64_t D = t.size(-1);
  return std::max<int64_t>(t.dim() == 3 ? t.size(1) : (D ? t.numel() / D : 0), 1);
}
#endif

// Whether the LayerNorm kernel covers these dtypes (of x, the residual or x's when absent, the weights, the output).
bool layerNormOnKernels(const at::Tensor& x, const at::Tensor& r, at::ScalarType W, at::ScalarType out) {
  if (!onKernels(x)) return false;
  const std::string T = kernelCode(x.scalar_type());
  return semaim_launch::layerNormKernelExists(T, r.defined() ? kernelCode(r.scalar_type()) : T, kernelCode(W), kernelCode(out));
}

// The weights' dtype for the kernel: theirs when float32 or x's (and both alike), else float32.
at::ScalarType weightType(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  at::ScalarType W = w.defined() ? w.scalar_type() : (b.defined() ? b.scalar_type() : at::kFloat);
  if ((W != at::kFloat && W != x.scalar_type()) || (w.defined() && b.defined() && w.scalar_type() != b.scalar_type())) W = at::kFloat;
  return W;
}

std::vector<int64_t> statShape(const at::Tensor& x) {
  std::vector<int64_t> s(x.sizes().begin(), x.sizes().end());
  s.back() = 1;
  return s;
}

// The gradient of `whole` [B, T, D] from that of its first tokens `part` [B, N, D]: zero at the others.
at::Tensor gradientOfWhole(const at::Tensor& part, const at::Tensor& whole) {
  at::Tensor d = at::zeros(whole.sizes(), part.options());
  d.narrow(1, 0, part.size(1)).copy_(part);
  return d;
}

// ---------------------------------------------------------------- LayerNorm (+ residual)

struct LayerNormOut {
  at::Tensor h, y, mean, rstd;
};

// The forward arithmetic of the fused function: h = x + r (in x's dtype), y = LayerNorm(h or x) in
// float (double for double inputs), rounded to outDtype; the per-row mean and 1/std for the backward.
LayerNormOut layerNormForward(const at::Tensor& x, const at::Tensor& r, const at::Tensor& w, const at::Tensor& b, double eps,
                              at::ScalarType out) {  // r, w, b: undefined when absent
  const int64_t D = x.size(-1);
#ifdef SEMAIM_CUDA
  const at::ScalarType W = weightType(x, w, b);
  if (layerNormOnKernels(x, r, W, out)) {
    const at::Tensor wk = w.defined() ? w.to(W).contiguous() : w;
    const at::Tensor bk = b.defined() ? b.to(W).contiguous() : b;
    const RowLayout xl = rowLayout(x);
    const RowLayout rl = r.defined() ? rowLayout(r) : RowLayout{r, 0, 0};
    long long rows = D ? x.numel() / D : 0;
    LayerNormOut o;
    o.h = r.defined() ? at::empty(x.sizes(), x.options()) : at::Tensor();
    o.y = at::empty(x.sizes(), x.options().dtype(out));
    o.mean = at::empty({rows}, x.options().dtype(at::kFloat));
    o.rstd = at::empty({rows}, x.options().dtype(at::kFloat));
    if (rows == 0) return o;
    void* xp = xl.t.data_ptr();
    void* rp = r.defined() ? rl.t.data_ptr() : nullptr;
    void* wp = wk.defined() ? wk.data_ptr() : nullptr;
    void* bp = bk.defined() ? bk.data_ptr() : nullptr;
    void* hp = o.h.defined() ? o.h.data_ptr() : nullptr;
    void* yp = o.y.data_ptr();
    void* mp = o.mean.data_ptr();
    void* sp = o.rstd.data_ptr();
    long long xsB = xl.sB, xsT = xl.sT, rsB = rl.sB, rsT = rl.sT, perBatch = rowsPerBatch(x);
    int Di = static_cast<int>(D);
    float epsf = static_cast<float>(eps);
    const std::string T = kernelCode(x.scalar_type());
    launchKernel(semaim_launch::layerNormName(T, r.defined() ? kernelCode(r.scalar_type()) : T, kernelCode(W), kernelCode(out)),
                 semaim_launch::layerNorm(rows), x, {&xp, &xsB, &xsT, &rp, &rsB, &rsT, &perBatch, &wp, &bp, &hp, &yp, &mp, &sp, &rows, &Di, &epsf});
    return o;
  }
#endif
  LayerNormOut o;
  o.h = r.defined() ? at::add(x, r) : at::Tensor();
  const at::Tensor& src = r.defined() ? o.h : x;
  const at::ScalarType acc = accType(src.scalar_type());
  auto res = at::native_layer_norm(src.to(acc), {D}, w.defined() ? c10::optional<at::Tensor>(w.to(acc)) : c10::nullopt,
                                   b.defined() ? c10::optional<at::Tensor>(b.to(acc)) : c10::nullopt, eps);
  o.y = std::get<0>(res).to(out);
  o.mean = std::get<1>(res);
  o.rstd = std::get<2>(res);
  return o;
}

// The gradients of the fused backward: dsrc (src's dtype), the residual's (its dtype; dsrc itself where the
// same), and the weights' (undefined where absent).
struct LayerNormGrads {
  at::Tensor dsrc, dr, dw, db;
};

// The fused backward's arithmetic with libtorch ops (the CPU, where the tests check the wiring): per row
// xhat = (src - mean) * rstd, g = gy * w, dsrc = rstd * (g - mean(g) - xhat * mean(g * xhat)) + gh in float
// (double for double inputs), rounded once to src's dtype and to the residual's; dw = sum gy * xhat,
// db = sum gy over the rows.
LayerNormGrads layerNormBackwardComposite(const at::Tensor& src, const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& w,
                                          const at::Tensor& b, const at::Tensor& gy, const at::Tensor& gh, bool residual, at::ScalarType R) {
  const int64_t D = src.size(-1);
  const at::ScalarType acc = accType(src.scalar_type());
  const auto stat = statShape(src);
  const at::Tensor xh = src.to(acc).sub(mean.to(acc).view(stat)).mul(rstd.to(acc).view(stat));
  const at::Tensor gyf = gy.to(acc);
  const at::Tensor g = w.defined() ? gyf.mul(w.to(acc)) : gyf;
  at::Tensor d = g.sub(g.mean(-1, true)).sub(xh.mul(g.mul(xh).mean(-1, true))).mul(rstd.to(acc).view(stat));
  if (gh.defined()) d = d.add(gh.to(acc));
  LayerNormGrads o;
  o.dsrc = d.to(src.scalar_type());
  if (residual) o.dr = R == src.scalar_type() ? o.dsrc : d.to(R);
  if (w.defined()) o.dw = gyf.mul(xh).reshape({-1, D}).sum(0).to(w.scalar_type());
  if (b.defined()) o.db = gyf.reshape({-1, D}).sum(0).to(b.scalar_type());
  return o;
}

#ifdef SEMAIM_CUDA
// Whether the backward kernel covers these tensors: the forward's dtypes with gy's as the output's, and a
// row whose per-warp column sums fit in shared memory.
bool layerNormBackwardOnKernels(const at::Tensor& src, at::ScalarType R, const at::Tensor& w, const at::Tensor& b, const at::Tensor& gy) {
  if (!onKernels(src) || !gy.is_cuda()) return false;
  if (semaim_launch::layerNormBackwardSharedBytes(src.size(-1)) > semaim_launch::kMaxSharedBytes) return false;
  const std::string T = kernelCode(src.scalar_type());
  return semaim_launch::layerNormKernelExists(T, kernelCode(R), kernelCode(weightType(src, w, b)), kernelCode(gy.scalar_type()));
}

// Asked of the driver once per device (every LayerNorm backward launch sizes its grid by it); 0 if unknown.
int multiProcessors(int device) {
  static std::array<std::atomic<int>, 64> known{};  // 0: not asked yet
  const bool cached = device >= 0 && device < static_cast<int>(known.size());
  if (cached && known[device].load() > 0) return known[device].load();
  int n = 0;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) n = 0;
  if (cached && n > 0) known[device].store(n);
  return n;
}

// The backward kernel: dsrc and the residual's gradient in one pass; dw and db from its per-block sums.
// src is read in place where its rows have a stride (a narrowed sequence). With `whole` (src is its first
// tokens, no residual) contiguous: dsrc is written into a gradient of the whole, zero at the tokens left
// out (else dsrc has src's shape).
LayerNormGrads layerNormBackwardKernel(const at::Tensor& src, const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& w,
                                       const at::Tensor& b, const at::Tensor& gy, const at::Tensor& gh, bool residual, at::ScalarType R,
                                       const at::Tensor& whole) {
  const int64_t D = src.size(-1);
  const at::ScalarType W = weightType(src, w, b);
  const RowLayout sl = rowLayout(src);
  const at::Tensor& s = sl.t;
  const int64_t perBatch = rowsPerBatch(src);
  const at::Tensor gyc = gy.contiguous();
  const at::Tensor ghc = gh.defined() ? gh.to(src.scalar_type()).contiguous() : gh;
  const at::Tensor wk = w.defined() ? w.to(W).contiguous() : w;
  const at::Tensor mc = mean.reshape({-1}).to(at::kFloat).contiguous();
  const at::Tensor rc = rstd.reshape({-1}).to(at::kFloat).contiguous();
  long long rows = D ? s.numel() / D : 0;
  const bool separateR = residual && R != src.scalar_type();
  LayerNormGrads o;
  // The outputs' rows (gh's too): in the whole's buffer, or contiguous [perBatch rows] per batch.
  const bool intoWhole = whole.defined() && whole.is_contiguous() && whole.dim() == 3 && !residual;
  long long osB = perBatch * D, osT = D;
  if (intoWhole) {
    o.dsrc = at::empty(whole.sizes(), whole.options().dtype(src.scalar_type()));
    o.dsrc.narrow(1, src.size(1), whole.size(1) - src.size(1)).zero_();
    osB = o.dsrc.stride(0);
    osT = o.dsrc.stride(1);
  } else {
    o.dsrc = at::empty(src.sizes(), s.options());
  }
  at::Tensor dr = separateR ? at::empty(src.sizes(), s.options().dtype(R)) : at::Tensor();
  const int device = s.device().index();
  const auto l = semaim_launch::layerNormBackward(rows, D, multiProcessors(device));
  at::Tensor dwPart = w.defined() ? at::empty({static_cast<int64_t>(l.grid), D}, s.options().dtype(at::kFloat)) : at::Tensor();
  at::Tensor dbPart = b.defined() ? at::empty({static_cast<int64_t>(l.grid), D}, s.options().dtype(at::kFloat)) : at::Tensor();
  if (rows > 0) {
    void* sp = s.data_ptr();
    void* mp = mc.data_ptr();
    void* rp = rc.data_ptr();
    void* wp = wk.defined() ? wk.data_ptr() : nullptr;
    void* gp = gyc.data_ptr();
    void* hp = ghc.defined() ? ghc.data_ptr() : nullptr;
    void* dp = o.dsrc.data_ptr();
    void* drp = dr.defined() ? dr.data_ptr() : nullptr;
    void* dwp = dwPart.defined() ? dwPart.data_ptr() : nullptr;
    void* dbp = dbPart.defined() ? dbPart.data_ptr() : nullptr;
    long long ssB = sl.sB, ssT = sl.sT, rpb = perBatch;
    int Di = static_cast<int>(D);
    const std::string T = kernelCode(src.scalar_type());
    launchKernel(semaim_launch::layerNormBackwardName(T, kernelCode(R), kernelCode(W), kernelCode(gy.scalar_type())), l, s,
                 {&sp, &ssB, &ssT, &rpb, &mp, &rp, &wp, &gp, &hp, &dp, &drp, &osB, &osT, &dwp, &dbp, &rows, &Di});
  } else {
    if (dwPart.defined()) dwPart.zero_();
    if (dbPart.defined()) dbPart.zero_();
  }
  if (residual) o.dr = separateR ? dr : o.dsrc;
  if (w.defined()) o.dw = dwPart.sum(0).to(w.scalar_type());
  if (b.defined()) o.db = dbPart.sum(0).to(b.scalar_type());
  return o;
}
#endif

// Outputs {y} or, with a residual, {h, y}. Backward: libtorch's LayerNorm backward in float from the saved
// statistics; with a residual, x and r both get d(h) = dLayerNorm + the gradient of h itself. With
// fusedBackward: the same in one kernel on CUDA (where it covers the dtypes and width), the kernel's
// arithmetic with libtorch ops off CUDA.
// With tokens >= 0 (no residual): x is [B, T, D] and only its first `tokens` positions are normalised (the
// decoder's keys, read in place); the backward gives x's gradient whole, zero at the positions left out, so
// no slice of x is in the graph (its backward would allocate, zero and copy the whole gradient again).
// (Absent tensors are empty optionals: an undefined tensor cannot be an autograd function's input.)
struct LayerNormFunction : public torch::autograd::Function<LayerNormFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const c10::optional<at::Tensor>& ro, const c10::optional<at::Tensor>& wo,
                               const c10::optional<at::Tensor>& bo, double eps, int64_t out, bool fusedBackward, int64_t tokens) {
    const at::Tensor r = ro.value_or(at::Tensor()), w = wo.value_or(at::Tensor()), b = bo.value_or(at::Tensor());
    LayerNormOut o = layerNormForward(tokens >= 0 ? x.narrow(1, 0, tokens) : x, r, w, b, eps, static_cast<at::ScalarType>(out));
    const bool residual = r.defined();
    ctx->saved_data["residual"] = residual;
    ctx->saved_data["fusedBackward"] = fusedBackward;
    ctx->saved_data["residualDtype"] = static_cast<int64_t>(residual ? r.scalar_type() : x.scalar_type());
    ctx->saved_data["tokens"] = tokens;
    ctx->save_for_backward({residual ? o.h : x, w, b, o.mean, o.rstd});
    return residual ? variable_list{o.h, o.y} : variable_list{o.y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const bool residual = ctx->saved_data["residual"].toBool();
    const auto residualDtype = static_cast<at::ScalarType>(ctx->saved_data["residualDtype"].toInt());
    const int64_t tokens = ctx->saved_data["tokens"].toInt();
    auto saved = ctx->get_saved_variables();
    const at::Tensor whole = tokens >= 0 ? saved[0] : at::Tensor();
    const at::Tensor src = tokens >= 0 ? saved[0].narrow(1, 0, tokens) : saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor& b = saved[2];
    const at::Tensor& gy = grads[residual ? 1 : 0];
    LayerNormGrads g;
    bool done = false;
    if (ctx->saved_data["fusedBackward"].toBool()) {
      const at::Tensor gh = residual ? grads[0] : at::Tensor();
      const at::ScalarType R = residual ? residualDtype : src.scalar_type();
#ifdef SEMAIM_CUDA
      if (layerNormBackwardOnKernels(src, R, w, b, gy)) {
        g = layerNormBackwardKernel(src, saved[3], saved[4], w, b, gy, gh, residual, R, whole);
        done = true;
      }
#endif
      if (!done && !src.is_cuda()) {
        g = layerNormBackwardComposite(src, saved[3], saved[4], w, b, gy, gh, residual, R);
        done = true;
      }
    }
    if (!done) {
      const at::ScalarType acc = accType(src.scalar_type());
      const auto stat = statShape(src);
      auto res = at::native_layer_norm_backward(gy.to(acc), src.to(acc), {src.size(-1)}, saved[3].to(acc).view(stat), saved[4].to(acc).view(stat),
                                                w.defined() ? c10::optional<at::Tensor>(w.to(acc)) : c10::nullopt,
                                                b.defined() ? c10::optional<at::Tensor>(b.to(acc)) : c10::nullopt,
                                                {true, w.defined(), b.defined()});
      g.dsrc = std::get<0>(res).to(src.scalar_type());
      if (residual) {
        g.dsrc = at::add(g.dsrc, grads[0]);
        g.dr = g.dsrc.to(residualDtype);
      }
      if (w.defined()) g.dw = std::get<1>(res).to(w.scalar_type());
      if (b.defined()) g.db = std::get<2>(res).to(b.scalar_type());
    }
    // The keys' gradient as the whole input's, where the kernel did not write it so.
    if (whole.defined() && g.dsrc.sizes() != whole.sizes()) g.dsrc = gradientOfWhole(g.dsrc, whole);
    const at::Tensor none;
    return {g.dsrc, g.dr, g.dw, g.db, none, none, none, none};
  }
};

// ---------------------------------------------------------------- GELU after a bias

#ifdef SEMAIM_CUDA
bool aligned16(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

// Launches column-sum kernel `name` of fused.cu (its inputs, then out [rows, width], the block sums, rows,
// D) and returns out's column sums in float32: the bias's gradient.
at::Tensor launchColumnSums(const std::string& name, std::vector<void*> inputs, const at::Tensor& out, int64_t width, int D) {
  long long rows = out.numel() / width;
  if (rows == 0) return at::zeros({width}, out.options().dtype(at::kFloat));
  const auto l = semaim_launch::columnSums(rows, multiProcessors(out.device().index()));
  at::Tensor part = at::empty({static_cast<int64_t>(l.grid), width}, out.options().dtype(at::kFloat));
  void* op = out.data_ptr();
  void* pp = part.data_ptr();
  std::vector<void*> args;
  for (void*& p : inputs) args.push_back(&p);
  for (void** p : {&op, &pp}) args.push_back(p);
  args.push_back(&rows);
  args.push_back(&D);
  launchKernel(name, l, out, args);
  return part.sum(0);
}
#endif

// d = GELU's backward at pre for the gradient g, and d summed over rows in float32 (float64 for double; the
// bias's gradient):
// with `fused`, one kernel on CUDA tensors where it applies; libtorch's gelu_backward and sum otherwise.
std::tuple<at::Tensor, at::Tensor> geluBackwardWithBias(const at::Tensor& g, const at::Tensor& pre, bool fused) {
  const int64_t D = pre.size(-1);
#ifdef SEMAIM_CUDA
  if (fused && onKernels(pre) && D > 0 && D % (16 / pre.element_size()) == 0 && D <= semaim_launch::kColumnSumMaxWidth) {
    const at::Tensor p = pre.contiguous();
    const at::Tensor gc = g.to(pre.scalar_type()).contiguous();
    if (aligned16(p) && aligned16(gc)) {
      at::Tensor d = at::empty(p.sizes(), p.options());
      const std::string name = semaim_launch::geluBackwardBiasName(kernelCode(p.scalar_type()));
      return {d, launchColumnSums(name, {gc.data_ptr(), p.data_ptr()}, d, D, static_cast<int>(D))};
    }
  }
#endif
  (void)fused;
  const at::Tensor d = at::gelu_backward(g, pre);
  return {d, sumOverRows(d, D)};
}

// gelu(pre) for pre = x·Wᵀ + bias from a Linear given the bias detached, so that the bias's add stays in
// the matmul (cuBLASLt's epilogue) while its gradient comes from GELU's backward pass instead of another
// read of d(pre). The forward is libtorch's GELU, the unfused model's.
struct GeluAfterBiasFunction : public torch::autograd::Function<GeluAfterBiasFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& pre, const at::Tensor& bias, bool fused) {
    ctx->save_for_backward({pre});
    ctx->saved_data["biasDtype"] = static_cast<int64_t>(bias.scalar_type());
    ctx->saved_data["fused"] = fused;
    return at::gelu(pre);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor pre = ctx->get_saved_variables()[0];
    const auto [d, db] = geluBackwardWithBias(grads[0], pre, ctx->saved_data["fused"].toBool());
    return {d, db.to(static_cast<at::ScalarType>(ctx->saved_data["biasDtype"].toInt())), at::Tensor()};
  }
};

// ---------------------------------------------------------------- q, k, v from qkv

// qkv's gradient [B, T, 3, H, hd] from dq, dk, dv ([B, H, T, hd] each; undefined: zeros), and its sum over
// rows in float32 (float64 for double; the bias's gradient): with `fused`, one kernel on CUDA tensors where
// the three are in [B, T, H, hd] memory order (as the attention kernels return them); a stack and a sum otherwise.
// `shape`: q's [B, H, T, hd]; `proto`: an empty tensor of qkv's dtype and device.
std::tuple<at::Tensor, at::Tensor> qkvBackwardWithBias(const at::Tensor& dq, const at::Tensor& dk, const at::Tensor& dv, at::IntArrayRef shape,
                                                       const at::Tensor& proto, bool fused) {
  const int64_t D = shape[1] * shape[3];
  std::vector<at::Tensor> g;
  for (const at::Tensor& d : {dq, dk, dv}) g.push_back((d.defined() ? d : at::zeros(shape, proto.options())).transpose(1, 2));
#ifdef SEMAIM_CUDA
  const bool rowsInOrder = g[0].is_contiguous() && g[1].is_contiguous() && g[2].is_contiguous() && g[0].scalar_type() == g[1].scalar_type() &&
                           g[1].scalar_type() == g[2].scalar_type();
  if (fused && onKernels(proto) && rowsInOrder && D > 0 && D % (16 / proto.element_size()) == 0 && 3 * D <= semaim_launch::kColumnSumMaxWidth &&
      aligned16(g[0]) && aligned16(g[1]) && aligned16(g[2])) {
    at::Tensor out = at::empty({shape[0], shape[2], 3, shape[1], shape[3]}, g[0].options());  // stack(g, 2)'s
    const std::string name = semaim_launch::qkvBackwardBiasName(kernelCode(out.scalar_type()));
    return {out, launchColumnSums(name, {g[0].data_ptr(), g[1].data_ptr(), g[2].data_ptr()}, out, 3 * D, static_cast<int>(D))};
  }
#endif
  (void)fused;
  const at::Tensor out = at::stack(g, 2);
  return {out, sumOverRows(out, 3 * D)};
}

// q, k, v [B, H, T, hd]: views of qkv [B, T, 3·D] (a Linear's output whose bias was added with the bias
// detached) in its packed [B, T, 3, H, hd] layout. The backward writes qkv's gradient from the three and
// gives the bias its gradient from the same pass instead of the Linear's backward reading it again.
struct QkvHeadsFunction : public torch::autograd::Function<QkvHeadsFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& qkv, const at::Tensor& bias, int64_t heads, bool fused) {
    const auto B = qkv.size(0), T = qkv.size(1), D = qkv.size(2) / 3;
    const at::Tensor packed = qkv.view({B, T, 3, heads, D / heads});
    variable_list out;
    for (int64_t i = 0; i < 3; ++i) out.push_back(packed.select(2, i).transpose(1, 2));
    ctx->saved_data["biasDtype"] = static_cast<int64_t>(bias.scalar_type());
    ctx->saved_data["fused"] = fused;
    ctx->saved_data["proto"] = at::empty({0}, qkv.options());
    ctx->saved_data["shape"] = std::vector<int64_t>{B, heads, T, D / heads};
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const auto [dqkv, db] = qkvBackwardWithBias(grads[0], grads[1], grads[2], shape, ctx->saved_data["proto"].toTensor(), ctx->saved_data["fused"].toBool());
    return {dqkv.view({shape[0], shape[2], 3 * shape[1] * shape[3]}), db.to(static_cast<at::ScalarType>(ctx->saved_data["biasDtype"].toInt())), at::Tensor(),
            at::Tensor()};
  }
};

// ---------------------------------------------------------------- pixel targets

// The normalised K×K Gaussian (the authors' GaussianConv2d): computed in double, as the TypeScript
// gaussianKernel, then stored in `dtype` on `device`. Cached: no host-to-device copy per step.
at::Tensor gaussianWeights(int64_t K, double sigma, int64_t channels, at::ScalarType dtype, at::Device device) {
  static std::mutex mutex;
  static auto* cache = new std::map<std::tuple<int64_t, double, int64_t, int, std::string>, at::Tensor>();
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_tuple(K, sigma, channels, static_cast<int>(dtype), device.str());
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  const double c = (K - 1) / 2.0;
  std::vector<double> k(static_cast<size_t>(K * K));
  double sum = 0;
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) {
      const double v = std::exp(-((i - c) * (i - c) + (j - c) * (j - c)) / (2 * sigma * sigma));
      k[static_cast<size_t>(i * K + j)] = v;
      sum += v;
    }
  }
  for (auto& v : k) v /= sum;
  at::Tensor one = at::from_blob(k.data(), {1, 1, K, K}, at::TensorOptions().dtype(at::kDouble)).clone();
  at::Tensor w = one.expand({channels, 1, K, K}).contiguous().to(at::TensorOptions().dtype(dtype).device(device));
  cache->emplace(key, w);
  return w;
}

// The unfused composition: depthwise blur (zero padding), patchify, per-patch normalisation.
at::Tensor pixelTargetsComposite(const at::Tensor& images, int64_t P, int64_t K, double sigma, bool normPix) {
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  at::Tensor src = K > 0 ? at::conv2d(images, gaussianWeights(K, sigma, C, images.scalar_type(), images.device()), {}, 1, K / 2, 1, C) : images;
  at::Tensor t = src.reshape({B, C, H / P, P, W / P, P}).permute({0, 2, 4, 3, 5, 1}).reshape({B, (H / P) * (W / P), P * P * C});
  if (!normPix) return t;
  const at::Tensor mean = t.mean({-1}, true);
  const at::Tensor var = t.var({-1}, true, true);
  return t.sub(mean).div(var.add(1e-6).sqrt());
}

}  // namespace

namespace impl {

static FusedKernelsResult fusedKernels(bool load) {
#ifdef SEMAIM_CUDA
  if (!load) return {true, false, "CUDA build; the kernels compile on first use"};
  try {
    if (!torch::cuda::is_available()) return {true, false, "CUDA build, but no CUDA device"};
    const CudaApi& api = cudaApi();
    KernelModule& m = moduleFor(c10::cuda::current_device());
    return {true, true, "NVRTC " + std::to_string(api.nvrtcMajor) + "." + std::to_string(api.nvrtcMinor) + " (" + api.nvrtcPath + "), " + m.arch};
  } catch (const std::exception& e) {
    return {true, false, e.what()};
  }
#else
  (void)load;
  return {false, false, "this libtorch has no CUDA: the fused ops run their libtorch fallback"};
#endif
}

static std::tuple<at::Tensor, at::Tensor> fusedLayerNorm(const at::Tensor& x, const c10::optional<at::Tensor>& residual,
                                                         const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                                                         double eps, c10::optional<at::ScalarType> outDtype, bool fused, bool fusedBackward,
                                                         int64_t tokens) {
  const int64_t D = x.size(-1);
  if (residual && residual->sizes() != x.sizes()) throw std::invalid_argument("fusedLayerNorm: the residual's shape differs from the input's");
  if ((weight && weight->numel() != D) || (bias && bias->numel() != D)) throw std::invalid_argument("fusedLayerNorm: weight and bias need as many values as the last dimension");
  if (tokens >= 0 && (residual || x.dim() != 3 || tokens > x.size(1)))
    throw std::invalid_argument("fusedLayerNorm: tokens (the first positions of a [B, T, D] input) needs a 3-D input of at least that many positions and no residual");
  // The unfused composition (through the dispatcher, so autocast applies), y in `yDtype` where given.
  const auto composition = [&](c10::optional<at::ScalarType> yDtype) -> std::tuple<at::Tensor, at::Tensor> {
    const at::Tensor xs = tokens >= 0 ? x.narrow(1, 0, tokens) : x;
    at::Tensor h = residual ? at::add(xs, *residual) : at::Tensor();
    at::Tensor y = at::layer_norm(residual ? h : xs, {D}, weight, bias, eps);
    return {h, yDtype ? y.to(*yDtype) : y};
  };
  if (!fused) return composition(c10::nullopt);
  const at::ScalarType out = outDtype.value_or(x.scalar_type());
  if (residual && at::promote_types(x.scalar_type(), residual->scalar_type()) != x.scalar_type()) {
    throw std::invalid_argument("fusedLayerNorm: the residual's dtype must not be wider than the input's (x + r keeps x's dtype)");
  }
  // No kernel for these dtypes (e.g. double): the composition, in the requested output dtype.
  if (x.is_cuda() && !layerNormOnKernels(x, residual.value_or(at::Tensor()), weightType(x, weight.value_or(at::Tensor()), bias.value_or(at::Tensor())), out))
    return composition(out);
  auto outs = LayerNormFunction::apply(x, residual, weight, bias, eps, static_cast<int64_t>(out), fusedBackward, tokens);
  return residual ? std::make_tuple(outs[0], outs[1]) : std::make_tuple(at::Tensor(), outs[0]);
}

static at::Tensor fusedGeluAfterBias(const at::Tensor& pre, const at::Tensor& bias, bool fused) {
  if (bias.dim() != 1 || pre.dim() == 0 || bias.numel() != pre.size(-1)) throw std::invalid_argument("fusedGeluAfterBias: the bias needs as many values as the last dimension");
  return GeluAfterBiasFunction::apply(pre, bias, fused);
}

static std::tuple<at::Tensor, at::Tensor, at::Tensor> fusedQkvHeads(const at::Tensor& qkv, const at::Tensor& bias, int64_t heads, bool fused) {
  if (qkv.dim() != 3 || heads <= 0 || qkv.size(2) % (3 * heads)) throw std::invalid_argument("fusedQkvHeads: expects qkv [B, T, 3·D] with D a multiple of the heads");
  if (bias.dim() != 1 || bias.numel() != qkv.size(2)) throw std::invalid_argument("fusedQkvHeads: the bias needs as many values as the last dimension");
  const auto out = QkvHeadsFunction::apply(qkv, bias, heads, fused);
  return {out[0], out[1], out[2]};
}

static at::Tensor fusedPixelTargets(const at::Tensor& images, int64_t patch, int64_t blurKernel, double blurSigma, bool normPix, bool fused) {
  // Arguments first: H % patch with patch 0 is a SIGFPE, and sigma 0 (or NaN) would give all-NaN targets.
  if (patch <= 0) throw std::invalid_argument(c10::str("fusedPixelTargets: patchSize must be a positive integer, got ", patch));
  if (blurKernel < 0 || (blurKernel > 0 && blurKernel % 2 == 0)) throw std::invalid_argument("fusedPixelTargets: the blur kernel size must be odd (0: no blur)");
  if (blurKernel > 0 && !(blurSigma > 0 && std::isfinite(blurSigma)))
    throw std::invalid_argument(c10::str("fusedPixelTargets: blurSigma must be a positive finite number when blurKernel > 0, got ", blurSigma));
  if (images.dim() != 4 || images.size(2) % patch || images.size(3) % patch) throw std::invalid_argument("fusedPixelTargets: expects [B, C, H, W] images with H and W multiples of the patch size");
  c10::NoGradGuard noGrad;
#ifdef SEMAIM_CUDA
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const auto l = semaim_launch::pixelTargets(B, static_cast<int>(C), static_cast<int>(H), static_cast<int>(W), static_cast<int>(patch), static_cast<int>(blurKernel));
  if (fused && images.is_cuda() && images.scalar_type() == at::kFloat && l.sharedBytes <= semaim_launch::kMaxSharedBytes && B > 0) {
    const at::Tensor img = images.contiguous();
    const at::Tensor weights = blurKernel > 0 ? gaussianWeights(blurKernel, blurSigma, 1, at::kFloat, images.device()) : img;
    at::Tensor out = at::empty({B, (H / patch) * (W / patch), patch * patch * C}, img.options());
    void* ip = img.data_ptr();
    void* wp = weights.data_ptr();
    void* op = out.data_ptr();
    int Ci = static_cast<int>(C), Hi = static_cast<int>(H), Wi = static_cast<int>(W), Pi = static_cast<int>(patch), Ki = static_cast<int>(blurKernel),
        norm = normPix ? 1 : 0;
    launchKernel(semaim_launch::pixelTargetsName(), l, img, {&ip, &wp, &op, &Ci, &Hi, &Wi, &Pi, &Ki, &norm});
    return out;
  }
#endif
  return pixelTargetsComposite(images, patch, blurKernel, blurSigma, normPix);
}

}  // namespace impl

}  // namespace semaim

#include "generated/fused.inc"
