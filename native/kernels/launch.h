// Launch configurations and kernel names of native/kernels/fused.cu, shared by the addon
// (native/fused.cc) and the CPU emulator's runner (test/native/kernel-runner.cc), so that the tests
// run the kernels with the grids the addon uses. Plain C++, no CUDA.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

namespace semaim_launch {

struct Launch {
  unsigned grid;
  unsigned block;
  size_t sharedBytes;
};

// LayerNorm: one warp per row, 4 rows per block.
constexpr unsigned kLayerNormRowsPerBlock = 4;
inline Launch layerNorm(int64_t rows) {
  const int64_t blocks = (rows + kLayerNormRowsPerBlock - 1) / kLayerNormRowsPerBlock;
  return {static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 1 << 30)), 32 * kLayerNormRowsPerBlock, 0};
}

// LayerNorm backward: 4 warps per block, each walking rows in a grid-stride loop, at least 8 rows per warp
// (32 per block) so that the per-block column sums of dw and db ([grid, D] floats, summed by the host)
// stay small next to the rows; at most 6 blocks per SM (`sms`: the device's multiprocessor count, 0 for
// no bound): two waves at the 3 blocks per SM that ~160 registers per thread allow. Shared memory: each
// warp's column sums of dw and db (2 * warps * D floats).
constexpr unsigned kLayerNormBackwardWarps = 4;
constexpr int64_t kLayerNormBackwardRowsPerBlock = 32;
constexpr int64_t kLayerNormBackwardBlocksPerSm = 6;
inline size_t layerNormBackwardSharedBytes(int64_t D) { return sizeof(float) * 2 * kLayerNormBackwardWarps * static_cast<size_t>(D); }
inline Launch layerNormBackward(int64_t rows, int64_t D, int sms) {
  int64_t blocks = (rows + kLayerNormBackwardRowsPerBlock - 1) / kLayerNormBackwardRowsPerBlock;
  if (sms > 0) blocks = std::min<int64_t>(blocks, kLayerNormBackwardBlocksPerSm * sms);
  return {static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 1 << 30)), 32 * kLayerNormBackwardWarps, layerNormBackwardSharedBytes(D)};
}

// Gradients with their bias's gradient (GELU's backward, q/k/v into qkv): kColumnSumThreads threads per
// block, each holding the column sums of its chunks of a row (so a row of at most kColumnSumMaxWidth
// values; fused.cu has the same two numbers); blocks walk the rows in a grid-stride loop, at most 4 blocks
// per SM (`sms`: the device's multiprocessor count; 0: one block per row, up to 1024) so that the per-block
// sums ([grid, width] floats, summed by the host) stay small next to the rows.
constexpr unsigned kColumnSumThreads = 128;
constexpr int64_t kColumnSumMaxWidth = 4096;
constexpr int64_t kColumnSumBlocksPerSm = 4;
inline Launch columnSums(int64_t rows, int sms) {
  const int64_t most = sms > 0 ? kColumnSumBlocksPerSm * sms : 1024;
  return {static_cast<unsigned>(std::clamp<int64_t>(std::min(rows, most), 1, 1 << 30)), kColumnSumThreads, 0};
}

// Pixel targets: one block per (image, patch).
inline size_t pixelTargetsSharedBytes(int C, int P, int K) {
  const int tile = P + 2 * (K > 0 ? K / 2 : 0);
  return sizeof(float) * (static_cast<size_t>(C) * tile * tile + static_cast<size_t>(P) * P * C + 32);
}
inline Launch pixelTargets(int64_t B, int C, int H, int W, int P, int K) {
  const int n = P * P * C;
  const unsigned block = static_cast<unsigned>(std::min(256, (n + 31) / 32 * 32));
  return {static_cast<unsigned>(B * (H / P) * (W / P)), block, pixelTargetsSharedBytes(C, P, K)};
}
// Dynamic shared memory without opting in to more (cudaFuncSetAttribute).
constexpr size_t kMaxSharedBytes = 48 * 1024;

inline std::string layerNormName(const std::string& t, const std::string& r, const std::string& w, const std::string& o) {
  return "semaim_layer_norm_" + t + "_" + r + "_" + w + "_" + o;
}
// The backward kernel of the same (T, R, W, O): R is the residual's gradient's dtype, O the incoming gradient's.
inline std::string layerNormBackwardName(const std::string& t, const std::string& r, const std::string& w, const std::string& o) {
  return "semaim_layer_norm_bwd_" + t + "_" + r + "_" + w + "_" + o;
}
inline std::string geluBackwardBiasName(const std::string& t) { return "semaim_gelu_bwd_bias_" + t; }
inline std::string qkvBackwardBiasName(const std::string& t) { return "semaim_qkv_bwd_bias_" + t; }
// The LayerNorm combinations fused.cu instantiates, forward and backward (SEMAIM_FOR_EACH_LAYER_NORM; the
// emulator's runner checks that the two agree).
inline bool layerNormKernelExists(const std::string& t, const std::string& r, const std::string& w, const std::string& o) {
  const bool storage = t == "f32" || t == "bf16" || t == "f16";
  const bool half = r == "bf16" || r == "f16";
  const bool residualOk = r == t || (t == "f32" && half);
  const bool weightsOk = w == "f32" || w == t;
  const bool outOk = o == t || o == "f32" || (t == "f32" && (o == "bf16" || o == "f16"));
  return storage && residualOk && weightsOk && outOk;
}
inline const char* pixelTargetsName() { return "semaim_pixel_targets_f32"; }

}  // namespace semaim_launch
