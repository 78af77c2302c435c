#!/usr/bin/python3
"""Golden values of whole fine-tuning steps, computed with Debian 12's PyTorch 1.13 (float64).

Run: /usr/bin/python3 scripts/golden_finetune.py   (writes test/golden/finetune/steps.json;
test/eval/finetune-golden.test.ts drives semaim's own fine-tuning step against it)

The reference is written from the authors' / MAE's code and timm's semantics, not from semaim's:
- the model: MAE's models_vit.VisionTransformer(global_pool=True) ([A] models/models_vit.py:25-46, the
  same as [M]): timm's ViT (the blocks of scripts/golden_timm_vit.py: pre-norm, fused qkv with bias,
  exact GELU, LayerNorm eps 1e-6) with `norm` deleted, the mean of the patch tokens through `fc_norm`,
  then `head`; pos_embed and cls_token are trained parameters;
- the optimiser: torch.optim.AdamW(param_groups_lrd(...), lr) with PyTorch's default betas
  (0.9, 0.999) and eps, over MAE's util/lr_decay.param_groups_lrd (layer decay 0.65, weight decay 0.05,
  none on 1-D parameters and on model.no_weight_decay() = pos_embed, cls_token);
- the schedule: MAE's util/lr_sched.adjust_learning_rate, called before every step at
  data_iter_step / len(data_loader) + epoch (engine_finetune.train_one_epoch, accum_iter 1), with
  lr = blr × batch / 256 (main_finetune.py);
- the mixing: timm's Mixup(mode='batch', label_smoothing=0.1, correct_lam=True): each image mixed with
  the flipped batch; mixup x·λ + flip(x)·(1 − λ), cutmix pastes the flipped batch's box and takes
  λ = 1 − box area / image area; targets mixup_target(): λ·smooth(y) + (1 − λ)·smooth(flip(y)) with
  smooth(y) = one-hot of (1 − ε + ε/C) on ε/C; the loss timm's SoftTargetCrossEntropy;
- drop path 0 (it is random), no gradient clipping (MAE's default), fp64 instead of autocast.

What both sides get as data rather than from a random generator:
- the initial weights, from a seed-free recipe (initial_value below; the test builds the same);
- the images, from another (image_value), exact in float32 because semaim's batches are float32;
- the mixing draws: the mode, λ and the cutmix box of each step. They are the draws semaim's
  `finetune` makes with --seed 7 (its mixing generator); the test records the draws its step makes
  and checks they are these, so the reference needs no sampler of its own. For cutmix the reference
  takes only the box and computes λ itself (timm's correct_lam).

Written to the JSON: the options, the draws, the labels, MAE's groups (names, lr_scale, weight_decay),
per step the lr, the loss and the logits, per parameter the sum of its initial values (a check of the
recipe) and its final values (every value of tensors up to 512 elements, every 5th of the larger
ones, with the sum and sum of squares of all).

One part of the final weights is rounding noise on both sides and is compared differently by the test:
the key third of each qkv bias has no gradient in exact arithmetic (it shifts every logit of a softmax
row alike), so AdamW moves it only by lr x noise / eps, about 1e-11 here.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_timm_vit import Block, PatchEmbed  # noqa: E402  (timm's structure, written from timm)
from golden_optim import get_layer_id_for_vit  # noqa: E402  (MAE util/lr_decay.py)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'finetune', 'steps.json')
torch.set_default_dtype(torch.float64)

MODEL = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=24, depth=2, num_heads=2, mlp_ratio=4.0, num_classes=5)
# semaim finetune's options (the test passes them; MAE's names in the comments)
OPTIONS = dict(batchSize=4,  # --batch_size
               blr=0.64,  # --blr: lr = 0.64 × 4 / 256 = 0.01
               minLr=1e-6, warmupEpochs=1, epochs=3, maxSteps=4,  # 2 steps per epoch: lr at epochs 0, 0.5, 1, 1.5
               layerDecay=0.65, weightDecay=0.05, beta1=0.9, beta2=0.999,
               mixup=0.8, cutmix=1.0, mixupProb=1, mixupSwitchProb=0.5, smoothing=0.1,
               dropPath=0, clipGrad=0, accumIter=1, seed=7)
STEPS_PER_EPOCH = 2
STEPS = 4
LABELS = [[0, 3, 1, 4], [2, 2, 4, 1], [3, 0, 0, 2], [1, 4, 2, 1]]  # the last pairs class 1 with itself
# semaim's Mixup draws with --seed 7 (the test checks its step draws these)
MIX = [dict(mode='mixup', lam=0.6459197793916868),
       dict(mode='cutmix', box=dict(y0=5, y1=13, x0=0, x1=5)),
       dict(mode='mixup', lam=0.9328261913383449),
       dict(mode='cutmix', box=dict(y0=7, y1=16, x0=0, x1=9))]


# ------------------------------------------------------------------ the data (seed-free recipes)

def initial_value(name, index, t, shape):
    """Element `index` (row-major) of parameter `name`, the t-th in sorted name order."""
    u = ((index * 37 + t * 101 + 17) % 251) - 125  # an integer in [-125, 125]
    if name == 'cls_token':
        return u / 4096
    if name == 'pos_embed':
        return u / 1024
    if name.endswith(('norm1.weight', 'norm2.weight', 'fc_norm.weight')):
        return 1 + u / 1024  # LayerNorm weights
    if len(shape) == 1:
        return u / 2048  # biases
    return u / 512  # matrices, the patch-embedding kernel


def image_value(step, index):
    """Element `index` (row-major over [B, C, H, W]) of step `step`'s images: a multiple of 1/64 in [−2, 2)."""
    return (((index * 29 + step * 7919 + 3) % 253) - 126) / 64


