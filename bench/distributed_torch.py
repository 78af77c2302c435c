#!/usr/bin/python3
"""One rank of the PyTorch side of `npm run bench:distributed`: the SemAIM model of bench/pretrain_torch.py
(an independent PyTorch implementation of ours) trained with torch.nn.parallel.DistributedDataParallel
over Gloo when WORLD_SIZE > 1 (env:// rendezvous: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), the same
step as bench/distributed_worker.ts: semantic order, forward, backward, clip 3, AdamW, zero_grad. Times
--steps synchronised steps after --warmup, then --nosync-steps steps inside ddp.no_sync(). DDP keeps its
defaults (25 MB buckets, gradients not as bucket views) except broadcast_buffers=False: the model's
buffers (position embedding, blur kernel) are constants, and the TS side does not re-broadcast them
every step either. Prints one JSON line.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import PRESETS  # noqa: E402
from pretrain_torch import SemAIM  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--preset', default='vit_tiny')
    ap.add_argument('--img', type=int, default=32)
    ap.add_argument('--patch', type=int, default=4)
    ap.add_argument('--decoder-depth', type=int, default=12)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--steps', type=int, default=8)
    ap.add_argument('--nosync-steps', type=int, default=8)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--compress', choices=['none', 'fp16'], default='none')
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    world = int(os.environ.get('WORLD_SIZE', '1'))
    distributed = world > 1
    if distributed:
        dist.init_process_group('gloo')
    rank = dist.get_rank() if distributed else 0
    torch.manual_seed(0)
    D, depth, heads = PRESETS[a.preset]
    model = SemAIM(a.img, a.patch, D, depth, heads, a.decoder_depth).init_weights()
    net = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if distributed else model
    if distributed and a.compress == 'fp16':
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        net.register_comm_hook(None, default_hooks.fp16_compress_hook)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith('.bias') or name in ('cls_token', 'pos_embed') else decay).append(p)
    lr = 2e-4 * a.batch * world / 256
    opt = torch.optim.AdamW([{'params': no_decay, 'weight_decay': 0.0}, {'params': decay, 'weight_decay': 0.05}],
                            lr=lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(7919 + rank)
    images = torch.randn(a.batch, 3, a.img, a.img, generator=torch.Generator().manual_seed(1 + rank))

    synced, local, first_loss = [], [], None
    for s in range(a.warmup + a.steps + a.nosync_steps):
        sync = is_synced(s, a.warmup, a.steps, a.nosync_steps)
        c0 = time.process_time()  # every thread of the process: ATen's, Gloo's, autograd's
        t0 = time.perf_counter()
        order = model.semantic_order(images, gen)
        ctx = net.no_sync() if (distributed and not sync) else _null()
        with ctx:
            loss, _ = net(images, order)
            if first_loss is None:
                first_loss = loss.item()
            tb = time.perf_counter()
            loss.backward()
            te = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        row = (time.perf_counter() - t0, te - tb, time.process_time() - c0)
        if s >= a.warmup:
            (synced if sync else local).append(row)
    med = lambda rows, i: statistics.median(r[i] for r in rows) * 1e3 if rows else None  # noqa: E731
    out = {
        'side': 'pytorch', 'rank': rank, 'worldSize': world, 'mode': 'DistributedDataParallel' if distributed else 'none',
        'threads': torch.get_num_threads(), 'batch': a.batch, 'params': sum(p.numel() for p in model.parameters()),
        'msPerStep': med(synced, 0), 'backwardMs': med(synced, 1), 'syncAfterBackwardMs': 0,
        'nosyncMsPerStep': med(local, 0), 'nosyncBackwardMs': med(local, 1),
        'cpuMsPerStep': med(synced, 2), 'nosyncCpuMsPerStep': med(local, 2),
        'stepsMs': [round(r[0] * 1e3, 1) for r in synced], 'nosyncStepsMs': [round(r[0] * 1e3, 1) for r in local],
        'firstLoss': first_loss, 'torch': torch.__version__, 'python': sys.version.split()[0],
    }
    print(json.dumps(out), flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


def is_synced(s, warmup, steps, nosync):
    """Warm-up steps synchronise; then synchronised and unsynchronised steps alternate (as the TS worker)."""
    if s < warmup:
        return True
    k, pairs = s - warmup, min(steps, nosync)
    if k < 2 * pairs:
        return k % 2 == 0
    return steps > nosync


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == '__main__':
    main()
