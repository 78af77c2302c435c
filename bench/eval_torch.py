#!/usr/bin/python3
"""The PyTorch side of `npm run bench:eval` (bench/eval.ts runs it with /usr/bin/python3 as a server).

The same work as semaim's evaluations, written as ordinary PyTorch (the model pieces are those of
bench/pretrain_torch.py: timm-style pre-norm ViT, LayerNorm eps 1e-6, exact GELU, fused qkv):
  * features: the encoder in eval mode under no_grad over batches of in-memory images, the [CLS] token
    after the final norm copied into one [n, D] tensor (src/eval/features.ts);
  * knn: DINO's weighted k-NN (eval_knn.py knn_classifier): L2-normalised features, chunks of test rows,
    cosine similarities to the bank, topk, the neighbours' one-hot labels weighted by exp(sim / T), summed;
  * linprobe: one epoch of MAE's linear probe on cached features (BatchNorm1d without affine -> Linear, SGD
    momentum 0.9, lr set every step, a seeded permutation of the rows, drop_last), then its test evaluation;
  * finetune: one training step of MAE's fine-tuning (mean-of-patches -> fc_norm -> head, drop-path rising
    to 0.1, timm's batch mixup 0.8 / cutmix 1.0 with smoothing 0.1, soft-target cross-entropy, AdamW over
    the layer-decay groups).

Reads one JSON command per line on stdin and answers one JSON line:
  {"op": "info"}                                         -> {torch, threads, python}
  {"op": "setup", preset, img, patch, classes, images, bank, queries, finetuneBatch}
                                                         -> {encoderParams, classifierParams}
  {"op": "features", batch}                              -> {seconds, cpu}
  {"op": "knn", k, temperature, chunk}                   -> {seconds, cpu, top1}
  {"op": "linprobe", batch}                              -> {seconds, cpu, steps}
  {"op": "finetune", batch}                              -> {seconds, cpu}
(seconds: wall-clock; cpu: the process's CPU seconds, all threads, time.process_time())
"""
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import PRESETS  # noqa: E402
from pretrain_torch import LN_EPS, Attention, Mlp, sincos_pos_embed  # noqa: E402
from engine_torch import serve  # noqa: E402


class DropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = 1 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class Block(nn.Module):
    def __init__(self, dim, heads, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * 4)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x), False))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """The encoder (classes=None: final norm, [CLS] features) or MAE's fine-tuning classifier (mean of the
    patch tokens -> fc_norm -> head, trainable position embedding)."""

    def __init__(self, img, patch, dim, depth, heads, classes=None, drop_path=0.0):
        super().__init__()
        grid = img // patch
        self.N, self.D = grid * grid, dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_pos_embed(dim, grid, grid)
        if classes is None:
            self.register_buffer('pos_embed', pos)
        else:
            self.pos_embed = nn.Parameter(pos)
        rates = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList([Block(dim, heads, r) for r in rates])
        self.classes = classes
        if classes is None:
            self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        else:
            self.fc_norm = nn.LayerNorm(dim, eps=LN_EPS)
            self.head = nn.Linear(dim, classes)

    def forward(self, images):
        B = images.shape[0]
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(B, 1, self.D)
        x = torch.cat([cls, x], 1)
        for blk in self.blocks:
            x = blk(x)
        if self.classes is None:
            return self.norm(x)[:, 0]
        return self.head(self.fc_norm(x[:, 1:].mean(1)))


def layer_decay_groups(model, depth, lr, layer_decay=0.65, weight_decay=0.05):
    """MAE's param_groups_lrd: layer 0 = cls_token/pos_embed/patch_embed, blocks.i = i + 1, the rest depth + 1."""
    groups = {}
    for name, p in model.named_parameters():
        no_decay = p.ndim == 1 or name in ('cls_token', 'pos_embed')
        layer = 0 if name.startswith(('cls_token', 'pos_embed', 'patch_embed')) else \
            int(name.split('.')[1]) + 1 if name.startswith('blocks.') else depth + 1
        key = (layer, no_decay)
        if key not in groups:
            groups[key] = {'params': [], 'weight_decay': 0.0 if no_decay else weight_decay,
                           'lr': lr * layer_decay ** (depth + 1 - layer)}
        groups[key]['params'].append(p)
    return list(groups.values())


class Mixup:
    """timm's Mixup in batch mode: mixup (alpha 0.8) or cutmix (alpha 1.0) with probability 0.5 each,
    mixed with the flipped batch; label-smoothed one-hot targets mixed with the same lambda."""

    def __init__(self, classes, mixup=0.8, cutmix=1.0, smoothing=0.1):
        self.classes, self.mixup, self.cutmix, self.smoothing = classes, mixup, cutmix, smoothing
        self.gen = torch.Generator().manual_seed(104729)

    def _uniform(self):
        return torch.rand(1, generator=self.gen, dtype=torch.float64).item()

    def __call__(self, x, y):
        cut = self._uniform() < 0.5
        alpha = self.cutmix if cut else self.mixup
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        if cut:
            H, W = x.shape[-2:]
            r = math.sqrt(1 - lam)
            ch, cw = int(H * r), int(W * r)
            cy, cx = int(self._uniform() * H), int(self._uniform() * W)
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / float(H * W)
        else:
            x = x * lam + x.flip(0) * (1 - lam)
        off = self.smoothing / self.classes
        one = torch.full((y.shape[0], self.classes), off).scatter_(1, y.unsqueeze(1), 1 - self.smoothing + off)
        return x, one * lam + one.flip(0) * (1 - lam)


