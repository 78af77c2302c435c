// Real faults of the file system under the writers every command uses: a full disk (ENOSPC, injected at
// Node's fs calls, the seam every writer goes through) is reported naming the file and leaves no
// temporary file and no torn line; temporary files of processes killed while writing are cleared by the
// next write of the same file; a folder that cannot be made says what is in the way. (The same on a
// real full / read-only tmpfs: docs in the commit log; scripts/fault-check.sh covers pre-training.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fsp from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendNoFollow, mkdirError, writeFileAtomic } from '../../src/util/safe-write';
import { writeSafetensors } from '../../src/io/safetensors';
import { SafetensorsRowWriter } from '../../src/io/safetensors-rows';
import { MetricsLog, readMetrics } from '../../src/run/metrics';
import { errorText } from '../../src/util/error-text';
import { commands } from '../../src/cli/commands';
import { OptionError } from '../../src/util/options';

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });

// the module object itself (the import above is a copy of its getters): the writers read its functions at each call
const fs = require('node:fs') as typeof fsp;

/** Runs `fn` with fs.writeSync / fs.writeFileSync failing as a full disk does: the first call writes `partial` of its bytes, later ones throw ENOSPC. */
function withFullDisk<T>(fn: () => T, partial = 0.5): T {
  const { writeSync, writeFileSync } = fs;
  let calls = 0;
  const m = fs as unknown as Record<string, unknown>;
  m.writeSync = (fd: number, buf: Uint8Array | string, off?: number, len?: number, pos?: number | null) => {
    if (typeof buf === 'string' || calls++ > 0 || partial === 0) throw enospc();
    const n = Math.floor((len ?? buf.byteLength - (off ?? 0)) * partial);
    return n > 0 ? writeSync(fd, buf, off ?? 0, n, pos) : 0;
  };
  m.writeFileSync = (path: fsp.PathOrFileDescriptor, _data: unknown, o?: fsp.WriteFileOptions) => {
    writeFileSync(path, '', o); // created (empty), as a write that found no space leaves it
    throw enospc();
  };
  try {
    return fn();
  } finally {
    m.writeSync = writeSync;
    m.writeFileSync = writeFileSync;
  }
}

/** The id of a process that has exited. */
const deadPid = () => 2 ** 22 + 1; // above Linux's pid_max: no such process

