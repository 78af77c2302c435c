// StagedStream: a file written as a job produces it, under a temporary name until it is committed. What
// is written is in the file at once (the writer holds none of it), the final name appears only at the
// commit, a full disk names the file, and an abort, a stop signal or the next writer after a killed one
// leaves no temporary file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StagedStream } from '../../src/util/staged-stream';
import { commitFiles } from '../../src/util/safe-write';

const MODULE = join(__dirname, '..', '..', 'src', 'util', 'staged-stream.js');
const DEAD_PID = 2 ** 22 + 1; // above Linux's pid_max: no such process

function withFolder(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-staged-stream-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test(
  'each write is in the temporary file when it returns; the name appears at the commit; append copies another stream',
  withFolder((dir) => {
    const path = join(dir, 'sub', 't.csv');
    const s = new StagedStream(path, { initial: 'head\n' });
    assert.match(s.tmp, /t\.csv\.tmp-\d+-\d+$/);
    assert.equal(readFileSync(s.tmp, 'utf8'), 'head\n', 'the folder is made and the initial text written');
    for (let i = 0; i < 3; i++) {
      s.write(`row ${i}\n`);
      assert.equal(readFileSync(s.tmp, 'utf8').split('\n').length - 2, i + 1, `row ${i} is on the disk before the next one is written`);
    }
    const other = new StagedStream(join(dir, 'sub', 'lines'), { names: path });
    other.write('x'.repeat(3 << 20)); // more than one copy chunk
    other.write('y');
    s.append(other);
    assert.equal(s.bytes, 5 + 18 + (3 << 20) + 1);
    other.abort();
    assert.ok(!existsSync(other.tmp), 'an abort removes the file');
    assert.ok(!existsSync(path), 'nothing at the final name before the commit');
    const staged = s.stage();
    s.abort(); // staged: the stream's abort leaves the file to the commit
    commitFiles([staged]);
    assert.equal(readFileSync(path, 'utf8'), `head\nrow 0\nrow 1\nrow 2\n${'x'.repeat(3 << 20)}y`);
    assert.deepEqual(readdirSync(join(dir, 'sub')), ['t.csv'], 'no temporary file left');
    assert.throws(() => s.write('late'), /already staged or aborted/);
  }),
);

test(
  'a disk that fills while rows are written: the error names the file it is for, not the temporary one',
  withFolder((dir) => {
    const fs = require('node:fs') as typeof import('node:fs');
    const s = new StagedStream(join(dir, 'p.json.predictions'), { names: join(dir, 'p.json') });
    const real = fs.writeSync;
    fs.writeSync = (() => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    }) as unknown as typeof fs.writeSync;
    try {
      assert.throws(
        () => s.write('row\n'),
        (e: NodeJS.ErrnoException) =>
          e.code === 'ENOSPC' && /^cannot write .*p\.json: ENOSPC.*\(the disk is full: /.test(e.message) && !/predictions/.test(e.message),
      );
    } finally {
      fs.writeSync = real;
      s.abort();
    }
    assert.deepEqual(readdirSync(dir), []);
  }),
);

test(
  'a new stream removes the temporary files of its path that a killed process left, not a live process’s nor another path’s',
  withFolder((dir) => {
    const left = [`t.csv.tmp-${DEAD_PID}-0`, `t.csv.tmp-${DEAD_PID}-1a`];
    const kept = ['t.csv.tmp-1-0', `u.csv.tmp-${DEAD_PID}-0`, 't.csv'];
    for (const f of [...left, ...kept]) writeFileSync(join(dir, f), 'x');
    const s = new StagedStream(join(dir, 't.csv'));
    try {
      for (const f of left) assert.ok(!existsSync(join(dir, f)), `${f} removed`);
      for (const f of kept) assert.ok(existsSync(join(dir, f)), `${f} kept`);
    } finally {
      s.abort();
    }
  }),
);

test(
  'SIGINT in a process that does not handle it: the open streams’ files are removed, then the signal takes its course',
  withFolder(async (dir) => {
    const script = `const { StagedStream } = require(${JSON.stringify(MODULE)});
const a = new StagedStream(process.argv[1], { initial: 'head\\n' });
const b = new StagedStream(process.argv[1] + '.lines');
a.write('row\\n');
b.write('line\\n');
process.stdout.write(a.tmp + '\\n' + b.tmp + '\\n');
setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script, join(dir, 'p.csv')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d));
    const tmps = await new Promise<string[]>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d;
        const lines = out.split('\n');
        if (lines.length >= 3) resolve(lines.slice(0, 2));
      });
      child.on('exit', () => reject(new Error(`exited before it was ready: ${err}`)));
    });
    for (const t of tmps) assert.ok(existsSync(t), `${t} is there while the process writes`);
    const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
    child.kill('SIGINT');
    assert.deepEqual(await exit, [null, 'SIGINT'], err);
    assert.deepEqual(readdirSync(dir), [], 'neither temporary file is left');
  }),
);

test(
  'stage() flushes the file to the disk (fsync) before it can be renamed into place: a power cut after the commit leaves it whole',
  withFolder((dir) => {
    const fs = require('node:fs') as { fsyncSync: (fd: number) => void }; // the module object the stream calls through
    const fsync = fs.fsyncSync;
    let synced = 0;
    fs.fsyncSync = (fd: number) => (synced++, fsync(fd));
    try {
      const s = new StagedStream(join(dir, 'rows.safetensors'));
      s.write('rows');
      assert.equal(synced, 0);
      const staged = s.stage();
      assert.equal(synced, 1, 'flushed once, at stage()');
      staged.commit();
    } finally {
      fs.fsyncSync = fsync;
    }
    assert.equal(readFileSync(join(dir, 'rows.safetensors'), 'utf8'), 'rows');
  }),
);

/** Runs `script` (node -e, `arg` its argv[1]), sends it SIGTERM once it has written a line; how it exited and its stderr. */
async function sigtermWhenReady(script: string, arg: string): Promise<{ exit: [number | null, NodeJS.Signals | null]; err: string }> {
  const child = spawn(process.execPath, ['-e', script, arg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d));
  const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => resolve());
    child.on('exit', () => reject(new Error(`exited before it was ready: ${err}`)));
  });
  child.kill('SIGTERM');
  return { exit: await exit, err };
}

test(
  'SIGTERM while a stream is open beside another writer’s removeOnStopSignal (a row writer): both files go and the signal still ends the process',
  withFolder(async (dir) => {
    // two handlers of their own each took the other for the process's own and did nothing: SIGTERM was ignored
    const script = `const { StagedStream } = require(${JSON.stringify(MODULE)});
const { removeOnStopSignal } = require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'util', 'remove-on-stop-signal.js'))});
const fs = require('node:fs');
const rows = process.argv[1] + '.rows.partial';
fs.writeFileSync(rows, 'rows');
removeOnStopSignal(() => fs.rmSync(rows, { force: true }));
const a = new StagedStream(process.argv[1]);
a.write('row\\n');
process.stdout.write('ready\\n');
setTimeout(() => process.exit(7), 4000); // still alive well after the signal: it was ignored`;
    const { exit, err } = await sigtermWhenReady(script, join(dir, 'p.csv'));
    assert.deepEqual(exit, [null, 'SIGTERM'], err);
    assert.deepEqual(readdirSync(dir), [], 'neither the stream’s temporary file nor the row writer’s partial file is left');
  }),
);

test(
  'SIGTERM with a removal that throws: the other removals still run and the signal still ends the process',
  withFolder(async (dir) => {
    // the first removal's throw skipped the rest and turned the signal's exit into an uncaught-exception crash
    const script = `const { removeOnStopSignal } = require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'util', 'remove-on-stop-signal.js'))});
const fs = require('node:fs');
const rows = process.argv[1] + '.rows.partial';
fs.writeFileSync(rows, 'rows');
removeOnStopSignal(() => { throw new Error('cannot remove'); });
removeOnStopSignal(() => fs.rmSync(rows, { force: true }));
process.stdout.write('ready\\n');
setTimeout(() => process.exit(7), 4000); // still alive well after the signal: it was ignored`;
    const { exit, err } = await sigtermWhenReady(script, join(dir, 'p.csv'));
    assert.deepEqual(exit, [null, 'SIGTERM'], err);
    assert.deepEqual(readdirSync(dir), [], 'the removal after the throwing one still ran');
    assert.match(err, /cannot remove/, 'the failed removal is reported');
  }),
);
