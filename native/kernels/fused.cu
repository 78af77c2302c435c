// Fused elementwise kernels of the training step: LayerNorm with an optional residual add, bias + GELU
// (forward and backward), and the pixel targets (Gaussian blur, patchify, per-patch normalisation).
//
// One source, three compilers: NVRTC compiles it at run time inside the addon (native/fused.cc embeds
// it through native/gen-ops.js), nvcc checks it at build time where a toolkit exists
// (scripts/check-kernels.sh), and the tests run it on the CPU under a small SIMT emulator
// (native/kernels/simt-emu.h) against libtorch's unfused ops. So it includes no header: 16-bit floats
// are raw bits with software conversions (round to nearest even, as c10::BFloat16 and c10::Half), and
// it uses only threadIdx/blockIdx/blockDim/gridDim, __shfl_xor_sync, dynamic shared memory, the
// float math functions, and 16-byte vector accesses through reinterpret_cast (Vec16).
//
// Numerics follow the unfused libtorch ops they replace: every sum in float, results rounded once to
// the storage type, and intermediate results rounded where the unfused composition stores them
// (the residual sum h, the biased pre-activation of GELU).

#ifndef SEMAIM_DYNAMIC_SHARED
#define SEMAIM_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace semaim_kernels {

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

typedef float f32;
struct bf16 { u16 bits; };
struct f16 { u16 bits; };

__device__ __forceinline__ u32 floatBits(float f) {
  union { float f; u32 u; } v;
  v.f = f;
  return v.u;
}
__device__ __forceinline__ float bitsFloat(u32 u) {
  union { u32 u; float f; } v;
  v.u = u;
  return v.f;
}

__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(bf16 x) { return bitsFloat(static_cast<u32>(x.bits) << 16); }
// Without branches (the vector paths unroll it 64 times per loop): the 15 bits moved to a float's exponent
// and mantissa scaled by 2^112 (exact, subnormal halves included: the product is a normal float), infinity
// and NaN selected apart.
__device__ __forceinline__ float toFloat(f16 x) {
  const u32 sign = static_cast<u32>(x.bits & 0x8000u) << 16;
  const u32 em = static_cast<u32>(x.bits & 0x7fffu) << 13;
  const float scaled = bitsFloat(em) * 5.192296858534828e33f;  // 2^112
  const u32 mag = em >= 0x0f800000u ? (em | 0x7f800000u) : floatBits(scaled);
  return bitsFloat(sign | mag);
}

template <typename T> struct FromFloat;
template <> struct FromFloat<float> {
  __device__ __forceinline__ static float apply(float f) { return f; }
};
template <> struct FromFloat<bf16> {
  __device__ __forceinline__ static bf16 apply(float f) {
    const u32 u = floatBits(f);
    bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      r.bits = 0x7fc0;
    } else {
      r.bits = static_cast<u16>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return r;
  }
};
// Round to nearest even, with subnormals, as c10::Half. No branches (the vector paths unroll it 64 times
// per loop, and the branchy version made NVRTC ten times slower): subnormal results by adding 0.5 (a float
// addition rounds the 10 bits to nearest even), normal ones by adding half an ulp minus one plus the kept
// mantissa's lowest bit (a carry into the exponent gives the next binade, or infinity from 65520 on).
// Equal to the branchy conversion for every float (checked over all 2^32 bit patterns).
template <> struct FromFloat<f16> {
  __device__ __forceinline__ static f16 apply(float f) {
    const u32 u = floatBits(f);
    const u32 sign = (u >> 16) & 0x8000u;
    const u32 a = u & 0x7fffffffu;
    const u32 big = a > 0x7f800000u ? 0x7e00u : 0x7c00u;                // NaN; infinity from 65536 on
    const u32 sub = floatBits(bitsFloat(a) + 0.5f) - 0x3f000000u;         // below 2^-14: subnormal or zero
    const u32 normal = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;         // rebias (-112 << 23), round to nearest even
    const u32 h = a >= 0x47800000u ? big : a < 0x38800000u ? sub : normal;  // selects, no branches
    f16 r;
    r.bits = static_cast<u16>(sign | h);
    return r;
  }
};
template <typename T>
__device__ __forceinline__ T fromFloat(float f) { return FromFloat<T>::apply(f); }
// A float rounded to T and back: the value the unfused composition stores between two ops.
template <typename T>
__device__ __forceinline__ float roundTo(float f) { return toFloat(fromFloat<T>(f)); }

