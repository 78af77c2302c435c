// Repacking into a folder that holds shards (--overwrite): the earlier set stays, byte for byte, until
// the new one is complete and committed (index.json and every shard under one journal); a repack that is
// aborted, runs out of space or is refused before it starts leaves it as it was. One packer per folder;
// a packer killed between its renames has its set completed by the next reader of the data path.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { packImageFolder, resolveShardPaths, shardDataset } from '../../src/data';
import { OptionError } from '../../src/util/options';
import { AbortError } from '../../src/util/errors';
import { tempDir, write, picture, encode, withFullDiskAt } from './helpers';

/** node:fs as a plain object, its functions replaceable (the import's are read-only bindings). */
const mfs = require('node:fs') as typeof import('node:fs');

let root: string;
let cleanup: () => void;
let twelve: string; // 12 images in 3 classes
let five: string; // 5 others in 2 classes

before(async () => {
  ({ dir: root, cleanup } = tempDir('semaim-shards-replace-'));
  twelve = join(root, 'twelve');
  five = join(root, 'five');
  for (let i = 0; i < 12; i++) write(join(twelve, `c${i % 3}`, `${i}.png`), await encode(picture(8, 8, i), 8, 8, 3, 'png'));
  for (let i = 0; i < 5; i++) write(join(five, `k${i % 2}`, `${i}.png`), await encode(picture(9, 7, 100 + i), 9, 7, 3, 'png'));
});

after(() => cleanup());

