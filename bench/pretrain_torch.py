#!/usr/bin/python3
"""The PyTorch side of `npm run bench:pretrain` (bench/pretrain.ts runs it with /usr/bin/python3).

The same SemAIM model and the same training step as src/train/pretrain.ts, written as ordinary
PyTorch from docs/METHOD.md §2-5:
  * ViT encoder: P x P stride-P conv patch embedding, [CLS], fixed 2-D sin-cos position embedding,
    timm-style pre-norm blocks (fused qkv, LayerNorm eps 1e-6, exact GELU, MLP ratio 4);
  * decoder: L' cross-attention blocks (separate q/k/v/proj, the same norm1 on both streams), block k
    reading the encoder stream after block floor((k+1)L/L'); queries = position embeddings;
  * shared final `norm`, then the head MLP D -> 4D -> P*P*3;
  * pixel targets: 9x9 sigma-1 Gaussian blur (zero padding, depthwise conv), patchify, per-patch norm;
  * semantic order, every step: no-grad unmasked eval pass, S = softmax(cos(z_cls, z_i)), 3x3 mean filter
    (avg_pool2d, count_include_pad=False), argmax, distance + 0.01 U(0,1);
  * fast path: tokens / queries / targets gathered into order (argsort + gather), causal attention.
    On CPU (and on torch < 2.0) attention is the explicit math path of our libtorch 1.13 build:
    q@k^T * scale, masked_fill(~tril, -inf), softmax, @v. On CUDA with torch >= 2.0 it is
    F.scaled_dot_product_attention (flash / memory-efficient) and the forward and the similarity pass
    run under bf16 autocast (S itself in float32), as src/train/pretrain.ts does with --precision bf16;
  * AdamW(betas 0.9/0.95, wd 0.05, none on 1-D params / biases / cls_token), clip_grad_norm_ 3,
    zero_grad(set_to_none=True).

Prints one JSON object: ms/step (median of the measured steps after warm-up), img/s, phase medians
(order / forward / backward / optimizer), peak RSS (VmHWM of /proc/self/status) and, on CUDA, peak
allocated GPU memory.

  /usr/bin/python3 bench/pretrain_torch.py --preset vit_tiny --img 32 --patch 4 --decoder-depth 12 \
      --batch 64 --warmup 2 --steps 10 --threads 2 [--device cuda] [--phases] [--count-ops]
      [--embed-dim D --depth L --heads H] [--order semantic|raster|stochastic] [--no-blur]
      [--kernel-profile STEPS [--kernel-profile-out FILE.md]]   (CUDA: GPU time by kernel and kernel family)
(the last line as bench/pretrain_worker.ts: the order ablation's small model and recipe; raster and
stochastic run no similarity pass)
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import PRESETS, load_init, proc_status, add_common_args, bench_images, run_and_summarise  # noqa: E402

LN_EPS = 1e-6
USE_SDPA = False  # set in main(): CUDA with torch >= 2.0


# --------------------------------------------------------------------------- fixed pieces

def sincos_pos_embed(D, gh, gw):
    """[1, 1 + gh*gw, D], MAE layout: first D/2 channels the column, second D/2 the row; CLS zeros."""
    def one_d(dim, pos):
        omega = 1.0 / 10000.0 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
        out = pos.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], 1)
    rows = torch.arange(gh).repeat_interleave(gw)
    cols = torch.arange(gw).repeat(gh)
    emb = torch.cat([one_d(D // 2, cols), one_d(D // 2, rows)], 1)
    return torch.cat([torch.zeros(1, D, dtype=torch.float64), emb], 0).unsqueeze(0).float()


def gaussian_kernel(k, sigma, channels):
    c = (k - 1) / 2.0
    i = torch.arange(k, dtype=torch.float64)
    g = torch.exp(-(((i - c) ** 2).reshape(-1, 1) + ((i - c) ** 2).reshape(1, -1)) / (2 * sigma ** 2))
    return (g / g.sum()).float().reshape(1, 1, k, k).repeat(channels, 1, 1, 1)


def attention(q, k, v, causal):
    if USE_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-2, -1)) * scale
    if causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float('-inf'))
    return scores.softmax(-1) @ v


# --------------------------------------------------------------------------- model

class Mlp(nn.Module):
    def __init__(self, dim, hidden, out=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, causal):
        B, T, D = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(attention(q, k, v, causal).transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x, causal=False):
        x = x + self.attn(self.norm1(x), causal)
        return x + self.mlp(self.norm2(x))


class CrossAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, g, h, causal):
        B, T, D = g.shape
        S = h.shape[1]
        split = lambda x, n: x.reshape(B, n, self.heads, D // self.heads).transpose(1, 2)  # noqa: E731
        o = attention(split(self.q(g), T), split(self.k(h), S), split(self.v(h), S), causal)
        return self.proj(o.transpose(1, 2).reshape(B, T, D))


class DecoderBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, g, h, causal=True):
        g = g + self.attn(self.norm1(g), self.norm1(h), causal)
        return g + self.mlp(self.norm2(g))


class SemAIM(nn.Module):
    def __init__(self, img, patch, dim, depth, heads, decoder_depth, mlp_ratio=4, blur=True):
        super().__init__()
        self.blur = blur
        self.P, self.D = patch, dim
        self.grid = img // patch
        self.N = self.grid * self.grid
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer('pos_embed', sincos_pos_embed(dim, self.grid, self.grid))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.taps = [((k + 1) * depth) // decoder_depth for k in range(decoder_depth)]
        self.query_blocks = nn.ModuleList([DecoderBlock(dim, heads, mlp_ratio) for _ in self.taps])
        self.prediction_head = Mlp(dim, dim * mlp_ratio, patch * patch * 3)
        self.register_buffer('blur_weight', gaussian_kernel(9, 1.0, 3))

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.data.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        return self

    def embed(self, images):
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        return x + self.pos_embed[:, 1:]

    def cls_tokens(self, B):
        return (self.cls_token + self.pos_embed[:, :1]).expand(B, 1, self.D)

    def forward_features(self, images):
        x = torch.cat([self.cls_tokens(images.shape[0]), self.embed(images)], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    @torch.no_grad()
    def semantic_order(self, images, generator, lam=0.01, noise=None):
        was = self.training
        self.eval()
        z = F.normalize(self.forward_features(images).float(), dim=-1)  # the map in float32 under autocast
        self.train(was)
        B, N, g = images.shape[0], self.N, self.grid
        S = (z[:, 1:] * z[:, :1]).sum(-1).softmax(1)
        S = F.avg_pool2d(S.reshape(B, 1, g, g), 3, stride=1, padding=1, count_include_pad=False).reshape(B, N)
        c = S.argmax(1).float()
        idx = torch.arange(N, dtype=torch.float32, device=images.device)
        rows, cols = (idx / g).floor(), idx.remainder(g)
        cy, cx = (c / g).floor().unsqueeze(1), c.remainder(g).unsqueeze(1)
        d = ((cy - rows) ** 2 + (cx - cols) ** 2).sqrt()
        if noise is None:
            noise = torch.rand(B, N, generator=generator, device=images.device) if images.device.type == 'cpu' \
                else torch.rand(B, N, generator=generator, device='cpu').to(images.device)
        return d + lam * noise.to(d.dtype)

    @torch.no_grad()
    def targets(self, images):
        with torch.autocast(images.device.type, enabled=False):  # float32 targets under autocast, as semaim
            x = F.conv2d(images, self.blur_weight, None, padding=4, groups=3) if self.blur else images
            B, C, H, W = x.shape
            h, P = H // self.P, self.P
            t = x.reshape(B, C, h, P, h, P).permute(0, 2, 4, 3, 5, 1).reshape(B, h * h, P * P * C)
            mean = t.mean(-1, keepdim=True)
            var = t.var(-1, unbiased=True, keepdim=True)
            return (t - mean) / (var + 1e-6).sqrt()

    def forward(self, images, order):
        B, N, D = images.shape[0], self.N, self.D
        target = self.targets(images)
        ids = order.argsort(1)
        ids_d = ids.unsqueeze(-1).expand(B, N, D)
        h = torch.cat([self.cls_tokens(B), self.embed(images).gather(1, ids_d)], 1)
        g = self.pos_embed[:, 1:].expand(B, N, D).gather(1, ids_d)
        k = 0
        for i, blk in enumerate(self.blocks):
            h = blk(h, causal=True)
            while k < len(self.taps) and self.taps[k] == i + 1:
                g = self.query_blocks[k](g, h[:, :N], causal=True)
                k += 1
        pred = self.prediction_head(self.norm(g))
        t = target.gather(1, ids.unsqueeze(-1).expand(B, N, target.shape[-1]))
        loss_sorted = (pred.float() - t).square().mean(-1)
        patch_loss = torch.zeros(B, N, device=images.device, dtype=loss_sorted.dtype).scatter(1, ids, loss_sorted)  # row-major, as returned
        return patch_loss.mean(), patch_loss


# --------------------------------------------------------------------------- bench

# Kernel families of a step's GPU time (issue 19's per-kernel measurement: where eager time goes), by
# substrings of kernel names; shared with bench/kernel-profile.ts, which profiles semaim's own step.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'kernel-families.json')) as _f:
    KERNEL_FAMILIES = [(family, tuple(keys)) for family, keys in json.load(_f)['families']]


def kernel_family(name):
    for family, keys in KERNEL_FAMILIES:
        if any(k in name for k in keys):
            return family
    return 'other'


def kernel_profile(fn, steps, out_file):
    """GPU kernel time of `steps` calls of fn (whole training steps) by kernel and by family, from the
    profiler's CUDA activity (CUPTI); written as Markdown to out_file and returned as a dict."""
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
    kernels = {}
    for e in prof.events():
        if str(getattr(e, 'device_type', '')).endswith('CUDA') and e.time_range is not None:
            k = kernels.setdefault(e.name, [0.0, 0])
            k[0] += e.time_range.elapsed_us() / 1e3 / steps
            k[1] += 1
    total = sum(v[0] for v in kernels.values())
    families = {}
    for name, (ms, n) in kernels.items():
        f = families.setdefault(kernel_family(name), [0.0, 0])
        f[0] += ms
        f[1] += n / steps
    ops = []
    averages = prof.key_averages()
    attr = 'self_device_time_total' if hasattr(averages[0], 'self_device_time_total') else 'self_cuda_time_total'
    for e in sorted(averages, key=lambda e: -getattr(e, attr))[:25]:
        if getattr(e, attr) > 0:
            ops.append((e.key, getattr(e, attr) / 1e3 / steps, e.count / steps))
    lines = [f'GPU kernel time per step: {total:.1f} ms over {sum(v[1] for v in kernels.values()) / steps:.0f} kernel launches '
             f'(PyTorch profiler, CUDA activity, mean of {steps} steps).', '',
             '| family | ms/step | share | launches/step |', '|---|---:|---:|---:|']
    for fam, (ms, n) in sorted(families.items(), key=lambda kv: -kv[1][0]):
        lines.append(f'| {fam} | {ms:.1f} | {100 * ms / max(total, 1e-9):.1f}% | {n:.0f} |')
    lines += ['', '| kernel (top 30 by time) | family | ms/step | launches/step |', '|---|---|---:|---:|']
    for name, (ms, n) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:30]:
        short = name if len(name) <= 110 else name[:107] + '...'
        lines.append(f'| `{short.replace("|", "/")}` | {kernel_family(name)} | {ms:.2f} | {n / steps:.0f} |')
    lines += ['', '| ATen op (top 25 by self GPU time) | ms/step | calls/step |', '|---|---:|---:|']
    for key, ms, n in ops:
        lines.append(f'| `{key}` | {ms:.2f} | {n:.0f} |')
    text = '\n'.join(lines) + '\n'
    if out_file:
        with open(out_file, 'w') as f:
            f.write(text)
    print(text, file=sys.stderr)
    return {'gpuMsPerStep': total, 'families': {k: v[0] for k, v in families.items()}}


