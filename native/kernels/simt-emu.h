// A small SIMT emulator: runs the CUDA kernels of native/kernels/fused.cu on the CPU, one std::thread
// per CUDA thread, so that tests can check their indexing, reductions and rounding against libtorch's
// unfused ops on a machine without a GPU. Blocks run one after another; __syncthreads is a barrier over
// the block, __shfl_xor_sync an exchange through a per-warp slot array between two warp barriers
// (every lane of the warp must call it, as the kernels do). Slow (threads per block) and only for
// small test shapes. Host-only C++20; not part of the addon.
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
// fused.cu's 16-byte vector type reads 16-bit and float arrays: may_alias keeps that defined for g++.
#define SEMAIM_VEC_ATTR [[gnu::may_alias]]
#define SEMAIM_UNROLL
#define SEMAIM_TRACE_PATH(path) ::simt_emu::tracePath(path)

namespace simt_emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct BlockState {
  std::unique_ptr<std::barrier<>> block;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<float> slots;  // one per thread: the shuffle exchange
  std::vector<unsigned char> shared;
};

inline thread_local Dim3 threadIdx_;
inline thread_local Dim3 blockIdx_;
inline Dim3 blockDim_;
inline Dim3 gridDim_;
inline BlockState* state_ = nullptr;

// The code paths a kernel took (bits of SEMAIM_TRACE_PATH's argument), since the last reset.
inline std::atomic<unsigned> paths_{0};
inline void tracePath(unsigned path) { paths_.fetch_or(1u << path); }

inline void syncthreads() { state_->block->arrive_and_wait(); }

inline float shflXor(unsigned mask, float v, int laneMask) {
  if (mask != 0xffffffffu) throw std::logic_error("simt-emu: only full-warp shuffles are emulated");
  const unsigned t = threadIdx_.x;
  const unsigned warp = t / 32;
  const unsigned lane = t % 32;
  auto& bar = *state_->warps[warp];
  state_->slots[t] = v;
  bar.arrive_and_wait();
  const float r = state_->slots[warp * 32 + (lane ^ static_cast<unsigned>(laneMask))];
  bar.arrive_and_wait();
  return r;
}

inline void* dynamicShared() { return state_->shared.data(); }

/** Runs kernel(args...) over grid × block threads (x dimension only; block a multiple of 32). */
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), unsigned grid, unsigned block, size_t sharedBytes, Args... args) {
  if (block == 0 || block % 32 != 0) throw std::invalid_argument("simt-emu: the block size must be a positive multiple of 32");
  gridDim_ = Dim3{grid, 1, 1};
  blockDim_ = Dim3{block, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    BlockState st;
    st.block = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(block));
    for (unsigned w = 0; w < block / 32; ++w) st.warps.push_back(std::make_unique<std::barrier<>>(32));
    st.slots.assign(block, 0.0f);
    st.shared.assign(sharedBytes, 0xFF);  // uninitialised: NaN as a float or 16-bit float, so a read before a write shows
    state_ = &st;
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; ++t) {
      threads.emplace_back([=]() {
        threadIdx_ = Dim3{t, 1, 1};
        blockIdx_ = Dim3{b, 1, 1};
        kernel(args...);
      });
    }
    for (auto& th : threads) th.join();
    state_ = nullptr;
  }
}

}  // namespace simt_emu

#define threadIdx (::simt_emu::threadIdx_)
#define blockIdx (::simt_emu::blockIdx_)
#define blockDim (::simt_emu::blockDim_)
#define gridDim (::simt_emu::gridDim_)
#define __syncthreads() ::simt_emu::syncthreads()
#define __shfl_xor_sync(mask, v, laneMask) ::simt_emu::shflXor(mask, v, laneMask)
#define SEMAIM_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::simt_emu::dynamicShared())

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
