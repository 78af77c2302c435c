// SIGINT / SIGTERM during visualize, report, export and object-start: as an evaluation (eval-stop.test.ts),
// each stops at its next check, writes nothing (no staged file or lock left, an earlier result as it was;
// an export takes back the folders it made) and exits with the signal's code (130 / 143). They died by
// the signal, leaving staged files behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyModel, writeRunCheckpoint, writeTestImages } from '../viz/helpers';
import { ORDER_NAMES } from '../../src/viz/maps';
import { visualizeCheckpoint, writeRunReport } from '../../src/viz/pipeline';
import { exportEncoder } from '../../src/export/safetensors';
import { CLI, runAndStop, type Stopped } from './run-and-stop';

let root = '';
let run = '';
let images = '';

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'semaim-stop-'));
  run = join(root, 'run');
  const model = tinyModel();
  writeRunCheckpoint(run, model);
  model.dispose();
  images = join(root, 'images');
  await writeTestImages(images, 2);
});
after(() => rmSync(root, { recursive: true, force: true }));

function cli(args: string[]): void {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
}

/** Every file under `dir` with the SHA-256 of its bytes. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const p = join(dir, name);
    if (statSync(p).isFile()) out[name] = createHash('sha256').update(readFileSync(p)).digest('hex');
  }
  return out;
}

function assertStopped(r: Stopped, signal: NodeJS.Signals): void {
  assert.equal(r.signal, null, `it exits by itself, not killed by the signal:\n${r.stderr}`);
  assert.equal(r.code, signal === 'SIGINT' ? 130 : 143, r.stderr);
  assert.match(r.stderr, new RegExp(`stopped by ${signal}; no result was written: run the same command again`));
}

test('visualize stopped by SIGINT between images: exit 130, the earlier figures as they were, nothing else', async () => {
  const out = join(root, 'viz');
  await visualizeCheckpoint({ checkpoint: run, images: [images], out, orders: [...ORDER_NAMES] });
  const before = snapshot(out);
  const many = join(root, 'many');
  await writeTestImages(many, 300);
  writeFileSync(join(many, 'aaa-broken.png'), 'not an image'); // read first: its warning says the images are being read
  const r = await runAndStop(
    ['visualize', '--checkpoint', run, '--images', many, '--out', out, '--max-images', '1000', '--seed', '5', '--threads', '1'],
    /visualize: skipping/,
    'SIGINT',
  );
  assertStopped(r, 'SIGINT');
  assert.match(r.stderr, /SIGINT: stopping at the next image or file; no figures are written/);
  assert.deepEqual(snapshot(out), before);
});

test('visualize into a new folder stopped by SIGINT while it stages its files: exit 130, the folders it made are gone', async () => {
  const fresh = join(root, 'fresh-viz');
  const r = await runAndStop(['visualize', '--checkpoint', run, '--images', images, '--out', join(fresh, 'sub'), '--threads', '1'], /pausing at/, 'SIGINT', {
    pauseAt: /grid\.png\.tmp-/,
  });
  assertStopped(r, 'SIGINT');
  assert.ok(!existsSync(fresh), 'no folder left behind');
});

test('report --images stopped by SIGTERM while its figures are staged: exit 143, the earlier report and figures as they were', async () => {
  await writeRunReport({ runDir: run, visualize: { images: [images], orders: [...ORDER_NAMES] } });
  const before = snapshot(run);
  assert.ok(before['report.html'] && before['viz/grid.png']);
  const r = await runAndStop(['report', run, '--images', images, '--seed', '5', '--threads', '1'], /pausing at/, 'SIGTERM', { pauseAt: /grid\.png\.tmp-/ });
  assertStopped(r, 'SIGTERM');
  assert.deepEqual(snapshot(run), before);
});

test('export stopped by SIGINT between its files: exit 130, the earlier export as it was, no staged file or lock', async () => {
  const out = join(root, 'export');
  await exportEncoder(run, join(out, 'enc'));
  const before = snapshot(out);
  const r = await runAndStop(['export', '--checkpoint', run, '--out', join(out, 'enc'), '--overwrite'], /pausing at/, 'SIGINT', { pauseAt: /enc\.json\.tmp-/ });
  assertStopped(r, 'SIGINT');
  assert.deepEqual(snapshot(out), before);
});

test('export into a new folder stopped by SIGINT while it stages its files: exit 130, the folders it made are gone', async () => {
  const fresh = join(root, 'fresh');
  const r = await runAndStop(['export', '--checkpoint', run, '--out', join(fresh, 'sub', 'enc')], /pausing at/, 'SIGINT', { pauseAt: /enc\.json\.tmp-/ });
  assertStopped(r, 'SIGINT');
  assert.ok(!existsSync(fresh), 'no folder left behind');
});

test('export --format onnx into an existing empty folder stopped by SIGTERM: exit 143, the folder stays, without the onnx/ it made', async () => {
  const out = join(root, 'empty');
  mkdirSync(out);
  const r = await runAndStop(['export', '--checkpoint', run, '--format', 'onnx', '--out', out], /pausing at/, 'SIGTERM', { pauseAt: /config\.json\.tmp-/ });
  assertStopped(r, 'SIGTERM');
  assert.deepEqual(readdirSync(out), []);
});

test('object-start stopped by SIGINT while it scores checkpoints: exit 130, the earlier table as it was', async () => {
  const out = join(root, 'object-start');
  const args = ['object-start', '--out-dir', out, '--train-tokens', 'cls', '--steps', '4', '--points', '4', '--test-size', '1000', '--batch-size', '4'];
  const toy = ['--embed-dim', '16', '--depth', '1', '--num-heads', '2', '--decoder-depth', '1', '--threads', '1', '--num-workers', '0'];
  cli([...args, ...toy]);
  const before = snapshot(out);
  // run again: the pre-training is done, the checkpoints are scored again
  const r = await runAndStop([...args, ...toy], /step 1: on the object/, 'SIGINT');
  assertStopped(r, 'SIGINT');
  assert.deepEqual(snapshot(out), before);
});
