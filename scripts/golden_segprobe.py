#!/usr/bin/python3
"""Golden values of the segmentation probe's head, computed by PyTorch (Debian 12: torch 1.13).

Run:  /usr/bin/python3 scripts/golden_segprobe.py
Writes test/golden/segprobe/head.json; test/eval/segprobe-golden.test.ts compares the engine with it.

Inputs are stored as data (multiples of 2^-20, exact in float32 and float64), outputs in float64:
  upsample_*: F.interpolate(x, size, mode='bilinear', align_corners=False), the logits' resize;
  head:       the whole head in training mode as mmseg's BNHead with a non-affine BatchNorm:
              BatchNorm over the feature dim (batch statistics, eps 1e-6) -> Linear per patch ->
              [B, C, h, w] -> bilinear upsampling to the mask size -> cross-entropy with
              ignore_index 255 (mean over labelled pixels) -> gradients of the Linear.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'segprobe', 'head.json')
Q = 2.0 ** 20


def det(shape, a, b, s=1.0):
    n = 1
    for d in shape:
        n *= d
    v = [round(s * math.sin(a * i + b) * Q) / Q for i in range(n)]
    return torch.tensor(v, dtype=torch.float64).reshape(shape)


def enc(t):
    return {'shape': list(t.shape), 'data': [float(x) for x in t.detach().reshape(-1).tolist()]}


cases = {}
for name, shape, size in [('upsample_patch_grid', (2, 3, 4, 4), (16, 16)), ('upsample_odd', (1, 2, 3, 5), (7, 9)),
                          ('upsample_demo', (1, 2, 8, 8), (32, 32))]:
    x = det(shape, 0.37, 0.5, 3.0)
    cases[name] = {'input': enc(x), 'size': list(size), 'output': enc(F.interpolate(x, size=size, mode='bilinear', align_corners=False))}

B, h, w, D, C, H, W = 2, 4, 4, 6, 3, 8, 8
tokens = det((B, h * w, D), 0.61, 0.2, 2.0) + det((1, 1, D), 1.3, 0.0, 5.0)  # an offset BatchNorm removes
weight = det((C, D), 0.53, 1.1, 0.5).requires_grad_(True)
bias = det((C,), 0.9, 0.3, 0.1).requires_grad_(True)
target = torch.tensor([(7 * i + 3) % (C + 1) for i in range(B * H * W)], dtype=torch.int64).reshape(B, H, W)
target[target == C] = 255  # a quarter of the pixels are ignored
z = F.batch_norm(tokens.reshape(B * h * w, D), None, None, training=True, eps=1e-6)
logits = F.linear(z, weight, bias).view(B, h, w, C).permute(0, 3, 1, 2)
up = F.interpolate(logits, size=(H, W), mode='bilinear', align_corners=False)
loss = F.cross_entropy(up, target, ignore_index=255)
loss.backward()
cases['head'] = {
    'tokens': enc(tokens), 'weight': enc(weight), 'bias': enc(bias), 'target': enc(target), 'grid': [h, w], 'size': [H, W],
    'logits': enc(up), 'loss': float(loss), 'gradWeight': enc(weight.grad), 'gradBias': enc(bias.grad),
}

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, 'w') as f:
    json.dump({'torch': torch.__version__, 'cases': cases}, f)
print(f'wrote {OUT} (torch {torch.__version__})')
