// A run stopped by SIGINT/SIGTERM writes its checkpoint and exits 130/143 (so `pretrain … && knn …`
// stops there); a second signal exits at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SAME_SIGNAL_MS, catchStopSignals, runExitCode, StopRequest } from '../../src/run/signals';

const MAIN = resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

/** Runs a small CLI pre-training, sends `signal` once it has logged a step; resolves with the exit code. */
function stopRun(
  signal: NodeJS.Signals | null,
  outDir: string,
  extra: string[] = [],
  nodeArgs: string[] = [],
): Promise<{ code: number | null; stderr: string }> {
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
    ...extra,
  ];
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (signal && !sent && /pretrain \[/.test(stderr)) {
        sent = true;
        child.kill(signal);
      }
    });
    // a run that hangs is killed, so that the test fails instead of waiting for ever
    const hung = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(hung);
      done({ code, stderr });
    });
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

test('a SIGINT while a run writes config.json, before its first step, stops it there with exit code 130: the file whole, no .tmp-* left, nothing trained', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-signal-config-'));
  try {
    // the signal arrives while config.json is under its temporary name
    const preload = join(dir, 'signal-on-config.js');
    writeFileSync(
      preload,
      `const fs = require('node:fs');
      const writeFileSync = fs.writeFileSync;
      let sent = false;
      fs.writeFileSync = (...args) => {
        writeFileSync(...args);
        if (!sent && /^config\\.json\\.tmp-/.test(String(args[0]).split('/').pop())) {
          sent = true;
          process.kill(process.pid, 'SIGINT');
        }
      };`,
    );
    const out = join(dir, 'run');
    const r = await stopRun(null, out, [], ['--require', preload]);
    assert.equal(r.code, 130, r.stderr.slice(-800));
    assert.match(r.stderr, /nothing trained/);
    assert.deepEqual(
      readdirSync(out).filter((f) => f.includes('.tmp-')),
      [],
      'no temporary file left',
    );
    assert.ok(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).options, 'config.json written whole');
    assert.ok(!existsSync(join(out, 'checkpoints')) || readdirSync(join(out, 'checkpoints')).length === 0, 'no checkpoint: nothing was trained');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a training command's exit code: 0 when it finished or reached --max-steps, 1 after a NaN/Inf loss (so `pretrain … && knn …` stops), 130/143 after a signal", () => {
  assert.equal(runExitCode({ stoppedBy: 'finished' }), 0);
  assert.equal(runExitCode({ stoppedBy: 'maxSteps' }), 0);
  assert.equal(runExitCode({ stoppedBy: 'nonfinite' }), 1);
  assert.equal(runExitCode({ stoppedBy: 'signal', signal: 'SIGINT' }), 130);
  assert.equal(runExitCode({ stoppedBy: 'signal', signal: 'SIGTERM' }), 143);
});

test('runs at once share one SIGINT and one SIGTERM listener (no MaxListenersExceededWarning past 10), each gets the signal, the last release removes it', () => {
  const before = ['SIGINT', 'SIGTERM'].map((s) => process.listenerCount(s));
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  const stops: StopRequest[] = Array.from({ length: 12 }, () => ({ requested: false }));
  const releases = stops.map((stop) => catchStopSignals(stop, () => {}));
  try {
    assert.deepEqual(
      ['SIGINT', 'SIGTERM'].map((s) => process.listenerCount(s)),
      before.map((n) => n + 1),
    );
    (process.emit as (event: string, ...args: unknown[]) => boolean)('SIGTERM', 'SIGTERM');
    assert.deepEqual(
      stops.map((s) => s.signal),
      stops.map(() => 'SIGTERM'),
    );
  } finally {
    for (const release of releases) release();
    process.off('warning', onWarning);
  }
  assert.deepEqual(
    ['SIGINT', 'SIGTERM'].map((s) => process.listenerCount(s)),
    before,
  );
  assert.deepEqual(warnings, []);
});

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
    deliver('SIGTERM'); // the same signal at once: one request delivered twice (a group's Ctrl-C, and a launcher forwarding it)
    assert.deepEqual(exits, []);
    deliver('SIGINT');
    assert.deepEqual(exits, [130]);
    // the same signal again later is the user's second request
    exits.length = 0;
    const stop2: StopRequest = { requested: false };
    release();
    const release2 = catchStopSignals(stop2, () => {});
    try {
      deliver('SIGINT');
      const until = Date.now() + SAME_SIGNAL_MS + 50;
      while (Date.now() < until) {
        /* wait past the window */
      }
      deliver('SIGINT');
      assert.deepEqual(exits, [130]);
    } finally {
      release2();
    }
  } finally {
    release();
    process.exit = realExit;
  }
});

