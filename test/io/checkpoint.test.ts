// A checkpoint folder (src/io/checkpoint.ts) read directly: readCheckpoint verifies what it loads itself,
// and a changed or missing file, or NaN/Inf in the weights or the optimiser state, is refused naming the
// file, by verifyCheckpoint and by readCheckpoint alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { CheckpointManager } from '../../src/run/checkpoints';
import {
  CHECKPOINT_FILES,
  NonFiniteTensorError,
  checkpointWeightsSha256,
  listCheckpoints,
  readCheckpoint,
  readCheckpointState,
  runKindOf,
  sha256File,
  stepDirName,
  verifyCheckpoint,
  type LoadedCheckpoint,
} from '../../src/io';
import { resolveCheckpoint, resolveEncoder } from '../../src/semaim/pretrained';
import { createHash } from 'node:crypto';
import { CheckpointError } from '../../src/util/errors';

const root = mkdtempSync(join(tmpdir(), 'semaim-ckpt-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

/** A checkpoint of step 7 as a run writes it: model.safetensors {w}, optimizer.safetensors {m}, state.json with their hashes. */
function checkpoint(name: string, w = [1, 2, 3], m = [0.5, 0.25]): string {
  const model = new Map([['w', torch.tensor(new Float32Array(w))]]);
  const extra = new Map([['m', torch.tensor(new Float32Array(m))]]);
  try {
    return new CheckpointManager(join(root, name)).save(7, { model, extra, state: { epoch: 1, batch: 0 } });
  } finally {
    for (const t of [...model.values(), ...extra.values()]) t.dispose();
  }
}

function values(c: LoadedCheckpoint): { w: number[]; m: number[] } {
  const out = { w: Array.from(c.model.get('w')!.toFloat32Array()), m: Array.from(c.extra.get('m')!.toFloat32Array()) };
  for (const t of [...c.model.values(), ...c.extra.values()]) t.dispose();
  return out;
}

test('readCheckpoint loads an intact checkpoint: its step, weights and optimiser state', () => {
  const dir = checkpoint('intact');
  assert.equal(verifyCheckpoint(dir), null);
  const c = readCheckpoint(dir);
  assert.equal(c.step, 7);
  assert.deepEqual(values(c), { w: [1, 2, 3], m: [0.5, 0.25] });
});

test('a file changed after the checkpoint was written is refused by readCheckpoint itself, not only by verifyCheckpoint', () => {
  const dir = checkpoint('changed');
  const weights = join(dir, 'model.safetensors');
  const bytes = readFileSync(weights);
  bytes[bytes.length - 1] ^= 0x01; // w[2] = 3 (0x40400000) becomes 12 (0x41400000): a plausible weight, only the hash tells
  writeFileSync(weights, bytes);
  const why = 'model.safetensors does not match its recorded SHA-256';
  assert.equal(verifyCheckpoint(dir), why);
  assert.throws(
    () => readCheckpoint(dir),
    (e: Error) => e instanceof CheckpointError && e.code === 'ERR_CHECKPOINT' && e.message === `checkpoint ${dir} is not usable: ${why}`,
  );
  // what verification stands between: told it was just verified, readCheckpoint reads the changed weight
  assert.deepEqual(values(readCheckpoint(dir, { verified: true })).w, [1, 2, 12]);
});

test('a missing file of a checkpoint is named ("X is missing"), by verifyCheckpoint and readCheckpoint (not an ENOENT thrown from a stat)', () => {
  for (const f of [...CHECKPOINT_FILES, 'state.json']) {
    const dir = checkpoint(`missing-${f}`);
    unlinkSync(join(dir, f));
    assert.equal(verifyCheckpoint(dir), `${f} is missing`, f);
    assert.throws(
      () => readCheckpoint(dir),
      (e: Error) => e instanceof CheckpointError && e.message === `checkpoint ${dir} is not usable: ${f} is missing`,
      f,
    );
  }
});

test('a file removed while verifyCheckpoint checks the folder (a run deleting an old checkpoint) is "missing", not an ENOENT thrown out of it', () => {
  const dir = checkpoint('removed-while-checked');
  const fs = require('node:fs') as typeof import('node:fs');
  const open = fs.openSync;
  fs.openSync = ((path: string, ...rest: Parameters<typeof open> extends [unknown, ...infer R] ? R : never) => {
    if (String(path) === join(dir, 'optimizer.safetensors')) unlinkSync(path);
    return open(path, ...rest);
  }) as typeof fs.openSync;
  try {
    assert.equal(verifyCheckpoint(dir), 'optimizer.safetensors is missing');
  } finally {
    fs.openSync = open;
  }
});

/** Rewrites a checkpoint's state.json through `change`, without its digest (as an older checkpoint has none). */
function rewriteState(dir: string, change: (state: Record<string, unknown>) => void): void {
  const state = readCheckpointState(dir);
  delete state.stateSha256;
  change(state);
  writeFileSync(join(dir, 'state.json'), JSON.stringify(state));
}

test('a state.json whose files is not an object, or leaves out a file of the checkpoint, is named: training needs both, weights the model and any other present', () => {
  for (const files of [null, 'model.safetensors', 3]) {
    const dir = checkpoint(`files-${String(files)}`);
    rewriteState(dir, (s) => (s.files = files));
    assert.equal(verifyCheckpoint(dir), 'state.json lists no files', String(files));
  }
  // optimizer.safetensors gone and unlisted: a resume cannot use the folder, reading its weights can
  const noOptimizer = checkpoint('unlisted-optimizer');
  rewriteState(noOptimizer, (s) => delete (s.files as Record<string, unknown>)['optimizer.safetensors']);
  unlinkSync(join(noOptimizer, 'optimizer.safetensors'));
  assert.equal(verifyCheckpoint(noOptimizer), 'state.json: files does not list optimizer.safetensors');
  assert.equal(verifyCheckpoint(noOptimizer, 'weights'), null);
  // model.safetensors gone and unlisted: not even its weights
  const noModel = checkpoint('unlisted-model');
  rewriteState(noModel, (s) => delete (s.files as Record<string, unknown>)['model.safetensors']);
  unlinkSync(join(noModel, 'model.safetensors'));
  assert.equal(verifyCheckpoint(noModel, 'weights'), 'state.json: files does not list model.safetensors');
});

test('checkpointWeightsSha256 takes the SHA-256 state.json records only when told the folder was verified; else it hashes the file', () => {
  const dir = checkpoint('weights-sha');
  const weights = join(dir, 'model.safetensors');
  const recorded = (readCheckpointState(dir).files as Record<string, string>)['model.safetensors'];
  assert.equal(checkpointWeightsSha256(dir, false), recorded);
  const bytes = readFileSync(weights);
  bytes[bytes.length - 1] ^= 0x01;
  writeFileSync(weights, bytes);
  assert.equal(checkpointWeightsSha256(dir, true), recorded);
  assert.equal(checkpointWeightsSha256(dir, false), createHash('sha256').update(bytes).digest('hex'));
});

test("runKindOf names the command of a semaim model file's format ('semaim.<kind>/N'), and is null for any other", () => {
  assert.equal(runKindOf('semaim.pretrain/1'), 'pretrain');
  assert.equal(runKindOf('semaim.finetune/12'), 'finetune');
  for (const other of [undefined, '', 'pt', 'semaim.pretrain', 'semaim.pretrain/1x', 'xsemaim.pretrain/1', 'semaim.pre-train/1']) {
    assert.equal(runKindOf(other), null, String(other));
  }
});

test('NaN or Inf in the weights or in an optimiser moment is refused by readCheckpoint, naming the file and tensor (its hashes match: a run that diverged)', () => {
  for (const [name, w, m, file, tensor] of [
    ['inf-weight', [1, Infinity, 3], [0.5, 0.25], 'model.safetensors', 'w'],
    ['nan-moment', [1, 2, 3], [0.5, NaN], 'optimizer.safetensors', 'm'],
  ] as const) {
    const dir = checkpoint(name, [...w], [...m]);
    assert.equal(verifyCheckpoint(dir), null, `${name}: its files are as they were written`);
    assert.throws(
      () => readCheckpoint(dir),
      (e: Error) => e instanceof NonFiniteTensorError && e.message.startsWith(`${join(dir, file)}: tensor '${tensor}' holds 1 NaN/Inf value(s) of`),
      name,
    );
  }
});

test('sha256File reads a settled file once per process while it is unchanged, and again after any change to it (in place, same size)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sha-'));
  // the live binding the compiled module calls: counts the reads
  const fs = require('node:fs') as typeof import('node:fs');
  const readSync = fs.readSync;
  let reads = 0;
  fs.readSync = ((...a: Parameters<typeof readSync>) => (reads++, readSync(...a))) as typeof readSync;
  try {
    const file = join(dir, 'model.safetensors');
    writeFileSync(file, 'a'.repeat(1000));
    const digest = (text: string) => createHash('sha256').update(text).digest('hex');
    // just written: not remembered (a coarse file-system clock could give the next change the same time)
    assert.equal(sha256File(file), digest('a'.repeat(1000)));
    writeFileSync(file, 'b'.repeat(1000));
    assert.equal(sha256File(file), digest('b'.repeat(1000)));
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2100); // settle: change time over 2 s old
    reads = 0;
    assert.equal(sha256File(file), digest('b'.repeat(1000)));
    assert.ok(reads > 0);
    reads = 0;
    assert.equal(sha256File(file), digest('b'.repeat(1000)));
    assert.equal(reads, 0, 'an unchanged settled file is not read again');
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, 'c', 500);
    fs.closeSync(fd);
    assert.equal(sha256File(file), digest('b'.repeat(500) + 'c' + 'b'.repeat(499)));
    assert.ok(reads > 0, 'a file changed in place is read again');
  } finally {
    fs.readSync = readSync;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stepDirName pads the step to 8 digits and refuses a step that is not an integer ≥ 0 (was step-000000-1, step-00000NaN)', () => {
  assert.equal(stepDirName(0), 'step-00000000');
  assert.equal(stepDirName(1234), 'step-00001234');
  for (const bad of [-1, NaN, 1.5, Infinity])
    assert.throws(() => stepDirName(bad), { name: 'RangeError', message: `stepDirName: step must be an integer ≥ 0, got ${bad}` });
});

test('a path that is there but cannot be looked at (a symbolic-link loop here; EACCES alike) is named with its error, not called missing or absent', () => {
  const loop = join(root, 'loop');
  symlinkSync(loop, loop);
  // a checkpoint folder that is a loop: its state.json is unreadable, not "missing"
  assert.match(verifyCheckpoint(loop)!, /^state\.json is unreadable \(ELOOP/);
  // a run folder whose checkpoints/ is a loop: the loop is the error, not "no usable checkpoint (expected a run folder…)"
  const run = join(root, 'run-with-loop');
  mkdirSync(run);
  symlinkSync(join(run, 'checkpoints'), join(run, 'checkpoints'));
  assert.throws(() => listCheckpoints(join(run, 'checkpoints')), { code: 'ELOOP' });
  assert.throws(() => resolveCheckpoint(run), /ELOOP.*checkpoints/);
  // --checkpoint naming the loop itself: not "does not exist"
  assert.throws(() => resolveCheckpoint(loop), /ELOOP.*loop/);
  assert.throws(() => resolveEncoder(loop), /ELOOP.*loop/);
});
