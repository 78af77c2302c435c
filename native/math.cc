// Views, indexing, elementwise math, reductions, joining and in-place updates: the `math` unit of
// native/ops.yaml. Every op here is a one-line expression in the table; below are the helpers those
// expressions use.
#include "common.h"

namespace semaim {

// Reduction dims: the given ones, or every dim (a full reduction that keeps them, keepdim=true).
static std::vector<int64_t> dimsOrEvery(const c10::optional<std::vector<int64_t>>& d, const at::Tensor& t) {
  if (d) return *d;
  std::vector<int64_t> all(t.dim());
  for (int64_t k = 0; k < t.dim(); k++) all[k] = k;
  return all;
}

// A full reduction `r` of self with keepdim: shaped [1, ..., 1], one 1 per dim of self (as sum and mean give it).
static at::Tensor keepEveryDim(const at::Tensor& r, const at::Tensor& self) { return r.reshape(std::vector<int64_t>(self.dim(), 1)); }

// Index tensors for index/index_put (every entry given).
static c10::List<c10::optional<at::Tensor>> optionalList(const std::vector<at::Tensor>& ts) {
  c10::List<c10::optional<at::Tensor>> list;
  for (const auto& t : ts) list.push_back(t);
  return list;
}

// Reduction dims for var/std: the given ones, or all.
static at::OptionalIntArrayRef dimsOrAll(const c10::optional<std::vector<int64_t>>& d) {
  return d ? at::OptionalIntArrayRef(*d) : at::OptionalIntArrayRef(c10::nullopt);
}

// remainder with an integral result, where a divisor -1 is taken as 1 (x % -1 and x % 1 are 0 for every x): the
// CPU's integer division of int64's (or int32's) minimum by -1 overflows and traps, and libtorch (1.13) divides
// without a check, so remainder(-2^63, -1) killed the process with SIGFPE (PyTorch itself too).
static at::Tensor remainderNoTrap(const at::Tensor& self, const at::Scalar& other) {
  if (other.isIntegral(false) && other.toLong() == -1 && at::isIntegralType(at::result_type(self, other), false)) return at::remainder(self, 1);
  return at::remainder(self, other);
}
static at::Tensor remainderNoTrap(const at::Tensor& self, const at::Tensor& other) {
  if (at::isSignedType(other.scalar_type()) && at::isIntegralType(at::result_type(self, other), false))
    return at::remainder(self, other.masked_fill(other.eq(-1), 1));
  return at::remainder(self, other);
}

}  // namespace semaim

#include "generated/math.inc"
