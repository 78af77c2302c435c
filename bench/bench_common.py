"""Shared pieces of the PyTorch sides of `npm run bench:pretrain` (bench/pretrain_torch.py, ours in
PyTorch; bench/pretrain_authors.py, the authors' masked style): presets, a stdlib safetensors reader and
writer, loading shared initial weights, the common command line, the benchmark images, and the timing
loop with its JSON summary. The two models stay separate and independent on purpose.
"""
import json
import math
import re
import statistics
import struct
import sys

import torch

PRESETS = {
    'vit_tiny': (192, 12, 3),
    'vit_small': (384, 12, 6),
    'vit_base': (768, 12, 12),
    'vit_large': (1024, 24, 16),
    'vit_huge': (1280, 32, 16),
}


# --------------------------------------------------------------------------- safetensors (stdlib)

ST_DTYPES = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
             'I64': torch.int64, 'I32': torch.int32}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}


def read_safetensors(path):
    """{name: tensor}, metadata; little-endian host assumed (x86-64 / aarch64)."""
    with open(path, 'rb') as f:
        blob = f.read()
    (n,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop('__metadata__', {}) or {}
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        b, e = info['data_offsets']
        dt = ST_DTYPES[info['dtype']]
        if e == b:
            out[name] = torch.empty(info['shape'], dtype=dt)
            continue
        raw = bytearray(data[b:e])
        t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if dt == torch.bfloat16 else torch.frombuffer(raw, dtype=dt)
        out[name] = t.reshape(info['shape']).clone()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {'dtype': ST_NAMES[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hb += b' ' * ((8 - len(hb) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load_init(model, path):
    """Loads the model's parameters (strict: every parameter must be there) from a safetensors file;
    returns the file's other tensors (e.g. `data.images`)."""
    tensors, _ = read_safetensors(path)
    own = dict(model.named_parameters())
    missing = [k for k in own if k not in tensors and k != 'pos_embed']
    if missing:
        raise SystemExit(f'{path}: missing parameters {missing[:5]}{"..." if len(missing) > 5 else ""}')
    with torch.no_grad():
        for k, p in own.items():
            if k in tensors:
                if tuple(tensors[k].shape) != tuple(p.shape):
                    raise SystemExit(f'{path}: {k} has shape {list(tensors[k].shape)}, model {list(p.shape)}')
                p.copy_(tensors[k].to(p.dtype))
    return {k: v for k, v in tensors.items() if k not in own}


def proc_status(key):
    with open('/proc/self/status') as f:
        m = re.search(key + r':\s+(\d+)\s+kB', f.read())
    return int(m.group(1)) * 1024 if m else None


def add_common_args(ap):
    ap.add_argument('--preset', default='vit_tiny')
    ap.add_argument('--img', type=int, default=32)
    ap.add_argument('--patch', type=int, default=4)
    ap.add_argument('--decoder-depth', type=int, default=12)
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--phases', action='store_true', help='synchronise and time phases on CUDA too')
    ap.add_argument('--verbose', action='store_true', help='one line per step on stderr')
    ap.add_argument('--init-weights', default=None, help='initial parameters (and optionally data.images) from a safetensors file')
    ap.add_argument('--data-seed', type=int, default=None, help='images from a CPU generator with this seed (else the global RNG)')
    ap.add_argument('--log-losses', type=int, default=0, help='report the first N step losses (warm-up steps included)')


def bench_images(a, extra, dev):
    """The batch every step trains on: `data.images` of the init file, else seeded or global-RNG noise."""
    if 'data.images' in extra:
        images = extra['data.images'].float()
        if tuple(images.shape) != (a.batch, 3, a.img, a.img):
            raise SystemExit(f'data.images has shape {list(images.shape)}, expected {[a.batch, 3, a.img, a.img]}')
        return images.to(dev)
    if a.data_seed is not None:
        gen = torch.Generator(device='cpu')
        gen.manual_seed(a.data_seed)
        return torch.randn(a.batch, 3, a.img, a.img, generator=gen).to(dev)
    return torch.randn(a.batch, 3, a.img, a.img, device=dev)


def run_and_summarise(step, a, side, n_params, phases, cuda):
    """Runs warm-up + measured steps (at least --log-losses); step(times) appends one timing row
    (total, order, forward, backward, optimizer, cpu) when times is a list and returns the loss."""
    losses, rows = [], []
    for s in range(max(a.warmup + a.steps, a.log_losses)):
        losses.append(step(rows if a.warmup <= s < a.warmup + a.steps else None))
    med = lambda i: statistics.median(r[i] for r in rows) * 1e3  # noqa: E731
    ms = med(0)
    out = {
        'side': side,
        'preset': a.preset, 'img': a.img, 'patch': a.patch, 'decoderDepth': a.decoder_depth, 'batch': a.batch,
        'warmup': a.warmup, 'steps': a.steps, 'threads': torch.get_num_threads(), 'device': a.device,
        'params': n_params,
        'msPerStep': ms,
        'minMs': min(r[0] for r in rows) * 1e3,
        'imgPerSec': a.batch * 1000 / ms,
        'stepsMs': [round(r[0] * 1e3, 1) for r in rows],
        'cpuMsPerStep': med(5),
        'minCpuMs': min(r[5] for r in rows) * 1e3,
        'phasesMs': {'order': med(1), 'forward': med(2), 'backward': med(3), 'optimizer': med(4)} if phases else None,
        'firstLoss': losses[0], 'lastLoss': losses[a.warmup + a.steps - 1],
        'allFinite': all(math.isfinite(x) for x in losses),
        'peakRssBytes': proc_status('VmHWM'),
        'torch': torch.__version__, 'python': sys.version.split()[0],
    }
    if a.log_losses:
        out['losses'] = losses[:a.log_losses]
    if cuda:
        out['peakGpuBytes'] = torch.cuda.max_memory_allocated()
    return out