function scratch(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(join(tmpdir(), 'semaim-disk-faults-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a full disk: whole-file writes name the final file and the cause, keep the old file and leave no temporary file', (t) => {
  const dir = scratch(t);
  const json = join(dir, 'knn.json');
  fs.writeFileSync(json, 'earlier result');
  assert.throws(
    () => withFullDisk(() => writeFileAtomic(json, '{"top1": 1}')),
    (e: Error & { code?: string }) => {
      assert.match(e.message, /^cannot write .*knn\.json: ENOSPC: no space left on device, write \(the disk is full: free space, or write elsewhere\)$/);
      assert.equal(e.code, 'ENOSPC', 'the errno code is kept');
      return true;
    },
  );
  const weights = join(dir, 'probe.safetensors');
  const tensor = { w: { dtype: 'float32' as const, shape: [4], data: new Uint8Array(16) } };
  assert.throws(() => withFullDisk(() => writeSafetensors(weights, tensor)), /^Error: cannot write .*probe\.safetensors: ENOSPC.*the disk is full/);
  const rows = join(dir, 'e.safetensors');
  const writer = new SafetensorsRowWriter(rows, { name: 'features', dtype: 'float32', rowShape: [2] });
  assert.throws(() => withFullDisk(() => writer.append(new Uint8Array(8))), /cannot write .*e\.safetensors: ENOSPC/);
  writer.abort();
  assert.equal(fs.readFileSync(json, 'utf8'), 'earlier result');
  assert.deepEqual(fs.readdirSync(dir), ['knn.json'], 'no temporary or partial file left');
});

test('a full disk mid-line: an append is whole or absent, so the next record is not glued to a torn one', (t) => {
  const dir = scratch(t);
  const log = new MetricsLog(join(dir, 'metrics.jsonl'));
  log.write({ step: 1, loss: 1 });
  const before = fs.readFileSync(log.path, 'utf8');
  // the disk fills during step 2's line (half of it written), then has room again for step 3's
  assert.throws(() => withFullDisk(() => log.write({ step: 2, loss: 0.5 })), /cannot write .*metrics\.jsonl: ENOSPC.*the disk is full/);
  assert.equal(fs.readFileSync(log.path, 'utf8'), before, 'the half-written line was cut off');
  log.write({ step: 3, loss: 0.25 });
  assert.deepEqual(
    readMetrics(log.path).map((r) => r.step),
    [1, 3],
  );
  appendNoFollow(join(dir, 'plain.log'), 'a\n');
  assert.throws(() => withFullDisk(() => appendNoFollow(join(dir, 'plain.log'), 'b'.repeat(100))), /cannot write .*plain\.log/);
  assert.equal(fs.readFileSync(join(dir, 'plain.log'), 'utf8'), 'a\n');
});

test('temporary files of processes killed while writing a file are removed by the next write of it; a live one’s stay', (t) => {
  const dir = scratch(t);
  const dead = deadPid();
  const left = [
    `knn.json.tmp-${dead}-0`,
    `probe.safetensors.tmp-${dead}-0123456789ab`,
    `probe.safetensors.tmp-${dead}-0123456789ab.data`,
    `metrics.jsonl.tmp-${dead}-0`,
  ];
  const live = [`knn.json.tmp-${process.pid}-99`, `other.json.tmp-${dead}-0`];
  for (const f of [...left, ...live]) fs.writeFileSync(join(dir, f), 'half');
  writeFileAtomic(join(dir, 'knn.json'), '{}');
  writeSafetensors(join(dir, 'probe.safetensors'), { w: { dtype: 'float32', shape: [1], data: new Uint8Array(4) } });
  const log = new MetricsLog(join(dir, 'metrics.jsonl'));
  log.write({ step: 1 });
  log.write({ step: 2 });
  log.truncateAfter(1);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['knn.json', 'metrics.jsonl', 'probe.safetensors', ...live].sort());
});

test('an output folder that cannot be made says what is in the way: a file, a dangling link', (t) => {
  const dir = scratch(t);
  fs.writeFileSync(join(dir, 'file'), 'x');
  fs.symlinkSync(join(dir, 'nowhere', 'x'), join(dir, 'link'));
  const mkdirFails = (p: string) => {
    try {
      fs.mkdirSync(p, { recursive: true });
    } catch (e) {
      return e;
    }
    assert.fail(`mkdir ${p} succeeded`);
  };
  assert.match(errorText(mkdirFails(join(dir, 'file'))), /^cannot create the folder .*file: .*file exists and is not a folder$/);
  assert.match(errorText(mkdirFails(join(dir, 'file', 'sub'))), /^cannot create the folder .*file\/sub: .*file exists and is not a folder$/);
  assert.match(errorText(mkdirFails(join(dir, 'link', 'sub'))), /link is a symbolic link to .*nowhere\/x, which does not exist$/);
  assert.throws(
    () => writeFileAtomic(join(dir, 'link', 'knn.json'), '{}'),
    /^Error: cannot write .*knn\.json: cannot create the folder .*link is a symbolic link/,
  );
  const other = new Error('not a file-system error');
  assert.equal(mkdirError(other), other);
});

test('saying why a folder could not be made changes nothing on the disk: a part missing then, that can be made now, is not made by the message', (t) => {
  const dir = scratch(t);
  let failed: unknown;
  try {
    fs.mkdirSync(join(dir, 'gone', 'sub')); // as makeFolder fails when a parent it made is removed meanwhile
  } catch (e) {
    failed = e;
  }
  assert.equal((failed as NodeJS.ErrnoException).code, 'ENOENT');
  assert.match(errorText(failed), /gone\/sub/);
  assert.deepEqual(fs.readdirSync(dir), [], 'printing the error made the folder it found missing');
});

test('an --out-dir that cannot be a folder (a file, a dangling link on its path) is an option error of every command, before any work', async (t) => {
  const dir = scratch(t);
  fs.writeFileSync(join(dir, 'file'), 'x');
  fs.symlinkSync(join(dir, 'nowhere'), join(dir, 'link'));
  for (const [name, args] of [
    ['knn', ['--checkpoint', join(dir, 'no-such-run')]],
    ['pretrain', []],
    ['ablate', []],
    ['object-start', []],
  ] as const)
    for (const [out, why] of [
      [join(dir, 'file'), /file exists and is not a folder$/],
      [join(dir, 'file', 'sub'), /file exists and is not a folder$/],
      [join(dir, 'link', 'run'), /link is a symbolic link to .*nowhere, which does not exist$/],
    ] as const)
      await assert.rejects(
        commands[name].run([...args, '--out-dir', out]),
        (e: unknown) => e instanceof OptionError && e.key === 'outDir' && why.test(e.message) && e.message.includes(`${out} cannot be the output folder`),
        `${name} --out-dir ${out}`,
      );
  assert.deepEqual(fs.readdirSync(dir).sort(), ['file', 'link'], 'nothing made');
});

test('a read-only file system: the error names the file, keeps EROFS and says to write elsewhere', (t) => {
  const dir = scratch(t);
  const { writeFileSync } = fs;
  const m = fs as unknown as Record<string, unknown>;
  m.writeFileSync = () => {
    throw Object.assign(new Error('EROFS: read-only file system, open'), { code: 'EROFS', syscall: 'open' });
  };
  try {
    assert.throws(
      () => writeFileAtomic(join(dir, 'knn.json'), '{}'),
      (e: Error & { code?: string }) => {
        assert.match(e.message, /^cannot write .*knn\.json: EROFS: read-only file system, open \(the file system is read-only: write elsewhere\)$/);
        assert.equal(e.code, 'EROFS');
        return true;
      },
    );
  } finally {
    m.writeFileSync = writeFileSync;
  }
});

test('a whole-file write reaches the disk (fsync) before its rename makes it the file: a power cut leaves the old file or the new one, not an empty one', (t) => {
  const dir = scratch(t);
  const { fsyncSync, renameSync } = fs;
  const m = fs as unknown as Record<string, unknown>;
  const calls: string[] = [];
  m.fsyncSync = (fd: number) => (calls.push('fsync'), fsyncSync(fd));
  m.renameSync = (from: fsp.PathLike, to: fsp.PathLike) => (calls.push('rename'), renameSync(from, to));
  try {
    writeFileAtomic(join(dir, 'config.json'), '{}');
  } finally {
    m.fsyncSync = fsyncSync;
    m.renameSync = renameSync;
  }
  assert.equal(calls.indexOf('rename'), calls.lastIndexOf('rename'), calls.join(' '));
  assert.ok(calls.indexOf('fsync') >= 0 && calls.indexOf('fsync') < calls.indexOf('rename'), calls.join(' '));
});