// ---------------------------------------------------------------- 16-byte vector access
//
// A 16-byte chunk of a tensor as four 32-bit words, read and written through a reinterpret_cast pointer
// with one 128-bit load or store (LDG.E.128 / STG.E.128), as libtorch's vectorized kernels do. Only where
// the address is 16-byte aligned (isAligned16). Little-endian packing: element 2j of a 16-bit chunk is the
// low half of word j. SEMAIM_VEC_ATTR lets the CPU emulator mark the type may_alias.
#ifndef SEMAIM_VEC_ATTR
#define SEMAIM_VEC_ATTR
#endif
#ifndef SEMAIM_UNROLL
#define SEMAIM_UNROLL _Pragma("unroll")
#endif
// The emulator records which path (1: vector, 2: scalar) a kernel took, for the tests; nothing on a GPU.
#ifndef SEMAIM_TRACE_PATH
#define SEMAIM_TRACE_PATH(path)
#endif
struct alignas(16) SEMAIM_VEC_ATTR Vec16 {
  u32 w[4];
};

__device__ __forceinline__ bool isAligned16(const void* p) { return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0; }

// Element i (0..Elems-1) of a chunk of X as float, and the packing of a float rounded to X.
template <typename X> struct Pack;
template <> struct Pack<f32> {
  static constexpr int kElems = 4;
  __device__ __forceinline__ static float get(const Vec16& v, int i) { return bitsFloat(v.w[i]); }
  __device__ __forceinline__ static void set(Vec16& v, int i, f32 x) { v.w[i] = floatBits(x); }
};
template <typename H> struct Pack16 {
  static constexpr int kElems = 8;
  __device__ __forceinline__ static float get(const Vec16& v, int i) {
    H x;
    x.bits = static_cast<u16>((v.w[i >> 1] >> ((i & 1) * 16)) & 0xffffu);
    return toFloat(x);
  }
  __device__ __forceinline__ static void set(Vec16& v, int i, H x) {
    const u32 shift = (i & 1) * 16;
    v.w[i >> 1] = (v.w[i >> 1] & ~(0xffffu << shift)) | (static_cast<u32>(x.bits) << shift);
  }
};
template <> struct Pack<bf16> : Pack16<bf16> {};
template <> struct Pack<f16> : Pack16<f16> {};

// N consecutive values of X (N a multiple of X's elements per chunk) from a 16-byte aligned address, as floats.
template <int N, typename X>
__device__ __forceinline__ void loadVec(const X* __restrict__ p, float* out) {
  const int E = Pack<X>::kElems;
  const Vec16* vp = reinterpret_cast<const Vec16*>(p);
SEMAIM_UNROLL
  for (int k = 0; k < N / E; ++k) {
    const Vec16 v = vp[k];
SEMAIM_UNROLL
    for (int i = 0; i < E; ++i) out[k * E + i] = Pack<X>::get(v, i);
  }
}
// N floats rounded to X, stored to a 16-byte aligned address.
template <int N, typename X>
__device__ __forceinline__ void storeVec(X* __restrict__ p, const float* in) {
  const int E = Pack<X>::kElems;
  Vec16* vp = reinterpret_cast<Vec16*>(p);
SEMAIM_UNROLL
  for (int k = 0; k < N / E; ++k) {
    Vec16 v;
SEMAIM_UNROLL
    for (int i = 0; i < 4; ++i) v.w[i] = 0;
SEMAIM_UNROLL
    for (int i = 0; i < E; ++i) Pack<X>::set(v, i, fromFloat<X>(in[k * E + i]));
    vp[k] = v;
  }
}

__device__ __forceinline__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); scratch: 32 floats of shared memory.
__device__ __forceinline__ float blockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warpSum(v);
  __syncthreads();  // scratch may still be read from the previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? scratch[lane] : 0.0f;
    t = warpSum(t);
    if (lane == 0) scratch[0] = t;
  }
  __syncthreads();
  return scratch[0];
}

// ---------------------------------------------------------------- LayerNorm (+ residual)
//
// One warp per row of D values; rows are [rowsPerBatch] rows of a batch with strides (sB, sT) into x
// and r, so a narrowed (non-contiguous) sequence needs no copy. With r: h = round_T(x + r) is written
// (contiguous) and normalised (r may be narrower than T: the bf16 output of a branch added to the float32
// residual stream under autocast); without: x is normalised. y = (v - mean) * rstd * w + b in float, rounded
// to O. mean and rstd (float, per row) are kept for the backward pass. Two passes over the row (mean,
// then the centred squares) instead of libtorch's Welford: equal to float rounding.
// The scalar row: three passes over global memory (sum, centred squares, output), any alignment and D.
template <typename T, typename R, typename W, typename O>
__device__ __forceinline__ void layerNormRowScalar(const T* __restrict__ xr, const R* __restrict__ rr, const W* __restrict__ w,
                                                   const W* __restrict__ b, T* __restrict__ hr, O* __restrict__ yr, int D, float eps,
                                                   int lane, float& muOut, float& rsOut) {
  float s = 0.0f;
  for (int c = lane; c < D; c += 32) {
    float v = toFloat(xr[c]);
    if (rr) {
      const T hv = fromFloat<T>(v + toFloat(rr[c]));
      hr[c] = hv;
      v = toFloat(hv);
    }
    s += v;
  }
  const float mu = warpSum(s) / static_cast<float>(D);
  const T* src = rr ? hr : xr;  // each lane rereads only the values it wrote itself
  float q = 0.0f;
  for (int c = lane; c < D; c += 32) {
    const float d = toFloat(src[c]) - mu;
    q += d * d;
  }
  const float var = warpSum(q) / static_cast<float>(D);
  const float rs = rsqrtf(var + eps);
  for (int c = lane; c < D; c += 32) {
    float o = (toFloat(src[c]) - mu) * rs;
    if (w) o = o * toFloat(w[c]);
    if (b) o = o + toFloat(b[c]);
    yr[c] = fromFloat<O>(o);
  }
  muOut = mu;
  rsOut = rs;
}

