// A caching CPU allocator for libtorch.
//
// Why: from JS, the small native objects behind tensor handles are freed when V8 collects them,
// not when the tensor is disposed. With glibc malloc those small blocks end up between the large
// activation buffers of a training step, so freed buffers cannot be coalesced or returned and every
// step touches fresh pages: RSS grew by GBs per few steps and page faults dominated step time.
// Large buffers here come from mmap (never interleaved with small objects) and are kept in per-size
// free lists; a training step allocates the same sizes every time, so after the first step nearly
// every allocation is a cache hit with no page faults. Small buffers still use malloc.
// The `allocator` unit of native/ops.yaml (its statistics and cache control).
#include "common.h"

#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace semaim {

namespace {

constexpr size_t kLargeThreshold = 64 * 1024;
constexpr size_t kPage = 4096;

class CachingCPUAllocator final : public c10::Allocator {
 public:
  explicit CachingCPUAllocator(size_t limit) : limit_(limit) {}

#if SEMAIM_TORCH_AT_LEAST(2, 3)
  c10::DataPtr allocate(size_t n) override { return allocateImpl(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#else
  c10::DataPtr allocate(size_t n) const override { return const_cast<CachingCPUAllocator*>(this)->allocateImpl(n); }
#endif

  // One deleter for every block (mkldnn frees through raw_deleter with data == context).
  c10::DeleterFnPtr raw_deleter() const override { return &CachingCPUAllocator::freeAny; }

  struct Stats {
    size_t liveBytes = 0, peakLiveBytes = 0, cachedBytes = 0, mappedBytes = 0;
    uint64_t hits = 0, misses = 0;
  };

  Stats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void emptyCache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) unmap(p, size);
      blocks.clear();
    }
    stats_.cachedBytes = 0;
  }

  static void freeAny(void* p);

 private:
  c10::DataPtr allocateImpl(size_t n) {
    if (n == 0) return {nullptr, nullptr, &CachingCPUAllocator::freeAny, c10::Device(c10::DeviceType::CPU)};
    if (n < kLargeThreshold) {
      void* p = nullptr;
      if (posix_memalign(&p, 64, n) != 0 || !p) throw c10::OutOfMemoryError({__func__, __FILE__, static_cast<uint32_t>(__LINE__)}, "CPU: out of memory allocating " + std::to_string(n) + " bytes");
      return {p, p, &CachingCPUAllocator::freeAny, c10::Device(c10::DeviceType::CPU)};
    }
    const size_t size = (n + kPage - 1) / kPage * kPage;
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        stats_.cachedBytes -= size;
        stats_.hits++;
      }
    }
    if (!p) {
      p = map(size);
      if (!p) {
        emptyCache();
        p = map(size);
      }
      if (!p) throw c10::OutOfMemoryError({__func__, __FILE__, static_cast<uint32_t>(__LINE__)}, "CPU: out of memory allocating " + std::to_string(size) + " bytes");
    }
    std::lock_guard<std::mutex> lock(mu_);
    live_[p] = size;
    stats_.liveBytes += size;
    if (stats_.liveBytes > stats_.peakLiveBytes) stats_.peakLiveBytes = stats_.liveBytes;
    return {p, p, &CachingCPUAllocator::freeAny, c10::Device(c10::DeviceType::CPU)};
  }

  // Large blocks go back to the cache; small ones (not in live_) to malloc.
  void release(void* p) {
    if (!p) return;
    std::unique_lock<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) {
      lock.unlock();
      std::free(p);
      return;
    }
    const size_t size = it->second;
    live_.erase(it);
    stats_.liveBytes -= size;
    if (stats_.cachedBytes + size <= limit_) {
      free_[size].push_back(p);
      stats_.cachedBytes += size;
    } else {
      unmap(p, size);
    }
  }

  void* map(size_t size) {
    // No MADV_HUGEPAGE: asking for transparent huge pages made CPU training steps 17-31% slower at 1
    // thread and 3-8% at 2 (ViT-Tiny/4 and the ablation's 96x4, docs/BENCHMARKS.md), same RSS.
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.misses++;
    stats_.mappedBytes += size;
    return p;
  }

  // Called with mu_ held or from emptyCache (which holds it).
  void unmap(void* p, size_t size) {
    munmap(p, size);
    stats_.mappedBytes -= size;
  }

  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> live_;
  size_t limit_;
  Stats stats_;
};

// Never destroyed: tensors may still be freed while the process exits.
CachingCPUAllocator* g_allocator = nullptr;

void CachingCPUAllocator::freeAny(void* p) { g_allocator->release(p); }

// SEMAIM_CPU_CACHE_MB: a whole number of MiB (0: no cache); unset or empty: 4096. Anything else is refused:
// strtoull alone read '-1' as 2^64 - 1 MiB (no cap at all), 'abc' as 0 and '4GB' as 4, and a count of MiB
// past 2^44 overflowed the shift.
size_t cacheLimit() {
  const char* mb = std::getenv("SEMAIM_CPU_CACHE_MB");
  if (mb == nullptr || *mb == '\0') return size_t(4) << 30;
  const std::string text(mb);
  const bool digits = text.find_first_not_of("0123456789") == std::string::npos;
  const unsigned long long value = digits ? std::strtoull(mb, nullptr, 10) : 0;  // saturates at ULLONG_MAX
  if (!digits || value > (SIZE_MAX >> 20))
    throw std::invalid_argument("SEMAIM_CPU_CACHE_MB=" + text + ": expected a whole number of MiB (0 turns the CPU cache off)");
  return static_cast<size_t>(value) << 20;
}

}  // namespace

// Installs the caching allocator once per process unless SEMAIM_CPU_ALLOCATOR=system.
void installCpuAllocator() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* which = std::getenv("SEMAIM_CPU_ALLOCATOR");
    if (which && std::string(which) == "system") return;
    g_allocator = new CachingCPUAllocator(cacheLimit());
    c10::SetCPUAllocator(g_allocator, /*priority=*/100);
  });
}

namespace impl {

static CpuAllocatorStatsResult cpuAllocatorStats() {
  CpuAllocatorStatsResult r{};
  r.enabled = g_allocator != nullptr && c10::GetCPUAllocator() == g_allocator;
  if (g_allocator) {
    auto s = g_allocator->stats();
    r.liveBytes = static_cast<double>(s.liveBytes);
    r.peakLiveBytes = static_cast<double>(s.peakLiveBytes);
    r.cachedBytes = static_cast<double>(s.cachedBytes);
    r.mappedBytes = static_cast<double>(s.mappedBytes);
    r.hits = static_cast<double>(s.hits);
    r.misses = static_cast<double>(s.misses);
  }
  return r;
}

static void cpuEmptyCache() {
  if (g_allocator) g_allocator->emptyCache();
}

}  // namespace impl

}  // namespace semaim

#include "generated/allocator.inc"
