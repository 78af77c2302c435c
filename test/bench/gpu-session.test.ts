// scripts/gpu-session.sh's time limits and exit status (run as its CPU dry run, without the benchmark itself).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inExecTempDir, inTempDir } from '../temp-dir';

const ROOT = join(__dirname, '..', '..', '..');

test(
  'gpu-session: a part that finds no time left gets a 1 s limit, not an invalid or unlimited one',
  inTempDir('semaim-gpu-session-', (out) => {
    // CALL_LIMIT below what has already passed: the data benchmark's limit comes out negative (0 would
    // be timeout's "no limit"). It must still be bounded: stopped by timeout (124), not refused (125).
    const r = spawnSync('bash', ['scripts/gpu-session.sh'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, OUT: out, DEVICE: 'cpu', CHECK: '0', BENCH: '0', DATA: '1', CALL_LIMIT: '-10' },
      timeout: 60_000,
    });
    // The part killed at its limit did not succeed, and the script's own status says so.
    assert.equal(r.status, 1, r.stderr);
    const log = readFileSync(join(out, 'bench-data.log'), 'utf8');
    assert.match(log, /== data: exit 124 /, log);
    assert.equal(readFileSync(join(out, 'exit-codes.log'), 'utf8'), 'data 124\n');
    assert.match(r.stdout, /== session: 1 part\(s\) did not succeed[^\n]*\n {3}data 124\n/, r.stdout);
  }),
);

/** A copy of gpu-session.sh in `dir` with a stub for the Python finder and the npm packages in place. */
function sessionTree(dir: string): void {
  mkdirSync(join(dir, 'scripts'), { recursive: true });
  copyFileSync(join(ROOT, 'scripts', 'gpu-session.sh'), join(dir, 'scripts', 'gpu-session.sh'));
  writeFileSync(join(dir, 'scripts', 'find-torch-python.sh'), 'echo python3\n');
  mkdirSync(join(dir, 'node_modules', 'sharp'), { recursive: true });
}

function session(dir: string): void {
  const r = spawnSync('bash', ['scripts/gpu-session.sh'], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, OUT: join(dir, 'out'), CHECK: '0', BENCH: '0' },
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /== session: every part that ran succeeded\n$/);
}

test(
  "gpu-session: a later call on a warm machine runs this call's carried dist/, not the one an earlier call unpacked",
  inTempDir('semaim-gpu-session-', (dir) => {
    sessionTree(dir);
    mkdirSync(join(dir, '.gpu', 'dist'), { recursive: true });
    writeFileSync(join(dir, '.gpu', 'dist', 'code.js'), 'first pack');
    session(dir);
    assert.equal(readFileSync(join(dir, 'dist', 'code.js'), 'utf8'), 'first pack');
    // The machine keeps the ignored dist/ between calls; the next call carries a new pack.
    writeFileSync(join(dir, '.gpu', 'dist', 'code.js'), 'second pack');
    session(dir);
    assert.equal(readFileSync(join(dir, 'dist', 'code.js'), 'utf8'), 'second pack');
  }),
);

test(
  'gpu-session: a dist/ built in the checkout is kept (the dry run here)',
  inTempDir('semaim-gpu-session-', (dir) => {
    sessionTree(dir);
    mkdirSync(join(dir, '.gpu', 'dist'), { recursive: true });
    writeFileSync(join(dir, '.gpu', 'dist', 'code.js'), 'packed');
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(dir, 'dist', 'code.js'), 'built here');
    session(dir);
    assert.equal(readFileSync(join(dir, 'dist', 'code.js'), 'utf8'), 'built here');
  }),
);

test(
  'gpu-session: a lever started near the end of the call is limited to what is left of CALL_LIMIT',
  inExecTempDir('semaim-gpu-session-', (dir) => {
    // A stand-in for timeout(1) that records the limit it was given and reports a timeout at once.
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'bin', 'timeout'), `#!/bin/sh\necho "$1" >> "${join(dir, 'limits')}"\nexit 124\n`, { mode: 0o755 });
    const r = spawnSync('bash', ['scripts/gpu-session.sh'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: {
        ...process.env,
        PATH: `${join(dir, 'bin')}:${process.env.PATH}`,
        OUT: join(dir, 'out'),
        DEVICE: 'cpu',
        CHECK: '0',
        BENCH: '0',
        LEVERS: '1',
        CALL_LIMIT: '50',
      },
      timeout: 60_000,
    });
    assert.equal(r.status, 1, 'every lever "timed out", so the session did not succeed');
    const limits = readFileSync(join(dir, 'limits'), 'utf8').trim().split('\n').map(Number);
    assert.ok(limits.length > 0);
    for (const l of limits) assert.ok(l >= 1 && l <= 50, `a lever's limit of ${l} s in a call with 50 s left`);
  }),
);

