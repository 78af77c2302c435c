// Neural-network functional ops: normalisation, activations, convolution, pooling, resampling,
// losses and attention. Version differences between libtorch 1.13 and 2.x are hidden here.
#include "common.h"

#include <cmath>

namespace semaim {

static int64_t reduction(const std::string& r) {
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  if (r == "none") return at::Reduction::None;
  throw std::invalid_argument("reduction must be 'mean', 'sum' or 'none', got '" + r + "'");
}

FN(softmax, { return wrap(info.Env(), at::softmax(argTensor(info, 0), argInt(info, 1), argOptDtype(info, 2))); })
FN(logSoftmax, { return wrap(info.Env(), at::log_softmax(argTensor(info, 0), argInt(info, 1), argOptDtype(info, 2))); })
OP(layerNorm, at::layer_norm(argTensor(info, 0), argIntList(info, 1), argOptTensor(info, 2), argOptTensor(info, 3), argDouble(info, 4)))
OP(batchNorm, at::batch_norm(argTensor(info, 0), argOptTensor(info, 1), argOptTensor(info, 2), argOptTensor(info, 3),
                             argOptTensor(info, 4), argBool(info, 5), argDouble(info, 6), argDouble(info, 7), false))
OP(gelu, at::gelu(argTensor(info, 0), argString(info, 1)))
OP(dropout, at::dropout(argTensor(info, 0), argDouble(info, 1), argBool(info, 2)))
OP(conv2d, at::conv2d(argTensor(info, 0), argTensor(info, 1), argOptTensor(info, 2), argIntList(info, 3), argIntList(info, 4),
                      argIntList(info, 5), argInt(info, 6)))
OP(avgPool2d, at::avg_pool2d(argTensor(info, 0), argIntList(info, 1), argIntList(info, 2), argIntList(info, 3), argBool(info, 4),
                             argBool(info, 5)))
OP(maxPool2d, at::max_pool2d(argTensor(info, 0), argIntList(info, 1), argIntList(info, 2), argIntList(info, 3), argIntList(info, 4),
                             argBool(info, 5)))
OP(adaptiveAvgPool2d, at::adaptive_avg_pool2d(argTensor(info, 0), argIntList(info, 1)))
OP(pad, at::constant_pad_nd(argTensor(info, 0), argIntList(info, 1), argScalar(info, 2)))

// interpolate(x, [outH, outW], mode, alignCorners) for 4-D inputs.
FN(interpolate, {
  const at::Tensor& x = argTensor(info, 0);
  auto size = argIntList(info, 1);
  std::string mode = argString(info, 2);
  bool align = argBool(info, 3);
  if (x.dim() != 4 || size.size() != 2) throw std::invalid_argument("interpolate: expects a 4-D input and a 2-element size");
  at::Tensor out;
  if (mode == "nearest") out = at::upsample_nearest2d(x, size);
  else if (mode == "bilinear") out = at::upsample_bilinear2d(x, size, align);
  else if (mode == "bicubic") out = at::upsample_bicubic2d(x, size, align);
  else if (mode == "area") out = at::adaptive_avg_pool2d(x, size);
  else throw std::invalid_argument("interpolate: mode must be nearest, bilinear, bicubic or area, got '" + mode + "'");
  return wrap(info.Env(), out);
})

// crossEntropy(logits, target, weight?, reduction, ignoreIndex, labelSmoothing): target holds class
// indices (int64) or class probabilities (float, same shape as logits).
OP(crossEntropy, at::cross_entropy_loss(argTensor(info, 0), argTensor(info, 1), argOptTensor(info, 2), reduction(argString(info, 3)),
                                        argInt(info, 4), argDouble(info, 5)))
OP(mseLoss, at::mse_loss(argTensor(info, 0), argTensor(info, 1), reduction(argString(info, 2))))
OP(cosineSimilarity, at::cosine_similarity(argTensor(info, 0), argTensor(info, 1), argInt(info, 2), argDouble(info, 3)))
OP(oneHot, at::one_hot(argTensor(info, 0), argInt(info, 1)))

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

FN(scaledDotProductAttention, {
  const at::Tensor& q = argTensor(info, 0);
  const at::Tensor& k = argTensor(info, 1);
  const at::Tensor& v = argTensor(info, 2);
  auto mask = argOptTensor(info, 3);
  double dropout = argDouble(info, 4);
  bool causal = argBool(info, 5);
  auto scaleArg = argOptDouble(info, 6);
  double scale = scaleArg ? *scaleArg : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  if (causal && mask) throw std::invalid_argument("scaledDotProductAttention: give either causal or mask, not both");
#if SEMAIM_TORCH_AT_LEAST(2, 1)  // 2.0's public op has no scale argument
  // Fused kernels (flash / memory-efficient on CUDA, flash on CPU where available).
  return wrap(info.Env(), at::scaled_dot_product_attention(q, k, v, mask ? c10::optional<at::Tensor>(*mask) : c10::nullopt, dropout,
                                                           causal, scale));
#else
  // libtorch 1.13 only has a private math-path op (and 2.0's public one takes no scale); our own
  // math path has the same numerics and clear mask semantics.
  return wrap(info.Env(), attentionMath(q, k, v, mask, dropout, causal, scale));
#endif
})

// The explicit math path on every version, for tests and as a reference.
FN(attentionReference, {
  const at::Tensor& q = argTensor(info, 0);
  auto scaleArg = argOptDouble(info, 6);
  double scale = scaleArg ? *scaleArg : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return wrap(info.Env(), attentionMath(q, argTensor(info, 1), argTensor(info, 2), argOptTensor(info, 3), argDouble(info, 4), argBool(info, 5), scale));
})

void registerNN(Napi::Env env, Napi::Object exports) {
  EXPORT(softmax); EXPORT(logSoftmax); EXPORT(layerNorm); EXPORT(batchNorm); EXPORT(gelu); EXPORT(dropout);
  EXPORT(conv2d); EXPORT(avgPool2d); EXPORT(maxPool2d); EXPORT(adaptiveAvgPool2d); EXPORT(pad); EXPORT(interpolate);
  EXPORT(crossEntropy); EXPORT(mseLoss); EXPORT(cosineSimilarity); EXPORT(oneHot);
  EXPORT(scaledDotProductAttention); EXPORT(attentionReference);
}

}  // namespace semaim
