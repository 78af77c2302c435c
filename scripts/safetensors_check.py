#!/usr/bin/env python3
"""Independent safetensors reader/writer (stdlib + torch only) used to cross-check src/io/safetensors.ts.

  safetensors_check.py read FILE   print JSON {name: {dtype, shape, sum, first}, "__metadata__": {...}}
  safetensors_check.py write FILE  write a file with known values in several dtypes

`sum` is the float64 sum of all elements; `first` holds up to 8 leading elements in row-major
order (int64 as strings so JSON readers keep them exact; non-finite floats as "nan"/"inf"/"-inf").
"""
import json
import math
import struct
import sys

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


def element_size(dtype):
    return torch.empty((), dtype=dtype).element_size()


def to_tensor(raw, dtype, shape):
    if len(raw) == 0:
        return torch.empty(shape, dtype=dtype)
    if dtype == torch.bfloat16:
        t = torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16)
    else:
        t = torch.frombuffer(bytearray(raw), dtype=dtype)
    return t.reshape(shape)


def jsonable(v, dtype):
    if dtype == torch.int64:
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SystemExit(f"{path}: truncated")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise SystemExit(f"{path}: header length {n} larger than file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    out = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            out[name] = info
            continue
        dtype = DTYPES[info["dtype"]]
        shape = list(info["shape"])
        begin, end = info["data_offsets"]
        numel = math.prod(shape)
        if not (0 <= begin <= end <= len(data)) or end - begin != numel * element_size(dtype):
            raise SystemExit(f"{path}: bad data_offsets for {name}")
        spans.append((begin, end))
        t = to_tensor(data[begin:end], dtype, shape)
        first = t.reshape(-1)[:8]
        if t.is_floating_point():
            first = first.to(torch.float64)
        out[name] = {
            "dtype": info["dtype"],
            "shape": shape,
            "sum": t.to(torch.float64).sum().item(),
            "first": [jsonable(v, dtype) for v in first.tolist()],
        }
    pos = 0
    for begin, end in sorted(spans):
        if begin != pos:
            raise SystemExit(f"{path}: data section not tiled exactly at {begin}")
        pos = end
    if pos != len(data):
        raise SystemExit(f"{path}: {len(data) - pos} trailing bytes")
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


def tensor_bytes(t):
    t = t.contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write(path):
    tensors = {
        "bf16": torch.tensor([[1.0, -2.5, 3.140625], [0.0078125, -0.0, 65536.0]], dtype=torch.bfloat16),
        "f16": torch.tensor([0.5, -65504.0, 2.0 ** -24, 1.0009765625], dtype=torch.float16),
        "f32": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4 - 1,
        "f64": torch.tensor([math.pi, -1e300, 2.0 ** -1074], dtype=torch.float64),
        "i64": torch.tensor([-(2 ** 63), 2 ** 63 - 1, 0, 42], dtype=torch.int64),
        "i32": torch.tensor([[-(2 ** 31), 2 ** 31 - 1], [7, -7]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767, 1], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, -1], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 128], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True], dtype=torch.bool),
        "scalar": torch.tensor(7.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    # Lay the data out in reverse name order so readers cannot rely on header/data order agreeing.
    header = {"__metadata__": {"format": "pt", "source": "safetensors_check.py"}}
    chunks = []
    offset = 0
    for name in sorted(tensors, reverse=True):
        raw = tensor_bytes(tensors[name])
        header[name] = {
            "dtype": NAMES[tensors[name].dtype],
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    hbytes = json.dumps(header).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for c in chunks:
            f.write(c)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("read", "write"):
        raise SystemExit(__doc__)
    (read if sys.argv[1] == "read" else write)(sys.argv[2])


if __name__ == "__main__":
    main()
