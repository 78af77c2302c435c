// torch.save files (.pth) read in place without running their pickle: the tensors PyTorch 1.13 wrote
// (scripts/pytorch_file_make.py), in every dtype, views into a shared storage, the layouts training
// scripts save; and the files a reader must refuse or must not obey.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, copyFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTensors, readSafetensorsHeader } from '../../src/io';
import { memoryStats } from '../../src/torch';
import { reText } from '../../src/util/regexp-text';

const PY = '/usr/bin/python3';
const SCRIPT = join(__dirname, '..', '..', '..', 'scripts', 'pytorch_file_make.py');
const root = mkdtempSync(join(tmpdir(), 'semaim-pth-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

execFileSync(PY, [SCRIPT, 'fixtures', root]);
const expected = JSON.parse(readFileSync(join(root, 'expected.json'), 'utf8')) as Record<string, { dtype: string; shape: number[]; values: number[] }>;

/** PyTorch's runs a pickle; here is one whose reduce would create a file when run. */
function hostileCheckpoint(marker: string): string {
  const path = join(root, 'hostile.pth');
  execFileSync(PY, [
    '-c',
    `import os, sys, torch
class Payload:
    def __reduce__(self):
        return (os.system, ('touch ' + sys.argv[1],))
torch.save({'model': {'w': torch.ones(2)}, 'args': Payload()}, sys.argv[2])`,
    marker,
    path,
  ]);
  return path;
}

for (const file of ['checkpoint.pth', 'plain.pt']) {
  test(`${file}: every tensor PyTorch saved, with its dtype, shape and values (shared storages, offsets, 0-d, empty)`, () => {
    const path = join(root, file);
    const header = readSafetensorsHeader(path);
    assert.deepEqual([...header.tensors.keys()].sort(), Object.keys(expected).sort(), 'the state dict, not the optimizer or args');
    const { tensors } = loadTensors(path);
    try {
      for (const [name, want] of Object.entries(expected)) {
        const t = tensors.get(name)!;
        assert.equal(t.dtype, want.dtype, name);
        assert.deepEqual(t.shape, want.shape, name);
        const wide = t.to({ dtype: 'float64' });
        assert.deepEqual(Array.from(wide.data() as Float64Array), want.values, name); // exact: every dtype fits in float64
        wide.dispose();
      }
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  });
}

test('a pickle that names os.system is not run: the call is recorded, the weights are read', () => {
  const marker = join(root, 'ran');
  const path = hostileCheckpoint(marker);
  const { tensors } = loadTensors(path);
  assert.deepEqual([...tensors.keys()], ['w']);
  for (const t of tensors.values()) t.dispose();
  assert.ok(!existsSync(marker), 'the pickle ran a command');
});

test('refused with the file named: truncated, damaged, not contiguous, compressed, the pre-1.6 format, no state dict', () => {
  const cut = join(root, 'cut.pth');
  copyFileSync(join(root, 'checkpoint.pth'), cut);
  truncateSync(cut, statSync(cut).size - 300);
  assert.throws(() => readSafetensorsHeader(cut), new RegExp(`${reText(cut)}: .*(truncated|ends early|outside)`));

  const damaged = join(root, 'damaged.pth');
  const bytes = readFileSync(join(root, 'checkpoint.pth'));
  const pickleStart = bytes.indexOf(Buffer.from([0x80, 0x02]), bytes.indexOf('data.pkl'));
  bytes[pickleStart + 40] ^= 0x20;
  writeFileSync(damaged, bytes);
  assert.throws(() => readSafetensorsHeader(damaged), new RegExp(`${reText(damaged)}: .*data\\.pkl does not match its CRC-32`));

  const made = (name: string, code: string): string => {
    const p = join(root, name);
    execFileSync(PY, ['-c', `import sys, torch, zipfile\n${code}`, p]);
    return p;
  };
  const transposed = made('transposed.pth', "torch.save({'w': torch.randn(4, 3).t()}, sys.argv[1])");
  assert.throws(() => readSafetensorsHeader(transposed), /tensor 'w' is not contiguous in its storage .*save it with \.contiguous\(\)/);
  const deflated = made(
    'deflated.pth',
    "torch.save({'w': torch.ones(2)}, sys.argv[1] + '.tmp')\nsrc = zipfile.ZipFile(sys.argv[1] + '.tmp')\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    [z.writestr(n, src.read(n)) for n in src.namelist()]",
  );
  assert.throws(() => readSafetensorsHeader(deflated), /is compressed \(method 8\); torch\.save stores its entries uncompressed/);
  const legacy = made('legacy.pth', "torch.save({'w': torch.ones(2)}, sys.argv[1], _use_new_zipfile_serialization=False)");
  assert.throws(
    () => readSafetensorsHeader(legacy),
    new RegExp(`${reText(legacy)}: a torch\\.save file in the format before PyTorch 1\\.6 \\(not a zip archive\\)`),
  );
  // a storage type named like an Object.prototype member was taken for a dtype (the function Object)
  const ctor = made(
    'ctor.pth',
    "torch.save({'w': torch.ones(2)}, sys.argv[1] + '.tmp')\nsrc = zipfile.ZipFile(sys.argv[1] + '.tmp')\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    [z.writestr(n, src.read(n).replace(b'FloatStorage', b'constructor') if n.endswith('data.pkl') else src.read(n)) for n in src.namelist()]",
  );
  assert.throws(() => readSafetensorsHeader(ctor), /tensor 'w' is stored as constructor, a type semaim does not read/);
  // a sparse tensor among dense ones was left out of the state dict without a word
  const sparse = made('sparse.pth', "torch.save({'w': torch.ones(2), 'adj': torch.eye(3).to_sparse()}, sys.argv[1])");
  assert.throws(
    () => readSafetensorsHeader(sparse),
    new RegExp(`${reText(sparse)}: tensor "adj" is saved through torch\\._utils\\._rebuild_sparse_tensor .*save it as a dense tensor`),
  );
  const noWeights = made('no-weights.pth', "torch.save({'epoch': 3, 'args': {'lr': 0.1}}, sys.argv[1])");
  assert.throws(() => readSafetensorsHeader(noWeights), /without a state dict: its top-level keys are "epoch", "args"/);
});

test("a checkpoint keeping a tensor of its own beside its 'model' entry (a saved RNG state) is read from 'model', not taken for the state dict", () => {
  // the RNG state alone was the "state dict": the weights under 'model' were never looked at, and an encoder
  // load then said the file has no 'cls_token'
  const path = join(root, 'rng-state.pth');
  execFileSync(PY, [
    '-c',
    "import sys, torch\ntorch.save({'model': {'w': torch.ones(2), 'b': torch.zeros(3)}, 'epoch': 3, 'rng_state': torch.get_rng_state()}, sys.argv[1])",
    path,
  ]);
  assert.deepEqual([...readSafetensorsHeader(path).tensors.keys()].sort(), ['b', 'w']);
  // a state dict itself is still the file's own tensors
  assert.deepEqual([...readSafetensorsHeader(join(root, 'plain.pt')).tensors.keys()].sort(), Object.keys(expected).sort());
});

test("a tensor whose bytes do not match its storage's CRC-32 is refused when loaded, also when it is a view and the damage lies outside it", () => {
  const header = readSafetensorsHeader(join(root, 'checkpoint.pth'));
  const flipped = (name: string, at: (offset: number) => number): string => {
    const p = join(root, `flipped-${name}.pth`);
    const bytes = readFileSync(join(root, 'checkpoint.pth'));
    bytes[at(header.tensors.get(name)!.offset)] ^= 0x01; // the lowest mantissa bit: a plausible weight, only the CRC tells
    writeFileSync(p, bytes);
    return p;
  };
  const whole = flipped('cls_token', (o) => o + 5);
  assert.doesNotThrow(() => readSafetensorsHeader(whole), 'the header does not read the weights');
  assert.throws(
    () => loadTensors(whole),
    new RegExp(`${reText(whole)}: tensor 'cls_token': its storage data/\\d+ does not match its CRC-32: the file is damaged`),
  );
  // view_a is elements 3..10 of a 40-element storage: element 35 is outside it
  const beside = flipped('view_a', (o) => o - 3 * 4 + 35 * 4);
  assert.throws(() => loadTensors(beside), /tensor 'view_(a|b)': its storage data\/\d+ does not match its CRC-32/);
  const intact = loadTensors(beside, { filter: (n) => n === 'cls_token' }).tensors;
  assert.equal(intact.size, 1, 'the other storages are intact');
  for (const t of intact.values()) t.dispose();
});

test('a tensor refused when read (its CRC-32) frees the tensors loaded before it', () => {
  const header = readSafetensorsHeader(join(root, 'checkpoint.pth'));
  const names = [...header.tensors.keys()].sort();
  const last = names[names.length - 1];
  const damaged = join(root, 'damaged-last.pth');
  const bytes = readFileSync(join(root, 'checkpoint.pth'));
  bytes[header.tensors.get(last)!.offset] ^= 0x01;
  writeFileSync(damaged, bytes);
  const live = memoryStats().liveTensors;
  assert.throws(() => loadTensors(damaged), /does not match its CRC-32/);
  assert.equal(memoryStats().liveTensors, live, 'the tensors read before the damaged storage are freed');
});

test('a state dict whose names view one storage hundreds of times is refused at the header (each view is copied when loaded)', () => {
  const path = join(root, 'many-views.pth');
  execFileSync(PY, ['-c', "import sys, torch; big = torch.zeros(262144); torch.save({f'w{i}': big for i in range(400)}, sys.argv[1])", path]);
  assert.throws(
    () => readSafetensorsHeader(path),
    new RegExp(`^CheckpointError: ${reText(path)}: its 400 tensors view 419430400 bytes of a \\d+-byte file: many names over the same storage`),
  );
  // tied weights (a few names over one storage) are read
  execFileSync(PY, ['-c', "import sys, torch; w = torch.ones(4, 2); torch.save({'embed.weight': w, 'head.weight': w}, sys.argv[1])", path]);
  assert.deepEqual([...readSafetensorsHeader(path).tensors.keys()], ['embed.weight', 'head.weight']);
});
