// `progress: null` in the job options of runKnn, runLinprobe and runSegprobe: a library caller's process
// gets no bars and no notes on stderr (nor anything on stdout); without it the jobs show them as the
// commands do. The jobs run in a child process, whose every byte of output is seen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function runJobs(mode: 'on' | 'off'): { stdout: string; stderr: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), `semaim-progress-${mode}-`));
  const r = spawnSync(process.execPath, [join(__dirname, 'progress-child.js'), mode, dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { stdout: r.stdout, stderr: r.stderr, dir };
}

test('runKnn, runLinprobe and runSegprobe with progress: null write nothing; the note of a short probe batch is in details.batchSize', () => {
  const { stdout, stderr, dir } = runJobs('off');
  try {
    assert.equal(stderr, '');
    assert.equal(stdout, '');
    const details = JSON.parse(readFileSync(join(dir, 'lp', 'linprobe.json'), 'utf8')).details;
    assert.equal(details.batchSize, 32, 'all 32 training features in one batch, not the 64 asked for');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('by default the same jobs show their progress bars, each with a rate, and notes on stderr', () => {
  const { stdout, stderr, dir } = runJobs('on');
  try {
    assert.equal(stdout, '');
    for (const bar of ['features (train) [', 'features (test) [', 'k-NN [', 'linprobe [', 'segprobe ['])
      assert.ok(stderr.includes(bar), `${bar} in:\n${stderr}`);
    assert.match(stderr, /linprobe: 32 training features, fewer than a batch of 64/);
    // every line has a rate (k-NN's, segprobe's features and the probes' training lines had none) once
    // a fifth of a second has passed (perSecond); these tiny passes are faster, and their lines show where it goes
    const bars = stderr.split('\n').filter((l) => /^[^[]+ \[[#.]{20}\] \d+\/\d+ \|/.test(l));
    assert.ok(bars.length >= 20, stderr);
    for (const l of bars) assert.match(l, /\| (img\/s [\d.]+ \| )?elapsed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