// The vector path: values per chunk (8 where any of the tensors is 16-bit: one 16-byte access for it, two
// for a float32 one; 4 where all are float32), and the widest row it holds in registers.
template <typename T, typename R, typename W, typename O> struct LayerNormVec {
  static constexpr int kWidth = (sizeof(T) == 4 && sizeof(R) == 4 && sizeof(W) == 4 && sizeof(O) == 4) ? 4 : 8;
};
constexpr int kLayerNormVecMaxD = 2048;  // 64 floats per lane (ViT-L 1024, ViT-H 1280 fit)

// The row read once from global memory (16-byte loads) into registers: lane l holds the chunks l, l + 32, ...
// of V values; the sum and the centred squares over the registers (the same two-pass float numerics as the
// scalar row, summed in another order); h and y written with 16-byte stores. Every base pointer 16-byte
// aligned, D a multiple of V and at most kLayerNormVecMaxD.
template <typename T, typename R, typename W, typename O>
__device__ __forceinline__ void layerNormRowVec(const T* __restrict__ xr, const R* __restrict__ rr, const W* __restrict__ w,
                                                const W* __restrict__ b, T* __restrict__ hr, O* __restrict__ yr, int D, float eps,
                                                int lane, float& muOut, float& rsOut) {
  constexpr int V = LayerNormVec<T, R, W, O>::kWidth;
  constexpr int K = kLayerNormVecMaxD / (32 * V);  // chunks per lane at most
  // Loads and stores in separate loops: a store between two loads (which the compiler must assume may
  // alias) would keep the next chunk's load from being issued before the store's data has arrived.
  // The chunks past the row's end load the lane's first chunk again (a line already being fetched: no
  // more DRAM traffic) instead of branching around their loads, which kept the compiler from issuing every
  // load before the first use (one round trip per chunk).
  float v[K * V];
  SEMAIM_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = (k * 32 + lane) * V;
    const int cl = c < D ? c : lane * V < D ? lane * V : 0;
    loadVec<V>(xr + cl, v + k * V);
    if (rr) {
      float rv[V];
      loadVec<V>(rr + cl, rv);
      SEMAIM_UNROLL
      for (int i = 0; i < V; ++i) v[k * V + i] = roundTo<T>(v[k * V + i] + rv[i]);
    }
  }
  float s = 0.0f;
  SEMAIM_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = (k * 32 + lane) * V;
    if (c < D) {
      if (rr) storeVec<V>(hr + c, v + k * V);  // exact: the values are already T's
      SEMAIM_UNROLL
      for (int i = 0; i < V; ++i) s += v[k * V + i];
    }
  }
  const float mu = warpSum(s) / static_cast<float>(D);
  float q = 0.0f;
  SEMAIM_UNROLL
  for (int k = 0; k < K; ++k) {
    if ((k * 32 + lane) * V < D) {
      SEMAIM_UNROLL
      for (int i = 0; i < V; ++i) {
        const float d = v[k * V + i] - mu;
        q += d * d;
      }
    }
  }
  const float var = warpSum(q) / static_cast<float>(D);
  const float rs = rsqrtf(var + eps);
  // y in place of the row's values (the weights' loads together), then stored.
  SEMAIM_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = (k * 32 + lane) * V;
    if (c < D) {
      float wv[V], bv[V];
      if (w) loadVec<V>(w + c, wv);
      if (b) loadVec<V>(b + c, bv);
      SEMAIM_UNROLL
      for (int i = 0; i < V; ++i) {
        float o = (v[k * V + i] - mu) * rs;
        if (w) o = o * wv[i];
        if (b) o = o + bv[i];
        v[k * V + i] = o;
      }
    }
  }
  SEMAIM_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = (k * 32 + lane) * V;
    if (c < D) storeVec<V>(yr + c, v + k * V);
  }
  muOut = mu;
  rsOut = rs;
}

