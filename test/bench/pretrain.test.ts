// bench/pretrain.ts's command line: what it refuses before measuring (it runs as a script, so it is
// started as one: dist/bench/pretrain.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { makeExecTempDir } from '../temp-dir';

const SCRIPT = path.join(__dirname, '..', '..', 'bench', 'pretrain.js');

test('bench:pretrain: an --only or --only-batch that selects no configuration is refused before anything is measured', () => {
  // Before: nothing ran, the tables came out empty and exit 0; with --write-docs the recorded section was
  // replaced by them. (No --write-docs here: the refusal must come before any of that.)
  for (const args of [
    ['--only', 'bogus'],
    ['--only', 'large'],
    ['--only-batch', '128'],
  ]) {
    const r = spawnSync(process.execPath, [SCRIPT, ...args, '--threads', '1'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, /no configuration/, args.join(' '));
    assert.doesNotMatch(r.stderr, /peak matmul rate/, `${args.join(' ')}: measured before refusing`);
    assert.equal(r.stdout, '', args.join(' '));
  }
});

test('bench:pretrain: a count that is not a whole number in range is refused before anything is measured', () => {
  // Before: --rounds 0 (or 'two', NaN) ran no side, printed empty tables with exit 0, and with --write-docs
  // replaced the recorded section by them; --threads two reached the children as 'NaN'.
  for (const args of [
    ['--rounds', '0'],
    ['--rounds', 'two'],
    ['--threads', 'two'],
    ['--warmup', '-1'],
    ['--steps-tiny', '0'],
  ]) {
    const r = spawnSync(process.execPath, [SCRIPT, '--only', 'tiny', ...args], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${args.join(' ')}: a whole number`), args.join(' '));
    assert.doesNotMatch(r.stderr, /peak matmul rate/, `${args.join(' ')}: measured before refusing`);
  }
});

test('bench:pretrain: a side whose losses were not all finite is reported as failed, not as a speed or a crash', () => {
  // Before: the sides' allFinite was never read. The TS worker writes a NaN loss as null (JSON.stringify):
  // the report then threw on null.toPrecision and every side's numbers were lost; Python's json.dumps
  // writes a bare NaN, which JSON.parse refused ('Unexpected token N'). A stand-in for the PyTorch side
  // answers both ways.
  const dir = makeExecTempDir('semaim-bench-nan-');
  try {
    const result = (loss: string): string =>
      `{"side": "pytorch", "params": 1, "msPerStep": 1, "minMs": 1, "imgPerSec": 2000, "stepsMs": [1], "cpuMsPerStep": 1, ` +
      `"minCpuMs": 1, "phasesMs": null, "firstLoss": ${loss}, "lastLoss": ${loss}, "allFinite": false, "peakRssBytes": 1, "torch": "x", "python": "y"}`;
    for (const loss of ['null', 'NaN']) {
      const fake = path.join(dir, `python-${loss}`);
      fs.writeFileSync(fake, `#!/bin/sh\necho '${result(loss)}'\n`, { mode: 0o755 });
      const args = ['--only', 'tiny', '--batch-tiny', '2', '--steps-tiny', '1', '--warmup', '0', '--threads', '1', '--reference', 'ours'];
      const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, SEMAIM_PYTHON: fake } });
      assert.equal(r.status, 0, `${loss}: ${r.stderr}`);
      assert.doesNotMatch(r.stdout, /\| ours in PyTorch \| fp32 \|/, loss);
      assert.match(r.stdout, /ours in PyTorch: failed\*\* — .*not all finite/, loss);
      assert.match(r.stdout, /\| TypeScript \| fp32 \| .* \| – \| – \|/, loss); // no ratio against the failed side
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bench:pretrain: a PyTorch side whose Python cannot be started is reported with the reason, not as "failed — null"', () => {
  // Before: spawnSync's error (ENOENT) was not read; the status and stderr it leaves are null, and the report said
  // "ours in PyTorch: failed** — null".
  const args = ['--only', 'tiny', '--batch-tiny', '2', '--steps-tiny', '1', '--warmup', '0', '--threads', '1', '--reference', 'ours'];
  const r = spawnSync(process.execPath, [SCRIPT, ...args], {
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, SEMAIM_PYTHON: '/nonexistent/python3' },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ours in PyTorch: failed\*\* — .*\/nonexistent\/python3 ENOENT \(SEMAIM_PYTHON names the Python with torch\)/);
});