/** Every file of `dir` with the SHA-256 of its bytes. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(
    fs
      .readdirSync(dir)
      .sort()
      .map((f) => [
        f,
        createHash('sha256')
          .update(fs.readFileSync(join(dir, f)))
          .digest('hex'),
      ]),
  );
}

test('a repack with --overwrite keeps the earlier set until the new one is complete: aborted, out of space or refused it changes nothing; complete, it replaces the set and removes the extra shards', async () => {
  const out = join(root, 'out');
  await packImageFolder({ input: twelve, output: out, shardSize: 2 });
  const earlier = snapshot(out);
  assert.equal(Object.keys(earlier).length, 7, '6 shards and index.json');

  // aborted after its first shard
  const controller = new AbortController();
  const aborted = packImageFolder({
    input: five,
    output: out,
    shardSize: 4,
    overwrite: true,
    signal: controller.signal,
    onProgress: () => controller.abort('stop'),
  });
  await assert.rejects(aborted, (e: unknown) => e instanceof AbortError);
  assert.deepEqual(snapshot(out), earlier, 'the aborted repack changed nothing');

  // the disk fills at index.json, after every shard was written
  await withFullDiskAt(/index\.json\.tmp-/, () =>
    assert.rejects(packImageFolder({ input: five, output: out, shardSize: 4, overwrite: true }), /cannot write .*index\.json: ENOSPC/),
  );
  assert.deepEqual(snapshot(out), earlier, 'the failed repack changed nothing');

  // a disk without room for the new set beside the earlier one: refused before any shard
  const statfs0 = mfs.statfsSync;
  mfs.statfsSync = (() => ({ ...statfs0(tmpdir()), bavail: 1, bsize: 4096, blocks: 1000 })) as unknown as typeof fs.statfsSync;
  try {
    await assert.rejects(
      packImageFolder({ input: five, output: out, shardSize: 4, overwrite: true }),
      (e: Error) => /the shards/.test(e.message) && /beside the earlier set/.test(e.message),
    );
  } finally {
    mfs.statfsSync = statfs0;
  }
  assert.deepEqual(snapshot(out), earlier, 'the refused repack changed nothing');

  const r = await packImageFolder({ input: five, output: out, shardSize: 4, overwrite: true });
  assert.deepEqual(
    Object.keys(snapshot(out)),
    ['index.json', 'shard-000000.tar', 'shard-000001.tar'],
    "the earlier set's extra shards are gone, no temporary file left",
  );
  assert.equal(r.samples, 5);
  const ds = shardDataset(out, { onWarning: () => {} });
  assert.equal(ds.length, 5);
  assert.deepEqual([...ds.classes], ['k0', 'k1']);
});

test('only the earlier set is replaced: other archives in the folder stay, byte for byte, and do not stop a pack; it warns that they are there', async () => {
  const out = join(root, 'mixed');
  await packImageFolder({ input: twelve, output: out, shardSize: 4 });
  write(join(out, 'my-backup.tar'), 'a tar of my own');
  write(join(out, 'photos-2019.tar.gz'), 'photos');
  write(join(out, 'shard-7.tar'), 'not a name semaim gives its shards');
  const mine = ['my-backup.tar', 'photos-2019.tar.gz', 'shard-7.tar'];
  const before = snapshot(out);
  const warnings: string[] = [];
  await packImageFolder({ input: five, output: out, overwrite: true, onWarning: (l) => warnings.push(l) });
  const after = snapshot(out);
  assert.deepEqual(Object.keys(after), ['index.json', ...mine.slice(0, 2), 'shard-000000.tar', mine[2]]);
  for (const f of mine) assert.equal(after[f], before[f], f);
  assert.ok(
    warnings.some((w) => /also holds 3 other archive\(s\) \(e\.g\. my-backup\.tar\), left alone/.test(w)),
    warnings.join('\n'),
  );
  await assert.rejects(
    packImageFolder({ input: five, output: out, onWarning: () => {} }),
    (e: unknown) => e instanceof OptionError && /already holds a shard set \(2 shard-NNNNNN\.tar\/index\.json file\(s\)/.test(e.message),
  );
  // a folder holding other archives only is packed into without --overwrite
  const beside = join(root, 'beside');
  write(join(beside, 'my-backup.tar'), 'a tar of my own');
  await packImageFolder({ input: five, output: beside, onWarning: () => {} });
  assert.deepEqual(fs.readdirSync(beside).sort(), ['index.json', 'my-backup.tar', 'shard-000000.tar']);
});

test('one packer per folder: a second is refused naming the first (index.json.lock); the lock of a packer that is gone is taken over', async () => {
  const out = join(root, 'locked');
  fs.mkdirSync(out);
  fs.writeFileSync(join(out, 'index.json.lock'), JSON.stringify({ pid: 1, host: hostname(), since: '2026-12-04T00:00:00.000Z' })); // pid 1 is alive
  await assert.rejects(
    packImageFolder({ input: five, output: out }),
    (e: unknown) => e instanceof OptionError && e.key === 'output' && /being written by another semaim process \(process 1 on this machine/.test(e.message),
  );
  assert.deepEqual(fs.readdirSync(out), ['index.json.lock'], 'nothing written');
  fs.writeFileSync(join(out, 'index.json.lock'), JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), since: '2026-12-04T00:00:00.000Z' }));
  const r = await packImageFolder({ input: five, output: out });
  assert.equal(r.samples, 5);
  assert.deepEqual(fs.readdirSync(out).sort(), ['index.json', 'shard-000000.tar'], 'the lock released');
});

let killers = 0;
/** packImageFolder(options) in a child process with `killer` (source that kills it at some call) loaded first. */
function packKilledBy(killer: string, options: Record<string, unknown>) {
  const file = join(root, `killer-${killers++}.js`);
  fs.writeFileSync(file, killer);
  const data = join(__dirname, '..', '..', 'src', 'data');
  return spawnSync(process.execPath, ['-r', file, '-e', `require(${JSON.stringify(data)}).packImageFolder(${JSON.stringify(options)})`], {
    encoding: 'utf8',
    timeout: 60_000,
  });
}

test('a packer killed between the renames of its set: the next reader of the data path completes the new set, equal to an uninterrupted pack', async () => {
  const [out, ref] = [join(root, 'killed'), join(root, 'reference')];
  await packImageFolder({ input: twelve, output: out, shardSize: 4 });
  await packImageFolder({ input: twelve, output: ref, shardSize: 4, shuffle: true, seed: 3 });
  const r = packKilledBy(
    `const fs = require('node:fs'); const rename = fs.renameSync;
fs.renameSync = function (a, b) { rename.call(fs, a, b); if (/shard-000001\\.tar$/.test(String(b))) process.kill(process.pid, 'SIGKILL'); };`,
    { input: twelve, output: out, shardSize: 4, shuffle: true, seed: 3, overwrite: true },
  );
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.ok(fs.existsSync(join(out, 'index.json.commit')), 'killed mid-commit: its journal is left');
  assert.notEqual(snapshot(out)['shard-000002.tar'], snapshot(ref)['shard-000002.tar'], 'the third shard is still the earlier one');

  assert.equal(resolveShardPaths(out).length, 3);
  const { ['index.json.lock']: lock, ...set } = snapshot(out);
  assert.deepEqual(set, snapshot(ref), 'the new set, whole: index.json and every shard as an uninterrupted pack wrote them');
  assert.ok(lock, "the killed packer's lock is left (a dead process's: the next packer takes it over)");
  await packImageFolder({ input: five, output: out, overwrite: true });
  assert.deepEqual(Object.keys(snapshot(out)), ['index.json', 'shard-000000.tar']);
});