def images_of(step):
    B, C, S = OPTIONS['batchSize'], MODEL['in_chans'], MODEL['img_size']
    n = B * C * S * S
    return torch.tensor([image_value(step, i) for i in range(n)]).reshape(B, C, S, S)


# ------------------------------------------------------------------ the model (MAE models_vit.py, global_pool=True)

class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, num_classes):
        super().__init__()
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, True) for _ in range(depth)])
        # models_vit.py with global_pool: fc_norm = norm_layer(embed_dim); del self.norm
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)

    def no_weight_decay(self):
        return {'pos_embed', 'cls_token', 'dist_token'}  # timm VisionTransformer.no_weight_decay

    def forward(self, x):
        B = x.shape[0]
        x = self.patch_embed(x)
        cls_tokens = self.cls_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        x = x + self.pos_embed
        x = self.blocks(x)
        x = x[:, 1:, :].mean(dim=1)  # global pool without cls token
        return self.head(self.fc_norm(x))


# ------------------------------------------------------------------ MAE util/lr_decay.py, util/lr_sched.py

def param_groups_lrd(model, weight_decay=0.05, no_weight_decay_list=[], layer_decay=.75):
    param_group_names = {}
    param_groups = {}
    num_layers = len(model.blocks) + 1
    layer_scales = list(layer_decay ** (num_layers - i) for i in range(num_layers + 1))
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim == 1 or n in no_weight_decay_list:
            g_decay = "no_decay"
            this_decay = 0.
        else:
            g_decay = "decay"
            this_decay = weight_decay
        layer_id = get_layer_id_for_vit(n, num_layers)
        group_name = "layer_%d_%s" % (layer_id, g_decay)
        if group_name not in param_group_names:
            this_scale = layer_scales[layer_id]
            param_group_names[group_name] = {"lr_scale": this_scale, "weight_decay": this_decay, "params": []}
            param_groups[group_name] = {"lr_scale": this_scale, "weight_decay": this_decay, "params": []}
        param_group_names[group_name]["params"].append(n)
        param_groups[group_name]["params"].append(p)
    return list(param_groups.values()), param_group_names


def adjust_learning_rate(optimizer, epoch, args):
    """Decay the learning rate with half-cycle cosine after warmup"""
    if epoch < args['warmup_epochs']:
        lr = args['lr'] * epoch / args['warmup_epochs']
    else:
        lr = args['min_lr'] + (args['lr'] - args['min_lr']) * 0.5 * \
            (1. + math.cos(math.pi * (epoch - args['warmup_epochs']) / (args['epochs'] - args['warmup_epochs'])))
    for param_group in optimizer.param_groups:
        if "lr_scale" in param_group:
            param_group["lr"] = lr * param_group["lr_scale"]
        else:
            param_group["lr"] = lr
    return lr


# ------------------------------------------------------------------ timm data/mixup.py (mode 'batch'), loss/cross_entropy.py

