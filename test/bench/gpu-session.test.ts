// scripts/gpu-session.sh's time limits (run as its CPU dry run, without the benchmark itself).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inTempDir } from '../temp-dir';

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
    assert.equal(r.status, 0, r.stderr);
    const log = readFileSync(join(out, 'bench-data.log'), 'utf8');
    assert.match(log, /== data: exit 124 /, log);
  }),
);
