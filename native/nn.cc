// Neural-network functional ops (the `nn` unit of native/ops.yaml): normalisation, activations,
// convolution, pooling, resampling, losses and attention. Version differences between libtorch 1.13
// and 2.x are hidden here.
#include "common.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

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

// interpolate(x, [outH, outW], mode, alignCorners) for 4-D inputs; alignCorners given (even false)
// with a non-interpolating mode is refused, as PyTorch.
static at::Tensor interpolate(const at::Tensor& x, const std::vector<int64_t>& size, const std::string& mode, c10::optional<bool> alignCorners) {
  if (x.dim() != 4 || size.size() != 2) throw std::invalid_argument("interpolate: expects a 4-D input and a 2-element size");
  if (alignCorners && (mode == "nearest" || mode == "area"))
    throw std::invalid_argument("interpolate: the alignCorners (align_corners) option can only be set with the interpolating modes: bilinear | bicubic");
  bool align = alignCorners.value_or(false);
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

#if SEMAIM_TORCH_AT_LEAST(2, 1)
static const char* sdpaBackendName(int64_t b) {
  switch (b) {
    case 0: return "math";
    case 1: return "flash";
    case 2: return "efficient";
    case 3: return "cudnn";
    case 4: return "overrideable";
    default: return "error";
  }
}
#endif

// The fused attention backend libtorch picks for these inputs (what scaledDotProductAttention runs):
// flash, efficient, cudnn or math (at::_fused_sdp_choice); "semaim-math" before 2.1, where the addon
// runs its own math path.
static std::string sdpaChoice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask, bool causal) {
#if SEMAIM_TORCH_AT_LEAST(2, 1)
  return sdpaBackendName(at::_fused_sdp_choice(q, k, v, mask, 0.0, causal, scaleOr(q, c10::nullopt)));
#else
  return "semaim-math";
#endif
}

#if SEMAIM_TORCH_AT_LEAST(2, 6)
// libtorch (>= 2.9) installs its default order (cuDNN first on Hopper and Blackwell with cuDNN > 9.15) the
// first time it picks a backend, over any order set before: pick once first, on a small CUDA input, so
// that the order set next stays. Without CUDA there is nothing to pick.
static void initDefaultSdpaOrder() {
  static bool done = false;
  if (done || !at::hasCUDA()) return;
  done = true;
  const auto q = at::zeros({1, 1, 8, 64}, at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA));
  (void)at::_fused_sdp_choice(q, q, q, c10::nullopt, 0.0, true, c10::nullopt);
}
#endif

// The backends' priority order, e.g. "cudnn,flash,efficient,math": sets it when `order` is not empty
// (listed backends enabled and tried in that order, the others disabled), and returns the order in force
// with the enabled ones. libtorch >= 2.6.
static std::string sdpaPriority(const std::string& order) {
#if SEMAIM_TORCH_AT_LEAST(2, 6)
  auto& ctx = at::globalContext();
  if (!order.empty()) {
    const std::map<std::string, int64_t> ids{{"math", 0}, {"flash", 1}, {"efficient", 2}, {"cudnn", 3}};
    std::vector<int64_t> list;
    std::stringstream ss(order);
    std::string name;
    while (std::getline(ss, name, ',')) {
      auto it = ids.find(name);
      if (it == ids.end()) throw std::invalid_argument("sdpaPriority: unknown backend '" + name + "' (flash, efficient, cudnn, math)");
      // libtorch's setSDPPriorityOrder copies the whole list into its fixed array of the 5 backends without
      // checking the length: a repeated name made the list longer and wrote past that array
      if (std::find(list.begin(), list.end(), it->second) != list.end())
        throw std::invalid_argument("sdpaPriority: backend '" + name + "' is listed twice");
      list.push_back(it->second);
    }
    auto listed = [&](int64_t id) { return std::find(list.begin(), list.end(), id) != list.end(); };
    // The switches from the list as given, before the unlisted backends are appended to it (which made
    // every backend count as listed, so none was ever switched off).
    const bool math = listed(0), flash = listed(1), efficient = listed(2), cudnn = listed(3);
    for (int64_t id : {0, 1, 2, 3}) {
      if (!listed(id)) list.push_back(id);  // the order lists every backend; disabled ones come last
    }
    initDefaultSdpaOrder();
    ctx.setSDPUseMath(math);
    ctx.setSDPUseFlash(flash);
    ctx.setSDPUseMemEfficient(efficient);
    ctx.setSDPUseCuDNN(cudnn);
    list.push_back(4);  // overrideable, as libtorch's default order ends
    ctx.setSDPPriorityOrder(list);
  }
  std::string out;
  std::vector<int64_t> seen;
  for (const auto b : ctx.sDPPriorityOrder()) {
    const auto id = static_cast<int64_t>(b);
    // Each backend once: libtorch 2.6's default array has 4 initialisers for its 5 slots, so the last reads
    // as math (0) again, and an order read back with it could not be set again.
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
    seen.push_back(id);
    const bool on = (id == 0 && ctx.userEnabledMathSDP()) || (id == 1 && ctx.userEnabledFlashSDP()) ||
                    (id == 2 && ctx.userEnabledMemEfficientSDP()) || (id == 3 && ctx.userEnabledCuDNNSDP());
    if (on) out += (out.empty() ? "" : ",") + std::string(sdpaBackendName(id));
  }
  return out;
#else
  if (!order.empty()) throw std::invalid_argument("sdpaPriority: choosing the attention backend needs libtorch >= 2.6");
  return "";
#endif
}

}  // namespace impl

}  // namespace semaim

#include "generated/nn.inc"
