#!/usr/bin/env python3
"""torch.save files written by PyTorch itself, to check src/io/pytorch-file.ts (the .pth reader).

  pytorch_file_make.py fixtures DIR
      DIR/checkpoint.pth  a training checkpoint in the layout of MAE's and SemAIM's misc.save_model:
                          {'model', 'optimizer', 'epoch', 'scaler', 'args': argparse.Namespace}
                          (pickle protocol 2, torch.save's default), tensors of several dtypes, views
                          into a shared storage at an offset, a 0-d tensor, an empty one, a Parameter
      DIR/plain.pt        the same weights as a bare OrderedDict state dict, pickle protocol 4
      DIR/expected.json   {name: {dtype, shape, values}} (values row-major, as float64 or int)
  pytorch_file_make.py torch2 DIR
      the same tensors (and a few more) in the archives PyTorch 2.x writes, byte for byte as its
      PyTorchStreamWriter (caffe2/serialize/inline_container.cc) and miniz lay them out: see torch2_archive.
      DIR/v2-plain.pt          a plain dict of tensors (what weights_only loads), top folder 'v2-plain'
      DIR/v2-model.pth         {'model': OrderedDict, 'epoch', 'args'} (MAE's and SemAIM's save_model)
      DIR/vit.v2.timm.pth      {'state_dict', 'state_dict_ema', 'arch', 'version'} (timm's train.py)
      DIR/v2-zip64.pth         v2-plain with every entry in zip64 form: 0xffffffff in the 32-bit sizes and
                               offsets, the values in zip64 extra fields (local and central), 8-byte data
                               descriptors, 0xffff/0xffffffff in the end record (as a file over 4 GiB has)
      DIR/v2-zip64-offsets.pth the same with only the offsets in zip64 form (entries that start beyond 4 GiB)
      DIR/expected2.json       {name: {dtype, shape, values}}; torch.load (1.13) reads every file back
      (one tensor, head.weight, is of a torch.Tensor subclass: pickled through _rebuild_from_type_v2)
  pytorch_file_make.py from-safetensors SRC OUT.pth [PAD_BYTES]
      the tensors of the safetensors file SRC as the 'model' of such a training checkpoint, with a
      'module.' prefix (DDP's) and SemAIM's decoder tensors beside them; PAD_BYTES (e.g. 4.5e9) puts a
      decoder tensor of that size first, so that the encoder's entries lie past 4 GiB (zip64 offsets)
"""
import argparse
import collections
import io
import json
import os
import struct
import sys
import zipfile
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_check import DTYPES, to_tensor  # noqa: E402


def read_tensors(path):
    with open(path, 'rb') as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], 'little')
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    return {k: to_tensor(data[v['data_offsets'][0]:v['data_offsets'][1]], DTYPES[v['dtype']], v['shape'])
            for k, v in header.items() if k != '__metadata__'}


def training_checkpoint(model):
    args = argparse.Namespace(model='aim_base', blr=2e-4, epochs=800, input_size=224, norm_pix_loss=True)
    return {
        'model': model,
        'optimizer': {'state': {0: {'step': torch.tensor(5.0), 'exp_avg': torch.zeros(3)}}, 'param_groups': [{'lr': 1e-3, 'params': [0]}]},
        'epoch': 799,
        'scaler': {'scale': 65536.0, 'growth_factor': 2.0, '_growth_tracker': 12},
        'args': args,
        'log': collections.defaultdict(list, {'loss': [0.5, 0.25]}),  # a dict subclass: REDUCE, then SETITEMS on it
    }