test("a repacker killed after its commit, before the earlier set's extra shards are removed: a reader of the folder gets the new set alone, no shard of the earlier one", async () => {
  const out = join(root, 'killed-after-commit');
  await packImageFolder({ input: twelve, output: out, shardSize: 4 }); // 3 shards
  const r = packKilledBy(
    `const fs = require('node:fs'); const rm = fs.rmSync;
fs.rmSync = function (p, o) { if (/shard-000002\\.tar/.test(String(p))) process.kill(process.pid, 'SIGKILL'); return rm.call(fs, p, o); };`,
    { input: five, output: out, shardSize: 4, overwrite: true },
  );
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  // the new set (5 images in 2 shards) is committed; the earlier set's third shard must not be read with it
  assert.deepEqual(
    resolveShardPaths(out).map((p) => p.slice(out.length + 1)),
    ['shard-000000.tar', 'shard-000001.tar'],
  );
  assert.equal(shardDataset(out, { onWarning: () => {} }).length, 5);
  // the next pack in the folder clears what the killed one left
  await packImageFolder({ input: five, output: out, overwrite: true });
  assert.deepEqual(Object.keys(snapshot(out)), ['index.json', 'shard-000000.tar']);
});

test('a repacker of fewer shards killed between the renames of its set: the next reader completes the new set, no shard of the earlier one is read with it', async () => {
  const [out, ref] = [join(root, 'killed-fewer'), join(root, 'reference-fewer')];
  await packImageFolder({ input: twelve, output: out, shardSize: 4 }); // 3 shards
  await packImageFolder({ input: five, output: ref, shardSize: 4 }); // 2 shards
  const r = packKilledBy(
    `const fs = require('node:fs'); const rename = fs.renameSync;
fs.renameSync = function (a, b) { rename.call(fs, a, b); if (/shard-000000\\.tar$/.test(String(b))) process.kill(process.pid, 'SIGKILL'); };`,
    { input: five, output: out, shardSize: 4, overwrite: true },
  );
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.ok(fs.existsSync(join(out, 'index.json.commit')), 'killed mid-commit: its journal is left');
  assert.deepEqual(
    resolveShardPaths(out).map((p) => p.slice(out.length + 1)),
    ['shard-000000.tar', 'shard-000001.tar'],
  );
  const { ['index.json.lock']: lock, ...set } = snapshot(out);
  assert.ok(lock);
  assert.deepEqual(
    Object.fromEntries(Object.entries(set).filter(([f]) => !/\.tmp-/.test(f))),
    snapshot(ref),
    'the new set, whole: index.json and both shards as an uninterrupted pack wrote them',
  );
  assert.equal(shardDataset(out, { onWarning: () => {} }).length, 5);
  await packImageFolder({ input: five, output: out, overwrite: true });
  assert.deepEqual(Object.keys(snapshot(out)), ['index.json', 'shard-000000.tar']);
});

test('a symbolic link planted at the temporary name of a shard is replaced, not written through: the file it points to stays as it was', async () => {
  const out = join(root, 'planted');
  fs.mkdirSync(out);
  const victim = join(root, 'victim.txt');
  fs.writeFileSync(victim, 'not a shard');
  // the name this process stages its first shard under (`<shard>.tmp-<pid>-0`), a link to a file elsewhere
  fs.symlinkSync(victim, join(out, `shard-000000.tar.tmp-${process.pid}-0`));
  const r = await packImageFolder({ input: five, output: out });
  assert.equal(r.samples, 5);
  assert.equal(fs.readFileSync(victim, 'utf8'), 'not a shard', 'the target of the planted link is untouched');
  assert.deepEqual(fs.readdirSync(out).sort(), ['index.json', 'shard-000000.tar']);
  assert.ok(fs.lstatSync(join(out, 'shard-000000.tar')).isFile(), 'the shard is a file of its own, not the link');
  assert.equal(shardDataset(out, { onWarning: () => {} }).length, 5);
});
