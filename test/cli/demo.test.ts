// `semaim demo` on a folder it already used: a refused re-run (another seed) leaves the folder's
// baseline encoder as the first run wrote it (its k-NN results refer to that file's SHA-256).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

test('a refused demo re-run does not replace the baseline encoder it wrote', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-'));
  try {
    const out = join(dir, 'demo');
    const tiny = ['demo', '--out-dir', out, '--epochs', '0.1', '--synthetic-size', '128', '--test-size', '16', '--knn-train-size', '32', '--threads', '1'];
    const first = spawnSync(process.execPath, [CLI, ...tiny], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(first.status, 0, first.stderr);
    const sha = () =>
      createHash('sha256')
        .update(readFileSync(join(out, 'init-encoder.safetensors')))
        .digest('hex');
    const before = sha();
    assert.equal(JSON.parse(readFileSync(join(out, 'eval-init', 'knn.json'), 'utf8')).checkpoint.sha256, before);
    const again = spawnSync(process.execPath, [CLI, ...tiny, '--seed', '1'], { encoding: 'utf8', timeout: 120_000 });
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /--seed\s+0\s+1/);
    assert.match(again.stderr, /start a new run: another --out-dir\./);
    assert.doesNotMatch(again.stderr, /--no-resume/, 'demo has no --no-resume to suggest');
    assert.equal(sha(), before, 'init-encoder.safetensors is the one the first run scored');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C during the demo's pre-training stops the demo with exit code 130 (it went on to evaluate the unfinished model and exited 0)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-int-'));
  try {
    const out = join(dir, 'demo');
    const args = [CLI, 'demo', '--out-dir', out, '--epochs', '20', '--synthetic-size', '256', '--test-size', '16', '--knn-train-size', '32', '--threads', '1'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const hung = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const code = await new Promise<number | null>((done) => {
      child.stderr.on('data', (b: Buffer) => {
        const first = !/pretrain \[/.test(stderr);
        stderr += b.toString();
        if (first && /pretrain \[/.test(stderr)) child.kill('SIGINT');
      });
      child.on('close', (c) => done(c));
    });
    clearTimeout(hung);
    assert.equal(code, 130, stderr.slice(-600));
    assert.match(stderr, /demo stopped during pre-training at step \d+ \(checkpoint written\); run the same command again to continue/);
    assert.ok(!existsSync(join(out, 'demo.json')), 'no results of an unfinished model');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C during the demo's evaluation stops it at the next batch with exit code 130 and a line saying so (it died silently by the signal)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-eval-int-'));
  try {
    const out = join(dir, 'demo');
    const args = [
      CLI,
      'demo',
      '--out-dir',
      out,
      '--epochs',
      '0.1',
      '--synthetic-size',
      '128',
      '--test-size',
      '16',
      '--knn-train-size',
      '128',
      '--threads',
      '1',
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const hung = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const code = await new Promise<number | null>((done) => {
      child.stderr.on('data', (b: Buffer) => {
        const first = !/demo: k-NN/.test(stderr);
        stderr += b.toString();
        if (first && /demo: k-NN/.test(stderr)) child.kill('SIGINT');
      });
      child.on('close', (c) => done(c));
    });
    clearTimeout(hung);
    assert.equal(code, 130, stderr.slice(-600));
    assert.match(stderr, /demo stopped during its evaluation \(pre-training is complete: .*step-\d+\); run the same command again to evaluate/);
    assert.ok(!existsSync(join(out, 'demo.json')), 'no summary of an unfinished demo');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