def count_aten_ops(fn):
    """Number of ATen ops dispatched by fn (forward and backward), via the profiler."""
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts = {}
    for e in prof.events():
        if e.name.startswith('aten::'):
            counts[e.name] = counts.get(e.name, 0) + 1
    return counts


def main():
    global USE_SDPA
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument('--count-ops', action='store_true', help='count ATen ops of one step with the profiler')
    ap.add_argument('--embed-dim', type=int, default=None, help='override the preset width')
    ap.add_argument('--depth', type=int, default=None, help='override the preset depth')
    ap.add_argument('--heads', type=int, default=None, help='override the preset heads')
    ap.add_argument('--order', default='semantic', choices=['semantic', 'raster', 'stochastic'])
    ap.add_argument('--no-blur', action='store_true', help='pixel targets without the 9x9 blur')
    ap.add_argument('--kernel-profile', type=int, default=0, metavar='STEPS',
                    help='CUDA: after the measured steps, profile this many steps by kernel (PyTorch profiler)')
    ap.add_argument('--kernel-profile-out', default=None, help='write the kernel profile (Markdown) to this file')
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cuda = dev.type == 'cuda'
    if cuda:
        torch.backends.cudnn.benchmark = True  # as semaim does on a GPU (src/train/cudnn-autotune.ts)
    USE_SDPA = cuda and hasattr(F, 'scaled_dot_product_attention')
    phases = (not cuda) or a.phases
    verbose = a.verbose
    sync = (lambda: torch.cuda.synchronize()) if cuda else (lambda: None)

    D, depth, heads = PRESETS[a.preset]
    D, depth, heads = a.embed_dim or D, a.depth or depth, a.heads or heads
    model = SemAIM(a.img, a.patch, D, depth, heads, a.decoder_depth, blur=not a.no_blur).init_weights()
    extra = {}
    if a.init_weights:
        extra = load_init(model, a.init_weights)
    model.to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith('.bias') or name in ('cls_token', 'pos_embed') else decay).append(p)
    lr = 2e-4 * a.batch / 256
    opt = torch.optim.AdamW([{'params': no_decay, 'weight_decay': 0.0}, {'params': decay, 'weight_decay': 0.05}],
                            lr=lr, betas=(0.9, 0.95))
    gen = torch.Generator(device='cpu')
    gen.manual_seed(a.seed + 7919)
    images = bench_images(a, extra, dev)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    autocast = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if cuda else None

    shared_noise = extra.get('data.noise')  # [K, B, N]: the same order noise on every side
    if shared_noise is not None:
        shared_noise = shared_noise.to(dev)  # once, not a host-to-device copy per step
    done = [0]

    def step(times=None):
        sync()
        c0 = time.process_time()
        t0 = time.perf_counter()
        for gr in opt.param_groups:
            gr['lr'] = lr
        noise = None if shared_noise is None else shared_noise[done[0] % shared_noise.shape[0]]
        done[0] += 1
        if a.order == 'raster':
            order = torch.arange(model.N, dtype=torch.float32, device=dev).expand(images.shape[0], model.N)
        elif a.order == 'stochastic':
            order = torch.rand(images.shape[0], model.N, generator=gen).to(dev)
        elif autocast:  # the similarity pass in bf16 too, as semaim's --order-precision same
            with autocast():
                order = model.semantic_order(images, gen, noise=noise)
        else:
            order = model.semantic_order(images, gen, noise=noise)
        if phases:
            sync()
        t1 = time.perf_counter()
        if autocast:
            with autocast():
                loss, _ = model(images, order)
        else:
            loss, _ = model(images, order)
        if phases:
            sync()
        t2 = time.perf_counter()
        loss.backward()
        if phases:
            sync()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t4 = time.perf_counter()
        c4 = time.process_time()
        if times is not None:
            times.append((t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, c4 - c0))
        if verbose:
            print(f'step: {(t4 - t0) * 1e3:.0f} ms (cpu {(c4 - c0) * 1e3:.0f}; order {(t1 - t0) * 1e3:.0f}, fwd {(t2 - t1) * 1e3:.0f}, '
                  f'bwd {(t3 - t2) * 1e3:.0f}, opt {(t4 - t3) * 1e3:.0f}), RSS {proc_status("VmRSS") / 2**20:.0f} MiB, '
                  f'HWM {proc_status("VmHWM") / 2**20:.0f} MiB', file=sys.stderr)
        return loss.item()

    out = run_and_summarise(step, a, 'pytorch', n_params, phases, cuda)
    out['sdpa'] = USE_SDPA
    out.update({'embedDim': D, 'depth': depth, 'numHeads': heads, 'order': a.order, 'blur': not a.no_blur})
    if a.kernel_profile and cuda:
        out['kernelProfile'] = kernel_profile(lambda: step(), a.kernel_profile, a.kernel_profile_out)
    if a.count_ops:
        counts = count_aten_ops(lambda: step())
        out['atenOps'] = sum(counts.values())
        out['atenOpsByName'] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    print(json.dumps(out))


if __name__ == '__main__':
    main()
