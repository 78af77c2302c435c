#!/usr/bin/python3
"""The PyTorch side of `npm run bench:engine` (bench/engine.ts runs this with /usr/bin/python3).

`--serve` (what bench/engine.ts uses): reads one JSON command per line on stdin, runs it, answers
one JSON line on stdout, so the TypeScript side can alternate single measurements with this one
(the machine's other load then hits both sides alike):
  {"op": "info"}                         -> {torch, threads, python}
  {"op": "matmul", "n": N}               -> {seconds}     one fp32 n x n @ n x n (after 2 warm-ups)
  {"op": "dispatch", "calls": C}         -> {us}          a + b on two 4x4 float32 tensors, mean of C calls
  {"op": "vit_init"}                     -> {params}      builds the ViT below (B=32, 64 tokens, D=192, 6 heads)
  {"op": "vit_step"}                     -> {ms, rssMB}   one forward + backward
Without --serve it runs everything once and prints one JSON summary.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


class ViT:
    """The model of bench/engine.ts, written with the same tensor ops (pre-norm, MLP ratio 4)."""

    def __init__(self, depth, dim, heads, mlp_ratio, classes):
        self.heads = heads
        hidden = dim * mlp_ratio

        def lin(o, i):
            return (torch.randn(o, i) * 0.02).requires_grad_(), torch.zeros(o).requires_grad_()

        def ln():
            return torch.ones(dim).requires_grad_(), torch.zeros(dim).requires_grad_()

        self.blocks = [{'ln1': ln(), 'qkv': lin(3 * dim, dim), 'proj': lin(dim, dim), 'ln2': ln(),
                        'fc1': lin(hidden, dim), 'fc2': lin(dim, hidden)} for _ in range(depth)]
        self.norm = ln()
        self.head = lin(classes, dim)

    def parameters(self):
        ps = []
        for b in self.blocks:
            for k in ('ln1', 'qkv', 'proj', 'ln2', 'fc1', 'fc2'):
                ps.extend(b[k])
        return ps + list(self.norm) + list(self.head)

    def forward(self, x):
        B, N, D = x.shape
        H = self.heads
        hd = D // H
        scale = 1.0 / math.sqrt(hd)
        for b in self.blocks:
            h = F.layer_norm(x, [D], *b['ln1'])
            qkv = F.linear(h, *b['qkv']).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            # torch 1.13 has no public scaled_dot_product_attention: this is the math path the
            # engine uses on 1.13 (and what F.scaled_dot_product_attention computes).
            attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, -1)
            a = torch.matmul(attn, v).transpose(1, 2).reshape(B, N, D)
            x = x + F.linear(a, *b['proj'])
            h = F.layer_norm(x, [D], *b['ln2'])
            x = x + F.linear(F.gelu(F.linear(h, *b['fc1'])), *b['fc2'])
        x = F.layer_norm(x, [D], *self.norm).mean(1)
        return F.linear(x, *self.head)


class Bench:
    def __init__(self):
        self.mats = {}
        self.a = torch.ones(4, 4)
        self.b = torch.ones(4, 4)
        self.vit = None

    def info(self, _):
        return {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'python': sys.version.split()[0]}

    def matmul(self, cmd):
        n = cmd['n']
        if n not in self.mats:
            self.mats[n] = (torch.randn(n, n), torch.randn(n, n))
            for _ in range(2):
                self.mats[n][0] @ self.mats[n][1]
        a, b = self.mats[n]
        t0 = time.perf_counter()
        a @ b
        return {'seconds': time.perf_counter() - t0}

    def dispatch(self, cmd):
        a, b, calls = self.a, self.b, cmd['calls']
        t0 = time.perf_counter()
        for _ in range(calls):
            c = a + b  # noqa: F841  (rebinding frees the previous result, as dispose() does)
        return {'us': (time.perf_counter() - t0) / calls * 1e6}

    def vit_init(self, _):
        torch.manual_seed(0)
        model = ViT(4, 192, 6, 4, 100)
        self.vit = (model, model.parameters(), torch.randn(32, 64, 192), torch.randint(0, 100, (32,)))
        return {'params': sum(p.numel() for p in self.vit[1])}

    def vit_step(self, _):
        model, params, x, y = self.vit
        t0 = time.perf_counter()
        for p in params:
            p.grad = None
        F.cross_entropy(model.forward(x), y).backward()
        return {'ms': (time.perf_counter() - t0) * 1e3, 'rssMB': rss_mb()}


def serve(bench):
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        if cmd['op'] == 'quit':
            break
        out = getattr(bench, cmd['op'])(cmd)
        sys.stdout.write(json.dumps(out) + '\n')
        sys.stdout.flush()


def standalone(bench, args):
    sizes = [int(s) for s in args.sizes.split(',')]
    matmul = []
    for n in sizes:
        best = min(bench.matmul({'n': n})['seconds'] for _ in range(10 if n <= 1024 else 4))
        matmul.append({'n': n, 'seconds': best, 'gflops': 2 * n ** 3 / best / 1e9})
    bench.dispatch({'calls': 10000})
    dispatch = min(bench.dispatch({'calls': args.calls})['us'] for _ in range(3))
    params = bench.vit_init({})['params']
    for _ in range(3):
        bench.vit_step({})
    steps = [bench.vit_step({}) for _ in range(args.vit_steps)]
    times = [s['ms'] for s in steps]
    out = {**bench.info({}), 'matmul': matmul, 'dispatchUs': dispatch,
           'vit': {'stepMs': statistics.median(times), 'minMs': min(times), 'params': params,
                   'rssGrowthMB': steps[-1]['rssMB'] - steps[0]['rssMB']}}
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--serve', action='store_true')
    ap.add_argument('--sizes', default='1024,2048')
    ap.add_argument('--calls', type=int, default=100000)
    ap.add_argument('--vit-steps', type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench = Bench()
    if args.serve:
        serve(bench)
    else:
        standalone(bench, args)


if __name__ == '__main__':
    main()