template <typename T, typename R, typename W, typename O>
__device__ __forceinline__ void layerNormRows(const T* __restrict__ x, i64 xsB, i64 xsT, const R* __restrict__ r, i64 rsB, i64 rsT,
                                              i64 rowsPerBatch, const W* __restrict__ w, const W* __restrict__ b, T* __restrict__ h,
                                              O* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd, i64 M, int D,
                                              float eps) {
  const int lane = threadIdx.x & 31;
  const int rowsPerBlock = blockDim.x >> 5;
  const i64 first = static_cast<i64>(blockIdx.x) * rowsPerBlock + (threadIdx.x >> 5);
  const i64 stride = static_cast<i64>(gridDim.x) * rowsPerBlock;
  // The vector path where the shapes and the contiguous tensors allow; x's and r's rows are checked one by
  // one (a narrowed or offset view may have misaligned rows), the same for every lane of the warp.
  const bool vec = D > 0 && D % LayerNormVec<T, R, W, O>::kWidth == 0 && D <= kLayerNormVecMaxD && isAligned16(w) && isAligned16(b) &&
                   isAligned16(h) && isAligned16(y);
  for (i64 row = first; row < M; row += stride) {
    const i64 bi = row / rowsPerBatch;
    const i64 ti = row - bi * rowsPerBatch;
    const T* xr = x + bi * xsB + ti * xsT;
    const R* rr = r ? r + bi * rsB + ti * rsT : nullptr;
    T* hr = h ? h + row * D : nullptr;
    O* yr = y + row * D;
    float mu, rs;
    if (vec && isAligned16(xr) && isAligned16(rr)) {
      SEMAIM_TRACE_PATH(1);
      layerNormRowVec<T, R, W, O>(xr, rr, w, b, hr, yr, D, eps, lane, mu, rs);
    } else {
      SEMAIM_TRACE_PATH(2);
      layerNormRowScalar<T, R, W, O>(xr, rr, w, b, hr, yr, D, eps, lane, mu, rs);
    }
    if (lane == 0) {
      mean[row] = mu;
      rstd[row] = rs;
    }
  }
}

// ---------------------------------------------------------------- LayerNorm backward (+ residual)
//
// Per row of D values of src (h with a residual, else x; dtype T) with the forward's saved mean and rstd
// (float): xhat = (src - mean) * rstd, g = gy * w (gy alone without weights; gy of the output dtype O),
//   dsrc = rstd * (g - mean_D(g) - xhat * mean_D(g * xhat)) + gh
// in float (gh, the gradient of h itself, dtype T, may be absent), written once rounded to T and, with dr,
// once more rounded to the residual's dtype R (the branch's gradient). The weights' gradients
// dw = sum_rows gy * xhat and db = sum_rows gy: each block writes its rows' sums to row blockIdx.x of the
// float [gridDim.x, D] buffers dwPart and dbPart (either may be absent), summed over blocks by the host:
// no atomics, the same bits on every run. Each warp walks rows in a grid-stride loop and accumulates the
// columns of its lanes (registers on the vector path, its own slice of shared memory on the scalar one);
// at the end the block adds its warps' sums in warp order through shared memory: 2 * warps * D floats
// (layerNormBackwardSharedBytes in launch.h). Rows are [rowsPerBatch] rows of a batch: src's with strides
// (ssB, ssT), so a narrowed sequence is read without a copy; gh's, dsrc's and dr's with (osB, osT), so the
// gradient of a narrowed sequence can be written into a buffer of the whole one; gy contiguous [M, D].
// Chunks of the forward's width (LayerNormVec).
// The widest row the vector path holds in registers: xhat and the two column sums, 3 * 32 floats per lane
// at most (ViT-B 768 and ViT-L 1024 fit); wider rows take the scalar path.
constexpr int kLayerNormBwdVecMaxD = 1024;

template <typename T, typename R, typename W, typename O>
__device__ __forceinline__ void layerNormBwdRowScalar(const T* __restrict__ sr, const W* __restrict__ w, const O* __restrict__ gyr,
                                                      const T* __restrict__ ghr, T* __restrict__ dsr, R* __restrict__ drr, int D, float mu,
                                                      float rs, int lane, float* __restrict__ accW, float* __restrict__ accB) {
  float sg = 0.0f, sgx = 0.0f;
  for (int c = lane; c < D; c += 32) {
    const float xh = (toFloat(sr[c]) - mu) * rs;
    const float gy = toFloat(gyr[c]);
    const float g = w ? gy * toFloat(w[c]) : gy;
    sg += g;
    sgx += g * xh;
    accW[c] += gy * xh;
    accB[c] += gy;
  }
  const float a = warpSum(sg) / static_cast<float>(D);
  const float bx = warpSum(sgx) / static_cast<float>(D);
  for (int c = lane; c < D; c += 32) {
    const float xh = (toFloat(sr[c]) - mu) * rs;
    const float gy = toFloat(gyr[c]);
    const float g = w ? gy * toFloat(w[c]) : gy;
    float d = rs * (g - a - xh * bx);
    if (ghr) d += toFloat(ghr[c]);
    dsr[c] = fromFloat<T>(d);
    if (drr) drr[c] = fromFloat<R>(d);
  }
}

