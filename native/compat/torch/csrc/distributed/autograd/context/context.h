// Stand-in for libtorch's dist-autograd context header, used only where the libtorch install leaves it
// out (Debian's libtorch-dev 1.13) and only because c10d/reducer.hpp includes it. reducer.hpp needs
// two names from it: ContextPtr (a std::shared_ptr member of c10d::Reducer, whose size does not
// depend on the pointee) and DistAutogradContext::GradCallback (checked by a static_assert). The
// addon never creates or touches a dist-autograd context; libtorch's own definitions are used
// wherever the real header exists (native/find-libtorch.js adds this folder only when it is missing).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
