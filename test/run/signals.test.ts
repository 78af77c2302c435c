// A run stopped by SIGINT/SIGTERM writes its checkpoint and exits 130/143 (so `pretrain … && knn …`
// stops there); a second signal exits at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { catchStopSignals, StopRequest } from '../../src/run/signals';

const MAIN = resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

/** Runs a small CLI pre-training, sends `signal` once it has logged a step; resolves with the exit code. */
function stopRun(signal: NodeJS.Signals, outDir: string): Promise<{ code: number | null; stderr: string }> {
  const args = [
    MAIN,
    'pretrain',
    '--dataset',
    'synthetic',
    '--synthetic-size',
    '512',
    '--img-size',
    '16',
    '--patch-size',
    '4',
    '--model',
    'vit_tiny',
    '--embed-dim',
    '32',
    '--depth',
    '2',
    '--num-heads',
    '2',
    '--decoder-depth',
    '1',
    '--batch-size',
    '8',
    '--epochs',
    '50',
    '--warmup-epochs',
    '1',
    '--log-every',
    '1',
    '--checkpoint-every',
    '100000',
    '--threads',
    '1',
    '--num-workers',
    '0',
    '--out-dir',
    outDir,
  ];
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (!sent && /pretrain \[/.test(stderr)) {
        sent = true;
        child.kill(signal);
      }
    });
    child.on('error', fail);
    child.on('close', (code) => done({ code, stderr }));
  });
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  test(`a run stopped by ${signal} writes its checkpoint and exits ${code}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-signal-'));
    const r = await stopRun(signal, dir);
    assert.equal(r.code, code, r.stderr.slice(-800));
    assert.match(r.stderr, new RegExp(`${signal}: stopping after this step`));
    const steps = readdirSync(join(dir, 'checkpoints')).filter((n) => n.startsWith('step-'));
    assert.equal(steps.length, 1, 'the stop wrote a checkpoint');
    assert.ok(existsSync(join(dir, 'checkpoints', steps[0], 'state.json')));
    rmSync(dir, { recursive: true, force: true });
  });
}

test('a second signal exits at once with the signal code', () => {
  const exits: number[] = [];
  const realExit = process.exit;
  process.exit = ((c?: number) => {
    exits.push(c ?? 0);
  }) as typeof process.exit;
  const stop: StopRequest = { requested: false };
  const release = catchStopSignals(stop, () => {});
  // As Node delivers a signal: the listener gets its name.
  const deliver = (signal: string) => (process.emit as (event: string, ...args: unknown[]) => boolean)(signal, signal);
  try {
    deliver('SIGTERM');
    assert.deepEqual([stop.requested, stop.signal, exits], [true, 'SIGTERM', []]);
    deliver('SIGINT');
    assert.deepEqual(exits, [130]);
  } finally {
    release();
    process.exit = realExit;
  }
});
