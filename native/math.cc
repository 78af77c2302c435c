// Views, indexing, elementwise math, reductions, joining and in-place updates.
#include "common.h"

namespace semaim {

static bool isNum(const Napi::CallbackInfo& info, size_t i) {
  return info[i].IsNumber() || info[i].IsBoolean();  // BigInts are tensor handles
}

// ---------------------------------------------------------------- views

OP(reshape, argTensor(info, 0).reshape(argIntList(info, 1)))
OP(view, argTensor(info, 0).view(argIntList(info, 1)))
OP(permute, argTensor(info, 0).permute(argIntList(info, 1)))
OP(transpose, argTensor(info, 0).transpose(argInt(info, 1), argInt(info, 2)))
OP(expand, argTensor(info, 0).expand(argIntList(info, 1)))
OP(narrow, argTensor(info, 0).narrow(argInt(info, 1), argInt(info, 2), argInt(info, 3)))
OP(slice, argTensor(info, 0).slice(argInt(info, 1), argOptInt(info, 2), argOptInt(info, 3), argInt(info, 4)))
OP(select, argTensor(info, 0).select(argInt(info, 1), argInt(info, 2)))
FN(squeeze, {
  auto d = argOptInt(info, 1);
  return wrap(info.Env(), d ? argTensor(info, 0).squeeze(*d) : argTensor(info, 0).squeeze());
})
OP(unsqueeze, argTensor(info, 0).unsqueeze(argInt(info, 1)))
OP(contiguous, argTensor(info, 0).contiguous())
OP(flatten, argTensor(info, 0).flatten(argInt(info, 1), argInt(info, 2)))
OP(clone, argTensor(info, 0).clone())
OP(detach, argTensor(info, 0).detach())
OP(repeat, argTensor(info, 0).repeat(argIntList(info, 1)))
OP(flip, argTensor(info, 0).flip(argIntList(info, 1)))
OP(tril, argTensor(info, 0).tril(argInt(info, 1)))
OP(triu, argTensor(info, 0).triu(argInt(info, 1)))
FN(to, {
  const at::Tensor& t = argTensor(info, 0);
  auto dtype = argOptDtype(info, 1);
  at::Device dev = (info.Length() > 2 && info[2].IsString()) ? argDevice(info, 2) : t.device();
  return wrap(info.Env(), t.to(dev, dtype ? *dtype : t.scalar_type(), argBool(info, 3), argBool(info, 4)));
})

// ---------------------------------------------------------------- indexing

OP(gather, at::gather(argTensor(info, 0), argInt(info, 1), argTensor(info, 2)))
OP(scatter, at::scatter(argTensor(info, 0), argInt(info, 1), argTensor(info, 2), argTensor(info, 3)))
OP(scatterAdd, at::scatter_add(argTensor(info, 0), argInt(info, 1), argTensor(info, 2), argTensor(info, 3)))
OP(indexSelect, at::index_select(argTensor(info, 0), argInt(info, 1), argTensor(info, 2)))
FN(maskedFill, {
  const at::Tensor& t = argTensor(info, 0);
  const at::Tensor& m = argTensor(info, 1);
  return wrap(info.Env(), isNum(info, 2) ? t.masked_fill(m, argScalar(info, 2)) : t.masked_fill(m, argTensor(info, 2)));
})
FN(where, {
  const at::Tensor& c = argTensor(info, 0);
  if (isNum(info, 1) && isNum(info, 2)) return wrap(info.Env(), at::where(c, argScalar(info, 1), argScalar(info, 2)));
  if (isNum(info, 1)) return wrap(info.Env(), at::where(c, argScalar(info, 1), argTensor(info, 2)));
  if (isNum(info, 2)) return wrap(info.Env(), at::where(c, argTensor(info, 1), argScalar(info, 2)));
  return wrap(info.Env(), at::where(c, argTensor(info, 1), argTensor(info, 2)));
})
// argsort(t, dim, descending, stable): stable keeps equal elements in index order.
OP(argsort, std::get<1>(at::sort(argTensor(info, 0), c10::optional<bool>(argBool(info, 3)), argInt(info, 1), argBool(info, 2))))
FN(sort, {
  auto r = at::sort(argTensor(info, 0), argInt(info, 1), argBool(info, 2));
  return wrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
})
FN(topk, {
  auto r = at::topk(argTensor(info, 0), argInt(info, 1), argInt(info, 2), argBool(info, 3), argBool(info, 4));
  return wrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
})
OP(argmax, at::argmax(argTensor(info, 0), argOptInt(info, 1), argBool(info, 2)))
OP(argmin, at::argmin(argTensor(info, 0), argOptInt(info, 1), argBool(info, 2)))
FN(indexPut, {
  auto idx = argTensorList(info, 1);
  c10::List<c10::optional<at::Tensor>> list;
  for (auto& t : idx) list.push_back(t);
  return wrap(info.Env(), at::index_put(argTensor(info, 0), list, argTensor(info, 2), argBool(info, 3)));
})
FN(index, {
  auto idx = argTensorList(info, 1);
  c10::List<c10::optional<at::Tensor>> list;
  for (auto& t : idx) list.push_back(t);
  return wrap(info.Env(), at::index(argTensor(info, 0), list));
})
OP(nonzero, at::nonzero(argTensor(info, 0)))
OP(maskedSelect, at::masked_select(argTensor(info, 0), argTensor(info, 1)))

// ---------------------------------------------------------------- elementwise

// Binary ops accept a tensor or a number as the second operand.
#define BINARY(name, fn)                                                                             \
  FN(name, {                                                                                         \
    const at::Tensor& a = argTensor(info, 0);                                                        \
    return wrap(info.Env(), isNum(info, 1) ? at::fn(a, argScalar(info, 1)) : at::fn(a, argTensor(info, 1))); \
  })

FN(add, {
  const at::Tensor& a = argTensor(info, 0);
  at::Scalar alpha = info.Length() > 2 && !info[2].IsUndefined() ? argScalar(info, 2) : at::Scalar(1);
  return wrap(info.Env(), isNum(info, 1) ? at::add(a, argScalar(info, 1), alpha) : at::add(a, argTensor(info, 1), alpha));
})
FN(sub, {
  const at::Tensor& a = argTensor(info, 0);
  at::Scalar alpha = info.Length() > 2 && !info[2].IsUndefined() ? argScalar(info, 2) : at::Scalar(1);
  return wrap(info.Env(), isNum(info, 1) ? at::sub(a, argScalar(info, 1), alpha) : at::sub(a, argTensor(info, 1), alpha));
})
BINARY(mul, mul)
BINARY(div, div)
BINARY(pow, pow)
BINARY(remainder, remainder)
BINARY(eq, eq)
BINARY(ne, ne)
BINARY(lt, lt)
BINARY(le, le)
BINARY(gt, gt)
BINARY(ge, ge)
OP(maximum, at::maximum(argTensor(info, 0), argTensor(info, 1)))
OP(minimum, at::minimum(argTensor(info, 0), argTensor(info, 1)))
OP(logicalAnd, at::logical_and(argTensor(info, 0), argTensor(info, 1)))
OP(logicalOr, at::logical_or(argTensor(info, 0), argTensor(info, 1)))
OP(logicalXor, at::logical_xor(argTensor(info, 0), argTensor(info, 1)))
OP(rpow, at::pow(argScalar(info, 1), argTensor(info, 0)))

#define UNARY(name, fn) OP(name, at::fn(argTensor(info, 0)))
UNARY(neg, neg)
UNARY(exp, exp)
UNARY(log, log)
UNARY(log1p, log1p)
UNARY(expm1, expm1)
UNARY(sqrt, sqrt)
UNARY(rsqrt, rsqrt)
UNARY(abs, abs)
UNARY(sin, sin)
UNARY(cos, cos)
UNARY(tanh, tanh)
UNARY(sigmoid, sigmoid)
UNARY(relu, relu)
UNARY(erf, erf)
UNARY(floor, floor)
UNARY(ceil, ceil)
UNARY(round, round)
UNARY(reciprocal, reciprocal)
UNARY(sign, sign)
UNARY(square, square)
UNARY(logicalNot, logical_not)
UNARY(isnan, isnan)
UNARY(isfinite, isfinite)
OP(clamp, at::clamp(argTensor(info, 0), argOptDouble(info, 1).has_value() ? c10::optional<at::Scalar>(argDouble(info, 1)) : c10::nullopt,
                    argOptDouble(info, 2).has_value() ? c10::optional<at::Scalar>(argDouble(info, 2)) : c10::nullopt))

OP(matmul, at::matmul(argTensor(info, 0), argTensor(info, 1)))
OP(mm, at::mm(argTensor(info, 0), argTensor(info, 1)))
OP(bmm, at::bmm(argTensor(info, 0), argTensor(info, 1)))
OP(linear, at::linear(argTensor(info, 0), argTensor(info, 1), argOptTensor(info, 2)))
OP(outer, at::outer(argTensor(info, 0), argTensor(info, 1)))

// ---------------------------------------------------------------- reductions

static at::OptionalIntArrayRef dimsOrAll(const c10::optional<std::vector<int64_t>>& d) {
  return d ? at::OptionalIntArrayRef(*d) : at::OptionalIntArrayRef(c10::nullopt);
}

FN(sum, {
  auto d = argOptIntList(info, 1);
  const at::Tensor& t = argTensor(info, 0);
  auto dtype = argOptDtype(info, 3);
  return wrap(info.Env(), d ? at::sum(t, *d, argBool(info, 2), dtype) : at::sum(t, dtype));
})
FN(mean, {
  auto d = argOptIntList(info, 1);
  const at::Tensor& t = argTensor(info, 0);
  return wrap(info.Env(), d ? at::mean(t, *d, argBool(info, 2)) : at::mean(t));
})
FN(var, {
  auto d = argOptIntList(info, 1);
  return wrap(info.Env(), at::var(argTensor(info, 0), dimsOrAll(d), argBool(info, 2), argBool(info, 3)));
})
FN(std, {
  auto d = argOptIntList(info, 1);
  return wrap(info.Env(), at::std(argTensor(info, 0), dimsOrAll(d), argBool(info, 2), argBool(info, 3)));
})
OP(maxAll, at::max(argTensor(info, 0)))
OP(minAll, at::min(argTensor(info, 0)))
FN(maxDim, {
  auto r = at::max(argTensor(info, 0), argInt(info, 1), argBool(info, 2));
  return wrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
})
FN(minDim, {
  auto r = at::min(argTensor(info, 0), argInt(info, 1), argBool(info, 2));
  return wrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
})
OP(amax, at::amax(argTensor(info, 0), argIntList(info, 1), argBool(info, 2)))
OP(amin, at::amin(argTensor(info, 0), argIntList(info, 1), argBool(info, 2)))
FN(norm, {
  auto d = argOptIntList(info, 2);
  at::Scalar p = argDouble(info, 1);
  const at::Tensor& t = argTensor(info, 0);
  return wrap(info.Env(), d ? at::norm(t, p, *d, argBool(info, 3)) : at::norm(t, p));
})
OP(logsumexp, at::logsumexp(argTensor(info, 0), argIntList(info, 1), argBool(info, 2)))
OP(cumsum, at::cumsum(argTensor(info, 0), argInt(info, 1)))
FN(any, {
  auto d = argOptInt(info, 1);
  return wrap(info.Env(), d ? at::any(argTensor(info, 0), *d, argBool(info, 2)) : at::any(argTensor(info, 0)));
})
FN(all, {
  auto d = argOptInt(info, 1);
  return wrap(info.Env(), d ? at::all(argTensor(info, 0), *d, argBool(info, 2)) : at::all(argTensor(info, 0)));
})

// ---------------------------------------------------------------- joining

OP(cat, at::cat(argTensorList(info, 0), argInt(info, 1)))
OP(stack, at::stack(argTensorList(info, 0), argInt(info, 1)))
FN(split, {
  const at::Tensor& t = argTensor(info, 0);
  if (info[1].IsArray()) return wrapList(info.Env(), t.split_with_sizes(argIntList(info, 1), argInt(info, 2)));
  return wrapList(info.Env(), t.split(argInt(info, 1), argInt(info, 2)));
})
FN(chunk, { return wrapList(info.Env(), argTensor(info, 0).chunk(argInt(info, 1), argInt(info, 2))); })

// ---------------------------------------------------------------- in-place (optimisers, init)

#define INPLACE(body)                         \
  {                                           \
    at::Tensor t = argTensor(info, 0);        \
    body;                                     \
    return info.Env().Undefined();            \
  }

FN(add_, INPLACE({
  at::Scalar alpha = info.Length() > 2 && !info[2].IsUndefined() ? argScalar(info, 2) : at::Scalar(1);
  if (isNum(info, 1)) t.add_(argScalar(info, 1), alpha); else t.add_(argTensor(info, 1), alpha);
}))
FN(sub_, INPLACE({
  at::Scalar alpha = info.Length() > 2 && !info[2].IsUndefined() ? argScalar(info, 2) : at::Scalar(1);
  if (isNum(info, 1)) t.sub_(argScalar(info, 1), alpha); else t.sub_(argTensor(info, 1), alpha);
}))
FN(mul_, INPLACE({ if (isNum(info, 1)) t.mul_(argScalar(info, 1)); else t.mul_(argTensor(info, 1)); }))
FN(div_, INPLACE({ if (isNum(info, 1)) t.div_(argScalar(info, 1)); else t.div_(argTensor(info, 1)); }))
FN(addcmul_, INPLACE({ t.addcmul_(argTensor(info, 1), argTensor(info, 2), argScalar(info, 3)); }))
FN(addcdiv_, INPLACE({ t.addcdiv_(argTensor(info, 1), argTensor(info, 2), argScalar(info, 3)); }))
FN(lerp_, INPLACE({ if (isNum(info, 2)) t.lerp_(argTensor(info, 1), argScalar(info, 2)); else t.lerp_(argTensor(info, 1), argTensor(info, 2)); }))
FN(copy_, INPLACE({ t.copy_(argTensor(info, 1)); }))
FN(zero_, INPLACE({ t.zero_(); }))
FN(fill_, INPLACE({ t.fill_(argScalar(info, 1)); }))
FN(clamp_, INPLACE({
  auto lo = argOptDouble(info, 1);
  auto hi = argOptDouble(info, 2);
  t.clamp_(lo ? c10::optional<at::Scalar>(*lo) : c10::nullopt, hi ? c10::optional<at::Scalar>(*hi) : c10::nullopt);
}))
FN(maskedFill_, INPLACE({ t.masked_fill_(argTensor(info, 1), argScalar(info, 2)); }))

void registerMath(Napi::Env env, Napi::Object exports) {
  EXPORT(reshape); EXPORT(view); EXPORT(permute); EXPORT(transpose); EXPORT(expand); EXPORT(narrow); EXPORT(slice);
  EXPORT(select); EXPORT(squeeze); EXPORT(unsqueeze); EXPORT(contiguous); EXPORT(flatten); EXPORT(clone);
  EXPORT(detach); EXPORT(repeat); EXPORT(flip); EXPORT(tril); EXPORT(triu); EXPORT(to);
  EXPORT(gather); EXPORT(scatter); EXPORT(scatterAdd); EXPORT(indexSelect); EXPORT(maskedFill); EXPORT(where);
  EXPORT(argsort); EXPORT(sort); EXPORT(topk); EXPORT(argmax); EXPORT(argmin); EXPORT(indexPut); EXPORT(index);
  EXPORT(nonzero); EXPORT(maskedSelect);
  EXPORT(add); EXPORT(sub); EXPORT(mul); EXPORT(div); EXPORT(pow); EXPORT(remainder); EXPORT(eq); EXPORT(ne);
  EXPORT(lt); EXPORT(le); EXPORT(gt); EXPORT(ge); EXPORT(maximum); EXPORT(minimum); EXPORT(logicalAnd);
  EXPORT(logicalOr); EXPORT(logicalXor); EXPORT(rpow);
  EXPORT(neg); EXPORT(exp); EXPORT(log); EXPORT(log1p); EXPORT(expm1); EXPORT(sqrt); EXPORT(rsqrt); EXPORT(abs);
  EXPORT(sin); EXPORT(cos); EXPORT(tanh); EXPORT(sigmoid); EXPORT(relu); EXPORT(erf); EXPORT(floor); EXPORT(ceil);
  EXPORT(round); EXPORT(reciprocal); EXPORT(sign); EXPORT(square); EXPORT(logicalNot); EXPORT(isnan);
  EXPORT(isfinite); EXPORT(clamp);
  EXPORT(matmul); EXPORT(mm); EXPORT(bmm); EXPORT(linear); EXPORT(outer);
  EXPORT(sum); EXPORT(mean); EXPORT(var); EXPORT(std); EXPORT(maxAll); EXPORT(minAll); EXPORT(maxDim);
  EXPORT(minDim); EXPORT(amax); EXPORT(amin); EXPORT(norm); EXPORT(logsumexp); EXPORT(cumsum); EXPORT(any);
  EXPORT(all);
  EXPORT(cat); EXPORT(stack); EXPORT(split); EXPORT(chunk);
  EXPORT(add_); EXPORT(sub_); EXPORT(mul_); EXPORT(div_); EXPORT(addcmul_); EXPORT(addcdiv_); EXPORT(lerp_);
  EXPORT(copy_); EXPORT(zero_); EXPORT(fill_); EXPORT(clamp_); EXPORT(maskedFill_);
}

}  // namespace semaim
