#!/usr/bin/env python3
"""Golden files test/golden/semaim/authors_*.safetensors: a few training steps of the authors'-style
reference (bench/pretrain_authors.py: explicit -inf masks, tokens in image order, the authors' per-step
no-grad forward_encoder pass) that test/semaim/authors.test.ts replays with the TS SemAIM fast path.

Each file holds the initial parameters (F32, the project's names), the images (F32), the U(0,1) order
noise of every step (so both sides get the same semantic order without sharing an RNG), and in its
metadata the config and, per step, the loss in float64 and in float32, and the order values (float64).
Training: semantic order from the online model (S = softmax cos([CLS], patch), optional 3x3 mean filter,
argmax, distance + lambda noise), forward, backward, clip_grad_norm_ 3, AdamW (0.9, 0.95), wd 0.05
(no decay on 1-D params, biases, cls_token, pos_embed), constant lr.

Self-checks before writing: the authors'-style masked loss and gradients equal bench/pretrain_torch.py's
fast path (tokens gathered into order, causal attention) on the same weights and order, in float64.

Regenerate: /usr/bin/python3 scripts/golden_authors.py      (deterministic)
"""
import importlib.util
import json
import os
import sys

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
OUT_DIR = os.path.join(ROOT, 'test', 'golden', 'semaim')


def load(name, rel):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


A = load('pretrain_authors', 'bench/pretrain_authors.py')
T = load('pretrain_torch', 'bench/pretrain_torch.py')

CASES = {
    # the paper's semantic order (3x3 mean filter, lambda 0.01): the TS bench's default; L' = L
    'authors_paper': dict(img=16, patch=4, dim=24, depth=4, heads=3, decoder_depth=4, filter=True, lam=0.01,
                          batch=3, steps=5, lr=1e-3, seed=101),
    # the authors' code (no filter, lambda 1e-3); L' = L/2 (decoder after blocks 2 and 4)
    'authors_code': dict(img=16, patch=4, dim=24, depth=4, heads=3, decoder_depth=2, filter=False, lam=1e-3,
                         batch=3, steps=5, lr=1e-3, seed=202),
}


def make_model(c, dtype):
    m = A.AuthorsSemAIM(c['img'], c['patch'], c['dim'], c['depth'], c['heads'], c['decoder_depth'],
                        filter_s=c['filter'], lam=c['lam'])
    return m.to(dtype)


def train(c, init, images, noise, dtype):
    m = make_model(c, dtype)
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k in init:
                p.copy_(init[k].to(dtype))
    opt = torch.optim.AdamW(A.param_groups(m, 0.05), lr=c['lr'], betas=(0.9, 0.95))
    x = images.to(dtype)
    losses, orders, centers = [], [], []
    for s in range(c['steps']):
        m.eval()
        with torch.no_grad():
            _, S, _ = m.forward_encoder(x)
            order = m.attention_center_order(S, noise[s].to(dtype))
        m.train()
        loss, _ = m(x, order)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 3.0)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        orders.append(order.double())
        Sf = S
        if c['filter']:
            g = m.grid
            Sf = torch.nn.functional.avg_pool2d(S.reshape(-1, 1, g, g), 3, stride=1, padding=1, count_include_pad=False).reshape(S.shape)
        top2 = Sf.topk(2, dim=1).values
        centers.append(((top2[:, 0] - top2[:, 1]) / top2[:, 0]).min().item())  # relative argmax margin
    return losses, orders, centers


