// Optimiser kernels (the `optim` unit of native/ops.yaml): one native call per parameter group and step, using libtorch's multi-tensor
// (_foreach) kernels, so a step costs a handful of dispatches instead of several per parameter.
#include "common.h"

#include <algorithm>

#include <c10/core/GradMode.h>

#include <cmath>

namespace semaim {

#if SEMAIM_TORCH_AT_LEAST(2, 4)
// The fused AdamW kernel takes one device and one floating dtype per call.
static bool sameDeviceAndFloatDtype(const std::vector<at::Tensor>& ts) {
  for (const auto& t : ts) {
    if (t.device() != ts[0].device() || t.scalar_type() != ts[0].scalar_type()) return false;
  }
  return at::isFloatingType(ts[0].scalar_type());
}
#endif

namespace impl {

// adamwStep(params, grads, expAvgs, expAvgSqs, lr, beta1, beta2, eps, weightDecay, step)
// Decoupled weight decay, bias-corrected moments (PyTorch's AdamW, amsgrad off).
static void adamwStep(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& m,
                      const std::vector<at::Tensor>& v, double lr, double b1, double b2, double eps, double wd, int64_t step) {
  if (grads.size() != params.size() || m.size() != params.size() || v.size() != params.size())
    throw std::invalid_argument("adamwStep: params, grads and states differ in length");
  if (params.empty()) return;
  // c10:: not at::, whose alias ATen/ATen.h no longer pulls in on 2.x.
  c10::NoGradGuard no_grad;
#if SEMAIM_TORCH_AT_LEAST(2, 4)
  // libtorch >= 2.4 has one fused kernel for the whole update (CPU and CUDA): one launch per group
  // instead of ~10 multi-tensor passes. It wants the step count as a float tensor per parameter.
  if (sameDeviceAndFloatDtype(params)) {
    auto steps = at::full({static_cast<int64_t>(params.size())}, static_cast<double>(step),
                          params[0].options().dtype(at::kFloat));
    std::vector<at::Tensor> stateSteps = steps.unbind(0);
    at::_fused_adamw_(params, grads, m, v, {}, stateSteps, lr, b1, b2, wd, eps, /*amsgrad=*/false, /*maximize=*/false);
    return;
  }
#endif
  if (wd != 0) at::_foreach_mul_(params, 1.0 - lr * wd);
  at::_foreach_mul_(m, b1);
  at::_foreach_add_(m, grads, 1.0 - b1);
  at::_foreach_mul_(v, b2);
  at::_foreach_addcmul_(v, grads, grads, 1.0 - b2);
  double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  double bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
  auto denom = at::_foreach_sqrt(v);
  at::_foreach_div_(denom, std::sqrt(bc2));
  at::_foreach_add_(denom, eps);
  at::_foreach_addcdiv_(params, m, denom, -lr / bc1);
}

// sgdStep(params, grads, buffers|null, lr, momentum, dampening, weightDecay, nesterov, firstStep)
static void sgdStep(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                    const c10::optional<std::vector<at::Tensor>>& buffers, double lr, double momentum, double dampening, double wd,
                    bool nesterov, bool first) {
  // Checked here, as adamwStep does: with momentum and no weight decay, fewer grads than params were read
  // past the end of the list (a segfault) before any libtorch op could refuse them.
  if (grads.size() != params.size()) throw std::invalid_argument("sgdStep: params and grads differ in length");
  if (params.empty()) return;
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> d = wd != 0 ? at::_foreach_add(grads, params, wd) : grads;
  if (momentum != 0) {
    if (!buffers || buffers->size() != params.size()) throw std::invalid_argument("sgdStep: momentum needs one buffer per parameter");
    const std::vector<at::Tensor>& bufs = *buffers;
    if (first) {
      for (size_t i = 0; i < bufs.size(); i++) bufs[i].copy_(d[i]);
    } else {
      at::_foreach_mul_(bufs, momentum);
      at::_foreach_add_(bufs, d, 1.0 - dampening);
    }
    d = nesterov ? at::_foreach_add(d, bufs, momentum) : bufs;
  }
  at::_foreach_add_(params, d, -lr);
}

// clipGradNorm(grads, maxNorm) -> total L2 norm (0-d tensor, before clipping). No host sync:
// the scale is computed on the device and applied even when it is 1.
static at::Tensor clipGradNorm(const std::vector<at::Tensor>& grads, double maxNorm) {
  if (grads.empty()) return at::zeros({});
  c10::NoGradGuard no_grad;
  auto norms = at::_foreach_norm(grads, 2);
  at::Tensor total = at::stack(norms).norm();
  if (std::isfinite(maxNorm)) {
    at::Tensor coef = (maxNorm / (total + 1e-6)).clamp_max(1.0);
#if SEMAIM_TORCH_AT_LEAST(2, 1)
    // One multi-tensor kernel instead of one per parameter (_foreach_mul_ by a tensor: PyTorch >= 2.1).
    if (std::all_of(grads.begin(), grads.end(), [&](const at::Tensor& g) { return g.scalar_type() == coef.scalar_type(); })) {
      at::_foreach_mul_(grads, coef);
      return total;
    }
#endif
    for (const auto& g : grads) g.mul_(coef.to(g.scalar_type()));
  }
  return total;
}

// foreachMul_(tensors, scalar): multiplies every tensor in place (one multi-tensor kernel per dtype and device).
static void foreachMul_(const std::vector<at::Tensor>& tensors, const at::Scalar& scalar) {
  c10::NoGradGuard no_grad;
  if (!tensors.empty()) at::_foreach_mul_(tensors, scalar);
}

}  // namespace impl

}  // namespace semaim

#include "generated/optim.inc"
