#!/usr/bin/env python3
"""torch.save files written by PyTorch itself, to check src/io/pytorch-file.ts (the .pth reader).

  pytorch_file_make.py fixtures DIR
      DIR/checkpoint.pth  a training checkpoint in the layout of MAE's and SemAIM's misc.save_model:
                          {'model', 'optimizer', 'epoch', 'scaler', 'args': argparse.Namespace}
                          (pickle protocol 2, torch.save's default), tensors of several dtypes, views
                          into a shared storage at an offset, a 0-d tensor, an empty one, a Parameter
      DIR/plain.pt        the same weights as a bare OrderedDict state dict, pickle protocol 4
      DIR/expected.json   {name: {dtype, shape, values}} (values row-major, as float64 or int)
  pytorch_file_make.py from-safetensors SRC OUT.pth
      the tensors of the safetensors file SRC as the 'model' of such a training checkpoint, with a
      'module.' prefix (DDP's) and SemAIM's decoder tensors beside them
"""
import argparse
import collections
import json
import os
import sys

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


def from_safetensors(src, out):
    model = collections.OrderedDict(('module.' + k, v) for k, v in read_tensors(src).items())
    model['module.query_blocks.0.attn.q.weight'] = torch.zeros(4, 4)
    model['module.prediction_head.fc1.weight'] = torch.zeros(4, 4)
    torch.save(training_checkpoint(model), out)


if __name__ == '__main__':
    if sys.argv[1] == 'fixtures':
        fixtures(sys.argv[2])
    elif sys.argv[1] == 'from-safetensors':
        from_safetensors(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
