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

}  // namespace semaim

#include "generated/math.inc"
