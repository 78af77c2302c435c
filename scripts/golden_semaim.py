#!/usr/bin/env python3
"""Independent PyTorch reference for SemAIM (docs/METHOD.md §2-5) and the golden files under test/golden/semaim/.

Written from the method description only (now docs/METHOD.md; not from src/semaim), in float64, with explicit additive -inf
masks in the original token order. Self-checks before writing anything:
  * explicit-mask attention == a naive per-query loop (each query softmaxes over its visible keys only),
  * explicit-mask attention == the "tokens gathered into order + causal mask" path of docs/METHOD.md §4.2,
  * the masks element by element against their definitions, and the pos-embed, blur and patchify
    against hand-written loops.

Regenerate: /usr/bin/python3 scripts/golden_semaim.py      (deterministic: same bytes on every run)
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.set_num_threads(1)  # byte-identical reruns
torch.use_deterministic_algorithms(True)
DT = torch.float64
LN_EPS = 1e-6
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "golden", "semaim")


# The safetensors reader and writer of the benchmark references (stdlib only; I/O, not SemAIM math).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from bench_common import read_safetensors, write_safetensors  # noqa: E402


# --------------------------------------------------------------------------- fixed pieces

def sincos_1d(dim, pos):
    """dim channels: [sin(pos*omega), cos(pos*omega)], omega_i = 1/10000^(i/(dim/2))."""
    assert dim % 2 == 0
    omega = torch.arange(dim // 2, dtype=DT) / (dim / 2.0)
    omega = 1.0 / (10000.0 ** omega)
    out = pos.reshape(-1, 1).to(DT) * omega.reshape(1, -1)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def pos_embed_2d(D, gh, gw):
    """[1, 1 + gh*gw, D]; first D/2 channels encode the column, second D/2 the row; CLS row zero."""
    assert D % 4 == 0
    rows = torch.arange(gh).repeat_interleave(gw)  # token n = r*gw + c
    cols = torch.arange(gw).repeat(gh)
    emb = torch.cat([sincos_1d(D // 2, cols), sincos_1d(D // 2, rows)], dim=1)
    return torch.cat([torch.zeros(1, D, dtype=DT), emb], dim=0).unsqueeze(0)


def pos_embed_2d_loop(D, gh, gw):
    pe = torch.zeros(1 + gh * gw, D, dtype=DT)
    q = D // 4
    for r in range(gh):
        for c in range(gw):
            n = 1 + r * gw + c
            for i in range(q):
                om = 1.0 / 10000.0 ** (i / q)
                pe[n, i] = math.sin(c * om)
                pe[n, q + i] = math.cos(c * om)
                pe[n, 2 * q + i] = math.sin(r * om)
                pe[n, 3 * q + i] = math.cos(r * om)
    return pe.unsqueeze(0)


def gaussian_kernel(k=9, sigma=1.0):
    c = (k - 1) / 2.0
    i = torch.arange(k, dtype=DT)
    g = torch.exp(-(((i - c) ** 2).reshape(-1, 1) + ((i - c) ** 2).reshape(1, -1)) / (2 * sigma ** 2))
    return g / g.sum()


def blur(imgs, k=9, sigma=1.0):
    C = imgs.shape[1]
    w = gaussian_kernel(k, sigma).reshape(1, 1, k, k).repeat(C, 1, 1, 1)
    return F.conv2d(imgs, w, bias=None, stride=1, padding=(k - 1) // 2, groups=C)


def blur_loop(imgs, k=9, sigma=1.0):
    ker = gaussian_kernel(k, sigma)
    B, C, H, W = imgs.shape
    r = (k - 1) // 2
    pad = torch.zeros(B, C, H + 2 * r, W + 2 * r, dtype=DT)
    pad[:, :, r:r + H, r:r + W] = imgs
    out = torch.zeros_like(imgs)
    for a in range(k):
        for b in range(k):
            out += ker[a, b] * pad[:, :, a:a + H, b:b + W]
    return out


def patchify(imgs, P):
    B, C, H, W = imgs.shape
    h, w = H // P, W // P
    x = imgs.reshape(B, C, h, P, w, P)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(B, h * w, P * P * C)


def patchify_loop(imgs, P):
    B, C, H, W = imgs.shape
    h, w = H // P, W // P
    out = torch.zeros(B, h * w, P * P * C, dtype=DT)
    for n in range(h * w):
        r, c = divmod(n, w)
        for p in range(P):
            for q in range(P):
                for ch in range(C):
                    out[:, n, (p * P + q) * C + ch] = imgs[:, ch, r * P + p, c * P + q]
    return out


# --------------------------------------------------------------------------- parameters

def xavier(out_f, in_f):
    bound = math.sqrt(6.0 / (in_f + out_f))
    return (torch.rand(out_f, in_f, dtype=DT) * 2 - 1) * bound


def rand_bias(n):
    return 0.05 * torch.randn(n, dtype=DT)


def add_linear(p, name, in_f, out_f):
    p[name + ".weight"] = xavier(out_f, in_f)
    p[name + ".bias"] = rand_bias(out_f)


def add_ln(p, name, d):
    p[name + ".weight"] = 1.0 + 0.1 * torch.randn(d, dtype=DT)
    p[name + ".bias"] = 0.05 * torch.randn(d, dtype=DT)


def make_encoder(p, prefix, img, P, D, depth, mlp_ratio=4):
    g = img // P
    w = xavier(D, 3 * P * P).reshape(D, 3, P, P)  # xavier on the [D, 3*P*P] view (MAE)
    p[prefix + "patch_embed.proj.weight"] = w
    p[prefix + "patch_embed.proj.bias"] = rand_bias(D)
    p[prefix + "cls_token"] = 0.2 * torch.randn(1, 1, D, dtype=DT)  # larger than 0.02 so it matters
    p[prefix + "pos_embed"] = pos_embed_2d(D, g, g)
    for i in range(depth):
        b = f"{prefix}blocks.{i}."
        add_ln(p, b + "norm1", D)
        add_linear(p, b + "attn.qkv", D, 3 * D)
        add_linear(p, b + "attn.proj", D, D)
        add_ln(p, b + "norm2", D)
        add_linear(p, b + "mlp.fc1", D, mlp_ratio * D)
        add_linear(p, b + "mlp.fc2", mlp_ratio * D, D)
    add_ln(p, prefix + "norm", D)


def make_model(cfg, teacher_cfg=None):
    p = {}
    D = cfg["embedDim"]
    make_encoder(p, "", cfg["imgSize"], cfg["patchSize"], D, cfg["depth"], cfg["mlpRatio"])
    for k in range(cfg["decoderDepth"]):
        b = f"query_blocks.{k}."
        add_ln(p, b + "norm1", D)
        for n in ("q", "k", "v", "proj"):
            add_linear(p, b + "attn." + n, D, D)
        add_ln(p, b + "norm2", D)
        add_linear(p, b + "mlp.fc1", D, cfg["mlpRatio"] * D)
        add_linear(p, b + "mlp.fc2", cfg["mlpRatio"] * D, D)
    add_linear(p, "prediction_head.fc1", D, cfg["mlpRatio"] * D)
    add_linear(p, "prediction_head.fc2", cfg["mlpRatio"] * D, out_dim(cfg))
    if teacher_cfg is not None:
        make_encoder(p, "teacher.", teacher_cfg["imgSize"], teacher_cfg["patchSize"], teacher_cfg["embedDim"],
                     teacher_cfg["depth"], teacher_cfg["mlpRatio"])
    return p


def out_dim(cfg):
    if cfg["target"]["type"] == "pixel":
        return cfg["patchSize"] ** 2 * 3
    return cfg["teacher"]["embedDim"]


# --------------------------------------------------------------------------- layers

def linear(p, name, x):
    return F.linear(x, p[name + ".weight"], p[name + ".bias"])


def ln(p, name, x):
    return F.layer_norm(x, (x.shape[-1],), p[name + ".weight"], p[name + ".bias"], LN_EPS)


def mlp(p, name, x):
    return linear(p, name + ".fc2", F.gelu(linear(p, name + ".fc1", x)))  # exact (erf) GELU


def attend_masked(q, k, v, mask):
    """q [B,H,Tq,hd], k/v [B,H,Tk,hd], mask [B,Tq,Tk] additive (0 / -inf) or None."""
    a = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if mask is not None:
        a = a + mask.unsqueeze(1)
    return a.softmax(dim=-1) @ v


def attend_loop(q, k, v, visible):
    """Naive: for every query, softmax over exactly the keys it may see. visible [B,Tq,Tk] bool."""
    B, H, Tq, hd = q.shape
    rows = []
    for b in range(B):
        heads = []
        for h in range(H):
            outs = []
            for i in range(Tq):
                idx = torch.nonzero(visible[b, i]).flatten()
                kk, vv = k[b, h, idx], v[b, h, idx]
                s = (kk @ q[b, h, i]) / math.sqrt(hd)
                w = torch.exp(s - s.max())
                outs.append((w / w.sum()) @ vv)
            heads.append(torch.stack(outs))
        rows.append(torch.stack(heads))
    return torch.stack(rows)


def additive(visible):
    m = torch.zeros(visible.shape, dtype=DT)
    return m.masked_fill(~visible, float("-inf"))


def encoder_visible(order):
    """[B, N+1, N+1]: patch i sees patch j iff p_j <= p_i; everyone sees CLS; CLS sees only itself."""
    B, N = order.shape
    vis = torch.zeros(B, N + 1, N + 1, dtype=torch.bool)
    vis[:, :, 0] = True
    vis[:, 1:, 1:] = order.unsqueeze(1) <= order.unsqueeze(2)  # [b, i, j] = p_j <= p_i
    return vis


def decoder_visible(order):
    """[B, N, N+1]: query i sees patch key j iff p_j < p_i, and CLS."""
    B, N = order.shape
    vis = torch.zeros(B, N, N + 1, dtype=torch.bool)
    vis[:, :, 0] = True
    vis[:, :, 1:] = order.unsqueeze(1) < order.unsqueeze(2)
    return vis


def run_attention(q, k, v, visible, mode):
    if mode == "mask":
        return attend_masked(q, k, v, None if visible is None else additive(visible))
    if mode == "loop":
        if visible is None:
            visible = torch.ones(q.shape[0], q.shape[2], k.shape[2], dtype=torch.bool)
        return attend_loop(q, k, v, visible)
    raise ValueError(mode)


def self_attn(p, name, x, heads, visible, mode):
    B, T, D = x.shape
    hd = D // heads
    qkv = linear(p, name + ".qkv", x).reshape(B, T, 3, heads, hd).permute(2, 0, 3, 1, 4)
    o = run_attention(qkv[0], qkv[1], qkv[2], visible, mode)
    return linear(p, name + ".proj", o.transpose(1, 2).reshape(B, T, D))


def cross_attn(p, name, xq, xkv, heads, visible, mode):
    B, Tq, D = xq.shape
    Tk = xkv.shape[1]
    hd = D // heads
    q = linear(p, name + ".q", xq).reshape(B, Tq, heads, hd).transpose(1, 2)
    k = linear(p, name + ".k", xkv).reshape(B, Tk, heads, hd).transpose(1, 2)
    v = linear(p, name + ".v", xkv).reshape(B, Tk, heads, hd).transpose(1, 2)
    o = run_attention(q, k, v, visible, mode)
    return linear(p, name + ".proj", o.transpose(1, 2).reshape(B, Tq, D))


def enc_block(p, name, x, heads, visible, mode):
    x = x + self_attn(p, name + ".attn", ln(p, name + ".norm1", x), heads, visible, mode)
    return x + mlp(p, name + ".mlp", ln(p, name + ".norm2", x))


def dec_block(p, name, g, h, heads, visible, mode):
    g = g + cross_attn(p, name + ".attn", ln(p, name + ".norm1", g), ln(p, name + ".norm1", h), heads, visible, mode)
    return g + mlp(p, name + ".mlp", ln(p, name + ".norm2", g))


def embed(p, prefix, imgs, P):
    x = F.conv2d(imgs, p[prefix + "patch_embed.proj.weight"], p[prefix + "patch_embed.proj.bias"], stride=P)
    x = x.flatten(2).transpose(1, 2)  # [B, N, D], row-major patches
    pe = p[prefix + "pos_embed"]
    cls = (p[prefix + "cls_token"] + pe[:, :1]).expand(x.shape[0], -1, -1)
    return torch.cat([cls, x + pe[:, 1:]], dim=1)


def encoder_unmasked(p, prefix, imgs, P, depth, heads, mode="mask"):
    """All tokens see all tokens; returns tokens after the final `norm`, [B, N+1, D]."""
    h = embed(p, prefix, imgs, P)
    for i in range(depth):
        h = enc_block(p, f"{prefix}blocks.{i}", h, heads, None, mode)
    return ln(p, prefix + "norm", h)


def decoder_taps(L, Lp):
    """1-based count of encoder blocks applied before decoder block k reads h."""
    assert 1 <= Lp <= L
    return [((k + 1) * L) // Lp for k in range(Lp)]


def forward_pred(p, cfg, imgs, order, mode="mask"):
    """Predictions [B, N, out] in original patch order."""
    P, L, Lp, heads = cfg["patchSize"], cfg["depth"], cfg["decoderDepth"], cfg["numHeads"]
    ev = encoder_visible(order)
    dv = decoder_visible(order)
    h = embed(p, "", imgs, P)
    taps = decoder_taps(L, Lp)
    B = imgs.shape[0]
    g = p["pos_embed"][:, 1:].expand(B, -1, -1)
    k = 0
    for i in range(L):
        h = enc_block(p, f"blocks.{i}", h, heads, ev, mode)
        while k < Lp and taps[k] == i + 1:
            g = dec_block(p, f"query_blocks.{k}", g, h, heads, dv, mode)
            k += 1
    assert k == Lp
    g = ln(p, "norm", g)
    return mlp(p, "prediction_head", g)


def forward_pred_permuted(p, cfg, imgs, order):
    """docs/METHOD.md §4.2 fast path: gather patches into order, plain causal masks, scatter the predictions back."""
    P, L, Lp, heads = cfg["patchSize"], cfg["depth"], cfg["decoderDepth"], cfg["numHeads"]
    B, N = order.shape
    perm = torch.argsort(order, dim=1)  # perm[b, t] = patch index predicted t-th
    h = embed(p, "", imgs, P)
    idx = perm.unsqueeze(-1).expand(-1, -1, h.shape[-1])
    h = torch.cat([h[:, :1], torch.gather(h[:, 1:], 1, idx)], dim=1)
    g = torch.gather(p["pos_embed"][:, 1:].expand(B, -1, -1), 1, idx)
    causal = torch.tril(torch.ones(N + 1, N + 1, dtype=torch.bool))
    ev = causal.clone()
    ev[0, :] = False
    ev[0, 0] = True
    ev[:, 0] = True
    dvis = torch.tril(torch.ones(N, N, dtype=torch.bool))  # query t sees keys 0..t of [CLS, p1..pN-1]
    ev, dvis = ev.expand(B, -1, -1), dvis.expand(B, -1, -1)
    taps = decoder_taps(L, Lp)
    k = 0
    for i in range(L):
        h = enc_block(p, f"blocks.{i}", h, heads, ev, "mask")
        while k < Lp and taps[k] == i + 1:
            g = dec_block(p, f"query_blocks.{k}", g, h[:, :N], heads, dvis, "mask")
            k += 1
    pred = mlp(p, "prediction_head", ln(p, "norm", g))
    out = torch.empty_like(pred)
    out.scatter_(1, perm.unsqueeze(-1).expand(-1, -1, pred.shape[-1]), pred)
    return out


def pixel_target(cfg, imgs):
    t = cfg["target"]
    x = blur(imgs, t["blurKernel"], t["blurSigma"]) if t["blur"] else imgs
    x = patchify(x, cfg["patchSize"])
    if t["normPix"]:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=True)
        x = (x - mean) / (var + 1e-6) ** 0.5
    return x


def teacher_target(p, cfg, imgs):
    t = cfg["teacher"]
    with torch.no_grad():
        z = encoder_unmasked(p, "teacher.", imgs, t["patchSize"], t["depth"], t["numHeads"])
    return z[:, 1:]


def loss_from(cfg, pred, target):
    if cfg["target"]["type"] == "pixel":
        patch_loss = ((pred - target) ** 2).mean(dim=-1)
    else:
        patch_loss = ((F.normalize(pred, dim=-1) - F.normalize(target, dim=-1)) ** 2).sum(dim=-1)
    return patch_loss.mean(), patch_loss


# --------------------------------------------------------------------------- orders

def raster_order(gh, gw):
    return torch.arange(gh * gw, dtype=DT)


def snake_order(gh, gw):
    v = torch.zeros(gh, gw, dtype=DT)
    for r in range(gh):
        for c in range(gw):
            v[r, c] = r * gw + (c if r % 2 == 0 else gw - 1 - c)
    return v.flatten()


def similarity(p, cfg, imgs):
    with torch.no_grad():
        z = encoder_unmasked(p, "", imgs, cfg["patchSize"], cfg["depth"], cfg["numHeads"])
        zn = F.normalize(z, dim=-1)
        cos = (zn[:, 1:] * zn[:, :1]).sum(-1)  # [B, N]
        return cos.softmax(dim=-1)


def semantic_order(S, gh, gw, use_filter, lam, noise):
    B = S.shape[0]
    Sm = S.reshape(B, 1, gh, gw)
    if use_filter:
        Sm = F.avg_pool2d(Sm, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    flat = Sm.reshape(B, gh * gw)
    center = torch.argmax(flat, dim=1)
    # margin check: the centre must not depend on the last bits
    top2 = torch.topk(flat, 2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]) / top2[:, 0]
    cy = torch.div(center, gw, rounding_mode="floor").to(DT)
    cx = (center % gw).to(DT)
    ii = torch.arange(gh, dtype=DT).reshape(1, gh, 1)
    jj = torch.arange(gw, dtype=DT).reshape(1, 1, gw)
    dist = torch.sqrt((cy.reshape(B, 1, 1) - ii) ** 2 + (cx.reshape(B, 1, 1) - jj) ** 2)
    order = dist.reshape(B, gh * gw) + lam * noise
    return order, flat, center, margin


# --------------------------------------------------------------------------- cases

def base_cfg(img=16, P=4, D=32, depth=4, heads=4, dec=4):
    return {"imgSize": img, "patchSize": P, "embedDim": D, "depth": depth, "numHeads": heads, "mlpRatio": 4,
            "decoderDepth": dec, "layerNormEps": LN_EPS, "qkvBias": True,
            "target": {"type": "pixel", "normPix": True, "blur": False, "blurKernel": 9, "blurSigma": 1.0},
            "teacher": None, "order": None}


GRADS = ["blocks.0.attn.qkv.weight", "query_blocks.0.attn.q.weight", "patch_embed.proj.weight",
         "prediction_head.fc2.bias"]


def build_case(name, seed):
    torch.manual_seed(seed)
    B = 2
    extra = {}
    if name == "A":
        cfg = base_cfg()
        cfg["order"] = {"type": "stochastic", "source": "input.order"}
    elif name == "B":
        cfg = base_cfg(dec=3)
        cfg["target"]["blur"] = True
        cfg["order"] = {"type": "per-image", "names": ["raster", "snake"], "source": "input.order"}
    elif name in ("C", "D"):
        cfg = base_cfg(img=24, D=16, depth=2, heads=2, dec=2)
        paper = name == "C"
        cfg["order"] = {"type": "semantic", "variant": "paper" if paper else "authors", "filter": paper,
                        "filterKernel": 3, "lambda": 0.01 if paper else 1e-3, "source": "online",
                        "noise": "input.noise"}
    elif name == "E":
        cfg = base_cfg(D=16, depth=2, heads=2, dec=2)
        cfg["target"] = {"type": "feature", "normPix": False, "blur": False, "blurKernel": 9, "blurSigma": 1.0}
        cfg["teacher"] = {"imgSize": 16, "patchSize": 4, "embedDim": 24, "depth": 2, "numHeads": 3,
                          "mlpRatio": 4, "prefix": "teacher."}
        cfg["order"] = {"type": "stochastic", "source": "input.order"}
    else:
        raise ValueError(name)
    cfg["decoderTaps"] = decoder_taps(cfg["depth"], cfg["decoderDepth"])
    p = make_model(cfg, cfg["teacher"])
    img, P = cfg["imgSize"], cfg["patchSize"]
    gh = gw = img // P
    N = gh * gw
    imgs = torch.randn(B, 3, img, img, dtype=DT)
    noise = None
    if name in ("A", "E"):
        order = torch.rand(B, N, dtype=DT)
    elif name == "B":
        order = torch.stack([raster_order(gh, gw), snake_order(gh, gw)])
    else:
        noise = torch.rand(B, N, dtype=DT)
        S = similarity(p, cfg, imgs)
        o = cfg["order"]
        order, filt, center, margin = semantic_order(S, gh, gw, o["filter"], o["lambda"], noise)
        assert float(margin.min()) > 1e-4, f"case {name}: centre near-tie, margin {margin.tolist()}"
        # the noise only shuffles patches within one distance ring
        dist = order - o["lambda"] * noise
        for b in range(B):
            d_sorted = dist[b, torch.argsort(order[b])]
            assert bool((d_sorted[1:] - d_sorted[:-1] >= -1e-12).all())
            assert float(dist[b, center[b]]) == 0.0 and float(filt[b, center[b]]) == float(filt[b].max())
        extra["expect.similarity"] = S
        if o["filter"]:
            extra["expect.similarity_filtered"] = filt
        extra["expect.center"] = center.to(torch.int64)
        extra["_margin"] = margin
    return cfg, p, imgs, order, noise, extra


def compute(cfg, p, imgs, order, mode="mask"):
    params = {k: (v.clone().requires_grad_(not k.startswith("teacher.") and k != "pos_embed")) for k, v in p.items()}
    pred = forward_pred(params, cfg, imgs, order, mode)
    if cfg["target"]["type"] == "pixel":
        target = pixel_target(cfg, imgs)
    else:
        target = teacher_target(params, cfg, imgs)
    loss, patch_loss = loss_from(cfg, pred, target)
    grads = torch.autograd.grad(loss, [params[g] for g in GRADS])
    return loss.detach(), patch_loss.detach(), pred.detach(), target.detach(), dict(zip(GRADS, grads))


def check_all(p, cfg, imgs, order, ref, name):
    """Explicit masks vs naive per-query loop vs permuted causal path (all float64)."""
    loss, patch_loss, pred, target, grads = ref
    l2, pl2, pr2, t2, g2 = compute(cfg, p, imgs, order, mode="loop")
    for a, b, what in [(loss, l2, "loss"), (patch_loss, pl2, "patch_loss"), (pred, pr2, "pred"),
                       (target, t2, "target")] + [(grads[k], g2[k], "grad " + k) for k in GRADS]:
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), f"case {name}: loop vs mask differ on {what}"
    with torch.no_grad():
        pr3 = forward_pred_permuted(p, cfg, imgs, order)
    assert torch.allclose(pred, pr3, rtol=1e-10, atol=1e-12), f"case {name}: permuted causal path differs"
    # docs/METHOD.md §4.1: CLS sees only itself, so the first patch of the order is predicted from an image-independent
    # state: its prediction must not change when the image does.
    with torch.no_grad():
        other = forward_pred(p, cfg, torch.randn(imgs.shape, dtype=DT, generator=torch.Generator().manual_seed(7)),
                             order)
    first = torch.argmin(order, dim=1)
    for b in range(order.shape[0]):
        assert torch.allclose(pred[b, first[b]], other[b, first[b]], rtol=1e-12, atol=1e-13)
        assert not torch.allclose(pred[b], other[b])
    # the masks themselves, element by element
    B, N = order.shape
    ev, dv = encoder_visible(order), decoder_visible(order)
    for b in range(B):
        assert ev[b, 0].tolist() == [True] + [False] * N
        for i in range(N):
            assert ev[b, i + 1, 0] and dv[b, i, 0]
            for j in range(N):
                assert bool(ev[b, i + 1, j + 1]) == (float(order[b, j]) <= float(order[b, i]))
                assert bool(dv[b, i, j + 1]) == (float(order[b, j]) < float(order[b, i]))


def self_checks():
    assert torch.allclose(pos_embed_2d(32, 4, 4), pos_embed_2d_loop(32, 4, 4), rtol=0, atol=1e-14)
    assert torch.allclose(pos_embed_2d(24, 6, 6), pos_embed_2d_loop(24, 6, 6), rtol=0, atol=1e-14)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 12, 8, dtype=DT, generator=g)
    assert torch.allclose(blur(x), blur_loop(x), rtol=0, atol=1e-13)
    assert abs(float(gaussian_kernel().sum()) - 1.0) < 1e-15
    assert torch.equal(patchify(x, 4), patchify_loop(x, 4))
    assert decoder_taps(4, 4) == [1, 2, 3, 4]
    assert decoder_taps(4, 3) == [1, 2, 4]
    assert decoder_taps(6, 3) == [2, 4, 6]
    assert decoder_taps(12, 1) == [12]
    assert snake_order(3, 3).tolist() == [0, 1, 2, 5, 4, 3, 6, 7, 8]
    # unbiased var, as torch.var default
    t = torch.tensor([1.0, 2.0, 4.0], dtype=DT)
    assert abs(float(t.var(unbiased=True)) - 7.0 / 3.0) < 1e-15


def main():
    self_checks()
    os.makedirs(OUT_DIR, exist_ok=True)
    summary = {}
    for seed, name in enumerate(["A", "B", "C", "D", "E"]):
        cfg, p, imgs, order, noise, extra = build_case(name, 1000 + seed)
        ref = compute(cfg, p, imgs, order)
        check_all(p, cfg, imgs, order, ref, name)
        loss, patch_loss, pred, target, grads = ref
        assert torch.allclose(loss, patch_loss.mean())
        tensors = dict(p)
        tensors["input.images"] = imgs
        tensors["input.order"] = order
        if noise is not None:
            tensors["input.noise"] = noise
        tensors["expect.loss"] = loss.reshape(())
        tensors["expect.patch_loss"] = patch_loss
        tensors["expect.pred"] = pred
        tensors["expect.target"] = target
        if cfg["target"]["type"] == "feature":
            tensors["expect.pred_l2"] = F.normalize(pred, dim=-1)
            tensors["expect.target_l2"] = F.normalize(target, dim=-1)
        margin = extra.pop("_margin", None)
        tensors.update(extra)
        for k, g in grads.items():
            tensors["grad." + k] = g
        meta = {"config": json.dumps(cfg, separators=(",", ":")),
                "case": name,
                "generator": "scripts/golden_semaim.py (PyTorch %s, float64, explicit -inf masks)" % torch.__version__.split("a")[0]}
        path = os.path.join(OUT_DIR, f"{name}.safetensors")
        write_safetensors(path, tensors, meta)
        back, meta2 = read_safetensors(path)
        assert set(back) == set(tensors) and meta2["case"] == name
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype and torch.equal(back[k], v.detach()), k
        summary[name] = {"loss": float(loss), "bytes": os.path.getsize(path),
                         "centerMargin": None if margin is None else [float(m) for m in margin],
                         "center": extra["expect.center"].tolist() if "expect.center" in extra else None}
        print(f"{name}: loss={float(loss):.17g} bytes={os.path.getsize(path)}"
              + ("" if margin is None else f" center={extra['expect.center'].tolist()} margin={[round(float(m), 5) for m in margin]}"))
    return summary


if __name__ == "__main__":
    main()