// The vector path: lane l holds the chunks l, l + 32, ... of V values (as the forward's), xhat in registers
// between the two passes; gy and w are read again in the second pass (from the cache: the warp has just
// read them). accW, accB: the lane's column sums, register k * V + i for column (k * 32 + lane) * V + i.
template <typename T, typename R, typename W, typename O>
__device__ __forceinline__ void layerNormBwdRowVec(const T* __restrict__ sr, const W* __restrict__ w, const O* __restrict__ gyr,
                                                   const T* __restrict__ ghr, T* __restrict__ dsr, R* __restrict__ drr, int D, float mu,
                                                   float rs, int lane, float* accW, float* accB) {
  constexpr int V = LayerNormVec<T, R, W, O>::kWidth;
  constexpr int K = kLayerNormBwdVecMaxD / (32 * V);
  float xh[K * V];
  float sg = 0.0f, sgx = 0.0f;
  SEMAIM_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = (k * 32 + lane) * V;
    // Past the row's end: the lane's first chunk again (see layerNormRowVec), its values unused.
    const int cl = c < D ? c : lane * V < D ? lane * V : 0;
    float gv[V], wv[V];
    loadVec<V>(sr + cl, xh + k * V);
    loadVec<V>(gyr + cl, gv);
    if (w) loadVec<V>(w + cl, wv);
    if (c < D) {
      SEMAIM_UNROLL
      for (int i = 0; i < V; ++i) {
        const float x = (xh[k * V + i] - mu) * rs;
        const float g = w ? gv[i] * wv[i] : gv[i];
        xh[k * V + i] = x;
        sg += g;
        sgx += g * x;
        accW[k * V + i] += gv[i] * x;
        accB[k * V + i] += gv[i];
      }
    }
  }
  const float a = warpSum(sg) / static_cast<float>(D);
  const float bx = warpSum(sgx) / static_cast<float>(D);
  SEMAIM_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = (k * 32 + lane) * V;
    if (c < D) {
      float gv[V], wv[V], hv[V];
      loadVec<V>(gyr + c, gv);
      if (w) loadVec<V>(w + c, wv);
      if (ghr) loadVec<V>(ghr + c, hv);
      SEMAIM_UNROLL
      for (int i = 0; i < V; ++i) {
        const float g = w ? gv[i] * wv[i] : gv[i];
        float d = rs * (g - a - xh[k * V + i] * bx);
        if (ghr) d += hv[i];
        xh[k * V + i] = d;
      }
      storeVec<V>(dsr + c, xh + k * V);
      if (drr) storeVec<V>(drr + c, xh + k * V);
    }
  }
}

