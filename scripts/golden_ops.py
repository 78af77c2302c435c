#!/usr/bin/python3
"""Golden forward values of the engine's ops, computed by PyTorch (Debian 12: torch 1.13).

Run:  /usr/bin/python3 scripts/golden_ops.py
Writes test/golden/ops/ops.json (deterministic ops) and test/golden/ops/rng.json (seeded random
streams, which only match the same libtorch version). test/torch/ops.test.ts rebuilds every input
from its spec and compares the engine's outputs with these values.

Inputs are never shared as data: each is described by a small spec that both sides evaluate.
  {"kind": "sin", "shape", "a", "b", "s", "o", "dtype"}:
      v[i] = round(s * sin(a * i + b) * 2^20) / 2^20 + o, built in float64 and then cast to dtype
      (the quantisation to multiples of 2^-20 makes both sides' inputs bit-identical even where two
      libm sin()s differ in the last bit).
  {"kind": "int", "shape", "a", "b", "m"}:   v[i] = (a * i + b) mod m, int64.
  {"kind": "bool", "shape", "a", "b", "m"}:  v[i] = ((a * i + b) mod m) != 0.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'ops')
Q = 2.0 ** 20

_phase = [0]


def sin_in(*shape, a=0.37, s=1.0, o=0.0, dtype='float64', b=None):
    """A float input; successive inputs get different phases unless b is given."""
    if b is None:
        _phase[0] += 1
        b = round(0.71 * _phase[0], 6)
    return {'kind': 'sin', 'shape': list(shape), 'a': a, 'b': b, 's': s, 'o': o, 'dtype': dtype}


def pos_in(*shape, **kw):
    """Positive values in [0.5, 1.5]."""
    kw.setdefault('s', 0.5)
    kw.setdefault('o', 1.0)
    return sin_in(*shape, **kw)


def int_in(*shape, a=7, b=3, m=5):
    return {'kind': 'int', 'shape': list(shape), 'a': a, 'b': b, 'm': m}


def bool_in(*shape, a=5, b=1, m=3):
    return {'kind': 'bool', 'shape': list(shape), 'a': a, 'b': b, 'm': m}


def build(spec):
    n = 1
    for d in spec['shape']:
        n *= d
    if spec['kind'] == 'sin':
        i = torch.arange(n, dtype=torch.float64)
        t = i * spec['a']
        t = t + spec['b']
        v = torch.sin(t) * spec['s']
        v = torch.round(v * Q) / Q + spec['o']
        dt = getattr(torch, spec['dtype'])
        return v.reshape(spec['shape']).to(dt)
    if spec['kind'] == 'int':
        return torch.tensor([(spec['a'] * k + spec['b']) % spec['m'] for k in range(n)], dtype=torch.int64).reshape(spec['shape'])
    if spec['kind'] == 'bool':
        return torch.tensor([((spec['a'] * k + spec['b']) % spec['m']) != 0 for k in range(n)], dtype=torch.bool).reshape(spec['shape'])
    raise ValueError(spec)


DTYPE_NAMES = {
    torch.float64: 'float64', torch.float32: 'float32', torch.float16: 'float16', torch.bfloat16: 'bfloat16',
    torch.int64: 'int64', torch.int32: 'int32', torch.int16: 'int16', torch.int8: 'int8', torch.uint8: 'uint8',
    torch.bool: 'bool',
}


def encode(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bool:
        data = [int(v) for v in t.reshape(-1).tolist()]
    elif t.dtype.is_floating_point:
        data = [float(v) for v in t.to(torch.float64).reshape(-1).tolist()]
        for v in data:
            if not math.isfinite(v):
                raise ValueError('non-finite golden value')
    else:
        data = [int(v) for v in t.reshape(-1).tolist()]
    return {'shape': list(t.shape), 'dtype': DTYPE_NAMES[t.dtype], 'data': data}


CASES = {}


def case(name, inputs, fn, atol=1e-6, rtol=0.0):
    assert name not in CASES, name
    xs = [build(s) for s in inputs]
    out = fn(*xs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    CASES[name] = {'inputs': inputs, 'outputs': [encode(o) for o in outs], 'atol': atol, 'rtol': rtol}


def attention_math(q, k, v, mask=None, causal=False, scale=None):
    """The explicit definition: softmax(q kᵀ · scale + mask) v; causal is top-left aligned."""
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = torch.matmul(q, k.transpose(-2, -1)) * scale
    if causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        s = s.masked_fill(~keep, float('-inf'))
    if mask is not None:
        if mask.dtype == torch.bool:
            s = s.masked_fill(~mask, float('-inf'))
        else:
            s = s + mask
    return torch.matmul(torch.softmax(s, -1), v)


def deterministic_cases():
    # ------------------------------------------------------------ elementwise
    case('add_broadcast', [sin_in(3, 4), sin_in(4)], lambda a, b: a + b)
    case('add_alpha', [sin_in(3, 4), sin_in(3, 1)], lambda a, b: torch.add(a, b, alpha=2.5))
    case('add_scalar', [sin_in(3, 4)], lambda a: a + 1.5)
    case('sub_broadcast', [sin_in(2, 1, 4), sin_in(3, 1)], lambda a, b: a - b)
    case('sub_alpha', [sin_in(3, 4), sin_in(4)], lambda a, b: torch.sub(a, b, alpha=0.5))
    case('sub_scalar', [sin_in(3, 4)], lambda a: a - 3)
    case('rsub_scalar', [sin_in(3, 4)], lambda a: 2 - a)
    case('mul_broadcast', [sin_in(3, 1), sin_in(1, 4)], lambda a, b: a * b)
    case('mul_scalar', [sin_in(3, 4)], lambda a: a * -1.75)
    case('div_broadcast', [sin_in(3, 4), pos_in(4)], lambda a, b: a / b)
    case('div_scalar', [sin_in(3, 4)], lambda a: a / 0.3)
    case('pow_scalar', [pos_in(3, 4)], lambda a: a ** 2.5)
    case('pow_tensor', [pos_in(3, 4), sin_in(4)], lambda a, b: a ** b)
    case('remainder', [sin_in(3, 4, s=3.0)], lambda a: torch.remainder(a, 0.7))
    case('neg', [sin_in(5)], lambda a: -a)
    case('exp', [sin_in(3, 4, s=2.0)], torch.exp)
    case('log', [pos_in(3, 4)], torch.log)
    case('sqrt', [pos_in(3, 4)], torch.sqrt)
    case('rsqrt', [pos_in(3, 4)], torch.rsqrt)
    case('abs', [sin_in(3, 4)], torch.abs)
    case('sigmoid', [sin_in(3, 4, s=3.0)], torch.sigmoid)
    case('tanh', [sin_in(3, 4, s=2.0)], torch.tanh)
    case('relu', [sin_in(3, 4)], torch.relu)
    case('erf', [sin_in(3, 4, s=2.0)], torch.erf)
    case('sin_cos', [sin_in(3, 4, s=3.0)], lambda a: (torch.sin(a), torch.cos(a)))
    case('log1p_expm1', [pos_in(3, 4)], lambda a: (torch.log1p(a), torch.expm1(a)))
    case('floor_ceil_round', [sin_in(3, 4, s=5.0)], lambda a: (torch.floor(a), torch.ceil(a), torch.round(a)))
    case('reciprocal_sign_square', [sin_in(3, 4)], lambda a: (torch.reciprocal(a), torch.sign(a), torch.square(a)))
    case('clamp_both', [sin_in(3, 4, s=2.0)], lambda a: torch.clamp(a, -0.5, 0.7))
    case('clamp_min', [sin_in(3, 4, s=2.0)], lambda a: torch.clamp(a, min=-0.5))
    case('clamp_max', [sin_in(3, 4, s=2.0)], lambda a: torch.clamp(a, max=0.7))
    case('maximum_minimum', [sin_in(3, 4), sin_in(4)], lambda a, b: (torch.maximum(a, b), torch.minimum(a, b)))
    case('compare', [sin_in(3, 4), sin_in(4)], lambda a, b: (a.eq(a), a.ne(b), a.lt(b), a.le(b), a.gt(b), a.ge(0.1)))
    case('logical', [bool_in(3, 4), bool_in(3, 4, a=3, b=2, m=4)],
         lambda a, b: (a.logical_and(b), a.logical_or(b), a.logical_xor(b), a.logical_not()))
    case('where', [bool_in(3, 4), sin_in(3, 4), sin_in(4)], lambda c, a, b: torch.where(c, a, b))
    case('where_scalar', [bool_in(3, 4), sin_in(3, 4)], lambda c, a: torch.where(c, a, 0.5))

    # ------------------------------------------------------------ linear algebra
    case('matmul_2d', [sin_in(3, 4), sin_in(4, 5)], torch.matmul)
    case('matmul_batched_broadcast', [sin_in(2, 3, 4), sin_in(4, 5)], torch.matmul)
    case('matmul_4d_3d', [sin_in(2, 1, 3, 4), sin_in(3, 4, 2)], torch.matmul)
    case('matmul_vec_mat', [sin_in(4), sin_in(4, 3)], torch.matmul)
    case('matmul_mat_vec', [sin_in(3, 4), sin_in(4)], torch.matmul)
    case('mm', [sin_in(2, 3), sin_in(3, 4)], torch.mm)
    case('bmm', [sin_in(2, 3, 4), sin_in(2, 4, 5)], torch.bmm)
    case('linear_bias', [sin_in(2, 3, 4), sin_in(5, 4), sin_in(5)], F.linear)
    case('linear_nobias', [sin_in(3, 4), sin_in(2, 4)], lambda x, w: F.linear(x, w))
    case('outer', [sin_in(3), sin_in(4)], torch.outer)
    case('matmul_f32', [sin_in(16, 32, dtype='float32'), sin_in(32, 8, dtype='float32')], torch.matmul, atol=1e-5, rtol=1e-5)

    # ------------------------------------------------------------ reductions
    x345 = lambda: sin_in(3, 4, 5)  # noqa: E731
    case('sum_all', [x345()], lambda a: a.sum())
    case('sum_dim', [x345()], lambda a: a.sum(1))
    case('sum_dims_keepdim', [x345()], lambda a: a.sum([0, 2], keepdim=True))
    case('sum_int_dtype', [int_in(3, 4)], lambda a: (a.sum(), a.sum(1, dtype=torch.float64)))
    case('mean_all', [x345()], lambda a: a.mean())
    case('mean_dims', [x345()], lambda a: a.mean([1, 2]))
    case('mean_keepdim', [x345()], lambda a: a.mean(0, keepdim=True))
    case('var_all', [x345()], lambda a: a.var())
    case('var_dim', [x345()], lambda a: a.var(1))
    case('var_dims_biased_keepdim', [x345()], lambda a: a.var([0, 2], unbiased=False, keepdim=True))
    case('std_all', [x345()], lambda a: a.std())
    case('std_dim', [x345()], lambda a: a.std(2))
    case('std_dims_biased', [x345()], lambda a: a.std([0, 1], unbiased=False))
    case('max_min_all', [x345()], lambda a: (a.max(), a.min()))
    case('max_dim', [x345()], lambda a: tuple(torch.max(a, 2)))
    case('min_dim_keepdim', [x345()], lambda a: tuple(torch.min(a, 0, keepdim=True)))
    case('amax_amin', [x345()], lambda a: (a.amax([0, 2]), a.amin(1, keepdim=True)))
    case('norm_2_all', [x345()], lambda a: a.norm())
    case('norm_2_dim', [x345()], lambda a: a.norm(2, 1))
    case('norm_1_dims', [x345()], lambda a: a.norm(1, [0, 2]))
    case('norm_3_keepdim', [x345()], lambda a: a.norm(3, -1, keepdim=True))
    case('logsumexp', [x345()], lambda a: torch.logsumexp(a, 1))
    case('cumsum', [x345()], lambda a: torch.cumsum(a, 2))
    case('argmax_argmin', [x345()], lambda a: (a.argmax(), a.argmax(1), a.argmin(2, keepdim=True)))
    case('sort', [sin_in(3, 6)], lambda a: tuple(torch.sort(a, -1)))
    case('sort_descending_dim0', [sin_in(4, 3)], lambda a: tuple(torch.sort(a, 0, descending=True)))
    case('argsort', [sin_in(3, 6)], lambda a: (torch.argsort(a, -1), torch.argsort(a, 0, descending=True)))
    case('topk', [sin_in(3, 6)], lambda a: tuple(torch.topk(a, 3, -1)))
    case('topk_smallest_dim0', [sin_in(5, 3)], lambda a: tuple(torch.topk(a, 2, 0, largest=False)))
    case('any_all', [bool_in(3, 4)], lambda a: (a.any(), a.all(), a.any(1), a.all(0)))

    # ------------------------------------------------------------ nn functions
    case('softmax_last', [sin_in(3, 4, 5, s=2.0)], lambda a: torch.softmax(a, -1))
    case('softmax_dim0', [sin_in(3, 4, 5, s=2.0)], lambda a: torch.softmax(a, 0))
    case('log_softmax', [sin_in(3, 4, 5, s=2.0)], lambda a: torch.log_softmax(a, 1))
    case('softmax_f32', [sin_in(4, 50, s=4.0, dtype='float32')], lambda a: torch.softmax(a, -1), atol=1e-6, rtol=1e-5)
    case('layer_norm_affine', [sin_in(2, 3, 6, s=2.0), pos_in(6), sin_in(6)], lambda x, w, b: F.layer_norm(x, [6], w, b))
    case('layer_norm_plain_eps', [sin_in(2, 3, 6, s=2.0)], lambda x: F.layer_norm(x, [3, 6], eps=1e-6))
    case('layer_norm_f32', [sin_in(8, 64, s=2.0, dtype='float32'), pos_in(64, dtype='float32'), sin_in(64, dtype='float32')],
         lambda x, w, b: F.layer_norm(x, [64], w, b), atol=1e-5, rtol=1e-5)

    def bn_train(x, w, b):
        rm = torch.zeros(3, dtype=torch.float64)
        rv = torch.ones(3, dtype=torch.float64)
        y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
        return y, rm, rv
    case('batch_norm_train', [sin_in(4, 3, 2, 2, s=2.0), pos_in(3), sin_in(3)], bn_train)
    case('batch_norm_eval', [sin_in(4, 3, 2, 2, s=2.0), sin_in(3, s=0.5), pos_in(3), pos_in(3), sin_in(3)],
         lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5))
    case('batch_norm_1d_train', [sin_in(5, 3)], lambda x: F.batch_norm(x, None, None, training=True))
    case('gelu_exact', [sin_in(4, 6, s=3.0)], lambda x: F.gelu(x))
    case('gelu_tanh', [sin_in(4, 6, s=3.0)], lambda x: F.gelu(x, approximate='tanh'))
    case('gelu_f32', [sin_in(4, 6, s=3.0, dtype='float32')], lambda x: (F.gelu(x), F.gelu(x, approximate='tanh')), atol=1e-6, rtol=1e-6)
    case('conv2d_plain', [sin_in(2, 4, 6, 6), sin_in(3, 4, 3, 3)], lambda x, w: F.conv2d(x, w))
    case('conv2d_stride_pad_bias', [sin_in(2, 4, 6, 6), sin_in(3, 4, 3, 3), sin_in(3)],
         lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1))
    case('conv2d_groups', [sin_in(2, 4, 6, 6), sin_in(4, 2, 3, 3), sin_in(4)], lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2))
    case('conv2d_depthwise', [sin_in(2, 4, 6, 6), sin_in(4, 1, 3, 3)], lambda x, w: F.conv2d(x, w, groups=4))
    case('conv2d_rect_dilation', [sin_in(2, 4, 6, 6), sin_in(2, 4, 2, 3)],
         lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(0, 2), dilation=2))
    case('conv2d_patchify_f32', [sin_in(2, 3, 16, 16, dtype='float32'), sin_in(8, 3, 4, 4, dtype='float32'), sin_in(8, dtype='float32')],
         lambda x, w, b: F.conv2d(x, w, b, stride=4), atol=1e-5, rtol=1e-5)
    case('avg_pool2d', [sin_in(2, 3, 6, 6)], lambda x: F.avg_pool2d(x, 2))
    case('avg_pool2d_stride_pad', [sin_in(2, 3, 6, 6)], lambda x: F.avg_pool2d(x, 3, stride=2, padding=1))
    case('avg_pool2d_noinclude_ceil', [sin_in(2, 3, 7, 7)],
         lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False))
    case('max_pool2d', [sin_in(2, 3, 6, 6)], lambda x: F.max_pool2d(x, 2))
    case('max_pool2d_stride_pad', [sin_in(2, 3, 6, 6)], lambda x: F.max_pool2d(x, 3, stride=2, padding=1))
    case('max_pool2d_dilation_ceil', [sin_in(2, 3, 7, 7)], lambda x: F.max_pool2d(x, 2, stride=2, dilation=2, ceil_mode=True))
    case('adaptive_avg_pool2d', [sin_in(2, 3, 7, 6)], lambda x: F.adaptive_avg_pool2d(x, (4, 3)))
    case('interp_nearest', [sin_in(1, 2, 4, 5)], lambda x: F.interpolate(x, size=(8, 7), mode='nearest'))
    case('interp_bilinear_up', [sin_in(1, 2, 4, 5)], lambda x: F.interpolate(x, size=(7, 8), mode='bilinear', align_corners=False))
    case('interp_bilinear_down', [sin_in(1, 2, 4, 5)], lambda x: F.interpolate(x, size=(3, 2), mode='bilinear', align_corners=False))
    case('interp_bilinear_align', [sin_in(1, 2, 4, 5)], lambda x: F.interpolate(x, size=(6, 9), mode='bilinear', align_corners=True))
    case('interp_bicubic_up', [sin_in(1, 2, 4, 5)], lambda x: F.interpolate(x, size=(7, 8), mode='bicubic', align_corners=False))
    case('interp_bicubic_align', [sin_in(1, 2, 4, 5)], lambda x: F.interpolate(x, size=(3, 3), mode='bicubic', align_corners=True))
    case('interp_area', [sin_in(1, 2, 6, 6)], lambda x: F.interpolate(x, size=(4, 3), mode='area'))
    case('pad_constant', [sin_in(2, 3, 4)], lambda x: F.pad(x, (1, 2, 0, 1), value=0.5))
    case('ce_indices', [sin_in(5, 4, s=2.0), int_in(5, a=3, b=1, m=4)], lambda x, t: F.cross_entropy(x, t))
    case('ce_indices_sum', [sin_in(5, 4, s=2.0), int_in(5, a=3, b=1, m=4)], lambda x, t: F.cross_entropy(x, t, reduction='sum'))
    case('ce_indices_none', [sin_in(5, 4, s=2.0), int_in(5, a=3, b=1, m=4)], lambda x, t: F.cross_entropy(x, t, reduction='none'))
    case('ce_label_smoothing', [sin_in(5, 4, s=2.0), int_in(5, a=3, b=1, m=4)], lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1))
    case('ce_weight_smoothing', [sin_in(5, 4, s=2.0), int_in(5, a=3, b=1, m=4), pos_in(4)],
         lambda x, t, w: F.cross_entropy(x, t, weight=w, label_smoothing=0.2))
    case('ce_weight', [sin_in(5, 4, s=2.0), int_in(5, a=3, b=1, m=4), pos_in(4)], lambda x, t, w: F.cross_entropy(x, t, weight=w))
    case('ce_ignore_index', [sin_in(5, 4, s=2.0), int_in(5, a=3, b=1, m=4)], lambda x, t: F.cross_entropy(x, t, ignore_index=1))
    case('ce_kdim', [sin_in(2, 4, 3, s=2.0), int_in(2, 3, a=3, b=1, m=4)], lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1))
    case('ce_probs', [sin_in(5, 4, s=2.0), sin_in(5, 4)], lambda x, p: F.cross_entropy(x, torch.softmax(p, -1)))
    case('ce_probs_smoothing', [sin_in(5, 4, s=2.0), sin_in(5, 4)], lambda x, p: F.cross_entropy(x, torch.softmax(p, -1), label_smoothing=0.1))
    case('ce_probs_none', [sin_in(5, 4, s=2.0), sin_in(5, 4)], lambda x, p: F.cross_entropy(x, torch.softmax(p, -1), reduction='none'))
    case('mse_loss', [sin_in(4, 5), sin_in(4, 5)], lambda a, b: (F.mse_loss(a, b), F.mse_loss(a, b, reduction='sum'), F.mse_loss(a, b, reduction='none')))
    case('cosine_similarity', [sin_in(4, 5), sin_in(4, 5)], lambda a, b: (F.cosine_similarity(a, b), F.cosine_similarity(a, b, dim=0)))
    case('cosine_similarity_broadcast', [sin_in(3, 4, 5), sin_in(4, 5)], lambda a, b: F.cosine_similarity(a, b, dim=-1))
    case('normalize', [sin_in(4, 5)], lambda a: F.normalize(a, dim=-1))
    case('one_hot', [int_in(6, a=3, b=1, m=4)], lambda t: F.one_hot(t, 5))

    # ------------------------------------------------------------ joining, indexing, views
    case('cat', [sin_in(2, 3), sin_in(2, 1), sin_in(2, 2)], lambda a, b, c: torch.cat([a, b, c], 1))
    case('stack', [sin_in(2, 3), sin_in(2, 3)], lambda a, b: (torch.stack([a, b]), torch.stack([a, b], -1)))
    case('split_size', [sin_in(3, 5)], lambda a: tuple(torch.split(a, 2, 1)))
    case('split_sizes', [sin_in(4, 3)], lambda a: tuple(torch.split(a, [1, 3], 0)))
    case('chunk', [sin_in(2, 7)], lambda a: tuple(torch.chunk(a, 3, 1)))
    case('gather', [sin_in(3, 5), int_in(3, 4, a=7, b=3, m=5)], lambda a, i: torch.gather(a, 1, i))
    case('scatter', [sin_in(3, 5), sin_in(2, 4)],
         lambda a, s: torch.scatter(a, 1, torch.tensor([[4, 0, 2, 1], [3, 1, 0, 2]]), s))
    case('scatter_add', [sin_in(3, 5), int_in(2, 4, a=3, b=1, m=5), sin_in(2, 4)], lambda a, i, s: torch.scatter_add(a, 1, i, s))
    case('index_select', [sin_in(3, 5), int_in(4, a=2, b=1, m=5)], lambda a, i: torch.index_select(a, 1, i))
    case('index_advanced', [sin_in(3, 5), int_in(4, a=2, b=1, m=3)], lambda a, i: a[i])
    case('index_put', [sin_in(4, 3), sin_in(2, 3)],
         lambda a, v: (a.index_put((torch.tensor([2, 0]),), v), a.index_put((torch.tensor([1, 1]),), v, accumulate=True)))
    case('masked_fill', [sin_in(3, 5), bool_in(3, 5)], lambda a, m: a.masked_fill(m, -2.5))
    case('masked_fill_broadcast', [sin_in(2, 3, 5), bool_in(3, 5)], lambda a, m: a.masked_fill(m, 0))
    case('masked_select_nonzero', [sin_in(3, 5), bool_in(3, 5)], lambda a, m: (a.masked_select(m), m.nonzero()))
    case('tril_triu', [sin_in(4, 5)], lambda a: (a.tril(), a.triu(1), a.tril(-1)))
    case('flip_repeat', [sin_in(2, 3)], lambda a: (a.flip(0, 1), a.repeat(2, 3)))
    case('views', [sin_in(2, 3, 4)], lambda a: (
        a.reshape(4, 6), a.view(6, 4), a.permute(2, 0, 1), a.transpose(0, 2), a[:, :, 1:3], a[:, :, ::2], a[:, -2:],
        a.narrow(1, 1, 2), a.select(1, 2), a.flatten(1), a.unsqueeze(1), a.transpose(-2, -1)))
    case('expand_squeeze', [sin_in(3, 1), sin_in(1, 3, 1, 4)], lambda a, b: (a.expand(2, 3, 5), b.squeeze(), b.squeeze(2)))

    # ------------------------------------------------------------ attention
    B, H, E = 2, 2, 4
    case('sdpa_plain', [sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E)], attention_math)
    case('sdpa_plain_lq_ne_lk', [sin_in(B, H, 3, E, s=2.0), sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E)], attention_math)
    case('sdpa_causal', [sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E)],
         lambda q, k, v: attention_math(q, k, v, causal=True))
    case('sdpa_causal_lq_lt_lk', [sin_in(B, H, 3, E, s=2.0), sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E)],
         lambda q, k, v: attention_math(q, k, v, causal=True))
    case('sdpa_causal_lq_gt_lk', [sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 3, E, s=2.0), sin_in(B, H, 3, E)],
         lambda q, k, v: attention_math(q, k, v, causal=True))
    case('sdpa_bool_mask', [sin_in(B, H, 3, E, s=2.0), sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E), bool_in(3, 5, a=5, b=1, m=3)],
         lambda q, k, v, m: attention_math(q, k, v, mask=m))
    case('sdpa_float_mask', [sin_in(B, H, 3, E, s=2.0), sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E), sin_in(3, 5)],
         lambda q, k, v, m: attention_math(q, k, v, mask=m))
    case('sdpa_scale', [sin_in(B, H, 3, E, s=2.0), sin_in(B, H, 5, E, s=2.0), sin_in(B, H, 5, E)],
         lambda q, k, v: attention_math(q, k, v, scale=0.3))
    case('sdpa_f32', [sin_in(2, 6, 16, 32, dtype='float32'), sin_in(2, 6, 16, 32, dtype='float32'), sin_in(2, 6, 16, 32, dtype='float32')],
         lambda q, k, v: attention_math(q, k, v, causal=True), atol=1e-5, rtol=1e-5)

    # ------------------------------------------------------------ edge semantics (the outputs' dtypes are compared too)
    # type promotion: int op float, int / int (true division), bool arithmetic, Python-int scalars, half types
    case('promote_int_float', [int_in(3, 4), sin_in(3, 4, dtype='float32')], lambda a, b: (a + b, a * b, a - b))
    case('promote_int_true_div', [int_in(3, 4), int_in(3, 4, a=3, b=1, m=4)], lambda a, b: (a / (b + 1), a / 2, a.remainder(-3)))
    case('promote_int_scalars', [int_in(3, 4)], lambda a: (a * 2, a + 1.5, a - 7, 2 - a, a.pow(2), a.clamp(1, 3)))
    case('promote_bool', [bool_in(3, 4), bool_in(3, 4, a=3, b=2, m=4), int_in(3, 4)], lambda a, b, c: (a + b, a * b, a * c, a * 2, a.sum()))
    case('promote_half', [sin_in(3, 4, dtype='float16'), sin_in(3, 4, dtype='float32'), sin_in(3, 4, dtype='bfloat16')],
         lambda h, f, bf: (h + f, h + bf, h * 2.5, bf - 1), atol=1e-2)
    case('promote_where_int_scalar', [bool_in(3, 4), int_in(3, 4)], lambda c, a: (torch.where(c, a, 7), torch.where(c, a, 0.5)))
    # reductions with negative dims, dim lists and keepdim; empty tensors (sum is 0, cumsum/amax of an empty dim)
    case('reduce_negative_dims', [sin_in(3, 4, 5)],
         lambda a: (a.sum([-1, 0]), a.mean(-2, keepdim=True), a.amax([-1, -3]), a.var(-1), a.logsumexp(-1), a.norm(2, [-2, -1], keepdim=True)))
    case('reduce_empty', [sin_in(3, 0)], lambda a: (a.sum(), a.sum(1), a.sum(0), a.cumsum(1), a.amax(0), a.norm(), a.logsumexp(0)))
    # ties: argmax/argmin and max(dim) give the first index, stable argsort keeps index order, topk on ties
    case('ties_argmax_argmin', [int_in(4, 6, a=5, b=2, m=3)],
         lambda a: (a.argmax(), a.argmax(1), a.argmin(1), torch.max(a, 1)[1], torch.min(a, 0)[1]))
    case('ties_argsort_stable', [int_in(3, 8, a=5, b=2, m=3)],
         lambda a: (torch.argsort(a, stable=True, dim=-1), torch.argsort(a, stable=True, dim=0, descending=True)))
    case('ties_topk', [sin_in(2, 6, a=0.0, b=0.4), int_in(2, 6, a=5, b=2, m=3)],
         lambda c, a: (tuple(torch.topk(a.double(), 3))[0], torch.topk(c, 2)[0]))
    # indexing along negative dims
    case('index_negative_dims', [sin_in(3, 5), int_in(3, 4, a=7, b=3, m=5), int_in(2, a=1, b=1, m=3)],
         lambda a, i, j: (torch.gather(a, -1, i), torch.index_select(a, -2, j), a.select(-1, -2), a.narrow(-1, -3, 2)))
    # cross entropy with label smoothing, ignore_index and class weights together
    case('ce_ignore_smoothing_weight', [sin_in(6, 4, s=2.0), int_in(6, a=3, b=1, m=4), pos_in(4)],
         lambda x, t, w: tuple(F.cross_entropy(x, t, weight=w, ignore_index=2, label_smoothing=0.15, reduction=r) for r in ('mean', 'sum', 'none')))
    case('ce_kdim_ignore_smoothing_weight', [sin_in(2, 4, 3, s=2.0), int_in(2, 3, a=3, b=1, m=4), pos_in(4)],
         lambda x, t, w: F.cross_entropy(x, t, weight=w, ignore_index=0, label_smoothing=0.25))
    case('clamp_masked_fill_broadcast', [sin_in(3, 4), bool_in(4)], lambda a, m: (a.clamp(min=0.3, max=-0.2), a.masked_fill(m, -2.5)))

    # ------------------------------------------------------------ gradients (PyTorch's, of sum(out * w) for a fixed w)
    def grad_of(fn, n_wrt):
        def g(*xs):
            ins = [x.detach().requires_grad_(True) if k < n_wrt else x for k, x in enumerate(xs[:-1])]
            (fn(*ins) * xs[-1]).sum().backward()
            return tuple(ins[k].grad for k in range(n_wrt))
        return g

    case('grad_ce_ignore_smoothing_weight', [sin_in(6, 4, s=2.0), int_in(6, a=3, b=1, m=4), pos_in(4), sin_in()],
         grad_of(lambda x, t, w: F.cross_entropy(x, t, weight=w, ignore_index=2, label_smoothing=0.15), 1))
    case('grad_ce_probs_smoothing', [sin_in(5, 4, s=2.0), sin_in(5, 4), sin_in()],
         grad_of(lambda x, p: F.cross_entropy(x, torch.softmax(p, -1), label_smoothing=0.1), 1))
    case('grad_layer_norm', [sin_in(2, 3, 6), pos_in(6), sin_in(6), sin_in(2, 3, 6)],
         grad_of(lambda x, w, b: F.layer_norm(x, [6], w, b, 1e-5), 3))
    case('grad_gelu', [sin_in(3, 4, s=3.0), sin_in(3, 4, s=3.0), sin_in(3, 4)],
         grad_of(lambda a, b: F.gelu(a) + F.gelu(b, approximate='tanh'), 2))
    case('grad_softmax_log_softmax', [sin_in(3, 5, s=2.0), sin_in(3, 5)], grad_of(lambda a: torch.softmax(a, 0) + torch.log_softmax(a, -1), 1))
    # ties: max() and amax split the gradient evenly among the tied maxima, max(dim) gives it to the first
    case('grad_max_ties', [sin_in(2, 5, a=0.0, b=0.9), sin_in()], grad_of(lambda a: a.max(), 1))
    case('grad_amax_ties', [sin_in(2, 5, a=0.0, b=0.9), sin_in(2)], grad_of(lambda a: a.amax(1), 1))
    case('grad_max_dim_ties', [sin_in(2, 5, a=0.0, b=0.9), sin_in(2)], grad_of(lambda a: torch.max(a, 1)[0], 1))
    case('grad_clamp_bounds_norm', [sin_in(3, 4), sin_in(3, 4)], grad_of(lambda a: a.clamp(-0.5, 0.5) + a.norm(), 1))
    case('grad_where_masked_fill_broadcast', [sin_in(3, 4), sin_in(4), bool_in(3, 4), sin_in(3, 4)],
         grad_of(lambda a, b, c: torch.where(c, a, b) + a.masked_fill(c, 1.5), 2))
    case('grad_interpolate', [sin_in(1, 2, 3, 4), sin_in(1, 2, 5, 7)],
         grad_of(lambda x: F.interpolate(x, size=(5, 7), mode='bilinear', align_corners=True)
                 + F.interpolate(x, size=(5, 7), mode='bicubic', align_corners=False)
                 + F.interpolate(x, size=(5, 7), mode='nearest'), 1))
    case('grad_normalize_cosine', [sin_in(3, 4), sin_in(3, 4), sin_in(3, 4)],
         grad_of(lambda a, b: F.normalize(a, dim=1) * F.cosine_similarity(a, b, dim=1).unsqueeze(1), 2))
    case('grad_sdpa_mask', [sin_in(1, 2, 3, 4, s=2.0), sin_in(1, 2, 5, 4, s=2.0), sin_in(1, 2, 5, 4), bool_in(3, 5, a=5, b=1, m=3), sin_in(1, 2, 3, 4)],
         grad_of(lambda q, k, v, m: attention_math(q, k, v, mask=m), 3))


def rng_cases():
    """Seeded random streams: the engine and PyTorch share libtorch's CPU generator (mt19937)."""
    out = {}

    def put(name, t):
        out[name] = encode(t)

    torch.manual_seed(0)
    put('randn_seed0_5', torch.randn(5, dtype=torch.float64))
    torch.manual_seed(0)
    put('randn_seed0_40_f32', torch.randn(40))
    torch.manual_seed(123)
    put('rand_seed123_3x4', torch.rand(3, 4, dtype=torch.float64))
    g = torch.Generator().manual_seed(42)
    put('generator42_randn_6', torch.randn(6, generator=g, dtype=torch.float64))
    put('generator42_rand_6_next', torch.rand(6, generator=g, dtype=torch.float64))
    torch.manual_seed(7)
    put('randint_seed7', torch.randint(0, 10, (8,)))
    torch.manual_seed(7)
    put('randperm_seed7', torch.randperm(10))
    torch.manual_seed(1234)
    x = build(sin_in(6, 8, b=0.5))
    put('dropout_seed1234_p04', F.dropout(x, 0.4, training=True))
    return {'input': sin_in(6, 8, b=0.5), 'values': out}


def main():
    torch.set_num_threads(1)
    deterministic_cases()
    os.makedirs(OUT_DIR, exist_ok=True)
    meta = {'torch': torch.__version__, 'generator': 'scripts/golden_ops.py'}
    with open(os.path.join(OUT_DIR, 'ops.json'), 'w') as f:
        json.dump({**meta, 'cases': CASES}, f, separators=(',', ':'))
        f.write('\n')
    with open(os.path.join(OUT_DIR, 'rng.json'), 'w') as f:
        json.dump({**meta, **rng_cases()}, f, separators=(',', ':'))
        f.write('\n')
    print(f'wrote {len(CASES)} op cases and the rng streams to {os.path.relpath(OUT_DIR)} (torch {torch.__version__})', file=sys.stderr)


if __name__ == '__main__':
    main()
