"""Reference values for the settings the default golden cases (golden_semaim.py) leave out.

Float64, an independent PyTorch rebuild from docs/METHOD.md and the authors' code ([A] models/models_semaim.py
forward_encoder, calculate_attention_cls/gap; engines/engine_pretrain.py calculate_similarity; util/blocks.py
GaussianConv2d): the similarity maps S of --similarity-tokens cls, gap and self, the teacher's min-max map, the
similarity order 1 - S, the multicenter order (docs/METHOD.md section 3.4) with and without the 3x3 filter, and one
loss with its gradients at --no-norm-pix --blur-kernel 5 --blur-sigma 0.7 --decoder-depth 1, raster order, patch 4 on
32x32 images. Writes test/golden/orders/case.safetensors, read by test/semaim/orders-golden.test.ts.
Run: /usr/bin/python3 scripts/golden_orders.py
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_semaim as gs  # noqa: E402  (the parameter initialisation and the safetensors I/O only)

DT = torch.float64
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "golden", "orders")
IMG, P, D, H, DEPTH, B = 32, 4, 16, 2, 2, 2
G = IMG // P
N = G * G
BLUR_K, BLUR_S = 5, 0.7
MC = {"k": 3, "minRelHeight": 0.5, "minDistance": 2, "lambda": 0.01}


def lin(t, n, x):
    return F.linear(x, t[n + ".weight"], t[n + ".bias"])


def ln(t, n, x):
    return F.layer_norm(x, (D,), t[n + ".weight"], t[n + ".bias"], 1e-6)


def mlp(t, n, x):
    return lin(t, n + ".fc2", F.gelu(lin(t, n + ".fc1", x)))


def heads(x):
    b, T, _ = x.shape
    return x.reshape(b, T, H, D // H).transpose(1, 2)


def attn_probs(t, n, x, mask=None):
    b, T, _ = x.shape
    qkv = lin(t, n + ".qkv", x).reshape(b, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
    s = qkv[0] @ qkv[1].transpose(-2, -1) / math.sqrt(D // H)
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf)
    return s.softmax(-1), qkv[2]


def block(t, n, x, mask=None):
    p, v = attn_probs(t, n + ".attn", ln(t, n + ".norm1", x), mask)
    x = x + lin(t, n + ".attn.proj", (p @ v).transpose(1, 2).reshape(x.shape))
    return x + mlp(t, n + ".mlp", ln(t, n + ".norm2", x))


def embed(t, imgs):
    pe = t["pos_embed"]
    x = F.conv2d(imgs, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=P).flatten(2).transpose(1, 2)
    return torch.cat([(t["cls_token"] + pe[:, :1]).expand(imgs.shape[0], -1, -1), x + pe[:, 1:]], 1)


def similarity_maps(t, imgs):
    """[A] forward_encoder: unmasked pass; 'self' from the last block's attention, cls/gap from the normed tokens."""
    x = embed(t, imgs)
    for i in range(DEPTH - 1):
        x = block(t, f"blocks.{i}", x)
    p, _ = attn_probs(t, f"blocks.{DEPTH - 1}.attn", ln(t, f"blocks.{DEPTH - 1}.norm1", x))
    s_self = p.mean(1)[:, 0, 1:]
    z = ln(t, "norm", block(t, f"blocks.{DEPTH - 1}", x))
    zn = F.normalize(z, dim=-1)
    cos = (zn[:, :1] * zn[:, 1:]).sum(-1)
    gap = F.normalize(z[:, 1:].mean(1, keepdim=True), dim=-1)
    lo, hi = cos.min(1, keepdim=True)[0], cos.max(1, keepdim=True)[0]
    return {"cls": cos.softmax(1), "gap": (gap * zn[:, 1:]).sum(-1).softmax(1), "self": s_self,
            "minmax": (cos - lo) / (hi - lo)}


