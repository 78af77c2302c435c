// Op and kernel times from libtorch's profiler (the one behind torch.profiler): started and stopped
// around a few training steps by bench/pretrain_worker.ts --kernel-profile, so that the GPU time of
// semaim's own step (fused NVRTC kernels included) is measured by kernel, not inferred from eager
// PyTorch's. On a CUDA build with CUPTI the GPU kernels, copies and memsets come as 'cuda' events; the
// ATen ops as 'cpu' events (inclusive times: an op's time contains the ops it calls).
#include "common.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/version.h>

#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace semaim {

namespace impl {

namespace prof = torch::profiler::impl;

static bool profiling = false;

static void profilerStart(bool cuda) {
  if (profiling) throw std::runtime_error("profilerStart: the profiler is already running (profilerStop ends it)");
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (cuda) activities.insert(prof::ActivityType::CUDA);
  prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  profiling = true;
}

// One line per (device, name): "device\tcount\tmicroseconds\tname\n", device 'cpu' or 'cuda'. Names
// hold no tab or newline (ATen op names, demangled kernel names), so the name can go last unquoted.
static std::string profilerStop() {
  if (!profiling) throw std::runtime_error("profilerStop: the profiler is not running (profilerStart starts it)");
  profiling = false;
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> result = torch::autograd::profiler::disableProfiler();
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, double>> totals;
  for (const auto& e : result->events()) {
    const char* device = e.deviceType() == c10::DeviceType::CUDA ? "cuda" : "cpu";
#if TORCH_VERSION_MAJOR >= 2
    double us = static_cast<double>(e.durationNs()) / 1000.0;
#else
    double us = static_cast<double>(e.durationUs());
#endif
    auto& t = totals[{device, e.name()}];
    t.first += 1;
    t.second += us;
  }
  std::ostringstream out;
  out.precision(17);
  for (const auto& [key, t] : totals) {
    std::string name = key.second;
    for (char& c : name)
      if (c == '\t' || c == '\n' || c == '\r') c = ' ';
    out << key.first << '\t' << t.first << '\t' << t.second << '\t' << name << '\n';
  }
  return out.str();
}

}  // namespace impl

}  // namespace semaim

#include "generated/profiler.inc"