template <typename T, typename R, typename W, typename O>
__device__ __forceinline__ void layerNormBackwardRows(const T* __restrict__ src, i64 ssB, i64 ssT, i64 rowsPerBatch, const float* __restrict__ mean,
                                                      const float* __restrict__ rstd, const W* __restrict__ w, const O* __restrict__ gy,
                                                      const T* __restrict__ gh, T* __restrict__ dsrc, R* __restrict__ dr, i64 osB, i64 osT,
                                                      float* __restrict__ dwPart, float* __restrict__ dbPart, i64 M, int D) {
  SEMAIM_DYNAMIC_SHARED(float, smem);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  const i64 stride = static_cast<i64>(gridDim.x) * warps;
  // The warp's column sums in shared memory: dw at [warp * 2D, +D), db after it.
  float* sW = smem + static_cast<i64>(warp) * 2 * D;
  float* sB = sW + D;
  // Rows whose strides keep every row as aligned as the first: one decision for the whole launch.
  constexpr int V = LayerNormVec<T, R, W, O>::kWidth;
  const bool vec = D > 0 && D % V == 0 && D <= kLayerNormBwdVecMaxD && ssB % V == 0 && ssT % V == 0 && osB % V == 0 && osT % V == 0 &&
                   isAligned16(src) && isAligned16(w) && isAligned16(gy) && isAligned16(gh) && isAligned16(dsrc) && isAligned16(dr);
  if (vec) {
    SEMAIM_TRACE_PATH(1);
    constexpr int K = kLayerNormBwdVecMaxD / (32 * V);
    float accW[K * V], accB[K * V];
    SEMAIM_UNROLL
    for (int i = 0; i < K * V; ++i) accW[i] = accB[i] = 0.0f;
    for (i64 row = static_cast<i64>(blockIdx.x) * warps + warp; row < M; row += stride) {
      const i64 bi = row / rowsPerBatch, ti = row - bi * rowsPerBatch;
      const i64 so = bi * ssB + ti * ssT, oo = bi * osB + ti * osT;
      layerNormBwdRowVec<T, R, W, O>(src + so, w, gy + row * D, gh ? gh + oo : nullptr, dsrc + oo, dr ? dr + oo : nullptr, D, mean[row], rstd[row],
                                     lane, accW, accB);
    }
    SEMAIM_UNROLL
    for (int k = 0; k < K; ++k) {
      const int c = (k * 32 + lane) * V;
      if (c < D) {
        SEMAIM_UNROLL
        for (int i = 0; i < V; ++i) {
          sW[c + i] = accW[k * V + i];
          sB[c + i] = accB[k * V + i];
        }
      }
    }
  } else {
    SEMAIM_TRACE_PATH(2);
    for (int c = lane; c < D; c += 32) sW[c] = sB[c] = 0.0f;
    for (i64 row = static_cast<i64>(blockIdx.x) * warps + warp; row < M; row += stride) {
      const i64 bi = row / rowsPerBatch, ti = row - bi * rowsPerBatch;
      const i64 so = bi * ssB + ti * ssT, oo = bi * osB + ti * osT;
      layerNormBwdRowScalar<T, R, W, O>(src + so, w, gy + row * D, gh ? gh + oo : nullptr, dsrc + oo, dr ? dr + oo : nullptr, D, mean[row],
                                        rstd[row], lane, sW, sB);
    }
  }
  __syncthreads();
  // The block's sums, warp by warp in a fixed order.
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float tw = 0.0f, tb = 0.0f;
    for (int j = 0; j < warps; ++j) {
      tw += smem[static_cast<i64>(j) * 2 * D + c];
      tb += smem[static_cast<i64>(j) * 2 * D + D + c];
    }
    if (dwPart) dwPart[static_cast<i64>(blockIdx.x) * D + c] = tw;
    if (dbPart) dbPart[static_cast<i64>(blockIdx.x) * D + c] = tb;
  }
}

// ---------------------------------------------------------------- gradients with their bias's gradient
//
// A Linear adds its bias inside the matmul (cuBLASLt's epilogue) with the bias detached, and the bias
// takes its gradient from the backward of the op after the Linear: that kernel writes the Linear's output
// gradient out [rows, width] and, from the same registers, each block's column sums of it (dbPart [grid,
// width] floats, summed by the host): the bias's gradient, which libtorch gets by reading out once more.
// columnSumRows is the loop: thread t of a block owns the 16-byte chunks t, t + blockDim, ... of every row
// (at most K of them), so its column sums stay in registers; blocks take rows in a grid-stride loop;
// chunk(row, col, v) gives the V values of out from column col, already rounded to T. Needs width a
// multiple of V, width <= kColumnSumMaxWidth, and every row pointer 16-byte aligned (the addon runs
// libtorch's ops otherwise). Two users:
//   GELU's backward after fc1: out = round_T(g * gelu'(pre)), libtorch's exact (erf) formula in float opmath;
//   the encoder's q, k, v split from qkv: out = qkv's gradient [rows, 3, D] from dq, dk, dv [rows, D] each.

// The launch (launch.h keeps the same two numbers; the emulator's runner checks that they agree).
constexpr int kColumnSumThreads = 128;
constexpr int kColumnSumMaxWidth = 4096;  // ViT-B's MLP 3072 and qkv 2304, ViT-L's 4096 and 3072

template <typename T, typename Chunk>
__device__ __forceinline__ void columnSumRows(T* __restrict__ out, float* __restrict__ dbPart, i64 rows, int width, Chunk chunk) {
  constexpr int V = Pack<T>::kElems;
  constexpr int K = kColumnSumMaxWidth / (kColumnSumThreads * V);  // chunks per thread at most
  SEMAIM_TRACE_PATH(1);
  const int chunks = width / V;
  float sums[K * V];
  SEMAIM_UNROLL
  for (int j = 0; j < K * V; ++j) sums[j] = 0.0f;
  for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
    SEMAIM_UNROLL
    for (int k = 0; k < K; ++k) {
      const int c = static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
      if (c >= chunks) break;
      float v[V];
      chunk(row, c * V, v);
      SEMAIM_UNROLL
      for (int j = 0; j < V; ++j) sums[k * V + j] += v[j];
      storeVec<V>(out + row * width + static_cast<i64>(c) * V, v);
    }
  }
  SEMAIM_UNROLL
  for (int k = 0; k < K; ++k) {
    const int c = static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
    if (c >= chunks) break;
    SEMAIM_UNROLL
    for (int j = 0; j < V; ++j) dbPart[static_cast<i64>(blockIdx.x) * width + c * V + j] = sums[k * V + j];
  }
}