def multicenter(S, use_filter, noise):
    """docs/METHOD.md section 3.4, one image at a time with plain Python loops."""
    rows = [i // G for i in range(N)]
    cols = [i % G for i in range(N)]
    out, centers = [], []
    for b in range(S.shape[0]):
        s = S[b].reshape(G, G)
        if use_filter:  # 3x3 mean over the in-grid neighbours
            s = torch.stack([torch.stack([s[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].mean() for c in range(G)])
                             for r in range(G)])
        v = s.reshape(N).tolist()
        peaks = [i for i in range(N) if all(v[i] >= v[j] for j in range(N)
                                            if abs(rows[i] - rows[j]) <= 1 and abs(cols[i] - cols[j]) <= 1)]
        peaks.sort(key=lambda i: (-v[i], i))
        peaks = peaks[:MC["k"]]
        # no near-ties where the ranking or the height threshold decides
        heights = [v[i] for i in peaks]
        assert all(a - b2 > 1e-6 * abs(a) for a, b2 in zip(heights, heights[1:])), heights
        assert all(abs(h - MC["minRelHeight"] * heights[0]) > 1e-6 * abs(heights[0]) for h in heights)
        kept = []
        for i in peaks:
            if i != peaks[0] and v[i] < MC["minRelHeight"] * v[peaks[0]]:
                continue
            if any(math.hypot(rows[i] - rows[j], cols[i] - cols[j]) < MC["minDistance"] for j in kept):
                continue
            kept.append(i)
        d = [min(math.hypot(rows[i] - rows[c], cols[i] - cols[c]) for c in kept) for i in range(N)]
        out.append(torch.tensor(d, dtype=DT) + MC["lambda"] * noise[b])
        centers.append(kept)
    return torch.stack(out), centers


def pixel_loss(t, imgs):
    """Raster order, decoder depth 1 (reads the encoder after its last block), blur 5 / 0.7, no norm-pix."""
    pos = torch.stack(torch.meshgrid([torch.arange(BLUR_K), torch.arange(BLUR_K)], indexing="ij"), -1).to(DT)
    k = torch.exp(-((pos - (BLUR_K - 1) // 2) ** 2 / BLUR_S ** 2).sum(-1) / 2)
    k = k / k.sum()
    blurred = F.conv2d(imgs, k.view(1, 1, BLUR_K, BLUR_K).repeat(3, 1, 1, 1), groups=3, padding=BLUR_K // 2)
    target = blurred.reshape(B, 3, G, P, G, P).permute(0, 2, 4, 3, 5, 1).reshape(B, N, P * P * 3)
    enc = torch.ones(N + 1, N + 1, dtype=torch.bool).tril()  # raster: patch i sees patches <= i, [CLS] only itself
    dec = torch.ones(N, N + 1, dtype=torch.bool).tril()  # query i sees [CLS] and patches < i
    h = embed(t, imgs)
    for i in range(DEPTH):
        h = block(t, f"blocks.{i}", h, enc)
    g = t["pos_embed"][:, 1:].expand(B, -1, -1)
    n = "query_blocks.0"
    qn, kn = ln(t, n + ".norm1", g), ln(t, n + ".norm1", h)
    q, kk, v = heads(lin(t, n + ".attn.q", qn)), heads(lin(t, n + ".attn.k", kn)), heads(lin(t, n + ".attn.v", kn))
    a = (q @ kk.transpose(-2, -1) / math.sqrt(D // H)).masked_fill(~dec, -math.inf).softmax(-1)
    g = g + lin(t, n + ".attn.proj", (a @ v).transpose(1, 2).reshape(B, N, D))
    g = g + mlp(t, n + ".mlp", ln(t, n + ".norm2", g))
    pred = mlp(t, "prediction_head", ln(t, "norm", g))
    return ((pred - target) ** 2).mean(), pred, target


def main():
    torch.manual_seed(2026)
    cfg = gs.base_cfg(img=IMG, P=P, D=D, depth=DEPTH, heads=H, dec=1)
    p = gs.make_model(cfg)
    imgs = torch.randn(B, 3, IMG, IMG, dtype=DT)
    noise = torch.rand(B, N, dtype=DT)
    tensors = dict(p)
    tensors["input.images"] = imgs
    tensors["input.noise"] = noise
    summary = {}
    with torch.no_grad():
        S = similarity_maps(p, imgs)
    for name, s in S.items():
        tensors["expect.S." + name] = s
    for tokens in ("cls", "self"):
        tensors[f"expect.similarity_order.{tokens}"] = 1 - S[tokens]
        for use_filter in (True, False):
            order, centers = multicenter(S[tokens], use_filter, noise)
            key = f"{tokens}.{'filter' if use_filter else 'nofilter'}"
            tensors["expect.multicenter." + key] = order
            summary[key] = centers
    params = {k: v.clone().requires_grad_(k != "pos_embed") for k, v in p.items()}
    loss, pred, target = pixel_loss(params, imgs)
    loss.backward()
    tensors["expect.loss"] = loss.detach().reshape(())
    tensors["expect.pred"] = pred.detach()
    tensors["expect.target"] = target
    for k, v in params.items():
        if v.grad is not None:
            tensors["grad." + k] = v.grad
    meta = {"config": json.dumps({"imgSize": IMG, "patchSize": P, "embedDim": D, "depth": DEPTH, "numHeads": H,
                                  "decoderDepth": 1, "blurKernel": BLUR_K, "blurSigma": BLUR_S, "multicenter": MC,
                                  "centers": summary}, separators=(",", ":")),
            "generator": "scripts/golden_orders.py (PyTorch %s, float64)" % torch.__version__.split("a")[0]}
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "case.safetensors")
    gs.write_safetensors(path, tensors, meta)
    print(f"loss={float(loss):.17g} centers={summary} bytes={os.path.getsize(path)}")


if __name__ == "__main__":
    main()
