#!/usr/bin/python3
"""The authors'-style PyTorch reference of `npm run bench:pretrain` (bench/pretrain.ts runs it with
/usr/bin/python3 beside bench/pretrain_torch.py and the TypeScript worker).

Written in the style of the authors' released training code (github skyoux/SemAIM: the AimViT model
with Block_SelfMask / Block_SelfCrossMask and engine_pretrain's loop), not copied from it:
  * tokens stay in image (row-major) order; the order only enters through EXPLICIT additive masks,
    [B, 1, N+1, N+1], built every step with torch.where from full -inf / zero tensors:
      mask_h (encoder): token i sees j iff p_j <= p_i;  mask_g (decoder): i sees j iff p_j < p_i;
      the [CLS] row sees only itself, every token sees [CLS];
  * encoder blocks add mask_h to the attention logits (q k^T * scale += mask; softmax; @ v);
    decoder blocks are cross-attention blocks (separate q/k/v/proj, the same norm1 on both streams)
    over all N+1 encoder tokens with mask_g; the decoder has N+1 queries (the fixed position
    embeddings including the zero [CLS] slot), whose [CLS] row is dropped before the loss;
  * per step, an unmasked no-grad `forward_encoder` pass in eval mode, outside autocast (as the
    authors' engine), which also computes the last block's attention map a second time (the authors'
    `self_attention` output, computed whatever attention_type is); S = softmax over patches of
    cos([CLS], patch) (`calculate_attention_cls`);
  * order `attention_center` (the authors' generate_attention_distance_center_permutation): argmax of
    S, Euclidean distance on the patch grid, + lambda U(0,1). --semantic paper (default, the same
    choice as the TS bench): 3x3 mean filter on S before the argmax and lambda 0.01; --semantic authors:
    no filter, lambda 1e-3;
  * pixel targets: 9x9 sigma-1 Gaussian blur (zero padding), patchify (nchpwq -> nhwpqc), per-patch
    norm with unbiased variance; L2, mean over patches and channels;
  * loss.item() every step; on CUDA torch.cuda.amp.autocast (fp16) around the masked forward and a
    GradScaler: scale(loss).backward(), unscale_, clip_grad_norm_ 3, step, update, zero_grad();
    AdamW (0.9, 0.95), wd 0.05, no decay on 1-D params, biases, cls_token and pos_embed (the set of
    the TS benchmark worker, bench/pretrain_worker.ts; --decay-cls-token gives timm's add_weight_decay
    set of the authors' code, where cls_token is decayed, as semaim's trainer does by default). The
    decay set does not change a step's time: every parameter gets the same AdamW update either way.
Parameter names are the project's (docs/METHOD.md §2.7: timm names for the encoder, query_blocks.{k}.attn.q/k/v/proj,
prediction_head.fc1/fc2, shared `norm`), so --init-weights loads the same safetensors file as the TS
model and bench/pretrain_torch.py. Decoder block k reads the encoder after block (k+1)*L/L' (the
authors' `(i+1) % step == 0` when L' divides L).

  /usr/bin/python3 bench/pretrain_authors.py --preset vit_tiny --img 32 --patch 4 --decoder-depth 12 \
      --batch 64 --warmup 2 --steps 10 --threads 2 [--device cuda] [--phases] [--verbose] \
      [--init-weights FILE.safetensors] [--data-seed S] [--log-losses N] [--semantic paper|authors] \
      [--save-init FILE.safetensors]

Prints one JSON object (the fields of bench/pretrain_torch.py, plus `losses` with --log-losses).
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
from bench_common import (PRESETS, read_safetensors, write_safetensors, load_init,  # noqa: E402,F401
                          add_common_args, bench_images, run_and_summarise)

LN_EPS = 1e-6
SEMANTIC = {'paper': (True, 0.01), 'authors': (False, 1e-3)}


# --------------------------------------------------------------------------- fixed pieces

def sincos_pos_embed(D, grid):
    """[1, 1 + grid^2, D] (MAE layout: first D/2 channels the column, second D/2 the row; [CLS] zeros)."""
    def one_d(dim, pos):
        omega = 1.0 / 10000.0 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
        out = pos.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], 1)
    rows = torch.arange(grid).repeat_interleave(grid)
    cols = torch.arange(grid).repeat(grid)
    emb = torch.cat([one_d(D // 2, cols), one_d(D // 2, rows)], 1)
    return torch.cat([torch.zeros(1, D, dtype=torch.float64), emb], 0).unsqueeze(0).float()


def gaussian_kernel(k, sigma, channels):
    c = (k - 1) // 2
    i = torch.arange(k, dtype=torch.float64)
    g = torch.exp(-(((i - c) ** 2).reshape(-1, 1) + ((i - c) ** 2).reshape(1, -1)) / (2 * sigma ** 2))
    return (g / g.sum()).float().reshape(1, 1, k, k).repeat(channels, 1, 1, 1)


# --------------------------------------------------------------------------- blocks with explicit masks

class Mlp(nn.Module):
    def __init__(self, dim, hidden, out=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SelfMaskAttention(nn.Module):
    """Fused qkv; the additive mask is added to the logits in place (stays fp16 under autocast)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None, return_attention=False):
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = (q @ k.transpose(-2, -1)) * self.scale
        if mask is not None:
            logits += mask
        attn = logits.softmax(dim=-1)
        if return_attention:
            return attn
        return self.proj((attn @ v).transpose(1, 2).reshape(B, T, D))


class SelfMaskBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = SelfMaskAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x, mask=None, return_attention=False):
        if return_attention:
            return self.attn(self.norm1(x), mask, True)
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class CrossMaskAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q, k, v, mask=None):
        B, T, D = q.shape
        S = k.shape[1]
        hd = D // self.heads
        q = self.q(q).reshape(B, T, self.heads, hd).transpose(1, 2)
        k = self.k(k).reshape(B, S, self.heads, hd).transpose(1, 2)
        v = self.v(v).reshape(B, S, self.heads, hd).transpose(1, 2)
        logits = (q @ k.transpose(-2, -1)) * self.scale
        if mask is not None:
            logits += mask
        attn = logits.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, T, D))


class SelfCrossMaskBlock(nn.Module):
    """Decoder block: queries attend to the encoder stream; one norm1 for both streams."""

    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = CrossMaskAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, q, kv, mask=None):
        kv = self.norm1(kv)
        x = q + self.attn(self.norm1(q), kv, kv, mask)
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------- model

class AuthorsSemAIM(nn.Module):
    def __init__(self, img, patch, dim, depth, heads, decoder_depth, mlp_ratio=4, filter_s=True, lam=0.01):
        super().__init__()
        self.P, self.D = patch, dim
        self.grid = img // patch
        self.N = self.grid * self.grid
        self.filter_s, self.lam = filter_s, lam
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # fixed, as the authors' (a Parameter with requires_grad=False; AdamW skips it: no grad)
        self.pos_embed = nn.Parameter(sincos_pos_embed(dim, self.grid), requires_grad=False)
        self.blocks = nn.ModuleList([SelfMaskBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        if depth % decoder_depth == 0:
            step = depth // decoder_depth
            self.taps = [i + 1 for i in range(depth) if (i + 1) % step == 0]
        else:  # the authors' code needs L' | L; uniform choice otherwise (docs/METHOD.md §2.4)
            self.taps = [((k + 1) * depth) // decoder_depth for k in range(decoder_depth)]
        self.query_blocks = nn.ModuleList([SelfCrossMaskBlock(dim, heads, mlp_ratio) for _ in self.taps])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.prediction_head = Mlp(dim, dim * mlp_ratio, patch * patch * 3)
        self.register_buffer('blur_weight', gaussian_kernel(9, 1.0, 3), persistent=False)
        idx = torch.arange(self.N)
        self.register_buffer('coordinates', torch.stack([idx // self.grid, idx % self.grid], 1).float().unsqueeze(0),
                             persistent=False)

    def init_weights(self):
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.data.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        return self

    def tokens(self, images):
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], 1)

    # ---- the per-step no-grad pass (authors' forward_encoder + calculate_attention_cls)
    def forward_encoder(self, images):
        x = self.tokens(images)
        for blk in self.blocks[:-1]:
            x = blk(x)
        self_attention = self.blocks[-1](x, return_attention=True).mean(1)[:, 0, 1:]
        x = self.norm(self.blocks[-1](x))
        z = F.normalize(x, p=2, dim=-1)
        S = (z[:, :1] * z[:, 1:]).sum(-1).softmax(dim=1)
        return x, S, self_attention

    def attention_center_order(self, S, noise=None):
        """argmax of (optionally 3x3-mean-filtered) S, grid distance to it, + lam U(0,1)."""
        B, N = S.shape
        g = self.grid
        if self.filter_s:
            S = F.avg_pool2d(S.reshape(B, 1, g, g), 3, stride=1, padding=1, count_include_pad=False).reshape(B, N)
        c = S.argmax(dim=-1)
        cr, cc = (c // g).to(S.dtype), (c % g).to(S.dtype)
        coords = self.coordinates.to(S.dtype)
        p = ((coords[:, :, 0] - cr.unsqueeze(1)) ** 2 + (coords[:, :, 1] - cc.unsqueeze(1)) ** 2) ** 0.5
        if noise is None:
            noise = torch.rand(B, N, device=S.device, dtype=S.dtype)
        return p + noise.to(p.dtype) * self.lam

    # ---- explicit masks (authors' generate_attention_mask)
    @staticmethod
    def attention_masks(p, dtype=torch.float32):
        B, N = p.shape
        full = torch.full((B, N, N), -math.inf, device=p.device, dtype=dtype)
        none = torch.zeros((B, N, N), device=p.device, dtype=dtype)
        mask_h = torch.where(p.unsqueeze(-1) < p.unsqueeze(1), full, none)   # i sees j iff p_j <= p_i
        mask_g = torch.where(p.unsqueeze(-1) <= p.unsqueeze(1), full, none)  # i sees j iff p_j <  p_i
        top = torch.full((B, 1, N), -math.inf, device=p.device, dtype=dtype)  # [CLS] sees only itself
        left = torch.zeros((B, N + 1, 1), device=p.device, dtype=dtype)      # everyone sees [CLS]
        mask_h = torch.cat((left, torch.cat((top, mask_h), 1)), 2)
        mask_g = torch.cat((left, torch.cat((top, mask_g), 1)), 2)
        return mask_h.unsqueeze(1), mask_g.unsqueeze(1)

    def targets(self, images):
        x = F.conv2d(images, self.blur_weight.to(images.dtype), None, padding=4, groups=3)
        B, C, H, W = x.shape
        h, P = H // self.P, self.P
        t = torch.einsum('nchpwq->nhwpqc', x.reshape(B, C, h, P, h, P)).reshape(B, h * h, P * P * C)
        mean = t.mean(-1, keepdim=True)
        var = t.var(-1, keepdim=True)
        return (t - mean) / (var + 1e-6) ** 0.5

    def forward(self, images, order):
        """Loss [scalar] and per-patch loss [B, N] (row-major) for order values [B, N]."""
        mask_h, mask_g = self.attention_masks(order, torch.float64 if images.dtype == torch.float64 else torch.float32)
        h = self.tokens(images)
        g = self.pos_embed.expand(images.shape[0], -1, -1)
        k = 0
        for i, blk in enumerate(self.blocks):
            h = blk(h, mask=mask_h)
            while k < len(self.taps) and self.taps[k] == i + 1:
                g = self.query_blocks[k](g, h, mask=mask_g)
                k += 1
        pred = self.prediction_head(self.norm(g))[:, 1:]
        target = self.targets(images)
        patch_loss = ((pred - target) ** 2).mean(-1)
        return patch_loss.mean(), patch_loss


def param_groups(model, wd, decay_cls_token=False):
    skip = () if decay_cls_token else ('cls_token', 'pos_embed')
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith('.bias') or name in skip else decay).append(p)
    return [{'params': no_decay, 'weight_decay': 0.0}, {'params': decay, 'weight_decay': wd}]


# --------------------------------------------------------------------------- bench

def main():
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument('--semantic', choices=sorted(SEMANTIC), default='paper',
                    help="paper: 3x3 mean filter, lambda 0.01 (the TS bench's choice); authors: no filter, lambda 1e-3")
    ap.add_argument('--lr', type=float, default=None, help='default 2e-4 * batch / 256')
    ap.add_argument('--decay-cls-token', action='store_true', help="timm's no-decay set (the authors' code decays cls_token)")
    ap.add_argument('--no-amp', action='store_true', help='no fp16 autocast / GradScaler on CUDA')
    ap.add_argument('--save-init', default=None, help='write the initial parameters and data.images to a safetensors file (then exit if --steps 0)')
    ap.add_argument('--noise-steps', type=int, default=0,
                    help='with --save-init: also write data.noise, U(0,1) order noise [K, batch, N] for K steps, so every side orders alike')
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cuda = dev.type == 'cuda'
    if cuda:
        torch.backends.cudnn.benchmark = True  # the authors' main_pretrain.py: cudnn.benchmark = True
    amp = cuda and not a.no_amp
    phases = (not cuda) or a.phases
    sync = (lambda: torch.cuda.synchronize()) if cuda else (lambda: None)

    D, depth, heads = PRESETS[a.preset]
    filter_s, lam = SEMANTIC[a.semantic]
    model = AuthorsSemAIM(a.img, a.patch, D, depth, heads, a.decoder_depth, filter_s=filter_s, lam=lam).init_weights()
    extra = load_init(model, a.init_weights) if a.init_weights else {}
    model.to(dev)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lr = a.lr if a.lr is not None else 2e-4 * a.batch / 256
    opt = torch.optim.AdamW(param_groups(model, 0.05, a.decay_cls_token), lr=lr, betas=(0.9, 0.95))
    scaler = torch.cuda.amp.GradScaler() if amp else None
    images = bench_images(a, extra, dev)
    if a.save_init:  # the parameters and the images, for the other sides' --init-weights
        state = {k: v for k, v in model.state_dict().items()}
        state['data.images'] = images
        if a.noise_steps > 0:
            ngen = torch.Generator(device='cpu')
            ngen.manual_seed(a.seed + 104729)
            state['data.noise'] = torch.rand(a.noise_steps, a.batch, (a.img // a.patch) ** 2, generator=ngen)
        write_safetensors(a.save_init, state, {'source': 'bench/pretrain_authors.py --save-init'})
        if a.steps == 0:
            print(json.dumps({'saved': a.save_init}))
            return
    if cuda:
        torch.cuda.reset_peak_memory_stats()

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
        # the authors' engine: eval mode, no grad, outside autocast
        model.eval()
        with torch.no_grad():
            _, S, _ = model.forward_encoder(images)
            order = model.attention_center_order(S, noise)
        model.train()
        if phases:
            sync()
        t1 = time.perf_counter()
        with torch.cuda.amp.autocast(enabled=amp):
            loss, _ = model(images, order)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            print(f'Loss is {loss_value}, stopping training', file=sys.stderr)
            sys.exit(1)
        if phases:
            sync()
        t2 = time.perf_counter()
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if phases:
            sync()
        t3 = time.perf_counter()
        if scaler is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            scaler.step(opt)
            scaler.update()
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            opt.step()
        opt.zero_grad()
        sync()
        t4 = time.perf_counter()
        c4 = time.process_time()
        if times is not None:
            times.append((t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, c4 - c0))
        if a.verbose:
            print(f'step: {(t4 - t0) * 1e3:.0f} ms (order {(t1 - t0) * 1e3:.0f}, fwd {(t2 - t1) * 1e3:.0f}, '
                  f'bwd {(t3 - t2) * 1e3:.0f}, opt {(t4 - t3) * 1e3:.0f}), loss {loss_value:.6f}', file=sys.stderr)
        return loss_value

    out = run_and_summarise(step, a, 'authors', n_params, phases, cuda)
    out['precision'] = 'fp16-autocast+GradScaler' if amp else 'fp32'
    out['semantic'] = a.semantic
    print(json.dumps(out))


if __name__ == '__main__':
    main()