__device__ __forceinline__ float geluGrad(float v) {
  const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752440f));
  const float pdf = 0.39894228040143267794f * expf(v * v * -0.5f);  // 2/sqrt(pi) * 1/sqrt(2) * 0.5
  return cdf + v * pdf;
}

template <typename T>
__device__ __forceinline__ void geluBackwardBias(const T* __restrict__ g, const T* __restrict__ pre, T* __restrict__ d, float* __restrict__ dbPart,
                                                 i64 rows, int D) {
  constexpr int V = Pack<T>::kElems;
  columnSumRows<T>(d, dbPart, rows, D, [&](i64 row, int col, float* v) {
    float pv[V];
    loadVec<V>(g + row * D + col, v);
    loadVec<V>(pre + row * D + col, pv);
    SEMAIM_UNROLL
    for (int j = 0; j < V; ++j) v[j] = roundTo<T>(v[j] * geluGrad(pv[j]));
  });
}

template <typename T>
__device__ __forceinline__ void qkvBackwardBias(const T* __restrict__ dq, const T* __restrict__ dk, const T* __restrict__ dv, T* __restrict__ out,
                                                float* __restrict__ dbPart, i64 rows, int D) {
  constexpr int V = Pack<T>::kElems;
  columnSumRows<T>(out, dbPart, rows, 3 * D, [&](i64 row, int col, float* v) {
    const int part = col / D;  // a chunk never straddles q, k and v: D is a multiple of V
    const T* src = part == 0 ? dq : part == 1 ? dk : dv;
    loadVec<V>(src + row * D + (col - part * D), v);
  });
}

// ---------------------------------------------------------------- pixel targets
//
// One block per (image, patch) of float32 images [B, C, H, W] (contiguous): the patch and its
// halo (K/2 pixels, zeros outside the image, as conv2d's padding) go to shared memory; each value
// of the patch is blurred with the K×K weights (a depthwise cross-correlation, every channel with
// the same kernel; K = 0: no blur) and stored in patchify order ((row, col, channel) within the
// patch); with normPix, (v − mean) / sqrt(var + 1e-6) over the patch, var unbiased.
// Shared memory: C·(P+K−1)² + P·P·C + 32 floats (pixelTargetsSharedBytes in launch.h).
__device__ __forceinline__ void pixelTargetsBlock(const float* __restrict__ img, const float* __restrict__ weights, float* __restrict__ out,
                                                  int C, int H, int W, int P, int K, int normPix) {
  SEMAIM_DYNAMIC_SHARED(float, smem);
  const int R = K > 0 ? K / 2 : 0;
  const int tile = P + 2 * R;
  const int gw = W / P;
  const int patches = (H / P) * gw;
  const i64 blk = blockIdx.x;
  const i64 bi = blk / patches;
  const int pidx = static_cast<int>(blk - bi * patches);
  const int y0 = (pidx / gw) * P - R;
  const int x0 = (pidx % gw) * P - R;
  float* tileBuf = smem;
  float* vals = smem + C * tile * tile;
  float* scratch = vals + P * P * C;
  for (int idx = threadIdx.x; idx < C * tile * tile; idx += blockDim.x) {
    const int c = idx / (tile * tile);
    const int rem = idx - c * tile * tile;
    const int yy = y0 + rem / tile;
    const int xx = x0 + rem % tile;
    tileBuf[idx] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? img[((bi * C + c) * H + yy) * W + xx] : 0.0f;
  }
  __syncthreads();
  const int n = P * P * C;
  float s = 0.0f;
  for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
    const int c = idx % C;
    const int pos = idx / C;
    const int py = pos / P;
    const int px = pos - py * P;
    float v;
    if (K > 0) {
      v = 0.0f;
      for (int ky = 0; ky < K; ++ky) {
        const float* rowp = tileBuf + (c * tile + py + ky) * tile + px;
        for (int kx = 0; kx < K; ++kx) v += weights[ky * K + kx] * rowp[kx];
      }
    } else {
      v = tileBuf[(c * tile + py) * tile + px];
    }
    vals[idx] = v;
    s += v;
  }
  float* o = out + blk * n;
  if (!normPix) {
    for (int idx = threadIdx.x; idx < n; idx += blockDim.x) o[idx] = vals[idx];
    return;
  }
  const float mu = blockSum(s, scratch) / static_cast<float>(n);
  float q = 0.0f;
  for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
    const float d = vals[idx] - mu;
    q += d * d;
  }
  const float var = blockSum(q, scratch) / static_cast<float>(n - 1);
  const float denom = sqrtf(var + 1e-6f);
  for (int idx = threadIdx.x; idx < n; idx += blockDim.x) o[idx] = (vals[idx] - mu) / denom;
}

}  // namespace semaim_kernels

