// Neural-network functional ops (the `nn` unit of native/ops.yaml): normalisation, activations,
// convolution, pooling, resampling, losses and attention. Version differences between libtorch 1.13
// and 2.x are hidden here.
#include "common.h"

#include <cmath>

namespace semaim {

static int64_t reductionEnum(const std::string& r) {
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  if (r == "none") return at::Reduction::None;
  throw std::invalid_argument("reduction must be 'mean', 'sum' or 'none', got '" + r + "'");
}

// Scaled dot-product attention over [..., L, E] tensors.
// mask: bool (true = may attend) or float (added to the scores). causal: query i sees keys j <= i
// (top-left aligned, also when L != S). scale defaults to 1/sqrt(E).
static at::Tensor attentionMath(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask,
                                double dropout, bool causal, double scale) {
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)).mul(scale);
  if (causal) {
    auto keep = at::ones({q.size(-2), k.size(-2)}, q.options().dtype(at::kBool)).tril();
    scores = scores.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
  }
  if (mask) {
    if (mask->scalar_type() == at::kBool) scores = scores.masked_fill(mask->logical_not(), -std::numeric_limits<double>::infinity());
    else scores = scores.add(*mask);
  }
  at::Tensor attn = at::softmax(scores, -1);
  if (dropout > 0) attn = at::dropout(attn, dropout, true);
  return at::matmul(attn, v);
}

// The given attention scale, or 1/sqrt(E).
static double scaleOr(const at::Tensor& q, c10::optional<double> scale) {
  return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
}

namespace impl {

// interpolate(x, [outH, outW], mode, alignCorners) for 4-D inputs.
static at::Tensor interpolate(const at::Tensor& x, const std::vector<int64_t>& size, const std::string& mode, bool align) {
  if (x.dim() != 4 || size.size() != 2) throw std::invalid_argument("interpolate: expects a 4-D input and a 2-element size");
  if (mode == "nearest") return at::upsample_nearest2d(x, size);
  if (mode == "bilinear") return at::upsample_bilinear2d(x, size, align);
  if (mode == "bicubic") return at::upsample_bicubic2d(x, size, align);
  if (mode == "area") return at::adaptive_avg_pool2d(x, size);
  throw std::invalid_argument("interpolate: mode must be nearest, bilinear, bicubic or area, got '" + mode + "'");
}

static at::Tensor scaledDotProductAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const c10::optional<at::Tensor>& mask, double dropout, bool causal,
                                            c10::optional<double> scale) {
  if (causal && mask) throw std::invalid_argument("scaledDotProductAttention: give either causal or mask, not both");
#if SEMAIM_TORCH_AT_LEAST(2, 1)  // 2.0's public op has no scale argument
  // Fused kernels (flash / memory-efficient on CUDA, flash on CPU where available).
  return at::scaled_dot_product_attention(q, k, v, mask, dropout, causal, scaleOr(q, scale));
#else
  // libtorch 1.13 only has a private math-path op (and 2.0's public one takes no scale); our own
  // math path has the same numerics and clear mask semantics.
  return attentionMath(q, k, v, mask, dropout, causal, scaleOr(q, scale));
#endif
}

// The explicit math path on every version, for tests and as a reference.
static at::Tensor attentionReference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const c10::optional<at::Tensor>& mask, double dropout, bool causal,
                                     c10::optional<double> scale) {
  return attentionMath(q, k, v, mask, dropout, causal, scaleOr(q, scale));
}

}  // namespace impl

}  // namespace semaim

#include "generated/nn.inc"