def check_fast_path(c, init, images, order):
    """Authors' masked loss and gradients == pretrain_torch's gathered/causal fast path (float64)."""
    a = make_model(c, torch.float64)
    f = T.SemAIM(c['img'], c['patch'], c['dim'], c['depth'], c['heads'], c['decoder_depth']).double()
    assert f.taps == a.taps, (f.taps, a.taps)
    with torch.no_grad():
        for mod in (a, f):
            for k, p in mod.named_parameters():
                if k in init:
                    p.copy_(init[k].double())
        assert (f.pos_embed - a.pos_embed).abs().max() < 1e-12
        assert (f.blur_weight - a.blur_weight).abs().max() < 1e-15
    x = images.double()
    la, pa = a(x, order)
    lf, pf = f(x, order)
    la.backward()
    lf.backward()
    # pretrain_torch.py takes the squared error of pred.float() (fp32, for bf16 autocast): fp32 tolerances
    assert abs(la.item() - lf.item()) <= 1e-7 * abs(la.item()), (la.item(), lf.item())
    assert (pa - pf).abs().max() <= 1e-6, 'patch loss'
    gf = dict(f.named_parameters())
    for k, p in a.named_parameters():
        if p.grad is None:
            continue
        err = (p.grad - gf[k].grad).abs().max() / p.grad.abs().max().clamp_min(1e-30)
        assert err < 1e-5 or p.grad.abs().max() < 1e-12, (k, err.item())  # k.bias: zero in theory
    # The masks against their definitions.
    mh, mg = A.AuthorsSemAIM.attention_masks(order, torch.float64)
    B, N = order.shape
    for b in range(B):
        for i in range(N + 1):
            for j in range(N + 1):
                if i == 0:
                    eh = eg = (j == 0)
                elif j == 0:
                    eh = eg = True
                else:
                    eh = bool(order[b, j - 1] <= order[b, i - 1])
                    eg = bool(order[b, j - 1] < order[b, i - 1])
                assert (mh[b, 0, i, j].item() == 0) == eh and (mg[b, 0, i, j].item() == 0) == eg, (b, i, j)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, c in CASES.items():
        torch.manual_seed(c['seed'])
        m = make_model(c, torch.float32).init_weights()
        init = {k: v.detach().clone() for k, v in m.named_parameters() if v.requires_grad}
        N = m.N
        # small non-zero biases and LayerNorm affine parameters, so their gradients matter
        with torch.no_grad():
            for k, v in init.items():
                if k.endswith('.bias') or (v.ndim == 1):
                    v.add_(0.02 * torch.randn(v.shape))
        images = torch.randn(c['batch'], 3, c['img'], c['img'])
        noise = torch.rand(c['steps'], c['batch'], N)
        l64, o64, margins = train(c, init, images, noise, torch.float64)
        l32, o32, _ = train(c, init, images, noise, torch.float32)
        for s in range(c['steps']):
            # the same order (ranks) in both precisions, and the argmax far from a tie
            assert torch.equal(o64[s].argsort(1), o32[s].argsort(1)), f'{name}: order differs in fp32 at step {s}'
            assert (o64[s] - o32[s]).abs().max() < 1e-5
            assert margins[s] > 1e-4, f'{name}: near-tie in the argmax at step {s} ({margins[s]})'
            rel = abs(l32[s] - l64[s]) / abs(l64[s])
            assert rel < 1e-5, f'{name}: fp32 loss drifts from fp64 at step {s} ({rel})'
        check_fast_path(c, init, images, o64[0])
        check_fast_path(c, init, images, o64[-1])
        config = {
            'imgSize': c['img'], 'patchSize': c['patch'], 'embedDim': c['dim'], 'depth': c['depth'],
            'numHeads': c['heads'], 'mlpRatio': 4, 'decoderDepth': c['decoder_depth'],
            'order': {'type': 'semantic', 'filter': c['filter'], 'lambda': c['lam']},
            'lr': c['lr'], 'betas': [0.9, 0.95], 'weightDecay': 0.05, 'clip': 3.0, 'steps': c['steps'],
        }
        tensors = {k: v.float() for k, v in init.items()}
        tensors['input.images'] = images
        tensors['input.noise'] = noise
        tensors['expect.order'] = torch.stack(o64)
        meta = {'config': json.dumps(config), 'losses_f64': json.dumps(l64), 'losses_f32': json.dumps(l32),
                'source': 'scripts/golden_authors.py'}
        path = os.path.join(OUT_DIR, f'{name}.safetensors')
        A.write_safetensors(path, tensors, meta)
        print(f'{name}: losses f64 {[round(x, 6) for x in l64]}, f32-f64 max rel '
              f'{max(abs(a - b) / abs(b) for a, b in zip(l32, l64)):.1e}, min argmax margin {min(margins):.1e} -> '
              f'{os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)')


if __name__ == '__main__':
    sys.exit(main())
