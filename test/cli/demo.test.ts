// `semaim demo` on a folder it already used: a refused re-run (another seed) leaves the folder's
// baseline encoder as the first run wrote it (its k-NN results refer to that file's SHA-256).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
