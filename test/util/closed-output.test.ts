// A reader of stdout that went away (a launcher killed with SIGKILL, `| head` done) makes every later
// write fail with EPIPE: with stopWhenOutputCloses the process stops as on one SIGTERM (a run
// checkpoints, then exits 143) instead of dying of the unhandled 'error' event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

const CLOSED_OUTPUT = require.resolve('../../src/util/closed-output');

/**
 * A child that writes `chunk` to stdout every 2 ms with stopWhenOutputCloses on, counts the SIGTERMs it is
 * sent and exits 143 as a stopped run does; `start` spawns it (and may act on its stdout). Killed after 20 s.
 */
async function writingChild(
  chunk: string,
  start: (script: string) => ChildProcess,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const script = `
require(${JSON.stringify(CLOSED_OUTPUT)}).stopWhenOutputCloses();
let terms = 0;
process.on('SIGTERM', () => {
  if (terms++ === 0) setTimeout(() => { process.stderr.write('SIGTERMs: ' + terms + '\\n'); process.exit(143); }, 300);
});
setInterval(() => process.stdout.write(${chunk}), 2);
`;
  const child = start(script);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) => child.on('close', (c, s) => done([c, s])));
  clearTimeout(timer);
  return { code, signal, stderr };
}

test(
  'stdout closed by its reader: the writes that fail with EPIPE ask for one SIGTERM, not an exit by the error',
  { skip: process.platform === 'win32' },
  async () => {
    const { code, signal, stderr } = await writingChild("'x'.repeat(1 << 16)", (script) => {
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.once('data', () => child.stdout.destroy()); // the reader goes away
      return child;
    });
    assert.equal(signal, null, `the child hung or died by a signal: ${stderr}`);
    assert.equal(code, 143, stderr);
    assert.match(stderr, /^SIGTERMs: 1$/m, 'later EPIPEs are dropped, not a second SIGTERM (which would exit without the checkpoint)');
  },
);

test(
  'stdout on a full disk (/dev/full): the failed write (ENOSPC) asks for one SIGTERM and says why on stderr, not an exit by the error',
  { skip: process.platform !== 'linux' },
  async () => {
    const { code, signal, stderr } = await writingChild("'progress\\n'", (script) => {
      const full = openSync('/dev/full', 'w');
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', full, 'pipe'] });
      closeSync(full);
      return child;
    });
    assert.equal(signal, null, `the child hung or died by a signal: ${stderr}`);
    assert.equal(code, 143, stderr);
    assert.match(stderr, /^semaim: cannot write to stdout \(ENOSPC: no space left on device, write\): stopping\nSIGTERMs: 1\n$/);
  },
);