def one_hot(x, num_classes, on_value=1., off_value=0.):
    x = x.long().view(-1, 1)
    return torch.full((x.size()[0], num_classes), off_value).scatter_(1, x, on_value)


def mixup_target(target, num_classes, lam=1., smoothing=0.0):
    off_value = smoothing / num_classes
    on_value = 1. - smoothing + off_value
    y1 = one_hot(target, num_classes, on_value=on_value, off_value=off_value)
    y2 = one_hot(target.flip(0), num_classes, on_value=on_value, off_value=off_value)
    return y1 * lam + y2 * (1. - lam)


def mix_batch(x, draw):
    """Mixup._mix_batch with the draw given instead of sampled (in place on x, returns λ)."""
    if draw['mode'] == 'cutmix':
        b = draw['box']
        yl, yh, xl, xh = b['y0'], b['y1'], b['x0'], b['x1']
        # cutmix_bbox_and_lam with correct_lam: λ from the area of the (clipped) box
        lam = 1. - (yh - yl) * (xh - xl) / float(x.shape[-2] * x.shape[-1])
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
    else:
        lam = draw['lam']
        x_flipped = x.flip(0).mul_(1. - lam)
        x.mul_(lam).add_(x_flipped)
    return lam


def soft_target_cross_entropy(x, target):
    loss = torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1)
    return loss.mean()


# ------------------------------------------------------------------ the run

def main():
    print('torch', torch.__version__)
    model = VisionTransformer(**MODEL)
    names = sorted(n for n, _ in model.named_parameters())
    with torch.no_grad():
        for n, p in model.named_parameters():
            t = names.index(n)
            p.copy_(torch.tensor([initial_value(n, i, t, list(p.shape)) for i in range(p.numel())]).reshape(p.shape))
    initial_sums = {n: p.sum().item() for n, p in model.named_parameters()}
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}

    o = OPTIONS
    args = dict(lr=o['blr'] * o['batchSize'] * o['accumIter'] / 256, min_lr=o['minLr'],
                warmup_epochs=o['warmupEpochs'], epochs=o['epochs'])
    groups, group_names = param_groups_lrd(model, o['weightDecay'], no_weight_decay_list=model.no_weight_decay(),
                                           layer_decay=o['layerDecay'])
    optimizer = torch.optim.AdamW(groups, lr=args['lr'], betas=(o['beta1'], o['beta2']), foreach=False)
    model.train()

    steps = []
    step = 0
    for epoch in range(math.ceil(STEPS / STEPS_PER_EPOCH)):
        optimizer.zero_grad()
        for data_iter_step in range(STEPS_PER_EPOCH):
            if step == STEPS:
                break
            lr = adjust_learning_rate(optimizer, data_iter_step / STEPS_PER_EPOCH + epoch, args)
            samples = images_of(step)
            targets = torch.tensor(LABELS[step])
            lam = mix_batch(samples, MIX[step])
            targets = mixup_target(targets, MODEL['num_classes'], lam, o['smoothing'])
            outputs = model(samples)
            loss = soft_target_cross_entropy(outputs, targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps.append(dict(lr=lr, lam=lam, loss=loss.item(), logits=outputs.detach().reshape(-1).tolist()))
            step += 1

    final = {}
    for n, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        every = 1 if flat.numel() <= 512 else 5
        final[n] = dict(shape=list(p.shape), every=every, values=flat[::every].tolist(), sum=flat.sum().item(),
                        sumsq=(flat * flat).sum().item(),
                        maxUpdate=(p.detach() - initial[n]).abs().max().item())
    out = dict(
        torch=torch.__version__,
        model=MODEL, options=OPTIONS, stepsPerEpoch=STEPS_PER_EPOCH, labels=LABELS, mix=MIX,
        groups=[dict(name=k, lr_scale=g['lr_scale'], weight_decay=g['weight_decay'], params=g['params'])
                for k, g in group_names.items()],
        initialSums=initial_sums, steps=steps, final=final)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        json.dump(out, f, allow_nan=False, indent=None, separators=(',', ':'))
        f.write('\n')
    print('wrote', os.path.relpath(OUT), 'losses', [s['loss'] for s in steps], 'lrs', [s['lr'] for s in steps])


if __name__ == '__main__':
    main()
