// SIGINT / SIGTERM during an evaluation command: it stops at its next batch, writes no result, and exits
// with the signal's code (130 / 143), also as one worker of --nproc-per-node, where a worker that died
// by the signal was reported as a failure (exit 1).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dist from '../../src/dist';
import { CLI, runAndStop } from './run-and-stop';

const TINY =
  '--model vit_tiny --embed-dim 32 --depth 2 --num-heads 2 --img-size 32 --patch-size 4 --synthetic-size 64 --batch-size 16 --epochs 2 --warmup-epochs 0 --max-steps 2 --num-workers 0 --threads 1';
const gloo = dist.distBuildInfo().gloo ? false : 'the addon was built without Gloo';
let root = '';
let run = '';

before(() => {
  root = mkdtempSync(join(tmpdir(), 'semaim-eval-stop-'));
  run = join(root, 'run');
  const r = spawnSync(process.execPath, [CLI, 'pretrain', ...TINY.split(' '), '--out-dir', run], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
});
after(() => rmSync(root, { recursive: true, force: true }));

const data = ['--dataset', 'synthetic', '--train-limit', '20000', '--test-limit', '500', '--threads', '1', '--num-workers', '0'];

test('knn stopped by SIGINT while extracting features: exit 130, the reason on stderr, no knn.json', async () => {
  const out = join(root, 'knn');
  const r = await runAndStop(['knn', '--checkpoint', run, ...data, '--out-dir', out], /features \(train\) .*\d+\/20000/, 'SIGINT');
  assert.equal(r.signal, null, 'it exits by itself, not killed by the signal');
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /SIGINT: stopping at the next batch; this job writes no result/);
  assert.match(r.stderr, /stopped by SIGINT; no result was written: run the same command again/);
  assert.ok(!existsSync(join(out, 'knn.json')));
});

test('linprobe stopped by SIGTERM: exit 143, no linprobe.json and no probe.safetensors', async () => {
  const out = join(root, 'linprobe');
  const r = await runAndStop(['linprobe', '--checkpoint', run, ...data, '--epochs', '2', '--out-dir', out], /features \(train\) .*\d+\/20000/, 'SIGTERM');
  assert.equal(r.code, 143, r.stderr);
  assert.match(r.stderr, /stopped by SIGTERM/);
  for (const name of ['linprobe.json', 'probe.safetensors']) assert.ok(!existsSync(join(out, name)), name);
  if (existsSync(out))
    assert.deepEqual(
      readdirSync(out).filter((n) => !n.endsWith('.lock')),
      [],
      'nothing left behind',
    );
});

test('knn --nproc-per-node 2, SIGINT to one worker alone: both ranks stop, the launcher exits 130, not 1', { skip: gloo }, async () => {
  const out = join(root, 'knn-2');
  const workers = (launcher: number): number[] => {
    const r = spawnSync('pgrep', ['-P', String(launcher)], { encoding: 'utf8' });
    return r.stdout.split('\n').filter(Boolean).map(Number).slice(-1); // the last worker started: one rank only
  };
  const r = await runAndStop(['knn', '--checkpoint', run, ...data, '--nproc-per-node', '2', '--out-dir', out], /features \(train\) .*\d+\/\d+/, 'SIGINT', {
    target: workers,
  });
  assert.equal(r.code, 130, r.stderr);
  assert.doesNotMatch(r.stderr, /failed|exited with code 1\b/);
  assert.ok(!existsSync(join(out, 'knn.json')));
});

test('embed stopped by SIGINT: exit 130, neither the features file nor its list, no partial file', async () => {
  const dir = join(root, 'embed');
  const out = join(dir, 'features.safetensors');
  const r = await runAndStop(
    ['embed', '--checkpoint', run, '--dataset', 'synthetic', '--split', 'train', '--limit', '20000', '--threads', '1', '--num-workers', '0', '--out', out],
    /embed.*\d+\/20000|\d+\/20000/,
    'SIGINT',
  );
  assert.equal(r.code, 130, r.stderr);
  if (existsSync(dir))
    assert.deepEqual(
      readdirSync(dir).filter((n) => !n.endsWith('.lock')),
      [],
    );
});

test('predict stopped by SIGINT: exit 130, no predictions, and its output lock released', async () => {
  const lp = join(root, 'lp-small');
  const small = ['--dataset', 'synthetic', '--train-limit', '128', '--test-limit', '32', '--threads', '1', '--num-workers', '0'];
  const probe = spawnSync(process.execPath, [CLI, 'linprobe', '--checkpoint', run, ...small, '--epochs', '1', '--batch-size', '32', '--out-dir', lp], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(probe.status, 0, probe.stderr);
  const dir = join(root, 'predict');
  const r = await runAndStop(
    ['predict', '--checkpoint', lp, '--dataset', 'synthetic', '--limit', '20000', '--threads', '1', '--num-workers', '0', '--out', join(dir, 'p.json')],
    /predict .*\d+\/20000/,
    'SIGINT',
  );
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /stopped by SIGINT; no result was written/);
  if (existsSync(dir)) assert.deepEqual(readdirSync(dir), [], 'no predictions, no lock left');
});
