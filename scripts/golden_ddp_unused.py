#!/usr/bin/python3
"""What PyTorch's DistributedDataParallel (find_unused_parameters=True, two gloo ranks, torch 1.13) does with
a parameter one rank leaves unused and one no rank uses, over two steps without zero_grad: the values
test/dist/ddp.test.ts expects of semaim's DDP in 'overlap' mode with findUnusedParameters.

Run:  /usr/bin/python3 scripts/golden_ddp_unused.py
Prints each rank's gradients per step (w: both ranks, with weights 1 and 2; u: rank 1 alone, weight 3;
v: no rank), as JSON lines. It starts its two ranks itself (Debian's torchrun needs more flags).
"""
import json
import os
import socket
import subprocess
import sys

import torch
import torch.distributed as dist


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))
        self.u = torch.nn.Parameter(torch.ones(1))
        self.v = torch.nn.Parameter(torch.ones(1))

    def forward(self, rank):
        loss = (self.w * (rank + 1)).sum()
        if rank == 1:
            loss = loss + (self.u * 3).sum()
        return loss


def rank_main():
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    m = Model()
    ddp = torch.nn.parallel.DistributedDataParallel(m, find_unused_parameters=True)
    grad = lambda p: None if p.grad is None else p.grad.tolist()
    for step in range(2):
        ddp(rank).backward()
        print(json.dumps({'rank': rank, 'step': step, 'w': grad(m.w), 'u': grad(m.u), 'v': grad(m.v)}))
    dist.destroy_process_group()


if __name__ == '__main__':
    if 'RANK' in os.environ:
        rank_main()
        sys.exit(0)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE='2')
    ranks = [subprocess.Popen([sys.executable, __file__], env=dict(env, RANK=str(r)), stdout=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in ranks]
    if any(p.returncode for p in ranks):
        sys.exit('a rank failed')
    sys.stdout.write(''.join(outs))