class Bench:
    def info(self, _):
        return {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'python': sys.version.split()[0]}

    def setup(self, c):
        torch.manual_seed(0)
        dim, depth, heads = PRESETS[c['preset']]
        self.depth, self.classes = depth, c['classes']
        self.encoder = ViT(c['img'], c['patch'], dim, depth, heads).eval()
        self.images = torch.randn(c['images'], 3, c['img'], c['img'])
        self.labels = torch.randint(0, c['classes'], (c['images'],))
        # the k-NN bank and queries, and the probe's cached features: random features of the encoder's width
        self.bank = torch.randn(c['bank'], dim)
        self.bank_labels = torch.randint(0, c['classes'], (c['bank'],))
        self.queries = torch.randn(c['queries'], dim)
        self.query_labels = torch.randint(0, c['classes'], (c['queries'],))
        self.classifier = ViT(c['img'], c['patch'], dim, depth, heads, classes=c['classes'], drop_path=0.1).train()
        lr = 5e-4 * c['finetuneBatch'] / 256
        self.finetune_opt = torch.optim.AdamW(layer_decay_groups(self.classifier, depth, lr), lr=lr, betas=(0.9, 0.999))
        self.mixup = Mixup(c['classes'])
        self.epoch = 0
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {'encoderParams': count(self.encoder), 'classifierParams': count(self.classifier)}

    def features(self, c):
        n, B = self.images.shape[0], c['batch']
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            out = torch.empty(n, self.encoder.D)
            for s in range(0, n, B):
                out[s:s + B] = self.encoder(self.images[s:s + B])
        return {'seconds': time.perf_counter() - t0, 'cpu': time.process_time() - c0}

    def knn(self, c):
        k, T, chunk = c['k'], c['temperature'], c['chunk']
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            train = F.normalize(self.bank, dim=1)
            test = F.normalize(self.queries, dim=1)
            top1 = 0
            n = test.shape[0]
            retrieval_one_hot = torch.zeros(k, self.classes)
            for s in range(0, n, chunk):
                feats = test[s:s + chunk]
                targets = self.query_labels[s:s + chunk]
                b = feats.shape[0]
                similarity = torch.mm(feats, train.t())
                distances, indices = similarity.topk(k, largest=True, sorted=True)
                candidates = self.bank_labels.view(1, -1).expand(b, -1)
                retrieved = torch.gather(candidates, 1, indices)
                retrieval_one_hot.resize_(b * k, self.classes).zero_()
                retrieval_one_hot.scatter_(1, retrieved.view(-1, 1), 1)
                transform = distances.clone().div_(T).exp_()
                probs = torch.sum(retrieval_one_hot.view(b, -1, self.classes) * transform.view(b, -1, 1), 1)
                _, pred = probs.sort(1, True)
                top1 += pred.narrow(1, 0, 1).eq(targets.view(-1, 1)).sum().item()
        return {'seconds': time.perf_counter() - t0, 'cpu': time.process_time() - c0, 'top1': top1 / n}

    def linprobe(self, c):
        B = c['batch']
        n, D = self.bank.shape
        t0, c0 = time.perf_counter(), time.process_time()
        torch.manual_seed(0)
        probe = nn.Sequential(nn.BatchNorm1d(D, affine=False, eps=1e-6), nn.Linear(D, self.classes))
        nn.init.trunc_normal_(probe[1].weight, std=0.01)
        nn.init.zeros_(probe[1].bias)
        lr = 0.1 * B / 256
        opt = torch.optim.SGD(probe.parameters(), lr=lr, momentum=0.9, weight_decay=0)
        gen = torch.Generator().manual_seed(self.epoch)
        self.epoch += 1
        perm = torch.randperm(n, generator=gen)
        steps = n // B
        probe.train()
        loss_sum = torch.zeros(())
        for i in range(steps):
            for g in opt.param_groups:
                g['lr'] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
            idx = perm[i * B:(i + 1) * B]
            x, y = self.bank.index_select(0, idx), self.bank_labels.index_select(0, idx)
            loss = F.cross_entropy(probe(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
        loss_sum.item()
        probe.eval()
        with torch.no_grad():
            for s in range(0, self.queries.shape[0], 1024):
                probe(self.queries[s:s + 1024]).topk(5, 1)
        return {'seconds': time.perf_counter() - t0, 'cpu': time.process_time() - c0, 'steps': steps}

    def finetune(self, c):
        B = c['batch']
        x, y = self.images[:B], self.labels[:B]
        t0, c0 = time.perf_counter(), time.process_time()
        mixed, targets = self.mixup(x, y)
        loss = torch.sum(-targets * F.log_softmax(self.classifier(mixed), dim=-1), dim=-1).mean()
        loss.backward()
        self.finetune_opt.step()
        self.finetune_opt.zero_grad(set_to_none=True)
        loss.item()
        return {'seconds': time.perf_counter() - t0, 'cpu': time.process_time() - c0}


def main():
    threads = int(sys.argv[sys.argv.index('--threads') + 1]) if '--threads' in sys.argv else 2
    torch.set_num_threads(threads)
    serve(Bench())


if __name__ == '__main__':
    main()