test('a run stopped mid-epoch resumes with data worker threads (the default) and goes on', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-signal-workers-'));
  try {
    const workers = ['--num-workers', '1'];
    const stopped = await stopRun('SIGINT', dir, workers);
    assert.equal(stopped.code, 130, stopped.stderr.slice(-800));
    const at = Number(
      readdirSync(join(dir, 'checkpoints'))
        .find((n) => n.startsWith('step-'))!
        .slice('step-'.length),
    );
    assert.ok(at % 64 !== 0, `stopped inside an epoch (step ${at} of 64 per epoch)`);
    const resumed = await stopRun(null, dir, [...workers, '--max-steps', String(at + 3)]);
    assert.equal(resumed.code, 0, resumed.stderr.slice(-800));
    assert.match(resumed.stderr, new RegExp(`resumed from .*step ${at}\\b`));
    const steps = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"step"'))
      .map((l) => (JSON.parse(l) as { step: number }).step);
    assert.equal(Math.max(...steps), at + 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// A step blocks the main thread in libtorch, so JS listeners see two signals seconds apart back to back
// after it; the addon's handler times them as they arrive. The child stands in for a training loop: it
// catches the signals, then blocks without yielding as a long step does.
const SIGNALS = resolve(__dirname, '..', '..', 'src', 'run', 'signals.js');
const BLOCKED_CHILD = `
const { catchStopSignals } = require(${JSON.stringify(SIGNALS)});
const [mode, blockMs] = [process.argv[1], Number(process.argv[2])];
const log = (l) => process.stderr.write(l + '\\n');
let seen = 0;
let stop = { requested: false };
if (mode === 'released') {
  // another listener keeps libuv's handler installed through the release: the addon's must be gone
  process.on('SIGINT', () => seen++);
  catchStopSignals({ requested: false }, log)();
} else {
  if (mode === 'rearmed') catchStopSignals({ requested: false }, log)();
  catchStopSignals(stop, log);
  if (mode === 'nested') {
    // an inner catcher released (twice: again does nothing): the outer one still exits
    const release = catchStopSignals({ requested: false }, log);
    release();
    release();
  }
}
process.stdout.write('ready\\n');
if (mode === 'late-nested') {
  // a loop inside the job arms its own catcher after the first signal came, before the second
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
  catchStopSignals({ requested: false }, log);
}
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, blockMs);
process.stdout.write('step done\\n');
// the signals' JS listeners run at the next turns of the event loop
setTimeout(() => {
  process.stdout.write('seen ' + seen + '\\n');
  process.exit(mode === 'released' ? (seen === 2 ? 0 : 2) : stop.requested ? 0 : 3);
}, 300);
`;

/** Runs the child in `mode`, sends `signals` (each after its delay in ms) once it is ready. */
function blockedChild(
  mode: 'once' | 'rearmed' | 'nested' | 'late-nested' | 'released',
  blockMs: number,
  signals: [NodeJS.Signals, number][],
): Promise<{ code: number | null; stdout: string; stderr: string; afterLastMs: number }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['-e', BLOCKED_CHILD, mode, String(blockMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let [stdout, stderr, last] = ['', '', 0];
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.on('data', (b: Buffer) => {
      const wasReady = stdout.includes('ready');
      stdout += b.toString();
      if (wasReady || !stdout.includes('ready')) return;
      const send = (i: number): void => {
        if (i === signals.length) return;
        setTimeout(() => {
          child.kill(signals[i][0]);
          last = Date.now();
          send(i + 1);
        }, signals[i][1]);
      };
      send(0);
    });
    const hung = setTimeout(() => child.kill('SIGKILL'), blockMs + 15_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(hung);
      done({ code, stdout, stderr, afterLastMs: Date.now() - last });
    });
  });
}

const posixOnly = { skip: process.platform === 'win32' ? 'POSIX signals' : false };

/** The child exited with `code` within 3 s of the last signal, before its blocked "step" ended. */
function assertExitedAtOnce(r: Awaited<ReturnType<typeof blockedChild>>, code: number, what = ''): void {
  assert.equal(r.code, code, `${what}${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stdout, /step done/, what);
  assert.ok(r.afterLastMs < 3000, `${what}exited ${r.afterLastMs} ms after the second signal`);
}

test('a second SIGINT 1.5 s after the first exits 130 at once while a step blocks the event loop', posixOnly, async () => {
  const r = await blockedChild('once', 15_000, [
    ['SIGINT', 300],
    ['SIGINT', 1500],
  ]);
  assertExitedAtOnce(r, 130);
  assert.match(r.stderr, /SIGINT again: exiting now, without a checkpoint of this step/);
});

test('a SIGINT repeated within milliseconds (forwarded by a launcher) is one request: the step and the stop finish', posixOnly, async () => {
  const r = await blockedChild('once', 4000, [
    ['SIGINT', 300],
    ['SIGINT', 20],
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /step done/);
  assert.match(r.stderr, /SIGINT: stopping after this step/);
  assert.doesNotMatch(r.stderr, /again: exiting/);
});

test('SIGTERM then SIGINT exits with the second signal code at once', posixOnly, async () => {
  const r = await blockedChild('once', 15_000, [
    ['SIGTERM', 300],
    ['SIGINT', 1500],
  ]);
  assertExitedAtOnce(r, 130);
});

test('SIGTERM then SIGINT within milliseconds exits at once too: only the same signal repeated that fast is one request', posixOnly, async () => {
  const r = await blockedChild('once', 15_000, [
    ['SIGTERM', 300],
    ['SIGINT', 20],
  ]);
  assertExitedAtOnce(r, 130);
  assert.match(r.stderr, /SIGINT again: exiting now/);
});

test('a released catcher leaves the signals to JS alone, and catching again works', posixOnly, async () => {
  // released: a plain listener gets both signals after the step; nothing exits early
  const released = await blockedChild('released', 3000, [
    ['SIGINT', 300],
    ['SIGINT', 1500],
  ]);
  assert.equal(released.code, 0, released.stdout + released.stderr);
  assert.match(released.stdout, /step done\nseen 2/);
  // late-nested: an inner catcher armed between the two signals keeps the first one's record
  for (const mode of ['rearmed', 'nested', 'late-nested'] as const) {
    const r = await blockedChild(mode, 15_000, [
      ['SIGINT', 300],
      ['SIGINT', 1500],
    ]);
    assertExitedAtOnce(r, 130, `${mode}: `);
  }
});
