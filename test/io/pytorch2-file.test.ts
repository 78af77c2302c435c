// torch.save files as PyTorch 2.x writes them (scripts/pytorch_file_make.py torch2 lays out the
// archive byte for byte as PyTorchStreamWriter and miniz do: the top folder named after the file's
// stem, .format_version, .storage_alignment, byteorder, .data/serialization_id, data at multiples of
// 64 bytes behind an 'FB' padding field, sizes in data descriptors, a zip64 end record), also in the
// zip64 form of files over 4 GiB; PyTorch 1.13's torch.load reads each of them back in that script.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTensors, readSafetensorsHeader } from '../../src/io';

const PY = '/usr/bin/python3';
const SCRIPT = join(__dirname, '..', '..', '..', 'scripts', 'pytorch_file_make.py');
const root = mkdtempSync(join(tmpdir(), 'semaim-pth2-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

execFileSync(PY, [SCRIPT, 'torch2', root]);
const expected = JSON.parse(readFileSync(join(root, 'expected2.json'), 'utf8')) as Record<string, { dtype: string; shape: number[]; values: number[] }>;

const FILES = {
  'v2-plain.pt': 'a plain dict (weights_only style)',
  'v2-model.pth': "{'model': ...} beside epoch and argparse args",
  'vit.v2.timm.pth': "timm's {'state_dict', 'state_dict_ema', ...}, a stem with dots",
  'v2-zip64.pth': 'every size and offset in zip64 extra fields',
  'v2-zip64-offsets.pth': 'only the offsets in zip64 extra fields',
};

for (const [file, what] of Object.entries(FILES)) {
  test(`PyTorch 2.x layout, ${file} (${what}): every tensor with its dtype, shape and values (bf16, fp16 views, int64, bool, 0-d, empty, a Tensor subclass)`, () => {
    const path = join(root, file);
    assert.deepEqual([...readSafetensorsHeader(path).tensors.keys()].sort(), Object.keys(expected).sort(), 'the weights, not the EMA copy or the args');
    const { tensors } = loadTensors(path);
    try {
      for (const [name, want] of Object.entries(expected)) {
        const t = tensors.get(name)!;
        assert.equal(t.dtype, want.dtype, name);
        assert.deepEqual(t.shape, want.shape, name);
        const wide = t.to({ dtype: 'float64' });
        assert.deepEqual(Array.from(wide.data() as Float64Array), want.values, name); // exact: int64 values up to 2^52 included
        wide.dispose();
      }
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  });
}

test('PyTorch 2.x zip64 layout: the storages are 64-byte aligned, and a flipped bit in one is refused by its CRC-32', () => {
  const path = join(root, 'v2-zip64.pth');
  const header = readSafetensorsHeader(path);
  const cls = header.tensors.get('cls_token')!;
  assert.equal(cls.offset % 64, 0, 'the storage data starts where the FB padding puts it');
  const bytes = readFileSync(path);
  bytes[cls.offset + 9] ^= 0x01;
  const damaged = join(root, 'damaged-zip64.pth');
  writeFileSync(damaged, bytes);
  assert.throws(() => loadTensors(damaged), /tensor 'cls_token': its storage data\/\d+ does not match its CRC-32: the file is damaged/);
});