// ---------------------------------------------------------------- entry points (unmangled names)
// The type combinations the addon launches; SEMAIM_FOR_EACH_* also build the emulator's name table.
// LayerNorm: T of x and h; R of the residual (T, or a 16-bit branch output added to a float32 stream);
// W of weight and bias (float32 or T); O of the output (T, float32, or the autocast dtype for a float32
// stream that feeds a Linear).
#define SEMAIM_FOR_EACH_LAYER_NORM(X)                                                                                      \
  X(f32, f32, f32, f32) X(f32, f32, f32, bf16) X(f32, f32, f32, f16) X(f32, bf16, f32, f32) X(f32, bf16, f32, bf16)     \
  X(f32, bf16, f32, f16) X(f32, f16, f32, f32) X(f32, f16, f32, bf16) X(f32, f16, f32, f16) X(bf16, bf16, f32, bf16)    \
  X(bf16, bf16, f32, f32) X(bf16, bf16, bf16, bf16) X(bf16, bf16, bf16, f32) X(f16, f16, f32, f16) X(f16, f16, f32, f32) \
  X(f16, f16, f16, f16) X(f16, f16, f16, f32)
#define SEMAIM_FOR_EACH_STORAGE(X) X(f32) X(bf16) X(f16)

#define SEMAIM_LAYER_NORM_KERNEL(T, R, W, O)                                                                                       \
  extern "C" __global__ void semaim_layer_norm_##T##_##R##_##W##_##O(                                                             \
      const semaim_kernels::T* x, long long xsB, long long xsT, const semaim_kernels::R* r, long long rsB, long long rsT,        \
      long long rowsPerBatch, const semaim_kernels::W* w, const semaim_kernels::W* b, semaim_kernels::T* h, semaim_kernels::O* y, \
      float* mean, float* rstd, long long M, int D, float eps) {                                                                  \
    semaim_kernels::layerNormRows<semaim_kernels::T, semaim_kernels::R, semaim_kernels::W, semaim_kernels::O>(                    \
        x, xsB, xsT, r, rsB, rsT, rowsPerBatch, w, b, h, y, mean, rstd, M, D, eps);                                               \
  }
SEMAIM_FOR_EACH_LAYER_NORM(SEMAIM_LAYER_NORM_KERNEL)

#define SEMAIM_LAYER_NORM_BACKWARD_KERNEL(T, R, W, O)                                                                      \
  extern "C" __global__ void semaim_layer_norm_bwd_##T##_##R##_##W##_##O(                                                     \
      const semaim_kernels::T* src, long long ssB, long long ssT, long long rowsPerBatch, const float* mean, const float* rstd,    \
      const semaim_kernels::W* w, const semaim_kernels::O* gy, const semaim_kernels::T* gh, semaim_kernels::T* dsrc,                \
      semaim_kernels::R* dr, long long osB, long long osT, float* dwPart, float* dbPart, long long M, int D) {                      \
    semaim_kernels::layerNormBackwardRows<semaim_kernels::T, semaim_kernels::R, semaim_kernels::W, semaim_kernels::O>(          \
        src, ssB, ssT, rowsPerBatch, mean, rstd, w, gy, gh, dsrc, dr, osB, osT, dwPart, dbPart, M, D);                         \
  }
SEMAIM_FOR_EACH_LAYER_NORM(SEMAIM_LAYER_NORM_BACKWARD_KERNEL)

#define SEMAIM_BIAS_GRAD_KERNELS(T)                                                                                       \
  extern "C" __global__ void semaim_gelu_bwd_bias_##T(const semaim_kernels::T* g, const semaim_kernels::T* pre, semaim_kernels::T* d, \
                                                      float* dbPart, long long rows, int D) {                                       \
    semaim_kernels::geluBackwardBias<semaim_kernels::T>(g, pre, d, dbPart, rows, D);                                               \
  }                                                                                                                                \
  extern "C" __global__ void semaim_qkv_bwd_bias_##T(const semaim_kernels::T* dq, const semaim_kernels::T* dk,                     \
                                                     const semaim_kernels::T* dv, semaim_kernels::T* out, float* dbPart,            \
                                                     long long rows, int D) {                                                       \
    semaim_kernels::qkvBackwardBias<semaim_kernels::T>(dq, dk, dv, out, dbPart, rows, D);                                          \
  }
SEMAIM_FOR_EACH_STORAGE(SEMAIM_BIAS_GRAD_KERNELS)

extern "C" __global__ void semaim_pixel_targets_f32(const float* img, const float* weights, float* out, int C, int H, int W, int P, int K,
                                                    int normPix) {
  semaim_kernels::pixelTargetsBlock(img, weights, out, C, H, W, P, K, normPix);
}
