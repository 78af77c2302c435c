"""torchvision reference for bench/data.ts: ImageFolder + RandomResizedCrop + flip + ToTensor +
Normalize through a DataLoader with N worker processes, measured like the TypeScript loader
(warm-up batches excluded). Prints one JSON line.

usage: data_torchvision.py ROOT SIZE WORKERS BATCH WARMUP MAX_BATCHES MAX_SECONDS INTERP
"""
import json
import os
import sys
import time

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T


def main() -> None:
    root, size, workers, batch, warm, max_batches, max_seconds, interp = sys.argv[1:9]
    size, workers, batch, warm, max_batches = int(size), int(workers), int(batch), int(warm), int(max_batches)
    max_seconds = float(max_seconds)
    torch.set_num_threads(1)
    modes = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}
    if interp not in modes:
        sys.exit(f"interpolation {interp!r}: bilinear or bicubic")
    mode = modes[interp]
    tf = T.Compose(
        [
            T.RandomResizedCrop(size, interpolation=mode),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    ds = datasets.ImageFolder(root, transform=tf)
    dl = DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    it = iter(dl)

    def take():
        # continue into the next epoch when one ends (the loaders keep their workers)
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(dl)
            return next(it)

    for _ in range(warm):
        take()

    tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds() -> float:
        # this process plus the DataLoader's worker processes (utime + stime from /proc)
        total = time.process_time()
        for w in getattr(it, "_workers", []):
            try:
                with open(f"/proc/{w.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except OSError:
                pass
        return total

    n = 0
    batches = 0
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    for _ in range(max_batches):
        x, _y = take()
        n += x.shape[0]
        batches += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    dt = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    print(
        json.dumps(
            {
                "images": n,
                "batches": batches,
                "seconds": dt,
                "rate": n / dt,
                "cores": cpu / dt,
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
