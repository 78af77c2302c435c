// A downloaded run or encoder may hold, at the name of a file semaim reads, a FIFO (the open or the read
// would block for ever) or a link to a device such as /dev/zero (the read never ends while memory
// grows): each is refused at once, naming the file. The reads run in a child process with a time
// limit, so that a regression fails the test instead of hanging the suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRegularFile, readRegularFile } from '../../src/util/regular-file';
import { writeEncoder } from '../eval/helpers';
import { tinyModel, writeRunCheckpoint } from '../viz/helpers';

const root = mkdtempSync(join(tmpdir(), 'semaim-not-regular-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const dist = join(__dirname, '..', '..');

/** Runs `body` (JavaScript with `dist` bound) in a child process; its stdout, or 'TIMEOUT'. */
function inChild(body: string): string {
  const r = spawnSync(process.execPath, ['-e', `const dist = ${JSON.stringify(dist)};\n${body}`], { timeout: 20_000, encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') return 'TIMEOUT';
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

/** What a call of `call` (an expression) threw in the child, or 'returned'. */
function refusal(setup: string, call: string): string {
  return inChild(`${setup}\ntry { ${call}; console.log('returned'); } catch (e) { console.log(e.message); }`);
}

/** Replaces `path` by a FIFO, or by a link to /dev/zero. */
function plant(path: string, kind: 'fifo' | 'zero'): void {
  rmSync(path, { force: true });
  if (kind === 'fifo') execFileSync('mkfifo', [path]);
  else symlinkSync('/dev/zero', path);
}

test('openRegularFile / readRegularFile: a regular file (also through a link) is read; a FIFO, a device and a folder are refused before any read', () => {
  const file = join(root, 'plain.txt');
  writeFileSync(file, 'text');
  symlinkSync(file, join(root, 'link.txt'));
  assert.equal(readRegularFile(join(root, 'link.txt'), 'utf8'), 'text');
  assert.deepEqual(readRegularFile(file), Buffer.from('text'));
  plant(join(root, 'fifo'), 'fifo');
  assert.throws(() => openRegularFile(join(root, 'fifo')), /fifo is a FIFO, not a regular file/);
  assert.throws(() => readRegularFile('/dev/zero'), /\/dev\/zero is a device or socket, not a regular file/);
  assert.throws(() => readRegularFile(root), /is a folder, not a regular file/);
  // followLinks: false (a run folder's files the report reads): a link at the name is refused, not followed
  assert.throws(() => readRegularFile(join(root, 'link.txt'), 'utf8', { followLinks: false }), { code: 'ELOOP' });
  assert.throws(() => openRegularFile(join(root, 'link.txt'), { followLinks: false }), { code: 'ELOOP' });
  assert.equal(readRegularFile(file, 'utf8', { followLinks: false }), 'text');
});

test("an encoder's JSON beside it, or its weights, as a FIFO or a link to /dev/zero: refused at once, naming the file", () => {
  const dir = join(root, 'encoder');
  mkdirSync(dir);
  const weights = writeEncoder(dir);
  const json = weights.replace(/\.safetensors$/, '.json');
  const setup = `const { resolveEncoder } = require(dist + '/src/semaim');`;
  for (const kind of ['fifo', 'zero'] as const) {
    plant(json, kind);
    const why = kind === 'fifo' ? 'a FIFO' : 'a device or socket';
    assert.equal(refusal(setup, `resolveEncoder(${JSON.stringify(weights)})`), `${json} is ${why}, not a regular file`, kind);
  }
  const fake = join(dir, 'other.safetensors');
  for (const kind of ['fifo', 'zero'] as const) {
    plant(fake, kind);
    assert.match(refusal(setup, `resolveEncoder(${JSON.stringify(fake)})`), /other\.safetensors is (a FIFO|a device or socket), not a regular file/, kind);
  }
});

test('a checkpoint whose state.json or model.safetensors is a FIFO or a link to /dev/zero is not usable, and the reason says so (verified or not)', () => {
  const run = join(root, 'run');
  const model = tinyModel(1);
  const ckpt = writeRunCheckpoint(run, model, 5);
  model.dispose();
  const setup = `const { verifyCheckpoint, readCheckpointState, loadTensors } = require(dist + '/src/io');`;
  const weights = join(ckpt, 'model.safetensors');
  const saved = readRegularFile(weights);
  for (const kind of ['fifo', 'zero'] as const) {
    plant(weights, kind);
    const why = kind === 'fifo' ? 'a FIFO' : 'a device or socket';
    assert.equal(
      refusal(setup, `console.log(verifyCheckpoint(${JSON.stringify(ckpt)}, 'weights'))`),
      `model.safetensors is ${why}, not a regular file\nreturned`,
    );
    assert.equal(refusal(setup, `loadTensors(${JSON.stringify(weights)})`), `${weights} is ${why}, not a regular file`, '--no-verify reads it directly');
  }
  unlinkSync(weights);
  writeFileSync(weights, saved);
  const state = join(ckpt, 'state.json');
  const text = readRegularFile(state);
  plant(state, 'fifo');
  assert.equal(
    refusal(setup, `console.log(verifyCheckpoint(${JSON.stringify(ckpt)}, 'weights'))`),
    `state.json is unreadable (${state} is a FIFO, not a regular file)\nreturned`,
  );
  assert.equal(refusal(setup, `readCheckpointState(${JSON.stringify(ckpt)})`), `${state} is a FIFO, not a regular file`);
  unlinkSync(state);
  writeFileSync(state, text);
  assert.equal(refusal(setup, `console.log(verifyCheckpoint(${JSON.stringify(ckpt)}, 'weights'))`), 'null\nreturned', 'restored, it verifies again');
});

test("report: a run folder's config.json, metrics.jsonl or a result JSON as a FIFO or a link to /dev/zero is named as a problem, not read", () => {
  const run = join(root, 'report-run');
  mkdirSync(run);
  plant(join(run, 'config.json'), 'fifo');
  plant(join(run, 'knn.json'), 'zero');
  const setup = `const { readRun } = require(dist + '/src/viz');`;
  const out = refusal(setup, `const r = readRun(${JSON.stringify(run)}); console.log(r.problems.join('\\n'))`);
  assert.match(out, /config\.json: .*config\.json is a FIFO, not a regular file/);
  assert.match(out, /knn\.json: a link: not read/, 'a link to /dev/zero is not even opened');
  plant(join(run, 'metrics.jsonl'), 'fifo');
  const { readMetrics } = require('../../src/run/metrics') as typeof import('../../src/run/metrics');
  assert.throws(() => readMetrics(join(run, 'metrics.jsonl')), /metrics\.jsonl is a FIFO, not a regular file/);
});

test('visualize / report --images: an image path that is a FIFO or a link to /dev/zero is an unreadable image, not read', () => {
  const dir = join(root, 'images');
  mkdirSync(dir);
  plant(join(dir, 'a.png'), 'fifo');
  plant(join(dir, 'b.png'), 'zero');
  const out = inChild(
    `const { loadRgb } = require(dist + '/src/viz/images');\n` +
      `(async () => { for (const f of ['a.png', 'b.png']) { try { await loadRgb(${JSON.stringify(dir)} + '/' + f, 16); console.log('decoded'); } catch (e) { console.log(e.reason + ': ' + e.message); } } })();`,
  );
  assert.match(
    out,
    /^unreadable: cannot read image .*a\.png: .*a\.png is a FIFO, not a regular file\nunreadable: cannot read image .*b\.png: .*is a device or socket, not a regular file$/,
  );
});

test("shards: an index.json that is a FIFO or a link to /dev/zero is no index (the folder's shards are scanned), not read", () => {
  const dir = join(root, 'shards');
  mkdirSync(dir);
  for (const kind of ['fifo', 'zero'] as const) {
    plant(join(dir, 'index.json'), kind);
    const setup = `const { readIndexFile } = require(dist + '/src/data/shards/shard-index');`;
    assert.equal(refusal(setup, `console.log(String(readIndexFile(${JSON.stringify(join(dir, 'index.json'))})))`), 'null\nreturned', kind);
  }
});
