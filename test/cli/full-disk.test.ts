// A real full and a real read-only file system (a small tmpfs; needs root, else skipped with the reason):
// a command fails naming the file and the cause, exits 1, keeps its earlier result and leaves no
// temporary file; once there is room the same command succeeds. The writers' errno paths are tested
// everywhere through Node's fs (test/util/disk-faults.test.ts); this is the same on the kernel's ENOSPC.
import { tmpfsScratch } from '../tmpfs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { encode, write } from '../data/helpers';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const TINY =
  '--model vit_tiny --embed-dim 32 --depth 2 --num-heads 2 --img-size 32 --patch-size 4 --synthetic-size 64 --batch-size 16 --epochs 2 --warmup-epochs 0 --max-steps 2 --num-workers 0 --threads 1';
const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Fills the file system of `dir` to the last byte. */
function fill(dir: string): void {
  const fd = openSync(join(dir, 'filler'), 'a');
  try {
    for (const size of [1 << 20, 65536, 4096, 512, 64, 1]) {
      const b = Buffer.alloc(size);
      try {
        for (;;) writeSync(fd, b);
      } catch {
        /* full at this size: go on with smaller writes */
      }
    }
  } finally {
    closeSync(fd);
  }
}

test('knn on a full, then a read-only tmpfs: named error, exit 1, earlier knn.json intact, no temporary file; succeeds with room', (t) => {
  const scratch = tmpfsScratch(t, 'semaim-full-disk-', 'size=2m');
  if (!scratch) return;
  const { dir, mnt } = scratch;
  const run = join(dir, 'run');
  assert.equal(cli('pretrain', ...TINY.split(' '), '--out-dir', run).status, 0);
  const knn = (...more: string[]) =>
    cli(
      'knn',
      '--checkpoint',
      run,
      '--dataset',
      'synthetic',
      '--train-limit',
      '32',
      '--test-limit',
      '16',
      '--threads',
      '1',
      '--num-workers',
      '0',
      '--out-dir',
      join(mnt, 'knn'),
      ...more,
    );
  const first = knn();
  assert.equal(first.status, 0, first.stderr);
  const json = join(mnt, 'knn', 'knn.json');
  const before = sha(json);

  fill(mnt);
  const full = knn('--k', '5');
  assert.equal(full.status, 1, full.stderr);
  assert.match(
    full.stderr,
    /semaim: cannot write .*knn\/knn\.json: ENOSPC: no space left on device, write \(the disk is full: free space, or write elsewhere\)/,
  );
  assert.equal(sha(json), before, 'the earlier result is intact');
  assert.deepEqual(readdirSync(join(mnt, 'knn')), ['knn.json'], 'no temporary file');

  rmSync(join(mnt, 'filler'));
  assert.equal(spawnSync('mount', ['-o', 'remount,ro', mnt]).status, 0);
  const ro = knn('--k', '5');
  assert.equal(ro.status, 1);
  assert.match(ro.stderr, /semaim: cannot write .*knn\/knn\.json: EROFS: read-only file system.*\(the file system is read-only: write elsewhere\)/);
  const folder = cli('export', '--checkpoint', run, '--format', 'onnx', '--out', join(mnt, 'onnx-out'));
  assert.match(folder.stderr, /semaim: cannot create the folder .*onnx-out\/onnx: EROFS: read-only file system, mkdir/, 'not ENOENT');

  assert.equal(spawnSync('mount', ['-o', 'remount,rw', mnt]).status, 0);
  const again = knn('--k', '5');
  assert.equal(again.status, 0, again.stderr);
  assert.notEqual(sha(json), before, 'written once there is room');
});

test('shards onto a tmpfs that fills while a shard is written: named error, exit 1, no shard or temporary file left', async (t) => {
  const scratch = tmpfsScratch(t, 'semaim-full-disk-shards-', 'size=3m');
  if (!scratch) return;
  const { dir, mnt } = scratch;
  // 80 images of noise (77 KB each as PNG): the first shard of 50 (3.8 MB) is larger than the tmpfs
  for (let i = 0; i < 80; i++) {
    const px = Buffer.alloc(160 * 160 * 3);
    for (let j = 0, x = i + 1; j < px.length; j++) px[j] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
    write(join(dir, 'in', `c${i % 2}`, `${i}.png`), await encode(px, 160, 160, 3, 'png'));
  }
  const out = join(mnt, 'sh');
  const r = spawnSync(process.execPath, [CLI, 'shards', '--input', join(dir, 'in'), '--shard-size', '50', '--output', out], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, SEMAIM_NO_SPACE_CHECK: '1' }, // past the free-space check, onto the full disk
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(
    r.stderr,
    /semaim: cannot write .*sh\/shard-\d{6}\.tar: ENOSPC: no space left on device, write \(the disk is full: free space, or write elsewhere\)/,
  );
  assert.doesNotMatch(r.stderr, /Emitted 'error' event|at .*\.js:\d+/, 'no stack trace');
  assert.ok(!existsSync(out), 'the staged shards are removed, and the output folder the command made with them');
});