def fixtures(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    shared = torch.randn(40, generator=g)
    sd = collections.OrderedDict()
    sd['cls_token'] = torch.randn(1, 1, 8, generator=g)
    sd['blocks.0.attn.qkv.weight'] = torch.randn(6, 4, generator=g).half()
    sd['blocks.0.attn.qkv.bias'] = torch.randn(6, generator=g).bfloat16()
    sd['pos_embed'] = torch.randn(1, 3, 2, generator=g).double()
    sd['view_a'] = shared[3:11].view(2, 4)  # two views of one storage, at offsets 3 and 20
    sd['view_b'] = shared[20:26]
    sd['scalar'] = torch.tensor(2.5)
    sd['empty'] = torch.zeros(0, 3)
    sd['index'] = torch.arange(-3, 4, dtype=torch.int64)
    sd['mask'] = torch.tensor([True, False, True])
    sd['bytes'] = torch.tensor([0, 7, 255], dtype=torch.uint8)
    sd['param'] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    torch.save(training_checkpoint(sd), os.path.join(out, 'checkpoint.pth'))
    torch.save(sd, os.path.join(out, 'plain.pt'), pickle_protocol=4)
    expected = {}
    for k, t in sd.items():
        t = t.detach()
        values = t.flatten().tolist() if t.dtype in (torch.int64, torch.uint8, torch.bool) else t.double().flatten().tolist()
        expected[k] = {'dtype': str(t.dtype).replace('torch.', ''), 'shape': list(t.shape), 'values': [int(v) if isinstance(v, bool) else v for v in values]}
    with open(os.path.join(out, 'expected.json'), 'w') as f:
        json.dump(expected, f)


def expected_values(sd):
    expected = {}
    for k, t in sd.items():
        t = t.detach()
        values = t.flatten().tolist() if t.dtype in (torch.int64, torch.uint8, torch.bool) else t.double().flatten().tolist()
        expected[k] = {'dtype': str(t.dtype).replace('torch.', ''), 'shape': list(t.shape), 'values': [int(v) if isinstance(v, bool) else v for v in values]}
    return expected


U32 = 0xFFFFFFFF
ALIGNMENT = 64  # kFieldAlignment in caffe2/serialize/inline_container.h


def torch2_archive(obj, path, zip64=False):
    """torch.save(obj, path) as PyTorch 2.x writes it. The pickle and the storages are torch 1.13's
    (the same protocol-2 pickle 2.x writes: _rebuild_tensor_v2 of ('storage', torch.XStorage, key,
    'cpu', numel)); the archive around them is 2.x's: the top folder named after the file's stem
    (basename without its last extension), the records data.pkl, .format_version, .storage_alignment,
    byteorder, data/<key> in numeric order, version and .data/serialization_id; every entry stored,
    general purpose flags 0x0808 (UTF-8 name, sizes in a data descriptor after the data: the local
    header's CRC and sizes are 0), its data at a multiple of 64 bytes through an 'FB' extra field of
    'Z' padding (getPadding); a zip64 end of central directory record and locator always (miniz with
    MZ_ZIP_FLAG_WRITE_ZIP64). zip64='all' writes every entry as miniz writes one whose size and offset
    are at least 4 GiB, zip64='offset' as one that starts beyond 4 GiB (only its offset in the extra field)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    src = zipfile.ZipFile(buf)
    keys = sorted((n.split('/data/', 1)[1] for n in src.namelist() if '/data/' in n), key=int)
    records = [('data.pkl', src.read('archive/data.pkl')), ('.format_version', b'1'), ('.storage_alignment', b'64'), ('byteorder', b'little')]
    records += [('data/' + k, src.read('archive/data/' + k)) for k in keys]
    records += [('version', b'3\n')]
    crcs = [zlib.crc32(d) for _, d in records]
    records += [('.data/serialization_id', b'%020d%020d' % (len(records) * 7919, sum(crcs) % 10**20))]
    root = os.path.splitext(os.path.basename(path))[0]
    out = bytearray()
    central = []
    for name, data in records:
        full = (root + '/' + name).encode()
        offset = len(out)
        crc = zlib.crc32(data)
        z64 = b''
        # miniz: the sizes (uncompressed, compressed) when the size overflows, the offset when it does
        fields = {'all': [len(data), len(data), offset], 'offset': [offset]}.get(zip64, [])
        if fields:
            z64 = struct.pack('<HH%dQ' % len(fields), 1, 8 * len(fields), *fields)
        start = offset + 30 + len(full) + 4 + len(z64)
        pad = (-start) % ALIGNMENT
        extra = z64 + b'FB' + struct.pack('<H', pad) + b'Z' * pad
        out += struct.pack('<IHHHHHIIIHH', 0x04034B50, 0, 0x0808, 0, 0, 0, 0, 0, 0, len(full), len(extra)) + full + extra
        assert len(out) % ALIGNMENT == 0
        out += data
        if zip64:
            out += struct.pack('<IIQQ', 0x08074B50, crc, len(data), len(data))
        else:
            out += struct.pack('<IIII', 0x08074B50, crc, len(data), len(data))
        central.append((full, crc, len(data), offset, z64))
    cd_offset = len(out)
    for full, crc, size, offset, extra in central:
        s32 = U32 if zip64 == 'all' else size
        o32 = U32 if zip64 else offset
        out += struct.pack('<IHHHHHHIIIHHHHHII', 0x02014B50, 0, 0, 0x0808, 0, 0, 0, crc, s32, s32, len(full), len(extra), 0, 0, 0, 0, o32) + full + extra
    cd_size = len(out) - cd_offset
    eocd64 = len(out)
    n = len(central)
    out += struct.pack('<IQHHIIQQQQ', 0x06064B50, 44, 0x031E, 0x2D, 0, 0, n, n, cd_size, cd_offset)
    out += struct.pack('<IIQI', 0x07064B50, 0, eocd64, 1)
    if zip64:
        out += struct.pack('<IHHHHIIH', 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, U32, U32, 0)
    else:
        out += struct.pack('<IHHHHIIH', 0x06054B50, 0, 0, n, n, cd_size, cd_offset, 0)
    with open(path, 'wb') as f:
        f.write(out)
    # the archive is a valid one: zipfile checks every CRC, and PyTorch itself reads the tensors back
    assert zipfile.ZipFile(path).testzip() is None
    return out


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and (a == b or not isinstance(a, (int, float, str)))


class Marked(torch.Tensor):
    """A tensor subclass: torch.save pickles it as _rebuild_from_type_v2(_rebuild_tensor_v2, Marked, args, state)."""

    def __getstate__(self):  # (under Python 3.11 object.__getstate__ gives None, which torch 1.13's loader cannot take)
        return dict(self.__dict__)


def torch2(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    shared = torch.randn(64, generator=g)
    halves = torch.randn(20, generator=g).half()
    sd = {}  # a plain dict, as weights_only-minded code saves
    sd['cls_token'] = torch.randn(1, 1, 8, generator=g)
    sd['patch_embed.proj.weight'] = torch.randn(4, 3, 2, 2, generator=g).bfloat16()
    sd['blocks.0.attn.qkv.weight'] = halves[2:14].view(3, 4)  # fp16 views at offsets 2 and 14 of one storage
    sd['blocks.0.attn.qkv.bias'] = halves[14:17]
    sd['view_a'] = shared[5:17].view(3, 4)
    sd['view_b'] = shared[40:50]
    sd['steps'] = torch.tensor([-(2**40), -1, 0, 7, 2**52], dtype=torch.int64)
    sd['mask'] = torch.tensor([True, False, False, True, True])
    sd['bytes'] = torch.tensor([0, 1, 254, 255], dtype=torch.uint8)
    sd['scalar'] = torch.tensor(-0.5)
    sd['empty'] = torch.zeros(0, 4)
    sd['norm.weight'] = torch.nn.Parameter(torch.randn(6, generator=g))
    sd['head.weight'] = torch.randn(2, 3, generator=g).as_subclass(Marked)
    sd['head.weight'].tag = 'classifier'  # Python state
    args = argparse.Namespace(model='vit_base', input_size=224)
    files = {
        'v2-plain.pt': (sd, False),
        'v2-model.pth': ({'model': collections.OrderedDict(sd), 'epoch': 99, 'args': args}, False),
        'vit.v2.timm.pth': ({'epoch': 3, 'arch': 'vit_base', 'state_dict': collections.OrderedDict(sd),
                             'state_dict_ema': collections.OrderedDict((k, torch.zeros_like(v)) for k, v in sd.items()), 'version': 2}, False),
        'v2-zip64.pth': (sd, 'all'),
        'v2-zip64-offsets.pth': (sd, 'offset'),
    }
    for name, (obj, zip64) in files.items():
        path = os.path.join(out, name)
        torch2_archive(obj, path, zip64)
        if zip64 == 'offset':
            continue  # miniz's reader checks a central header's offset + size against the file's size before reading the zip64 field
        back = torch.load(path)
        assert same(obj if not isinstance(obj, dict) or 'args' not in obj else {k: v for k, v in obj.items() if k != 'args'},
                    back if 'args' not in back else {k: v for k, v in back.items() if k != 'args'}), name
    with open(os.path.join(out, 'expected2.json'), 'w') as f:
        json.dump(expected_values(sd), f)


def from_safetensors(src, out, pad_bytes=0):
    model = collections.OrderedDict()
    if pad_bytes:
        model['module.prediction_head.fc2.weight'] = torch.zeros(int(pad_bytes), dtype=torch.uint8)
    model.update(('module.' + k, v) for k, v in read_tensors(src).items())
    model['module.query_blocks.0.attn.q.weight'] = torch.zeros(4, 4)
    model['module.prediction_head.fc1.weight'] = torch.zeros(4, 4)
    torch.save(training_checkpoint(model), out)


if __name__ == '__main__':
    if sys.argv[1] == 'fixtures':
        fixtures(sys.argv[2])
    elif sys.argv[1] == 'torch2':
        torch2(sys.argv[2])
    elif sys.argv[1] == 'from-safetensors':
        from_safetensors(sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 0)
    else:
        sys.exit(__doc__)