test(
  'gpu-session: a part that needs the addon says it was skipped when the build left none, instead of no line at all',
  inTempDir('semaim-gpu-session-', (dir) => {
    // A fresh machine whose build failed (gpu-check.sh exits before it makes build/Release/semaim.node):
    // the benchmark, the levers and the command-line check cannot run, and the log must say why.
    sessionTree(dir);
    const r = spawnSync('bash', ['scripts/gpu-session.sh'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, OUT: join(dir, 'out'), CHECK: '0', LEVERS: '1', CLI: '1' },
      timeout: 30_000,
    });
    // A session whose parts could not run is not a success: before, it exited 0 and a caller that looked
    // only at the status (the device tool's rc) took it for one.
    assert.equal(r.status, 1, r.stdout);
    for (const part of ['bench', 'levers', 'cli']) {
      assert.match(r.stdout, new RegExp(`== ${part}: skipped, no build/Release/semaim\\.node`), `${part}:\n${r.stdout}`);
    }
    assert.equal(readFileSync(join(dir, 'out', 'exit-codes.log'), 'utf8'), 'bench skipped\nlevers skipped\ncli skipped\n');
  }),
);

test(
  "gpu-session: a LEVERS=1 call's fastest fused set is the next PERF=1 call's fused side on the warm machine, where it paid",
  inTempDir('semaim-gpu-session-', (dir) => {
    sessionTree(dir);
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    writeFileSync(join(dir, 'build', 'Release', 'semaim.node'), '');
    mkdirSync(join(dir, 'dist', 'bench'), { recursive: true });
    // Stand-ins: the worker's step time by its --fused kinds (from MS, JSON); the benchmark records its arguments.
    writeFileSync(
      join(dir, 'dist', 'bench', 'pretrain_worker.js'),
      "const a = process.argv.slice(2); const i = a.indexOf('--fused'); const ms = JSON.parse(process.env.MS)[i < 0 ? '' : a[i + 1]] ?? 100;\n" +
        'console.log(JSON.stringify({ msPerStep: ms, minMs: ms, imgPerSec: 25600 / ms }));\n',
    );
    writeFileSync(join(dir, 'dist', 'bench', 'pretrain.js'), "require('fs').writeFileSync('bench-args', process.argv.slice(2).join(' '));\n");
    writeFileSync(join(dir, 'dist', 'bench', 'gpu_preflight.js'), '');
    const run = (env: Record<string, string>) =>
      spawnSync('bash', ['scripts/gpu-session.sh'], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, OUT: join(dir, 'out'), CHECK: '0', DEVICE: 'cuda', MS: '{}', ...env },
        timeout: 60_000,
      });
    const fusedSide = () => /--fused (\S+)/.exec(readFileSync(join(dir, 'bench-args'), 'utf8'))?.[1];
    const levers = run({ BENCH: '0', LEVERS: '1', MS: JSON.stringify({ '': 100, layernorm: 95, 'layernorm,layernorm-backward,gelu': 90, all: 92 }) });
    assert.match(
      readFileSync(join(dir, 'out', 'levers.log'), 'utf8'),
      /fastest fused set layernorm,layernorm-backward,gelu: 90\.0 ms\/step, 1\.111x/,
      levers.stdout,
    );
    const perf = run({ PERF: '1' });
    assert.match(perf.stdout, /== fused side: --fused layernorm,layernorm-backward,gelu \(the levers of an earlier call/, perf.stdout);
    assert.equal(fusedSide(), 'layernorm,layernorm-backward,gelu');
    // PERF_FUSED, given, wins
    run({ PERF: '1', PERF_FUSED: 'layernorm' });
    assert.equal(fusedSide(), 'layernorm');
    // no set 1 % faster than none: no pick, and the default side
    run({ BENCH: '0', LEVERS: '1', MS: JSON.stringify({ '': 100, layernorm: 99.5 }) });
    run({ PERF: '1' });
    assert.equal(fusedSide(), 'layernorm,layernorm-backward');
  }),
);
