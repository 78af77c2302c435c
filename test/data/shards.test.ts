// Sharded tar datasets: brace expansion, the packer's round trip, the epoch plan over ranks and
// workers, the shuffle buffer's replay, reading every image once per epoch over 2 ranks × 2
// workers, resume, and bad shards / members skipped with a warning and counted.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, basename } from 'node:path';
import {
  createWriteStream,
  copyFileSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  truncateSync,
  openSync,
  writeSync,
  closeSync,
  existsSync,
  writeFileSync,
  symlinkSync,
  rmSync,
} from 'node:fs';
import {
  packImageFolder,
  shardDataset,
  ShardLoader,
  expandBraces,
  resolveShardPaths,
  imageFolder,
  DataLoader,
  resize,
  normalize,
  Rng,
  type Batch,
  type EpochStart,
  type ShardLoaderOptions,
} from '../../src/data';
import { pack as tarPack } from 'tar-stream';
import { gzipSync } from 'node:zlib';
import { spawn, spawnSync } from 'node:child_process';
import {
  readShard,
  ShardReadError,
  shardEpochPlan,
  ShuffleBuffer,
  replay,
  streamSegments,
  readIndexFile,
  scanShards,
  MAX_CLASSES,
  MAX_IMAGE_BYTES,
  MAX_META_BYTES,
  imageMemberCap,
} from '../../src/data/shards';
import { DEFAULT_MAX_IMAGE_PIXELS } from '../../src/data/codecs/limits';
import { constants } from 'node:buffer';
import { tempDir, write, picture, encode, withFullDiskAt, withFullDiskStreamAt } from './helpers';
import * as lib from '../../src';
import { commands } from '../../src/cli/commands';
import { captureTerminal, printed, quiet } from '../output';
import { tmpfsScratch } from '../tmpfs';

const BUFFER_MAX = constants.MAX_LENGTH;

let root: string;
let cleanup: () => void;
let folder: string;
let shards: string;
let pattern: string;

before(async () => {
  ({ dir: root, cleanup } = tempDir('semaim-shards-'));
  folder = join(root, 'imgs');
  for (let i = 0; i < 23; i++) {
    const w = 12 + (i % 4) * 3;
    const h = 10 + (i % 3) * 2;
    const png = i % 5 === 4;
    write(
      join(folder, `class${i % 3}`, `${String(i).padStart(2, '0')}.${png ? 'png' : 'jpg'}`),
      await encode(picture(w, h, i), w, h, 3, png ? 'png' : 'jpeg', { quality: 85 }),
    );
  }
  shards = join(root, 'shards');
  const r = await packImageFolder({ input: folder, output: shards, shardSize: 5 });
  pattern = r.pattern;
});

after(() => cleanup());

const tf = [resize([8, 8]), normalize()];

async function collect(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

function loaders(data: string, worldSize: number, opts: Partial<ShardLoaderOptions> = {}): ShardLoader[] {
  return Array.from(
    { length: worldSize },
    (_, rank) =>
      new ShardLoader(shardDataset(data, { onWarning: () => {} }), {
        batchSize: 3,
        workers: 2,
        rank,
        worldSize,
        transforms: tf,
        seed: 4,
        shuffleBuffer: 4,
        ...opts,
      }),
  );
}

test('brace patterns expand like the shell: zero-padded ranges, lists, nesting; paths are checked', () => {
  assert.deepEqual(expandBraces('d/shard-{000..003}.tar'), ['d/shard-000.tar', 'd/shard-001.tar', 'd/shard-002.tar', 'd/shard-003.tar']);
  assert.deepEqual(expandBraces('{a,b}{1..2}.tar'), ['a1.tar', 'a2.tar', 'b1.tar', 'b2.tar']);
  assert.deepEqual(expandBraces('x{1,{3..4}}'), ['x1', 'x3', 'x4']);
  assert.deepEqual(expandBraces('{9..11}'), ['9', '10', '11']);
  assert.deepEqual(expandBraces('plain.tar'), ['plain.tar']);
  assert.throws(() => expandBraces('a{1..2.tar'), /without a matching/);
  assert.throws(() => expandBraces('a{x}.tar'), /neither a range/);
  const all = resolveShardPaths(pattern);
  assert.equal(all.length, 5);
  assert.deepEqual(resolveShardPaths(shards), all, 'a folder lists its shards in name order');
  assert.deepEqual(resolveShardPaths(`${all[3]},${join(shards, 'shard-00000{0..1}.tar')}`), [all[3], all[0], all[1]]);
  assert.deepEqual(resolveShardPaths(join(root, '{split}'), 'shards'), all, '{split} is replaced by the split');
  assert.deepEqual(resolveShardPaths(root, 'shards'), all, 'a folder with one sub-folder per split');
  assert.throws(() => resolveShardPaths(join(shards, 'shard-{000000..000009}.tar')), /5 shard file\(s\) .* do not exist/);
});

test('a folder of 200,000 shards is listed whole, also as a split folder (a spread of its list overflowed the call stack)', () => {
  const splits = join(root, 'many-splits');
  const many = join(splits, 'train');
  mkdirSync(many, { recursive: true });
  writeFileSync(join(many, 'shard-000000.tar'), '');
  // the listing of 200,000 files, without making them (a name whose file is not there is kept, as a dangling link is)
  const fs = require('node:fs') as typeof import('node:fs');
  const readdir = fs.readdirSync;
  const extra = Array.from({ length: 200_000 }, (_, i) => `shard-${String(i + 1).padStart(6, '0')}.tar`);
  fs.readdirSync = ((...args: unknown[]) => {
    const names = (readdir as (...a: unknown[]) => unknown)(...args);
    return args[0] === many && args.length === 1 ? [...(names as string[]), ...extra] : names;
  }) as typeof fs.readdirSync;
  try {
    for (const listed of [resolveShardPaths(many), resolveShardPaths(splits, 'train')]) {
      assert.equal(listed.length, 200_001);
      assert.equal(listed[0], join(many, 'shard-000000.tar'));
      assert.equal(listed[200_000], join(many, 'shard-200000.tar'));
    }
  } finally {
    fs.readdirSync = readdir;
    rmSync(splits, { recursive: true, force: true });
  }
});

test('a range bound with a leading zero pads to the longer bound, as bash and braceexpand do, whatever the widths', () => {
  // (the bounds' widths had to be equal: {1..010} and {000000..12} gave unpadded names, so no shard of the set was found)
  assert.deepEqual(expandBraces('s-{8..010}.tar'), ['s-008.tar', 's-009.tar', 's-010.tar']);
  assert.deepEqual(expandBraces('s-{000000..2}.tar'), ['s-000000.tar', 's-000001.tar', 's-000002.tar']);
  assert.deepEqual(expandBraces('{-01..1}'), ['-01', '000', '001']);
  assert.deepEqual(expandBraces('{3..-002}'), ['0003', '0002', '0001', '0000', '-001', '-002']);
  assert.deepEqual(expandBraces('{0..10}').slice(9), ['9', '10'], "'0' alone is no leading zero");
  assert.deepEqual(expandBraces('{00..2}'), ['00', '01', '02']);
});

test('the packer round-trips: every image bytes-equal with its label, index.json with classes and counts', async () => {
  const ds = imageFolder(folder);
  const index = readIndexFile(join(shards, 'index.json'))!;
  assert.deepEqual(index.classes, ['class0', 'class1', 'class2']);
  assert.deepEqual(
    index.shards.map((e) => [e.file, e.samples]),
    [0, 1, 2, 3, 4].map((k) => [`shard-00000${k}.tar`, k < 4 ? 5 : 3]),
  );
  assert.equal(index.samples, 23);
  let t = 0;
  for (const path of resolveShardPaths(pattern)) {
    assert.equal(statSync(path).size, index.shards.find((e) => e.file === basename(path))!.bytes);
    for await (const s of readShard(path)) {
      assert.equal(s.key, String(t).padStart(9, '0'));
      assert.deepEqual(s.image, readFileSync(ds.name(t)), `${ds.name(t)} bytes`);
      assert.equal(s.imageExt, ds.name(t).endsWith('.png') ? 'png' : 'jpg');
      assert.equal(s.label, ds.label(t));
      t++;
    }
  }
  assert.equal(t, 23);
  assert.deepEqual(
    readdirSync(shards).filter((f) => f.includes('.tmp')),
    [],
    'no temporary files left',
  );
  await assert.rejects(packImageFolder({ input: folder, output: shards }), /already holds a shard set \(6 shard-NNNNNN\.tar\/index\.json file\(s\)/);
  // a program tells it from other failures by its code, as the other outputs that exist
  await assert.rejects(
    packImageFolder({ input: folder, output: shards }),
    (e: unknown) => e instanceof lib.OptionError && e.code === 'ERR_OUTPUT_EXISTS' && e.key === 'output',
  );
  // shuffled packing: the same images, in a seeded order
  const mixed = await packImageFolder({ input: folder, output: join(root, 'mixed'), shardSize: 10, shuffle: true, seed: 1, json: true });
  const seen: string[] = [];
  for (const p of mixed.shards) for await (const s of readShard(p, { images: false })) seen.push(s.key);
  assert.equal(seen.length, 23);
  const paths: string[] = [];
  for (const p of mixed.shards) for await (const s of readShard(p)) paths.push(s.image!.toString('base64'));
  assert.notDeepEqual(
    paths,
    Array.from({ length: 23 }, (_, i) => readFileSync(ds.name(i)).toString('base64')),
  );
  assert.deepEqual([...paths].sort(), Array.from({ length: 23 }, (_, i) => readFileSync(ds.name(i)).toString('base64')).sort());
});

/** A copy of some of the packed folder's images in classes a, b, c (b/01 is a PNG), and the same folder with `extra` added to b. */
function foldersWithout(dir: string, extra: { name: string; bytes: number }): { input: string; without: string } {
  const [input, without] = [join(dir, 'with'), join(dir, 'without')];
  for (const base of [input, without])
    for (const [cls, from, files] of [
      ['a', 'class0', ['00.jpg', '03.jpg']],
      ['b', 'class1', ['01.jpg', '04.png']],
      ['c', 'class2', ['02.jpg']],
    ] as const)
      for (const f of files) {
        mkdirSync(join(base, cls), { recursive: true });
        copyFileSync(join(folder, from, f), join(base, cls, f));
      }
  closeSync(openSync(join(input, 'b', extra.name), 'w'));
  truncateSync(join(input, 'b', extra.name), extra.bytes); // sparse: no disk
  return { input, without };
}

const shardBytes = (r: { shards: string[] }) => r.shards.map((p) => readFileSync(p).toString('base64'));

test('the packer leaves out a file larger than an image within the pixel limit can be (here over 2 GiB), decided before the first shard: the rest packs as the folder without it does', async () => {
  const dir = join(root, 'too-large');
  const big = 2 ** 31 + 1; // readFileSync refuses it (ERR_FS_FILE_TOO_LARGE): the pack failed midway
  const { input, without } = foldersWithout(dir, { name: 'x.jpg', bytes: big });
  for (const shuffle of [false, true]) {
    const r = await packImageFolder({ input, output: join(dir, `out-${shuffle}`), shardSize: 2, shuffle, seed: 3, json: true });
    assert.equal(r.samples, 5);
    assert.deepEqual(r.tooLarge, [{ path: join('b', 'x.jpg'), bytes: big }]);
    assert.deepEqual(r.classes, ['a', 'b', 'c']);
    const ref = await packImageFolder({ input: without, output: join(dir, `ref-${shuffle}`), shardSize: 2, shuffle, seed: 3 });
    const keys: string[] = [];
    for (const p of r.shards) for await (const s of readShard(p, { images: false })) keys.push(s.key);
    assert.deepEqual(keys, ['000000000', '000000001', '000000002', '000000003', '000000004'], 'keys stay contiguous');
    assert.equal(readIndexFile(r.index)!.samples, 5);
    const plain = await packImageFolder({ input, output: join(dir, `plain-${shuffle}`), shardSize: 2, shuffle, seed: 3 });
    assert.deepEqual(shardBytes(plain), shardBytes(ref), `shuffle ${shuffle}: the same shards as the folder without the file`);
  }
});

test('the packer takes --max-image-pixels: a file over what an image within it can take is skipped and named in the summary; when every file is, it fails before writing', async () => {
  const dir = join(root, 'pixel-cap');
  // 8 × 120 pixels + 1 MiB is what an image within --max-image-pixels 120 can take: this file is 2 MiB
  const { input, without } = foldersWithout(dir, { name: 'huge.png', bytes: 2 << 20 });
  const out = join(dir, 'out');
  const stdout = process.stdout.write.bind(process.stdout);
  let printed = '';
  // the test runner's own reports pass (as bytes)
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) =>
    typeof s === 'string' ? ((printed += s), true) : stdout(s, ...rest)) as typeof process.stdout.write;
  try {
    assert.equal(await commands.shards.run(['--input', input, '--output', out, '--max-image-pixels', '120']), 0);
  } finally {
    process.stdout.write = stdout;
  }
  assert.match(printed, /^packed 5 images of 3 classes into 1 shard\(s\), [\d.]+ MiB; skipped 1 file too large for an image \(b\/huge\.png, 2\.0 MiB\)\n/);
  const ref = await packImageFolder({ input: without, output: join(dir, 'ref') });
  assert.deepEqual(shardBytes({ shards: resolveShardPaths(out) }), shardBytes(ref));
  // the default limit admits it
  const r = await packImageFolder({ input, output: join(dir, 'default') });
  assert.deepEqual([r.samples, r.tooLarge], [6, []]);

  const only = join(dir, 'only');
  mkdirSync(join(only, 'a'), { recursive: true });
  copyFileSync(join(input, 'b', 'huge.png'), join(only, 'a', 'huge.png'));
  await assert.rejects(
    packImageFolder({ input: only, output: join(dir, 'none'), maxImagePixels: 120 }),
    /shards: every image of .*only \(1\) is larger than the 1\.0 MiB an image within the pixel limit can take, e\.g\. a\/huge\.png \(2\.0 MiB\); nothing to pack/,
  );
  assert.ok(!existsSync(join(dir, 'none')), 'nothing written, not even the output folder it made');
});

test('files that cannot be read when their turn comes (gone, now a folder or a FIFO, no permission) are left out and named; the rest packs, never a hang', () => {
  const dir = join(root, 'vanishing');
  const { without: input } = foldersWithout(dir, { name: 'x.jpg', bytes: 0 });
  const out = join(dir, 'out');
  const data = JSON.stringify(join(__dirname, '..', '..', 'src', 'data'));
  // In a child process with a time limit: reading a FIFO blocks the thread, so a regression would hang the suite.
  const r = spawnSync(
    process.execPath,
    [
      '-e',
      `const fs = require('node:fs'), { join } = require('node:path'), input = ${JSON.stringify(input)};
       require(${data}).packImageFolder({
         input, output: ${JSON.stringify(out)}, shardSize: 1,
         onProgress: (done) => {
           if (done !== 1) return; // after the first shard (a/00.jpg) is written
           fs.rmSync(join(input, 'a', '03.jpg'));
           fs.rmSync(join(input, 'b', '01.jpg'));
           fs.mkdirSync(join(input, 'b', '01.jpg'));
           fs.rmSync(join(input, 'c', '02.jpg'));
           require('node:child_process').execFileSync('mkfifo', [join(input, 'c', '02.jpg')]);
         },
       }).then((r) => console.log(JSON.stringify(r)), (e) => console.log(e.message));`,
    ],
    { timeout: 30_000, killSignal: 'SIGKILL', encoding: 'utf8' }, // SIGTERM waits for the packer's handler, which a blocked read never runs
  );
  assert.notEqual((r.error as NodeJS.ErrnoException | undefined)?.code, 'ETIMEDOUT', 'hung on a FIFO');
  const got = JSON.parse(r.stdout) as { samples: number; shards: string[]; unreadable: unknown[] };
  assert.equal(got.samples, 2, r.stdout + r.stderr);
  assert.deepEqual(got.unreadable, [
    { path: join('a', '03.jpg'), reason: 'ENOENT' },
    { path: join('b', '01.jpg'), reason: 'a folder, not a regular file' },
    { path: join('c', '02.jpg'), reason: 'a FIFO, not a regular file' },
  ]);
  assert.deepEqual(
    got.shards.map((p) => basename(p)),
    ['shard-000000.tar', 'shard-000001.tar'],
    'no shard left empty',
  );
  assert.deepEqual(readIndexFile(join(out, 'index.json'))!.samples, 2);

  // the command names them in its summary (EACCES, which root does not meet, injected at the open)
  const cli = spawnSync(
    process.execPath,
    [
      '-e',
      `const fs = require('node:fs'), open = fs.openSync;
       fs.openSync = (p, ...rest) => { if (String(p).endsWith('04.png')) throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' }); return open(p, ...rest); };
       require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'cli', 'commands'))}).commands.shards.run(['--input', ${JSON.stringify(input)}, '--output', ${JSON.stringify(join(dir, 'cli'))}]);`,
    ],
    { timeout: 30_000, killSignal: 'SIGKILL', encoding: 'utf8' },
  );
  assert.match(
    cli.stdout,
    /^packed 1 images of 3 classes into 1 shard\(s\), [\d.]+ MiB; skipped 1 file that could not be read \(b\/04\.png: EACCES\)\n/,
    cli.stderr,
  );
});

test("the packer holds one chunk of an image at a time, not a shard's images (4 sparse files of 64 MiB in one shard)", () => {
  const dir = join(root, 'big-files');
  for (let i = 0; i < 4; i++) {
    const f = join(dir, 'c', `${i}.png`);
    write(f, readFileSync(join(folder, 'class1', '04.png')));
    truncateSync(f, 64 << 20); // sparse: no disk to read
  }
  const r = spawnSync(
    process.execPath,
    [
      '-e',
      `const data = require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'data'))});
       data.imageFolder(${JSON.stringify(dir)}); // what listing loads (the native addon) is not the pack's
       const rss = process.memoryUsage().rss;
       data.packImageFolder({ input: ${JSON.stringify(dir)}, output: ${JSON.stringify(join(dir, '..', 'big-out'))}, shardSize: 4, maxImagePixels: 0 })
         .then((r) => console.log(JSON.stringify({ samples: r.samples, grew: process.resourceUsage().maxRSS * 1024 - rss })));`,
    ],
    { timeout: 120_000, encoding: 'utf8' },
  );
  const got = JSON.parse(r.stdout) as { samples: number; grew: number };
  assert.equal(got.samples, 4, r.stderr);
  assert.ok(got.grew < 64 << 20, `the peak memory grew by ${(got.grew / 2 ** 20).toFixed(0)} MiB over the pack's 256 MiB of images`);
});

test('the packer refuses an output folder inside its input folder, also when a link hides it', async () => {
  const dir = join(root, 'inside');
  const { without: input } = foldersWithout(dir, { name: 'x.jpg', bytes: 0 });
  symlinkSync(input, join(dir, 'in-link'));
  const inside = /the output folder .* must not be inside the input folder /;
  for (const [i, o] of [
    [input, join(input, 'out')],
    [join(dir, 'in-link'), join(input, 'out')], // the input through a link
    [input, join(dir, 'in-link', 'out', 'deeper')], // the output through a link, not made yet
    [join(dir, 'in-link'), join(dir, 'in-link')],
  ])
    await assert.rejects(
      packImageFolder({ input: i, output: o }),
      // an option error, as the output that is a file is: the command exits 2, not 1
      (e: unknown) => e instanceof lib.OptionError && e.key === 'output' && inside.test(e.message),
      `${i} -> ${o}`,
    );
  assert.ok(!existsSync(join(input, 'out')), 'nothing made in the input');
  const cli = spawnSync(process.execPath, [join(__dirname, '..', '..', 'src', 'cli', 'main.js'), 'shards', '--input', input, '--output', join(input, 'out')], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(cli.status, 2, cli.stderr);
  assert.match(cli.stderr, /^semaim: option --output: the output folder .* must not be inside the input folder /);
  assert.equal((await packImageFolder({ input: join(dir, 'in-link'), output: join(dir, 'out') })).samples, 5);
});

test('the packer refuses an output that is a file, a seed that is not an integer and an unknown option, before any work', async () => {
  const file = join(folder, 'class0', '00.jpg');
  const out = join(root, 'refused-out');
  await assert.rejects(packImageFolder({ input: folder, output: file }), (e: unknown) => {
    assert.ok(e instanceof lib.OptionError, String(e)); // (was mkdir's raw EEXIST)
    assert.equal(e.key, 'output');
    assert.equal(e.detail, `${file} is not a folder (the shards are written into one)`);
    return true;
  });
  await assert.rejects(packImageFolder({ input: folder, output: out, shuffle: true, seed: NaN }), {
    name: 'RangeError',
    message: 'shards: seed must be an integer, got NaN',
  });
  await assert.rejects(packImageFolder({ input: folder, output: out, shard_size: 2 } as never), (e: unknown) => {
    assert.ok(e instanceof lib.OptionError, String(e));
    assert.equal(e.key, 'shard_size');
    // the jobs' wording (jobFields): the key meant in quotes, as a caller writes it
    assert.match(e.detail, /^unknown option; did you mean 'shardSize'\? \(known: input, output, shardSize, /);
    return true;
  });
  assert.ok(!existsSync(out), 'no output folder made');
});

test('the packer refuses a value of another kind, naming its key, before any work: overwrite: "false" left the earlier set replaced', async () => {
  const before = readdirSync(shards).sort();
  const index = readFileSync(join(shards, 'index.json'), 'utf8');
  const refused = (key: string, detail: RegExp) => (e: unknown) => e instanceof lib.OptionError && e.key === key && detail.test(e.detail);
  // a truthy string: the set in the output was replaced, as with overwrite: true
  await assert.rejects(
    packImageFolder({ input: folder, output: shards, shardSize: 7, overwrite: 'false' as never }),
    refused('overwrite', /expected true or false, got "false"/),
  );
  await assert.rejects(
    packImageFolder({ input: folder, output: shards, shuffle: 'no' as never, overwrite: true }),
    refused('shuffle', /expected true or false/),
  );
  // never aborted: the controller has no `aborted` of its own
  await assert.rejects(
    packImageFolder({ input: folder, output: shards, signal: new AbortController() as never, overwrite: true }),
    refused('signal', /expected an AbortSignal/),
  );
  await assert.rejects(
    packImageFolder({ input: folder, output: shards, onProgress: 'log' as never, overwrite: true }),
    refused('onProgress', /expected a function/),
  );
  await assert.rejects(
    packImageFolder({ input: folder, output: shards, shardSize: '5' as never, overwrite: true }),
    refused('shardSize', /expected a number, got "5"/),
  );
  assert.deepEqual(readdirSync(shards).sort(), before);
  assert.equal(readFileSync(join(shards, 'index.json'), 'utf8'), index);
});

test('each loader refuses the other kind of dataset with a TypeError naming the right loader', () => {
  const sd = shardDataset(pattern, { onWarning: () => {} });
  assert.throws(() => new DataLoader(sd as never, { batchSize: 2, workers: 0 }), {
    name: 'TypeError',
    message: `DataLoader: ${pattern} is a ShardDataset (tar shards, streamed, not indexed): read it with a ShardLoader`,
  });
  assert.throws(() => new ShardLoader(imageFolder(folder) as never, { batchSize: 2, workers: 0, transforms: tf }), {
    name: 'TypeError',
    message: `ShardLoader: expected a ShardDataset (tar shards, from shardDataset), got ${folder}, an indexed Dataset: read it with a DataLoader`,
  });
});

test('the ShardLoader refuses invalid shared options as the DataLoader does (one check), and an epoch that is not an integer >= 0', async () => {
  const sd = shardDataset(pattern, { onWarning: () => {} });
  // shardDataset's own options too (a split: 'test' misspelt read the train shards)
  assert.throws(
    () => shardDataset(pattern, { splt: 'test' } as never),
    /^OptionError: option 'splt': unknown option; did you mean 'split'\? \(known: split, onWarning\)$/,
  );
  const refused: Array<[Partial<ShardLoaderOptions>, RegExp]> = [
    [{ labelSmoothing: 2 }, /labelSmoothing must be a number in \[0, 1\], got 2/], // (inverted targets)
    [{ numClasses: 1, labelSmoothing: 0.1 }, /numClasses 1 is fewer than the 3 classes of .*: label 1 \('class1'\) would have no soft target/],
    [{ seed: NaN }, /seed must be an integer, got NaN/],
    [{ prefetch: 0 }, /prefetch must be an integer >= 1, got 0/],
    [{ alphaBackground: 'red' as never }, /alphaBackground must be .*got 'red'/],
    [{ exifOrientation: 'bogus' as never }, /exifOrientation must be one of 'ignore', 'apply', got 'bogus'/],
    [{ mixup: { cutmixAlpha: -1 } }, /mixup\.cutmixAlpha must be a number >= 0 \(0 = off\), got -1/],
    [{ maxReplacements: -1 }, /maxReplacements must be an integer >= 0, got -1/],
    [{ maxImagePixels: -1 }, /maxImagePixels must be an integer >= 0 \(0 = no limit\), got -1/],
  ];
  for (const [o, message] of refused)
    assert.throws(() => new ShardLoader(sd, { batchSize: 2, workers: 0, transforms: tf, ...o }), {
      name: 'RangeError',
      message: new RegExp(`^ShardLoader: ${message.source}$`),
    });
  // an unknown key, or a DataLoader option a stream does not take, is refused naming it (it was ignored)
  assert.throws(() => new ShardLoader(sd, { batchSize: 2, workers: 0, transforms: tf, shuffle_buffer: 10 } as never), {
    name: 'OptionError',
    message: /^option 'shuffle_buffer': unknown option; did you mean 'shuffleBuffer'\? \(known: /,
  });
  assert.throws(() => new ShardLoader(sd, { batchSize: 2, workers: 0, transforms: tf, cache: true } as never), /^OptionError: option 'cache': unknown option/);
  const loader = new ShardLoader(sd, { batchSize: 4, workers: 0, transforms: tf });
  try {
    await assert.rejects(collect(loader.iterate(NaN)), { name: 'RangeError', message: 'ShardLoader: epoch must be an integer >= 0, got NaN' });
    assert.equal((await collect(loader.iterate(0))).length, 6);
  } finally {
    await loader.close();
  }
});

test('an invalid epoch start is refused before the ShardLoader moves on: the epoch and the last summary stay as they were', async () => {
  const sd = shardDataset(pattern, { onWarning: () => {} });
  for (const workers of [0, 1]) {
    const loader = new ShardLoader(sd, { batchSize: 4, workers, transforms: tf, shuffleBuffer: 4 });
    try {
      const refused: Array<[EpochStart, RegExp]> = [
        [{ batch: -1 }, /start must be >= 0, got -1/],
        [{ batch: 1, sample: 4 }, /not both/],
        [{ end: -1 }, /end batch must be an integer >= 0, got -1/],
        // (rounded to the nearest batch: -1 and 1.5 started at batch 0, as the DataLoader refuses them)
        [{ sample: -1 }, /start sample -1 is outside the epoch \(0\.\.23\)/],
        [{ sample: 1.5 }, /start sample 1\.5 is outside the epoch \(0\.\.23\)/],
        [{ sample: 24 }, /start sample 24 is outside the epoch \(0\.\.23\)/],
      ];
      for (const [start, message] of refused) {
        await assert.rejects(loader.iterate(0, start).next(), message);
        assert.equal(loader.epoch, 0, `${workers} workers, ${JSON.stringify(start)}`);
        assert.equal(loader.lastSummary, null, `${workers} workers, ${JSON.stringify(start)}`);
      }
      assert.equal((await collect(loader)).length, 6);
      assert.equal(loader.lastSummary!.epoch, 0);
    } finally {
      await loader.close();
    }
  }
});

test('a pack aborted through its signal rejects with an AbortError before its next image and leaves no shard, index or temporary file', async () => {
  const out = join(root, 'aborted');
  const controller = new AbortController();
  const done: number[] = [];
  const job = lib.data.packImageFolder({
    input: folder,
    output: out,
    shardSize: 5,
    signal: controller.signal,
    onProgress: (n) => {
      done.push(n);
      if (n === 10) controller.abort('cancel');
    },
  });
  await assert.rejects(job, (e: unknown) => e instanceof lib.AbortError && e.code === 'ERR_ABORTED' && e.cause === 'cancel');
  assert.deepEqual(done, [5, 10], 'stopped before the third shard');
  assert.ok(!existsSync(out), 'the two shards it wrote are removed, no index.json, and the output folder it made');
  const r = await lib.data.packImageFolder({ input: folder, output: out, shardSize: 5, signal: new AbortController().signal });
  assert.equal(r.samples, 23);
});

test('a FIFO or a device named as a shard is refused or left out, never read (which hung); a link to a shard is read', () => {
  const dir = join(root, 'not-files');
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(shards, 'shard-000000.tar'), join(dir, 'shard-000000.tar'));
  symlinkSync(join(shards, 'shard-000001.tar'), join(dir, 'shard-000001.tar'));
  spawnSync('mkfifo', [join(dir, 'shard-000002.tar')]);
  symlinkSync('/dev/zero', join(dir, 'extra.tar'));
  // In a child process with a time limit: a regression hangs on the FIFO or reads /dev/zero for ever.
  const r = spawnSync(
    process.execPath,
    [
      '-e',
      `const { resolveShardPaths, loadShardTable, readShard } = require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'data', 'shards'))});
       const dir = ${JSON.stringify(dir)};
       const tryIt = (f) => { try { return f(); } catch (e) { return e.message; } };
       (async () => {
         const listed = resolveShardPaths(dir).map((p) => require('node:path').basename(p));
         const named = tryIt(() => resolveShardPaths(dir + '/shard-00000{0..2}.tar'));
         const read = [];
         for (const f of ['shard-000002.tar', 'extra.tar'])
           read.push(await (async () => { try { for await (const s of readShard(dir + '/' + f)) void s; return 'read'; } catch (e) { return e.message; } })());
         const warnings = [];
         const table = loadShardTable([0, 1, 2].map((k) => dir + '/shard-00000' + k + '.tar'), { onWarning: (l) => warnings.push(l) });
         console.log(JSON.stringify({ listed, named, read, total: table.total, problems: table.problems }));
       })();`,
    ],
    { timeout: 60_000, killSignal: 'SIGKILL', encoding: 'utf8' },
  );
  assert.notEqual((r.error as NodeJS.ErrnoException | undefined)?.code, 'ETIMEDOUT', 'hung on a FIFO or /dev/zero');
  const got = JSON.parse(r.stdout) as { listed: string[]; named: string; read: string[]; total: number; problems: string[] };
  assert.deepEqual(got.listed, ['shard-000000.tar', 'shard-000001.tar'], 'a folder lists the regular files and links to them');
  assert.equal(got.named, `shards: 1 shard(s) of '${dir}/shard-00000{0..2}.tar' are not regular files: ${dir}/shard-000002.tar (a FIFO)`);
  assert.deepEqual(got.read, [`${dir}/shard-000002.tar is a FIFO, not a regular file`, `${dir}/extra.tar is a device or socket, not a regular file`]);
  assert.equal(got.total, 10, 'the shard and the linked one are read');
  assert.deepEqual(got.problems, [
    `shard-000002.tar: unreadable (${dir}/shard-000002.tar is a FIFO, not a regular file): using its 0 complete sample(s), skipping the rest`,
  ]);
});

test('gzipped shards are read through zlib; a truncated one stops with ShardReadError, never hangs', async () => {
  const tgz = join(root, 'gz', 'shard-000000.tar.gz');
  write(tgz, gzipSync(readFileSync(join(shards, 'shard-000000.tar'))));
  const keys: string[] = [];
  for await (const s of readShard(tgz)) keys.push(s.key);
  assert.deepEqual(keys, ['000000000', '000000001', '000000002', '000000003', '000000004']);
  const cut = join(root, 'gz', 'cut.tgz');
  write(cut, readFileSync(tgz).subarray(0, Math.floor(statSync(tgz).size * 0.6)));
  await assert.rejects(
    async () => {
      for await (const s of readShard(cut)) void s;
    },
    (e: Error) => e instanceof ShardReadError && /cut\.tgz: truncated after \d sample\(s\)/.test(e.message),
  );
});

test('shards made elsewhere: labels from .json, any image extension, members outside samples ignored', async () => {
  const path = join(root, 'foreign.tar');
  const p = tarPack();
  const done = new Promise<void>((res) => p.pipe(createWriteStream(path)).on('finish', () => res()));
  const add = (name: string, data: string) => p.entry({ name }, Buffer.from(data));
  add('a/x1.png', 'png bytes');
  add('a/x1.json', '{"label": 3}');
  add('README.txt', 'not a sample');
  add('a/x2.webp', 'webp bytes');
  add('a/x2.seg.png', 'a second field: not the image');
  add('a/x2.json', '{"cls": 1}');
  add('x4.txt', 'a sample without an image is no sample');
  add('x3.jpg', 'jpg bytes');
  add('x3.cls', 'abc');
  p.finalize();
  await done;
  const got = [];
  for await (const s of readShard(path)) got.push([s.key, s.imageExt, s.image!.toString(), s.label, s.labelError ?? null]);
  assert.deepEqual(got, [
    ['a/x1', 'png', 'png bytes', 3, null],
    ['a/x2', 'webp', 'webp bytes', 1, null],
    ['x3', 'jpg', 'jpg bytes', null, ".cls holds 'abc', not a class index"],
  ]);
});

test('readShard: extensions match in any case, a contiguous file is a file, a label is an integer 0 <= l < 2^20 (text trimmed, up to 64 KiB), bad JSON is named, from/to select ordinals [from, to), end blocks cut short', async () => {
  const path = join(root, 'edges', 'edges.tar');
  writeTar(path, [
    ['A.JPG', 'jpg bytes'],
    ['A.CLS', '7'],
    ['b.png', 'b'],
    ['b.json', '{"label": -1}'],
    ['c.png', 'c'],
    ['c.json', '{nope'],
    ['d.png', 'd'],
    ['d.cls', ' 12\n'],
    ['e.png', 'e'],
    ['f.png', 'f', '7'], // a contiguous file (typeflag 7) is a file
    ['f.cls', ' '.repeat(MAX_META_BYTES - 1) + '5'], // a label member of exactly the cap is read
  ]);
  const read = async (opts = {}) => {
    const got = [];
    for await (const s of readShard(path, opts)) got.push([s.ordinal, s.key, s.imageExt, s.label, s.labelError ?? null]);
    return got;
  };
  assert.deepEqual(await read(), [
    [0, 'A', 'jpg', 7, null],
    [1, 'b', 'png', null, '.json label -1 is not a class index'],
    [2, 'c', 'png', null, '.json is not valid JSON'],
    [3, 'd', 'png', 12, null],
    [4, 'e', 'png', null, null],
    [5, 'f', 'png', 5, null],
  ]);
  assert.deepEqual(
    (await read({ from: 1, to: 3 })).map((s) => s[1]),
    ['b', 'c'],
  );
  for (const at of [0, 2]) assert.deepEqual(await read({ from: at, to: at }), [], `from = to = ${at}`);
  assert.deepEqual(
    (await read({ from: 4 })).map((s) => s[1]),
    ['e', 'f'],
  );
  // the end-of-archive blocks cut short (here to one byte): the last member's padding is not where the archive ends
  const cut = join(root, 'edges', 'cut-in-end-blocks.tar');
  const starts = writeTar(cut, [
    ['g.png', 'g'],
    ['g.cls', '1'],
  ]);
  truncateSync(cut, starts[1] + 512 + 1);
  await assert.rejects(readShardAll(cut), (e: Error) => e instanceof ShardReadError && /truncated after 0 sample\(s\)/.test(e.message));
});

test('readShard: a .json label nested too deeply to print (30,000 deep, under the 64 KiB cap) makes its sample unusable, not the rest of the shard corrupt', async () => {
  const path = join(root, 'edges', 'deep-label.tar');
  writeTar(path, [
    ['a.png', 'a'],
    ['a.json', `{"label": ${'['.repeat(30_000)}${']'.repeat(30_000)}}`],
    ['b.png', 'b'],
    ['b.json', '{"label": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}'],
    ['c.png', 'c'],
    ['c.cls', '1'],
  ]);
  const got = [];
  for await (const s of readShard(path)) got.push([s.key, s.label, s.labelError ?? null]);
  assert.deepEqual(got, [
    ['a', null, '.json label (a value nested too deeply to print) is not a class index'],
    ['b', null, '.json label [1,2,3,4,5,6,7,8,9,1… is not a class index'],
    ['c', 1, null],
  ]);
});

test('a shard without one image member is named as holding no samples, and the others are read', () => {
  const dir = join(root, 'no-samples');
  writeTar(join(dir, 'a.tar'), [['x.png', 'x']]);
  writeTar(join(dir, 'b.tar'), [['readme.txt', 'not a sample']]);
  const warnings: string[] = [];
  assert.equal(shardDataset(dir, { onWarning: (l) => warnings.push(l) }).length, 1);
  assert.ok(
    warnings.some((w) => /skipping shard b\.tar: holds no samples \(no member with an image extension\)/.test(w)),
    warnings.join('\n'),
  );
});

async function readShardAll(path: string): Promise<number> {
  let n = 0;
  for await (const _ of readShard(path)) n++;
  return n;
}

/** A ustar header of a regular file of `size` bytes. */
function tarHeader(name: string, size: number, type = '0', magic = 'ustar\x0000'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write(type, 156);
  h.write(magic, 257);
  h.fill(' ', 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

/**
 * Writes a tar by hand: a member given as a number declares that many bytes and leaves them a hole
 * (a sparse file: a huge member costs no disk). Returns where each member's data starts.
 */
function writeTar(path: string, members: [string, Buffer | string | number, string?][], magic?: string): number[] {
  mkdirSync(join(path, '..'), { recursive: true });
  const fd = openSync(path, 'w');
  const starts: number[] = [];
  let at = 0;
  for (const [name, data, type] of members) {
    const size = typeof data === 'number' ? data : Buffer.byteLength(data);
    writeSync(fd, tarHeader(name, size, type, magic), 0, 512, at);
    starts.push(at + 512);
    if (typeof data !== 'number') writeSync(fd, Buffer.from(data), 0, size, at + 512);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  writeSync(fd, Buffer.alloc(1024), 0, 1024, at); // end of archive
  closeSync(fd);
  return starts;
}

test("a pre-POSIX (v7) tar, whose headers have no 'ustar' magic, is read as Python's tarfile and GNU tar read it", async () => {
  // (tar-stream refuses a header without the magic unless told otherwise: the whole shard was taken for one that is not a tar)
  const path = join(root, 'v7', 'shard-000000.tar');
  writeTar(
    path,
    [
      ['d.v1/', 0, '\0'], // v7 marks a folder by its trailing slash
      ['d.v1/a.jpg', 'a'],
      ['d.v1/a.cls', '3'],
      ['b.png', 'b', '\0'], // a v7 regular file's type is NUL
      ['b.json', '{"label": 4}'],
    ],
    '',
  );
  const got = [];
  for await (const s of readShard(path)) got.push([s.key, s.image!.toString(), s.label]);
  assert.deepEqual(got, [
    ['d.v1/a', 'a', 3],
    ['b', 'b', 4],
  ]);
  const [entry] = await scanShards([path]);
  assert.deepEqual([entry.samples, entry.labelled, entry.error], [2, 2, undefined]);
  // a file that is not a tar still fails its header checksum
  const junk = join(root, 'v7', 'junk.tar');
  writeFileSync(junk, Buffer.alloc(2048, 'x'));
  assert.match((await scanShards([junk]))[0].error ?? '', /corrupt after 0 sample/);
});

test('maxReplacements counts unusable samples in a row as the DataLoader does: 2 gives up on the second unusable one, 3 takes the third', async () => {
  const dir = join(root, 'replacements');
  const img = await encode(picture(12, 10, 1), 12, 10, 3, 'jpeg');
  writeTar(join(dir, 'shard-000000.tar'), [
    ['b0.jpg', 'not a jpeg'],
    ['b0.cls', '0'],
    ['b1.jpg', 'not a jpeg'],
    ['b1.cls', '0'],
    ['ok2.jpg', img],
    ['ok2.cls', '0'],
    ['ok3.jpg', img],
    ['ok3.cls', '0'],
  ]);
  const ds = shardDataset(dir, { onWarning: () => {} });
  const opts = { batchSize: 4, workers: 0, transforms: tf, shuffleBuffer: 1, shuffle: false, onWarning: () => {} };
  const two = new ShardLoader(ds, { ...opts, maxReplacements: 2 });
  try {
    await assert.rejects(collect(two.iterate(0)), /no usable sample to replace shard-000000\.tar:b0 \(last: shard-000000\.tar:b1: /);
  } finally {
    await two.close();
  }
  const three = new ShardLoader(ds, { ...opts, maxReplacements: 3 });
  try {
    const [batch] = await collect(three.iterate(0));
    assert.deepEqual([...batch.standIns], [0, 1]);
  } finally {
    await three.close();
  }
});

test("a worker whose whole piece is unusable (a shard without labels as its piece) takes stand-ins from the epoch's other shards, as the docs promise, instead of stopping the run", async () => {
  // (with no good sample behind or ahead in its own piece the worker threw 'no usable sample to replace': one bad shard stopped the run)
  const dir = join(root, 'unusable-piece');
  const img = await encode(picture(12, 10, 1), 12, 10, 3, 'jpeg');
  writeTar(join(dir, 'shard-000000.tar'), [
    ['u0.jpg', img],
    ['u1.jpg', img],
    ['u1.txt', 'a label semaim does not read'],
  ]);
  writeTar(join(dir, 'shard-000001.tar'), [
    ['g2.jpg', img],
    ['g2.cls', '1'],
    ['g3.jpg', img],
    ['g3.cls', '2'],
  ]);
  const ds = shardDataset(dir, { onWarning: () => {} });
  const opts = { batchSize: 1, transforms: tf, shuffle: false, dropLast: true, onWarning: () => {} };
  // rank 0 of 2 reads stream positions [0, 2): shard-000000 alone; so does worker 0 of 2 of one rank
  for (const o of [
    { workers: 0, rank: 0, worldSize: 2 },
    { workers: 2, rank: 0, worldSize: 1 },
  ]) {
    const loader = new ShardLoader(ds, { ...opts, ...o });
    try {
      const batches = await collect(loader.iterate(0));
      const mine = o.workers === 0 ? batches : batches.filter((_, j) => j % 2 === 0);
      assert.deepEqual(
        mine.map((b) => [b.labels[0], b.indices[0], [...b.standIns]]),
        [
          [1, 2, [0]],
          [1, 2, [0]],
        ],
        JSON.stringify(o),
      );
      assert.equal(loader.lastSummary!.skipped, 2);
    } finally {
      await loader.close();
    }
  }
});

test('runs of members with a label but no image member (an image lost, or of an extension not read) are not samples, and opening the dataset says how many', async () => {
  // (they were dropped without a word: the dataset was silently smaller than the shards' labels say)
  const dir = join(root, 'label-only');
  writeTar(join(dir, 'shard-000000.tar'), [
    ['a.jpg', 'a'],
    ['a.cls', '0'],
    ['b.heic', 'an image of an extension semaim does not read'],
    ['b.cls', '1'],
    ['c.json', '{"label": 1}'],
    ['README.txt', 'no label: not counted'],
    ['d.png', 'd'],
    ['d.cls', '1'],
  ]);
  for (const pass of ['scanned', 'from index.json']) {
    const warnings: string[] = [];
    const ds = shardDataset(dir, { onWarning: (w) => warnings.push(w) });
    assert.equal(ds.length, 2, pass);
    const said = warnings.filter((w) => /label .* but no image member/.test(w));
    assert.equal(said.length, 1, `${pass}: ${warnings.join('\n')}`);
    assert.match(
      said[0],
      /^data: warning: 2 run\(s\) of members have a label \(\.cls or \.json\) but no image member, so are not samples \(first: shard-000000\.tar:b\); image members are read by the extensions \.jpg \.jpeg \.png/,
    );
  }
  assert.deepEqual(
    readIndexFile(join(dir, 'index.json'))!.shards.map((e) => [e.samples, e.labelOnly, e.labelOnlyKey]),
    [[2, 2, 'b']],
  );
});

test('labels: a class index of 2^20 or more is a label error of that sample; no per-class table is sized by it', async () => {
  const dir = join(root, 'labels');
  const shard = join(dir, 'shard-000000.tar');
  const img = await encode(picture(12, 10, 1), 12, 10, 3, 'jpeg');
  writeTar(shard, [
    ['ok0.jpg', img],
    ['ok0.cls', '0'],
    ['big.jpg', img],
    ['big.cls', '60000000'],
    ['huge.jpg', img],
    ['huge.cls', '99999999999999999999999'],
    ['edge.jpg', img],
    ['edge.cls', '1048576'],
    ['js.jpg', img],
    ['js.json', '{"label": 1e30}'],
    ['ok1.jpg', img],
    ['ok1.cls', '1'],
  ]);
  const got = [];
  for await (const s of readShard(shard, { images: false })) got.push([s.key, s.label, s.labelError ?? null]);
  assert.deepEqual(got, [
    ['ok0', 0, null],
    ['big', null, ".cls holds '60000000', not a class index below 1048576"],
    ['huge', null, ".cls holds '99999999999999999999', not a class index below 1048576"],
    ['edge', null, ".cls holds '1048576', not a class index below 1048576"],
    ['js', null, '.json label 1e+30 is not a class index below 1048576'],
    ['ok1', 1, null],
  ]);
  const warnings: string[] = [];
  let ds = shardDataset(dir, { onWarning: (l) => warnings.push(l) });
  assert.deepEqual(ds.classes, ['0', '1']);
  assert.equal(ds.length, 6);
  assert.ok(
    warnings.some((w) => /4 of 6 samples have no class label/.test(w)),
    warnings.join('\n'),
  );
  // an index written by an older scan (maxLabel 1e23, same shard size) is not trusted: the shard is scanned again
  const index = readIndexFile(join(dir, 'index.json'))!;
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ ...index, shards: [{ ...index.shards[0], maxLabel: 1e23 }] }));
  ds = shardDataset(dir, { onWarning: () => {} });
  assert.deepEqual(ds.classes, ['0', '1']);
  assert.equal(readIndexFile(join(dir, 'index.json'))!.shards[0].maxLabel, 1);
  const loaderWarnings: string[] = [];
  // a caller's replace: false (a DataLoader option that leaves rows blank) is refused, not ignored
  assert.throws(
    () => new ShardLoader(ds, { batchSize: 2, workers: 0, transforms: tf, replace: false } as ShardLoaderOptions),
    /ShardLoader: replace: false is not supported: an unusable sample of a stream is always replaced/,
  );
  const l = new ShardLoader(ds, { batchSize: 2, workers: 0, transforms: tf, shuffleBuffer: 1, shuffle: false, onWarning: (w) => loaderWarnings.push(w) });
  try {
    const batches = await collect(l.iterate(0));
    assert.equal(batches.length, 3);
    assert.ok(batches.every((b) => [...b.labels].every((x) => x === 0 || x === 1)));
    assert.equal(l.lastSummary!.skipped, 4);
    assert.ok(
      loaderWarnings.some((w) => /skipping shard-000000\.tar:big: \.cls holds '60000000', not a class index below 1048576/.test(w)),
      loaderWarnings.join('\n'),
    );
  } finally {
    await l.close();
  }
});

test('index entries a file of that size cannot hold are not trusted: the shard is scanned again; a dense .tar.gz is trusted', async () => {
  const dir = join(root, 'lying-index');
  const img = await encode(picture(12, 10, 1), 12, 10, 3, 'jpeg');
  writeTar(join(dir, 'a.tar'), [
    ['x0.jpg', img],
    ['x0.cls', '0'],
    ['x1.jpg', img],
    ['x1.cls', '1'],
  ]);
  // 300 samples of empty images: far more than one per 512 bytes of the compressed file
  const dense = join(root, 'dense.tar');
  writeTar(
    dense,
    Array.from({ length: 300 }, (_, i): [string, string][] => [
      [`k${i}.jpg`, ''],
      [`k${i}.cls`, '0'],
    ]).flat(),
  );
  write(join(dir, 'b.tar.gz'), gzipSync(readFileSync(dense)));
  const real = [2, 300];
  let warnings: string[] = [];
  const open = () => {
    warnings = [];
    return shardDataset(dir, { onWarning: (l) => warnings.push(l) });
  };
  assert.equal(open().length, 302);
  assert.ok(statSync(join(dir, 'b.tar.gz')).size * 2 < 300 * 512, 'the .tar.gz holds more samples than 512-byte blocks');
  assert.equal(open().length, 302);
  assert.ok(!warnings.some((w) => /indexing/.test(w)), `a scan's own counts are trusted: ${warnings.join('\n')}`);
  const index = readIndexFile(join(dir, 'index.json'))!;
  const lies: Array<(e: (typeof index.shards)[number], i: number) => object> = [
    () => ({ samples: 1e12, labelled: 1e12 }),
    (e) => ({ samples: Math.floor((e.bytes * (e.file.endsWith('.gz') ? 1032 : 1)) / 512) + 1 }),
    (_e, i) => ({ labelled: real[i] + 1 }),
    () => ({ maxLabel: -1 }),
    () => ({ maxLabel: 2 ** 20 }), // a label no scan gives (a class index of 2^20 or more is a label error)
    () => ({ maxLabel: -2 }), // below -1 (none)
  ];
  for (const lie of lies) {
    writeFileSync(join(dir, 'index.json'), JSON.stringify({ ...index, shards: index.shards.map((e, i) => ({ ...e, ...lie(e, i) })) }));
    const ds = open();
    assert.equal(ds.length, 302, JSON.stringify(lie(index.shards[0], 0)));
    assert.ok(
      warnings.some((w) => /indexing 2 shard\(s\)/.test(w)),
      warnings.join('\n'),
    );
    assert.deepEqual(readIndexFile(join(dir, 'index.json')), index, 'the index is written again from the scan');
  }
  // at the bound, one sample per 512 bytes of tar, an entry is trusted (a.tar's size is a multiple of 512)
  const atBound = index.shards.map((e) => (e.file === 'a.tar' ? { ...e, samples: e.bytes / 512 } : e));
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ ...index, shards: atBound }));
  assert.equal(open().length, statSync(join(dir, 'a.tar')).size / 512 + 300);
  assert.ok(!warnings.some((w) => /indexing/.test(w)), warnings.join('\n'));
});

test("another tool's index.json beside the shards is left as it is: semaim's index goes to the data cache", () => {
  const dir = join(root, 'foreign-index');
  mkdirSync(dir);
  for (const f of readdirSync(shards)) if (f !== 'index.json') copyFileSync(join(shards, f), join(dir, f));
  const theirs = '{"tool": "another", "shards": 5}\n';
  writeFileSync(join(dir, 'index.json'), theirs);
  const cache = join(root, 'foreign-index-cache');
  const before = process.env.SEMAIM_DATA_CACHE;
  process.env.SEMAIM_DATA_CACHE = cache;
  try {
    assert.equal(shardDataset(dir, { onWarning: () => {} }).length, 23);
    assert.equal(readFileSync(join(dir, 'index.json'), 'utf8'), theirs);
    assert.equal(readdirSync(join(cache, 'shard-index')).length, 1, 'the index is kept in the data cache');
  } finally {
    if (before === undefined) delete process.env.SEMAIM_DATA_CACHE;
    else process.env.SEMAIM_DATA_CACHE = before;
  }
});

test('a stale index.json in a read-only shard folder is mended in the data cache once, not scanned again on every run', (t) => {
  const scratch = tmpfsScratch(t, 'semaim-ro-shards-', 'size=4m');
  if (!scratch) return;
  const dir = scratch.mnt;
  for (const f of readdirSync(shards)) copyFileSync(join(shards, f), join(dir, f));
  // the first shard changed after index.json was written (its entry's size no longer fits), then the folder became read-only
  const index = readIndexFile(join(dir, 'index.json'))!;
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ ...index, shards: index.shards.map((e, i) => (i === 0 ? { ...e, bytes: e.bytes + 512 } : e)) }));
  const remount = spawnSync('mount', ['-o', 'remount,ro', dir], { encoding: 'utf8' });
  if (remount.status !== 0) return t.skip(`cannot remount the tmpfs read-only (${remount.stderr.trim()})`);
  const before = process.env.SEMAIM_DATA_CACHE;
  process.env.SEMAIM_DATA_CACHE = join(scratch.dir, 'cache');
  try {
    const opened = () => {
      const warnings: string[] = [];
      const length = shardDataset(dir, { onWarning: (l) => warnings.push(l) }).length;
      return { length, warnings: warnings.join('\n') };
    };
    const first = opened();
    assert.equal(first.length, 23);
    assert.match(first.warnings, /indexing 1 shard\(s\)[^]*saved .*shard-index/);
    const second = opened();
    assert.equal(second.length, 23);
    assert.doesNotMatch(second.warnings, /indexing/, 'the entry mended in the cache is used');
  } finally {
    if (before === undefined) delete process.env.SEMAIM_DATA_CACHE;
    else process.env.SEMAIM_DATA_CACHE = before;
  }
});

test('class names from an index that names fewer classes than the labels hold are not used: the labels are named by number', () => {
  const dir = join(root, 'few-classes');
  mkdirSync(dir);
  for (const f of readdirSync(shards)) copyFileSync(join(shards, f), join(dir, f));
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  assert.deepEqual(index.classes, ['class0', 'class1', 'class2']);
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ ...index, classes: ['class0', 'class1'] }));
  assert.deepEqual(shardDataset(dir, { onWarning: () => {} }).classes, ['0', '1', '2']);
});

test('class names from an index that names more classes than a label can be (MAX_CLASSES) are not used: 3 M names made a 2-class k-NN report 3 M classes', () => {
  const dir = join(root, 'too-many-classes');
  mkdirSync(dir);
  for (const f of readdirSync(shards)) copyFileSync(join(shards, f), join(dir, f));
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  const names = (n: number) => Array.from({ length: n }, (_, k) => `class${k}`);
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ ...index, classes: names(MAX_CLASSES + 1) }));
  assert.deepEqual(shardDataset(dir, { onWarning: () => {} }).classes, ['0', '1', '2']);
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ ...index, classes: names(MAX_CLASSES) }));
  assert.equal(
    shardDataset(dir, { onWarning: () => {} }).classes.length,
    MAX_CLASSES,
    'a class without samples in these shards is still named, up to the limit',
  );
});

test("an index file's error text is shown as printable text, naming the shard and the index it comes from", () => {
  const dir = join(root, 'forged-error');
  mkdirSync(dir, { recursive: true });
  for (const f of ['shard-000000.tar', 'shard-000001.tar', 'index.json']) copyFileSync(join(shards, f), join(dir, f));
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { shards: { error?: string; samples: number }[] };
  index.shards[0].error = '\u001b]0;PWNED\u0007\u001b[2JFAKE: all good\nsemaim: injected line';
  index.shards[1].error = 'shard-000001.tar: truncated after 5 sample(s) (unexpected end of data)';
  writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
  const warnings: string[] = [];
  const ds = shardDataset(join(dir, 'shard-00000{0..1}.tar'), { onWarning: (l) => warnings.push(l) });
  const where = `(as ${join(dir, 'index.json')} records; delete it to read the shard again)`;
  assert.deepEqual(ds.table.problems, [
    `shard-000000.tar: \\x1b]0;PWNED\\x07\\x1b[2JFAKE: all good\\x0asemaim: injected line: using its 5 complete sample(s), skipping the rest ${where}`,
    `shard-000001.tar: truncated after 5 sample(s) (unexpected end of data): using its 5 complete sample(s), skipping the rest ${where}`,
  ]);
  assert.ok(!warnings.some((w) => [...w].some((c) => c < ' ')), 'no control character reaches the terminal');
});

test("the loaders' image member cap follows --max-image-pixels (8 bytes per pixel + 1 MiB): an image the pixel limit admits is read, a larger member is skipped unread", async () => {
  assert.equal(imageMemberCap(undefined), 8 * DEFAULT_MAX_IMAGE_PIXELS + 2 ** 20); // 1,366 MiB: a 16-bit RGBA TIFF at the limit
  assert.equal(imageMemberCap(0), BUFFER_MAX, 'no pixel limit: the largest Buffer');
  const dir = join(root, 'image-cap');
  const img = await encode(picture(12, 10, 2), 12, 10, 3, 'jpeg');
  writeTar(join(dir, 'shard-000000.tar'), [
    ['ok.jpg', img],
    ['ok.cls', '0'],
    ['tiff.tif', 2 << 20], // 2 MiB (sparse zeros): before, every member up to 256 MiB was read, whatever the pixel limit
    ['tiff.cls', '1'],
  ]);
  const ds = shardDataset(dir, { onWarning: () => {} });
  for (const [maxImagePixels, reason] of [
    [120, 'too-large'], // the 12×10 JPEG passes; cap 1 MiB + 960 bytes: the 2 MiB member is skipped unread
    [1_000_000, 'unsupported'], // cap 8.6 MiB: read, and then not an image
  ] as const) {
    const warnings: string[] = [];
    const l = new ShardLoader(ds, { batchSize: 2, workers: 0, transforms: tf, shuffle: false, maxImagePixels, onWarning: (w) => warnings.push(w) });
    try {
      await collect(l.iterate(0));
      assert.deepEqual(l.lastSummary!.byReason, { [reason]: 1 }, `${maxImagePixels}: ${warnings.join('\n')}`);
      if (reason === 'too-large')
        assert.ok(
          warnings.some((w) => /tiff: \.tif member of 2097152 bytes is over the 1 MiB limit/.test(w)),
          warnings.join('\n'),
        );
    } finally {
      await l.close();
    }
  }
});

test('members over their size cap are skipped unread and make that sample unusable; a truncated huge member ends the shard', async () => {
  const dir = join(root, 'oversize');
  const shard = join(dir, 'shard-000000.tar');
  const img = await encode(picture(12, 10, 2), 12, 10, 3, 'jpeg');
  writeTar(shard, [
    ['ok0.jpg', img],
    ['ok0.cls', '0'],
    ['big.jpg', MAX_IMAGE_BYTES + 1], // sparse: no disk, and must not be read into memory
    ['big.cls', '1'],
    ['meta.jpg', img],
    ['meta.cls', '1'.repeat(MAX_META_BYTES + 1)],
    ['js.jpg', img],
    ['js.json', MAX_META_BYTES + 1],
    ['ok1.jpg', img],
    ['ok1.cls', '1'],
  ]);
  const got = [];
  for await (const s of readShard(shard)) got.push([s.key, s.image?.length ?? null, s.imageError ?? null, s.label, s.labelError ?? null]);
  assert.deepEqual(got, [
    ['ok0', img.length, null, 0, null],
    ['big', null, `.jpg member of ${MAX_IMAGE_BYTES + 1} bytes is over the 256 MiB limit`, 1, null],
    ['meta', img.length, null, null, `.cls member of ${MAX_META_BYTES + 1} bytes is over the 64 KiB limit`],
    ['js', img.length, null, null, `.json member of ${MAX_META_BYTES + 1} bytes is over the 64 KiB limit`],
    ['ok1', img.length, null, 1, null],
  ]);
  const ds = shardDataset(dir, { onWarning: () => {} });
  assert.equal(ds.length, 5);
  const warnings: string[] = [];
  // (a pixel limit of 1,000: the loader's image cap is then 1 MiB and 8,000 bytes, see the next test)
  const l = new ShardLoader(ds, { batchSize: 5, workers: 0, transforms: tf, shuffle: false, maxImagePixels: 1000, onWarning: (w) => warnings.push(w) });
  try {
    const [b] = await collect(l.iterate(0));
    assert.equal(b.shape[0], 5);
    assert.deepEqual(l.lastSummary!.byReason, { 'too-large': 1, corrupt: 2 });
    assert.ok(
      warnings.some((w) => /skipping shard-000000\.tar:big: \.jpg member of 268435457 bytes is over the 1 MiB limit/.test(w)),
      warnings.join('\n'),
    );
  } finally {
    await l.close();
  }
  // a member declaring 2 GiB whose data the file does not hold: the shard is truncated after its complete samples
  const cut = join(dir, 'cut', 'shard-000000.tar');
  const starts = writeTar(cut, [
    ['ok0.jpg', img],
    ['ok0.cls', '0'],
    ['huge.jpg', 2 ** 31],
    ['huge.cls', '0'],
  ]);
  truncateSync(cut, starts[2] + (1 << 20));
  const keys: string[] = [];
  await assert.rejects(
    async () => {
      for await (const s of readShard(cut)) keys.push(s.key);
    },
    (e: Error) => e instanceof ShardReadError && /shard-000000\.tar: truncated after 1 sample\(s\)/.test(e.message),
  );
  assert.deepEqual(keys, ['ok0']);
});

test('shard images obey --max-image-pixels like files do (an image above it is skipped and counted)', async () => {
  const dir = join(root, 'pixels');
  const small = await encode(picture(12, 10, 1), 12, 10, 3, 'jpeg');
  const large = await encode(picture(40, 30, 2), 40, 30, 3, 'png');
  writeTar(join(dir, 'shard-000000.tar'), [
    ['a.jpg', small],
    ['a.cls', '0'],
    ['b.png', large],
    ['b.cls', '1'],
    ['c.jpg', small],
    ['c.cls', '1'],
  ]);
  for (const [limit, skipped] of [
    [undefined, 0],
    [1000, 1], // 40 × 30 = 1,200 pixels
  ] as const) {
    const l = new ShardLoader(shardDataset(dir, { onWarning: () => {} }), {
      batchSize: 3,
      workers: 0,
      transforms: tf,
      shuffle: false,
      maxImagePixels: limit,
      onWarning: () => {},
    });
    try {
      await collect(l.iterate(0));
      assert.equal(l.lastSummary!.skipped, skipped, `maxImagePixels ${limit}`);
    } finally {
      await l.close();
    }
  }
});

test('epoch plans: over ranks and workers every stream position once (padded without dropLast), equal batches per rank', () => {
  const counts = [5, 0, 7, 3, 9, 1];
  const N = 25;
  for (const W of [1, 2, 3]) {
    for (const K of [0, 1, 2, 3]) {
      for (const b of [1, 2, 4]) {
        for (const dropLast of [false, true]) {
          const plans = Array.from({ length: W }, (_, rank) =>
            shardEpochPlan({ counts, epoch: 1, seed: 2, shuffle: true, rank, worldSize: W, workers: K, batchSize: b, dropLast }),
          );
          const seen = new Map<string, number>();
          for (const p of plans) {
            assert.equal(p.count, plans[0].count);
            assert.equal(p.pieces.length, Math.max(1, K), 'one piece per worker (the main thread counts as one)');
            for (let j = 0; j < p.count; j++) assert.equal(p.workerOf(j), j % Math.max(1, K));
            const sizes = Array.from({ length: p.count }, (_, j) => p.sizeOf(j));
            assert.equal(
              sizes.reduce((a, s) => a + s, 0),
              p.rankLength,
            );
            p.pieces.forEach((piece, w) => {
              assert.equal(p.emittedBefore(w, p.count + 3), piece.length, 'a start past the last batch: all of the piece');
              const mine = sizes.filter((_, j) => p.workerOf(j) === w);
              assert.equal(
                mine.reduce((a, s) => a + s, 0),
                piece.length,
              );
              for (let start = 0; start <= p.count; start++)
                assert.equal(
                  p.emittedBefore(w, start),
                  sizes.slice(0, start).reduce((a, s, j) => a + (p.workerOf(j) === w ? s : 0), 0),
                );
            });
            for (const piece of p.pieces) {
              assert.equal(
                piece.segments.reduce((a, s) => a + s.to - s.from, 0),
                piece.length,
              );
              for (const s of piece.segments) for (let o = s.from; o < s.to; o++) seen.set(`${s.shard}:${o}`, (seen.get(`${s.shard}:${o}`) ?? 0) + 1);
            }
          }
          const used = [...seen.values()].reduce((a, c) => a + c, 0);
          if (dropLast) {
            assert.equal(used, Math.floor(N / (W * b)) * W * b);
            assert.ok([...seen.values()].every((c) => c === 1));
          } else {
            assert.equal(used, Math.ceil(N / W) * W);
            assert.equal(seen.size, N, 'every sample at least once');
          }
        }
      }
    }
  }
  const a = shardEpochPlan({ counts, epoch: 0, seed: 2, shuffle: true, rank: 0, worldSize: 1, workers: 1, batchSize: 1, dropLast: true });
  const c = shardEpochPlan({ counts, epoch: 1, seed: 2, shuffle: true, rank: 0, worldSize: 1, workers: 1, batchSize: 1, dropLast: true });
  assert.notDeepEqual([...a.shardOrder], [...c.shardOrder], 'the shard order changes per epoch');
});

test('an epoch plan is computed, not listed per batch: 10^12 samples in batches of 1 plan at once', () => {
  assert.throws(() => streamSegments([0, 0], Int32Array.from([0, 1]), 0, 1), /the dataset has no samples/);
  assert.deepEqual(streamSegments([0, 0], Int32Array.from([0, 1]), 0, 0), []);
  const p = shardEpochPlan({ counts: [1e12, 3], epoch: 0, seed: 1, shuffle: true, rank: 1, worldSize: 2, workers: 3, batchSize: 1, dropLast: false });
  assert.equal(p.count, 5e11 + 2);
  assert.equal(
    p.pieces.reduce((a, x) => a + x.length, 0),
    p.rankLength,
  );
  assert.equal(p.emittedBefore(2, p.count), p.pieces[2].length);
});

test("an epoch plan reads each shard's count a bounded number of times, not once per shard before it (quadratic in the shards), with the same pieces", () => {
  // the plan as it was computed (a scan from the first shard of the order for every segment)
  const reference = (counts: readonly number[], order: Int32Array, start: number, length: number) => {
    const total = counts.reduce((a, c) => a + c, 0);
    const out: { shard: number; from: number; to: number }[] = [];
    let pos = start % total;
    let left = length;
    while (left > 0) {
      let acc = 0;
      let k = 0;
      while (acc + counts[order[k]] <= pos) acc += counts[order[k++]];
      const shard = order[k];
      const from = pos - acc;
      const take = Math.min(left, counts[shard] - from);
      const last = out[out.length - 1];
      if (last && last.shard === shard && last.to === from) last.to += take;
      else out.push({ shard, from, to: from + take });
      left -= take;
      pos = (pos + take) % total;
    }
    return out;
  };
  const rng = new Rng(7, 'plan-counts');
  const counts = Array.from({ length: 97 }, (_, i) => (i % 11 === 3 ? 0 : 1 + rng.int(9)));
  const total = counts.reduce((a, c) => a + c, 0);
  const order = new Rng(7, 'plan-order').shuffle(Int32Array.from(counts.keys()));
  for (const [start, length] of [
    [0, total],
    [5, 40],
    [total - 3, 9],
    [17, 3 * total + 5],
    [2 * total + 1, total],
  ])
    assert.deepEqual(streamSegments(counts, order, start, length), reference(counts, order, start, length), `start ${start}, length ${length}`);
  for (const o of [
    { worldSize: 3, rank: 2, workers: 4, batchSize: 5, dropLast: false },
    { worldSize: 2, rank: 0, workers: 3, batchSize: 7, dropLast: true },
  ]) {
    const plan = shardEpochPlan({ counts, epoch: 2, seed: 5, shuffle: true, ...o });
    let at = plan.rankStart;
    for (const piece of plan.pieces) {
      assert.deepEqual(piece.segments, reference(counts, plan.shardOrder, at, piece.length));
      at += piece.length;
    }
  }
  // 2,000 shards of 3 samples, one worker: counting the reads of the counts (a scan per segment read 4·10^6)
  const S = 2_000;
  let reads = 0;
  const counted = new Proxy(new Array<number>(S).fill(3), {
    get(t, key, r) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
      return Reflect.get(t, key, r) as unknown;
    },
  });
  const big = shardEpochPlan({ counts: counted, epoch: 0, seed: 1, shuffle: true, rank: 0, worldSize: 1, workers: 1, batchSize: 4, dropLast: true });
  assert.equal(
    big.pieces[0].segments.reduce((a, s) => a + s.to - s.from, 0),
    big.pieces[0].length,
  );
  assert.ok(reads < 20 * S, `${reads} reads of the counts of ${S} shards`);
});

test('the shuffle buffer resumes exactly from a replay over positions', () => {
  // size 1 (or less, or a fraction of 2) passes inputs straight through; the last items leave in a drawn order
  assert.deepEqual([ShuffleBuffer.create(0, new Rng(1)).size, ShuffleBuffer.create(2.5, new Rng(1)).size], [1, 2]);
  const one = ShuffleBuffer.create<number>(1, new Rng(2, 'one'));
  assert.deepEqual([one.push(5), one.push(6), one.length, one.pop()], [5, 6, 0, undefined]);
  const drain = ShuffleBuffer.create<number>(10, new Rng(2, 'drain'));
  for (let i = 0; i < 10; i++) drain.push(i);
  const order = Array.from({ length: 10 }, () => drain.pop()!);
  assert.deepEqual(
    [...order].sort((x, y) => x - y),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.notDeepEqual(order, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], 'not last in, first out');
  // a buffer of `size` holds that many inputs before the first leaves, then each input displaces one
  for (const size of [2, 3, 10]) {
    const buf = ShuffleBuffer.create<number>(size, new Rng(2, 'fill'));
    for (let i = 0; i < size; i++) assert.equal(buf.push(i), undefined, `size ${size}: input ${i} fills the buffer`);
    assert.equal(buf.length, size);
    for (let i = size; i < size + 5; i++) assert.notEqual(buf.push(i), undefined, `size ${size}: input ${i} displaces one`);
    assert.equal(buf.length, size);
  }
  for (const size of [1, 3, 10]) {
    for (const skip of [0, 1, 7, 19, 30]) {
      const n = 30;
      const full: number[] = [];
      const buf = ShuffleBuffer.create<number>(size, new Rng(1, 'b'));
      for (let i = 0; i < n; i++) {
        const o = buf.push(i);
        if (o !== undefined) full.push(o);
      }
      for (let o = buf.pop(); o !== undefined; o = buf.pop()) full.push(o);
      assert.deepEqual(
        [...full].sort((x, y) => x - y),
        Array.from({ length: n }, (_, i) => i),
      );
      if (size > 1)
        assert.notDeepEqual(
          full,
          Array.from({ length: n }, (_, i) => i),
        );
      const { buffer, consumed } = replay(size, new Rng(1, 'b'), n, skip);
      const rest: number[] = [];
      for (let i = consumed; i < n; i++) {
        const o = buffer.push(i);
        if (o !== undefined) rest.push(o);
      }
      for (let o = buffer.pop(); o !== undefined; o = buffer.pop()) rest.push(o);
      assert.deepEqual(rest, full.slice(skip), `size ${size}, skip ${skip}`);
    }
  }
});

test('2 ranks × 2 workers read every image of the packed folder exactly once per epoch', async () => {
  const ds = imageFolder(folder);
  for (const [dropLast, batchSize] of [
    [false, 3],
    [true, 2],
  ] as const) {
    const ranks = loaders(pattern, 2, { dropLast, batchSize });
    try {
      for (const epoch of [0, 1]) {
        const got = await Promise.all(ranks.map((l) => collect(l.iterate(epoch))));
        assert.equal(got[0].length, got[1].length, 'the same number of batches on both ranks');
        const idx = got.flatMap((g) => g.flatMap((b) => [...b.indices]));
        for (const g of got) for (const b of g) b.indices.forEach((i, k) => assert.equal(b.labels[k], ds.label(i), 'label of the packed image'));
        const counts = new Map<number, number>();
        for (const i of idx) counts.set(i, (counts.get(i) ?? 0) + 1);
        if (dropLast) {
          // 23 samples, global batch 4: 5 batches per rank... 20 distinct samples, none twice
          assert.equal(got[0].length, 5);
          assert.equal(idx.length, 20);
          assert.equal(counts.size, 20);
        } else {
          // ceil(23 / 2) = 12 per rank: all 23 once, one (the stream's first) twice
          assert.equal(got[0].length, 4);
          assert.equal(idx.length, 24);
          assert.deepEqual(
            [...counts.keys()].sort((a, b) => a - b),
            Array.from({ length: 23 }, (_, i) => i),
          );
          assert.equal([...counts.values()].filter((c) => c === 2).length, 1);
        }
        for (const l of ranks) assert.equal(l.lastSummary!.skipped, 0);
      }
    } finally {
      for (const l of ranks) await l.close();
    }
  }
  // the same images in the same epoch with 1 rank of 1 worker as a set
  const [one] = loaders(pattern, 1, { workers: 0, batchSize: 4 });
  const all = (await collect(one.iterate(0))).flatMap((b) => [...b.indices]).sort((a, b) => a - b);
  assert.deepEqual(
    all,
    Array.from({ length: 23 }, (_, i) => i),
  );
  await one.close();
});

test('close() during an epoch ends the iteration with the loader closed, with or without worker threads', async () => {
  for (const workers of [0, 1]) {
    const [l] = loaders(pattern, 1, { workers, batchSize: 2 });
    const it = l[Symbol.asyncIterator]();
    await it.next();
    await l.close();
    await assert.rejects(it.next(), /ShardLoader: closed/, `workers ${workers}`);
  }
});

test('an epoch over shards resumes at a batch with exactly the batches of an uninterrupted one', async () => {
  for (const workers of [0, 2]) {
    const [l] = loaders(pattern, 1, { workers, batchSize: 2, shuffleBuffer: 6, dropLast: true });
    try {
      const full = await collect(l.iterate(3));
      for (const start of [1, 4, 7]) {
        const resumed = await collect(l.iterate(3, { batch: start }));
        assert.deepEqual(
          resumed.map((b) => [...b.indices]),
          full.slice(start).map((b) => [...b.indices]),
          `workers ${workers}, start ${start}`,
        );
        assert.deepEqual(
          resumed.map((b) => b.images),
          full.slice(start).map((b) => b.images),
        );
        assert.equal(resumed[0].index, start);
      }
      // breaking out mid-epoch and starting another epoch works (streams of the old epoch are dropped)
      for await (const b of l.iterate(4)) if (b.index === 1) break;
      assert.equal((await collect(l.iterate(4))).length, full.length);
    } finally {
      await l.close();
    }
  }
});

test('a truncated shard, a corrupt shard and a corrupt member are skipped with a warning and counted', async () => {
  const dir = join(root, 'bad');
  mkdirSync(dir);
  for (const f of readdirSync(shards)) copyFileSync(join(shards, f), join(dir, f));
  // a corrupt image inside shard 1: its first image's bytes overwritten in place (same size, index still valid)
  const s1 = join(dir, 'shard-000001.tar');
  const bytes = readFileSync(s1);
  const fd = openSync(s1, 'r+');
  writeSync(fd, Buffer.alloc(200, 0x55), 0, 200, 512); // the first member's data starts after its 512-byte header
  closeSync(fd);
  assert.equal(statSync(s1).size, bytes.length);
  // shard 2 cut in the middle (its index entry no longer matches: it is scanned again)
  truncateSync(join(dir, 'shard-000002.tar'), Math.floor(statSync(join(dir, 'shard-000002.tar')).size / 2));
  // shard 3 replaced by garbage of another size
  writeFileSync(join(dir, 'shard-000003.tar'), Buffer.alloc(3000, 7));
  const warnings: string[] = [];
  const ds = shardDataset(dir, { onWarning: (l) => warnings.push(l) });
  assert.equal(ds.table.problems.length, 2);
  assert.ok(
    warnings.some((w) => /shard-000002\.tar: truncated after \d sample\(s\)/.test(w)),
    warnings.join('\n'),
  );
  assert.ok(
    warnings.some((w) => /shard-000003\.tar: corrupt after 0 sample\(s\) \(Invalid tar header/.test(w)),
    warnings.join('\n'),
  );
  const readable = ds.length;
  assert.ok(readable >= 13 && readable < 18, `${readable}`);
  assert.ok(existsSync(join(dir, 'index.json')));
  const loaderWarnings: string[] = [];
  const l = new ShardLoader(ds, {
    batchSize: 3,
    dropLast: true,
    workers: 2,
    transforms: tf,
    seed: 1,
    shuffleBuffer: 3,
    onWarning: (w) => loaderWarnings.push(w),
  });
  try {
    const got = await collect(l.iterate(0));
    assert.ok(
      got.every((b) => b.shape[0] === 3),
      'every batch keeps its size',
    );
    const s = l.lastSummary!;
    assert.equal(s.skipped, 1);
    assert.equal(s.badShards, 2);
    assert.ok(
      loaderWarnings.some((w) => /skipping shard-000001\.tar:000000005/.test(w)),
      loaderWarnings.join('\n'),
    );
    assert.ok(loaderWarnings.some((w) => /skipped 1 unusable sample/.test(w)));
    const idx = got.flatMap((b) => [...b.indices]);
    assert.ok(!idx.includes(ds.table.bases[1]), 'the corrupt image is replaced');
  } finally {
    await l.close();
  }
  // a shard that ends early after it was indexed (same size, all zeros: an empty archive) still gives full batches
  const s4 = join(dir, 'shard-000004.tar');
  writeFileSync(s4, Buffer.alloc(statSync(s4).size));
  const late: string[] = [];
  const l2 = new ShardLoader(shardDataset(dir, { onWarning: () => {} }), {
    batchSize: 2,
    dropLast: true,
    workers: 0,
    transforms: tf,
    onWarning: (w) => late.push(w),
  });
  try {
    const got = await collect(l2.iterate(0));
    assert.ok(got.every((b) => b.shape[0] === 2));
    assert.ok(
      late.some((w) => /skipping shard-000004\.tar: shard-000004\.tar: ended after 0 sample\(s\), the index says 3/.test(w)),
      late.join('\n'),
    );
    assert.equal(l2.lastSummary!.byReason.truncated, 3);
  } finally {
    await l2.close();
  }
});

test('a sample whose member repeats (two samples under one key) is unusable, not merged into one with the last label', async () => {
  const shard = join(root, 'repeated', 'shard-000000.tar');
  const [a, b] = [await encode(picture(12, 10, 1), 12, 10, 3, 'png'), await encode(picture(12, 10, 2), 12, 10, 3, 'png')];
  writeTar(shard, [
    ['a.png', a],
    ['a.cls', '0'],
    ['a.png', b],
    ['a.cls', '1'],
    ['b.png', b],
    ['b.cls', '1'],
  ]);
  const got: { key: string; label: number | null; sampleError?: string }[] = [];
  for await (const s of readShard(shard)) got.push({ key: s.key, label: s.label, sampleError: s.sampleError });
  assert.deepEqual(got, [
    { key: 'a', label: 1, sampleError: 'the member a.png appears twice in one sample (two samples with one key?)' },
    { key: 'b', label: 1, sampleError: undefined },
  ]);
  // and a loader never uses such a sample: it is skipped as corrupt and replaced by b, with b's label
  writeTar(join(root, 'repeated-2', 'shard-000000.tar'), [
    ['a.png', a],
    ['a.cls', '2'],
    ['a.png', b],
    ['a.cls', '2'],
    ['b.png', b],
    ['b.cls', '0'],
  ]);
  const warnings: string[] = [];
  const [l] = loaders(join(root, 'repeated-2'), 1, { workers: 0, batchSize: 2, onWarning: (w) => warnings.push(w) });
  try {
    const got = await collect(l.iterate(0));
    assert.deepEqual(
      got.flatMap((x) => [...x.indices]),
      [1, 1],
    );
    assert.deepEqual(
      got.flatMap((x) => [...x.labels]),
      [0, 0],
      "the stand-in's label, not the skipped sample's",
    );
    assert.deepEqual(l.lastSummary!.byReason, { corrupt: 1 });
    assert.ok(
      warnings.some((w) => /skipping shard-000000\.tar:a: the member a\.png appears twice/.test(w)),
      warnings.join('\n'),
    );
  } finally {
    await l.close();
  }
});

test('a shard cut at a member boundary (no end-of-archive blocks) is reported truncated, its last sample dropped, not read as a sample missing members', async () => {
  const dir = join(root, 'cut-at-member');
  const shard = join(dir, 'shard-000000.tar');
  const img = await encode(picture(12, 10, 1), 12, 10, 3, 'png');
  const starts = writeTar(shard, [
    ['a.png', img],
    ['a.cls', '0'],
    ['b.png', img],
    ['b.cls', '1'],
  ]);
  truncateSync(shard, starts[3] - 512); // b.cls's header never arrived: b looks like an unlabelled sample
  const keys: string[] = [];
  await assert.rejects(
    async () => {
      for await (const s of readShard(shard)) keys.push(s.key);
    },
    (e: Error) => e instanceof ShardReadError && /^shard-000000\.tar: truncated after 1 sample\(s\) \(unexpected end of archive/.test(e.message),
  );
  assert.deepEqual(keys, ['a'], 'the sample being read when the shard ended is dropped');
  // a whole gzip stream of such a tar: the same
  const tgz = join(root, 'cut-at-member.tar.gz');
  write(tgz, gzipSync(readFileSync(shard)));
  await assert.rejects(
    async () => {
      for await (const s of readShard(tgz)) void s;
    },
    (e: Error) => e instanceof ShardReadError && /^cut-at-member\.tar\.gz: truncated after 1 sample\(s\)/.test(e.message),
  );
  // the index counts it among the bad shards, with its name
  const warnings: string[] = [];
  const ds = shardDataset(dir, { onWarning: (w) => warnings.push(w) });
  assert.equal(ds.length, 1);
  assert.equal(ds.table.problems.length, 1);
  assert.match(ds.table.problems[0], /^shard-000000\.tar: truncated after 1 sample\(s\) .*: using its 1 complete sample\(s\), skipping the rest$/);
  assert.ok(!warnings.some((w) => /have no class label/.test(w)), warnings.join('\n'));
  // all members present but the end-of-archive blocks missing: still a cut download
  writeTar(shard, [
    ['a.png', img],
    ['a.cls', '0'],
  ]);
  truncateSync(shard, statSync(shard).size - 1024);
  await assert.rejects(
    async () => {
      for await (const s of readShard(shard)) void s;
    },
    (e: Error) => e instanceof ShardReadError && /truncated after 0 sample\(s\)/.test(e.message),
  );
});

test("bytes after the end-of-archive block are not read as members (as Python's tarfile, webdataset's reader, stops there): every sample read, no error", async () => {
  const dir = join(root, 'after-end');
  const shard = join(dir, 'shard-000000.tar');
  const img = await encode(picture(12, 10, 1), 12, 10, 3, 'png');
  writeTar(shard, [
    ['a.png', img],
    ['a.cls', '0'],
    ['b.png', img],
    ['b.cls', '1'],
  ]);
  const whole = readFileSync(shard);
  const junk = Buffer.alloc(2048, 0x41); // (a block of it read as a header fails its checksum)
  for (const [name, bytes] of [
    ['after-end.tar', Buffer.concat([whole, junk])],
    ['after-one-zero-block.tar', Buffer.concat([whole.subarray(0, whole.length - 512), junk])],
    ['after-end.tar.gz', gzipSync(Buffer.concat([whole, junk]))],
  ] as const) {
    const path = join(root, name);
    write(path, bytes);
    const got: [string, number | null][] = [];
    for await (const s of readShard(path)) got.push([s.key, s.label]);
    assert.deepEqual(
      got,
      [
        ['a', 0],
        ['b', 1],
      ],
      name,
    );
  }
  // junk where a member's header should be, before any end-of-archive block, is still a corrupt shard
  const bad = join(root, 'junk-in-place-of-a-member.tar');
  write(bad, Buffer.concat([whole.subarray(0, whole.length - 1024), junk]));
  await assert.rejects(
    async () => {
      for await (const s of readShard(bad)) void s;
    },
    (e: Error) => e instanceof ShardReadError && /corrupt after 1 sample\(s\)/.test(e.message),
  );
});

test("members of a second tar after the end-of-archive blocks (tar files concatenated) are not read, as Python's tarfile and GNU tar stop there", async () => {
  const img = await encode(picture(12, 10, 1), 12, 10, 3, 'png');
  const first = join(root, 'concat-first.tar');
  const second = join(root, 'concat-second.tar');
  writeTar(first, [
    ['a.png', img],
    ['a.cls', '0'],
  ]);
  writeTar(second, [
    ['b.png', img],
    ['b.cls', '1'],
  ]);
  const both = Buffer.concat([readFileSync(first), readFileSync(second)]);
  for (const [name, bytes] of [
    ['concatenated.tar', both],
    ['concatenated.tar.gz', gzipSync(both)],
    // one zero block ends the archive as well (tarfile stops at the first)
    ['concatenated-one-zero-block.tar', Buffer.concat([readFileSync(first).subarray(0, readFileSync(first).length - 512), readFileSync(second)])],
  ] as const) {
    const path = join(root, name);
    write(path, bytes);
    const got: [string, number | null][] = [];
    for await (const s of readShard(path)) got.push([s.key, s.label]);
    assert.deepEqual(got, [['a', 0]], name);
  }
});

test('the packer leaves no temporary shard: Ctrl-C removes those staged and its lock, and one of a killed packer goes at the next start', async () => {
  const big = join(root, 'many');
  const jpg = await encode(picture(16, 16, 3), 16, 16, 3, 'jpeg', { quality: 85 });
  for (let i = 0; i < 2400; i++) write(join(big, `c${i % 2}`, `${i}.jpg`), jpg);
  const out = join(root, 'interrupted');
  mkdirSync(out, { recursive: true });
  const temps = () => readdirSync(out).filter((f) => f.includes('.tmp-'));
  // Ctrl-C while a shard is being written (seen on disk as its temporary file)
  const script = `require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'data'))}).packImageFolder({ input: ${JSON.stringify(big)}, output: ${JSON.stringify(out)}, shardSize: 600 })`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  let sent = false;
  while (!sent && child.exitCode === null) {
    if (temps().length) {
      child.kill('SIGINT');
      sent = true;
    } else await new Promise((r) => setTimeout(r, 1));
  }
  assert.ok(sent, 'the packer was interrupted while writing a shard');
  assert.equal(await exited, 'SIGINT', 'the signal still ends the packer');
  assert.deepEqual(temps(), [], 'its temporary shard is gone');
  assert.ok(!existsSync(join(out, 'index.json.lock')), "the folder's lock is released too");
  // kill -9 leaves one: the next packer in the folder removes it (a live process's stays)
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  writeFileSync(join(out, `shard-000001.tar.tmp-${dead}`), 'half a shard');
  writeFileSync(join(out, `shard-000099.tar.tmp-${process.pid}`), 'a live packer is writing it');
  await packImageFolder({ input: folder, output: out, shardSize: 5, overwrite: true });
  assert.deepEqual(temps(), [`shard-000099.tar.tmp-${process.pid}`]);
});

test('two packers at once in one process: Ctrl-C removes the staged shards and the locks of both', async () => {
  const big = join(root, 'many-at-once');
  const jpg = await encode(picture(16, 16, 5), 16, 16, 3, 'jpeg', { quality: 85 });
  for (let i = 0; i < 1600; i++) write(join(big, `c${i % 2}`, `${i}.jpg`), jpg);
  const outs = [join(root, 'at-once-a'), join(root, 'at-once-b')];
  for (const out of outs) mkdirSync(out, { recursive: true });
  const temps = (out: string) => readdirSync(out).filter((f) => f.includes('.tmp-'));
  // the child interrupts itself once both are writing a shard (seen on disk as their temporary files)
  const script = `
    const { readdirSync } = require('node:fs');
    const { packImageFolder } = require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'data'))});
    const outs = ${JSON.stringify(outs)};
    for (const output of outs) packImageFolder({ input: ${JSON.stringify(big)}, output, shardSize: 400 }).then(() => console.log('finished'));
    const poll = setInterval(() => {
      if (outs.every((o) => readdirSync(o).some((f) => f.includes('.tmp-')))) { clearInterval(poll); process.kill(process.pid, 'SIGINT'); }
    }, 1);`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.signal, 'SIGINT', `the signal ends the process (status ${r.status}, ${r.stdout}${r.stderr})`);
  for (const out of outs) {
    assert.deepEqual(temps(out), [], `${out}: its temporary shards are gone`);
    assert.ok(!existsSync(join(out, 'index.json.lock')), `${out}: its lock is released`);
  }
});

test('`semaim shards` stopped by SIGINT says so and exits 130, leaving no shard and no output folder of its making', async () => {
  const big = join(root, 'many-cli');
  const jpg = await encode(picture(16, 16, 3), 16, 16, 3, 'jpeg', { quality: 85 });
  for (let i = 0; i < 2400; i++) write(join(big, `c${i % 2}`, `${i}.jpg`), jpg);
  const made = join(root, 'cli-interrupted');
  const out = join(made, 'set');
  const cli = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
  const child = spawn(process.execPath, [cli, 'shards', '--input', big, '--output', out, '--shard-size', '600'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let sent = false;
  while (!sent && child.exitCode === null) {
    if (existsSync(out) && readdirSync(out).some((f) => f.includes('.tmp-'))) {
      child.kill('SIGINT');
      sent = true;
    } else await new Promise((r) => setTimeout(r, 1));
  }
  assert.ok(sent, 'the packer was interrupted while writing a shard');
  assert.equal(await exited, 130, stderr);
  assert.match(stderr, /^SIGINT: stopping before the next image; no shard set is written \(send it again to exit at once\)$/m);
  assert.match(stderr, /\nsemaim: stopped by SIGINT; no result was written: run the same command again\n$/);
  assert.ok(!existsSync(made), 'the folders it made for --output are removed');
});

test('`semaim shards` names --input when it is missing or not a folder (an option error), and makes no output folder', async () => {
  const out = join(root, 'never-made');
  for (const [input, what] of [
    [join(root, 'no-such-folder'), 'does not exist'],
    [join(folder, 'class0', '00.jpg'), 'is not a folder'],
  ])
    await assert.rejects(
      commands.shards.run(['--input', input, '--output', out]),
      (e: unknown) => e instanceof lib.OptionError && e.key === 'input' && e.detail.startsWith(`${input} ${what}`),
    );
  assert.ok(!existsSync(out));
});

test('`semaim shards` refuses a dataset root of split folders (train/, val/ of class folders): its splits were packed as two classes', async () => {
  const dir = join(root, 'split-root');
  const jpg = await encode(picture(8, 8), 8, 8, 3, 'jpeg');
  for (const split of ['train', 'val']) for (const c of ['a', 'b']) write(join(dir, split, c, '0.jpg'), jpg);
  const out = join(root, 'split-root-out');
  await assert.rejects(
    commands.shards.run(['--input', dir, '--output', out]),
    (e: unknown) => e instanceof lib.OptionError && e.key === 'input' && /holds the splits train\/, val\/, not class folders: pack each split/.test(e.detail),
  );
  assert.ok(!existsSync(out));
  // another folder beside them (a zip's __MACOSX/) does not make train/ and val/ classes: the datasets read train/
  // of such a root as its training split, and packing mixed the splits under the labels 'train' and 'val'
  write(join(dir, '__MACOSX', '0.jpg'), jpg);
  await assert.rejects(
    commands.shards.run(['--input', dir, '--output', out]),
    (e: unknown) => e instanceof lib.OptionError && /holds the splits train\/, val\/, not class folders/.test(e.detail),
  );
  assert.ok(!existsSync(out));
  // a split folder itself packs; so does a class-folder set with a class named train (of images) beside others
  const vehicles = join(root, 'vehicles');
  for (const c of ['bus', 'train']) write(join(vehicles, c, '0.jpg'), jpg);
  await quiet(() => commands.shards.run(['--input', vehicles, '--output', out]));
  assert.deepEqual((JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { classes: string[] }).classes, ['bus', 'train']);
  await quiet(() => commands.shards.run(['--input', join(dir, 'train'), '--output', join(root, 'split-root-train')]));
  assert.deepEqual((JSON.parse(readFileSync(join(root, 'split-root-train', 'index.json'), 'utf8')) as { classes: string[] }).classes, ['a', 'b']);
});

test('`semaim shards` on a split root whose path has a space advises --input values the shell reads back whole (they were printed bare: --input my data/train)', async () => {
  const dir = join(root, 'my split root');
  const jpg = await encode(picture(8, 8), 8, 8, 3, 'jpeg');
  for (const split of ['train', 'val']) for (const c of ['a', 'b']) write(join(dir, split, c, '0.jpg'), jpg);
  let detail = '';
  await assert.rejects(commands.shards.run(['--input', dir, '--output', join(root, 'never-made-2')]), (e: unknown) => {
    detail = (e as lib.OptionError).detail;
    return e instanceof lib.OptionError && e.key === 'input';
  });
  const m = /\(--input (.*) --output OUT\/train, and (.*) into OUT\/test\)/.exec(detail);
  assert.ok(m, detail);
  // as a shell reads them: one word each, the split folders
  const words = (text: string) =>
    spawnSync('sh', ['-c', `printf '%s\\n' ${text}`], { encoding: 'utf8' })
      .stdout.split('\n')
      .slice(0, -1);
  assert.deepEqual(words(m[1]), [join(dir, 'train')]);
  assert.deepEqual(words(m[2]), [join(dir, 'val')]);
  // followed: each split packs
  const out = join(root, 'my split out');
  await quiet(() => commands.shards.run(['--input', words(m[1])[0], '--output', join(out, 'train')]));
  await quiet(() => commands.shards.run(['--input', words(m[2])[0], '--output', join(out, 'test')]));
  assert.ok(existsSync(join(out, 'train', 'index.json')) && existsSync(join(out, 'test', 'index.json')));
});

test('`semaim shards` refuses an --output with a file or a dangling link on the way as an option error naming --output (as --out-dir is), before any work', async () => {
  const file = join(folder, 'class0', '00.jpg');
  const dangling = join(root, 'dangling-output');
  symlinkSync(join(root, 'nowhere'), dangling);
  for (const [output, why] of [
    [join(file, 'shards'), /00\.jpg exists and is not a folder/],
    [join(dangling, 'shards'), /dangling-output is a symbolic link to .*nowhere, which does not exist/],
  ] as const)
    // (these were mkdir's plain errors, exit 1, where every other output folder is an option error, exit 2)
    await assert.rejects(
      commands.shards.run(['--input', folder, '--output', output]),
      (e: unknown) =>
        e instanceof lib.OptionError && e.key === 'output' && e.detail.startsWith(`${output} cannot be the output folder: `) && why.test(e.detail),
      output,
    );
  assert.ok(!existsSync(join(root, 'nowhere')), 'nothing made');
});

test('`semaim shards` starts its progress line before the first shard (its clock and ETA count from there), with a rate', async () => {
  const events: string[] = [];
  const out = join(root, 'progress');
  await packImageFolder({
    input: folder,
    output: out,
    shardSize: 10,
    onStart: (total) => events.push(`start ${total}: ${readdirSync(out).filter((f) => f.startsWith('shard-')).length} shard files`),
    onProgress: (done, total) => events.push(`${done}/${total}`),
  });
  assert.deepEqual(events, ['start 23: 0 shard files', '10/23', '20/23', '23/23']);
  const stderr: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  const stdout = process.stdout.write.bind(process.stdout);
  process.stderr.write = ((s: string | Uint8Array) => stderr.push(String(s)) > 0) as typeof process.stderr.write;
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? true : stdout(s, ...rest))) as typeof process.stdout.write;
  try {
    assert.equal(await commands.shards.run(['--input', folder, '--output', join(root, 'progress-cli'), '--shard-size', '10']), 0);
  } finally {
    process.stderr.write = write;
    process.stdout.write = stdout;
  }
  assert.match(stderr.join(''), /^shards \[#{20}\] 23\/23 \| (img\/s [\d.]+ \| )?elapsed 0:\d\d ETA 0:00$/m);
});

test('the progress reaches the total when the files left for the last shard cannot be read when their turn comes (the bar stopped short, and a log showed no end)', async () => {
  const dir = join(root, 'progress-last-unreadable');
  const { without: input } = foldersWithout(dir, { name: 'x.jpg', bytes: 0 });
  const events: string[] = [];
  const r = await packImageFolder({
    input,
    output: join(dir, 'out'),
    shardSize: 2,
    onProgress: (done, total) => {
      events.push(`${done}/${total}`);
      if (done === 2) rmSync(join(input, 'c', '02.jpg')); // the one image of the last shard, gone before its turn
    },
  });
  assert.equal(r.samples, 4);
  assert.deepEqual(events, ['2/5', '4/5', '5/5']);
});

test("`semaim shards` packs as the packer does with the same options; its defaults are the packer's (1,000 images per shard, class by class, no .json, seed 0 for --shuffle); --shard-size 0 is an option error; a folder that holds a set is replaced only with --overwrite", async () => {
  const dir = join(root, 'cli-options');
  const jpg = await encode(picture(8, 8, 1), 8, 8, 3, 'jpeg');
  const many = join(dir, 'many');
  for (let i = 0; i < 1001; i++) write(join(many, `c${i % 2}`, `${String(i).padStart(4, '0')}.jpg`), jpg);
  const cli = (...args: string[]) => quiet(() => commands.shards.run(args));
  const same = async (args: string[], o: { input: string; shardSize?: number; shuffle?: boolean; seed?: number; json?: boolean }, name: string) => {
    const out = join(dir, `cli-${name}`);
    assert.equal(await cli('--input', o.input, '--output', out, ...args), 0);
    const ref = await packImageFolder({ ...o, output: join(dir, `lib-${name}`) });
    assert.deepEqual(
      shardBytes({ shards: resolveShardPaths(out) }),
      shardBytes(ref),
      `${args.join(' ') || 'the defaults'}: the shards of packImageFolder(${JSON.stringify(o)})`,
    );
    return out;
  };
  const defaults = await same([], { input: many }, 'defaults');
  assert.deepEqual(
    readIndexFile(join(defaults, 'index.json'))!.shards.map((e) => e.samples),
    [1000, 1],
    '1,000 images per shard',
  );
  await same(['--shuffle'], { input: folder, shuffle: true }, 'shuffle');
  await assert.rejects(
    cli('--input', folder, '--output', join(dir, 'zero'), '--shard-size', '0'),
    (e: unknown) => e instanceof lib.OptionError && e.key === 'shardSize',
    '--shard-size 0 is an option error (exit 2), not the packer failing',
  );
  const all = await same(
    ['--shard-size', '5', '--shuffle', '--seed', '3', '--json'],
    { input: folder, shardSize: 5, shuffle: true, seed: 3, json: true },
    'all',
  );

  const before = shardBytes({ shards: resolveShardPaths(all) });
  await assert.rejects(cli('--input', folder, '--output', all), /already holds a shard set/);
  assert.deepEqual(shardBytes({ shards: resolveShardPaths(all) }), before, 'the set there is left as it was');
  assert.equal(await cli('--input', folder, '--output', all, '--overwrite'), 0);
  assert.deepEqual(shardBytes({ shards: resolveShardPaths(all) }), shardBytes(await packImageFolder({ input: folder, output: join(dir, 'lib-plain') })));
});

test("`semaim shards`'s summary: the MiB of the shards written, the files skipped (two named, past three 'and N more'; names and reasons printable), the index and the data path to pass, quoted for a shell", async () => {
  const dir = join(root, 'cli-summary');
  const sparse = (path: string, bytes: number) => {
    mkdirSync(join(path, '..'), { recursive: true });
    closeSync(openSync(path, 'w'));
    truncateSync(path, bytes); // no disk
  };
  const input = join(dir, 'in');
  copyFileSync(join(folder, 'class0', '00.jpg'), write(join(input, 'a', '00.jpg'), ''));
  sparse(join(input, 'a', 'big.png'), 3 << 20); // packed: 3 MiB is 3.1 MB
  sparse(join(input, 'a', 'x-1.png'), 6 << 20); // over the 4.8 MiB an image of 500,000 pixels can take
  sparse(join(input, 'a', 'x-2\u001b[2J.png'), 6 << 20);
  copyFileSync(join(folder, 'class0', '03.jpg'), write(join(input, 'a', 'y\u001b]0;PWNED\u0007.jpg'), ''));
  const fs = require('node:fs') as typeof import('node:fs'); // a plain object: its functions are replaceable
  const open = fs.openSync;
  // an unreadable file whose error has no code: its message is the reason shown
  fs.openSync = ((p: string, ...rest: unknown[]) => {
    if (String(p).includes('PWNED')) throw new Error('refused\u001b[2J');
    return (open as (...a: unknown[]) => number)(p, ...rest);
  }) as typeof fs.openSync;
  const out = join(dir, "it's out"); // a quote in the folder's name: the data path must still read back in a shell
  let stdout: string;
  try {
    ({ stdout } = await printed(() => commands.shards.run(['--input', input, '--output', out, '--max-image-pixels', '500000'])));
  } finally {
    fs.openSync = open;
  }
  const shards = resolveShardPaths(out);
  const mib = (statSync(shards[0]).size / 2 ** 20).toFixed(1);
  assert.equal(mib, '3.0');
  const [line, index, dataPath] = stdout.split('\n');
  assert.equal(
    line,
    `packed 2 images of 1 classes into 1 shard(s), 3.0 MiB; ` +
      'skipped 2 files too large for an image (a/x-1.png, 6.0 MiB; a/x-2\\x1b[2J.png, 6.0 MiB); ' +
      'skipped 1 file that could not be read (a/y\\x1b]0;PWNED\\x07.jpg: refused\\x1b[2J)',
  );
  assert.equal(index, `  index:     ${join(out, 'index.json')}`);
  assert.match(dataPath, /^ {2}data path: --dataset shards --data-path /);
  // the words a shell reads from it, as they would be passed to `semaim pretrain`
  const words = spawnSync('sh', ['-c', `printf '%s\\n' ${dataPath.replace('  data path: ', '')}`], { encoding: 'utf8' }).stdout.split('\n');
  assert.deepEqual(words.slice(0, 3), ['--dataset', 'shards', '--data-path'], dataPath);
  assert.deepEqual(resolveShardPaths(words[3]), shards, `${dataPath}: the data path names the shards written`);

  for (let i = 3; i <= 5; i++) sparse(join(input, 'a', `x-${i}.png`), 6 << 20);
  const { stdout: five } = await printed(() => commands.shards.run(['--input', input, '--output', join(dir, 'five'), '--max-image-pixels', '500000']));
  assert.match(five, /; skipped 5 files too large for an image \(a\/x-1\.png, 6\.0 MiB; a\/x-2\\x1b\[2J\.png, 6\.0 MiB; a\/x-3\.png, 6\.0 MiB; and 2 more\)\n/);
});

test('`semaim shards` on a terminal: the rate counts from the start of the packing, and the progress line is ended before the summary', async () => {
  // a monotonic clock that moves 0.1 s at every reading: the rate is shown (past its first 0.2 s) whatever this machine's speed
  const now = performance.now;
  let t = now.call(performance);
  performance.now = () => (t += 100);
  let stderr: string;
  try {
    ({ stderr } = await captureTerminal(() => commands.shards.run(['--input', folder, '--output', join(root, 'progress-tty'), '--shard-size', '10'])));
  } finally {
    performance.now = now;
  }
  const last = stderr.split('\r\u001b[K').at(-1)!;
  const rate = /^shards \[#{20}\] 23\/23 \| img\/s ([\d.]+) \| elapsed [\d:]+ ETA 0:00\n$/.exec(last);
  assert.ok(rate, JSON.stringify(last));
  assert.ok(Number(rate[1]) > 0, `img/s ${rate[1]}: counted from when the packing started`);
});

test('a disk that fills while a shard is written: the error names the shard, the staged shards go, nothing is left; the same pack then runs', async () => {
  // images of noise (77 KB each as PNG), so that the disk fills while an image is streamed into the
  // tar: its entry stream had no 'error' listener, and the write error, uncaught, ended the process past
  // the cleanup, leaving every staged shard
  const input = join(root, 'noise');
  for (let i = 0; i < 6; i++) {
    const px = Buffer.alloc(160 * 160 * 3);
    for (let j = 0, x = i + 1; j < px.length; j++) px[j] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
    write(join(input, `c${i % 2}`, `${i}.png`), await encode(px, 160, 160, 3, 'png'));
  }
  const out = join(root, 'full-at-shard');
  let staged = 0;
  await withFullDiskStreamAt(/shard-000001\.tar\.tmp-/, () =>
    assert.rejects(
      packImageFolder({ input, output: out, shardSize: 2, onProgress: () => void staged++ }),
      /^Error: cannot write .*shard-000001\.tar: ENOSPC: no space left on device, write \(the disk is full: free space, or write elsewhere\)$/,
    ),
  );
  assert.equal(staged, 1, 'the first shard was staged before the disk filled');
  assert.ok(!existsSync(out), 'no staged shard, index or temporary file left, nor the output folder it made');
  const r = await packImageFolder({ input, output: out, shardSize: 2 });
  assert.equal(r.shards.length, 3);
});

test('a pack that fails (a full disk at index.json) removes the shards it wrote; the same pack then runs without --overwrite', async () => {
  const out = join(root, 'full-disk');
  await withFullDiskAt(/index\.json\.tmp-/, () =>
    assert.rejects(packImageFolder({ input: folder, output: out, shardSize: 5 }), /cannot write .*index\.json: ENOSPC/),
  );
  assert.ok(!existsSync(out), 'no part of a set left to be read as a smaller one, nor the output folder it made');
  const r = await packImageFolder({ input: folder, output: out, shardSize: 5 });
  assert.equal(r.shards.length, 5);
});

test(
  'the shard index scanner (a child process) ends when the process that started it is killed, rather than scanning on for nobody',
  { skip: !existsSync('/proc/self/stat') && 'needs /proc' },
  async () => {
    const scanner = join(__dirname, '..', '..', 'src', 'data', 'shards', 'scan-main.js');
    const shard = join(root, 'shards', 'shard-000000.tar');
    const list = join(root, 'scan-list.json');
    writeFileSync(list, JSON.stringify(Array(40000).fill(shard))); // seconds of scanning
    // a parent that starts the scanner as scanShardsSync does (its list on stdin), prints its pid, then waits for it
    const parentCode = `const c = require('node:child_process').spawn(process.execPath, [${JSON.stringify(scanner)}], { stdio: [require('node:fs').openSync(${JSON.stringify(list)}, 'r'), 'pipe', 'ignore'], env: { ...process.env, SEMAIM_SCAN_PARENT: String(process.pid) } }); console.log(c.pid); c.stdout.resume();`;
    const parent = spawn(process.execPath, ['-e', parentCode], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = await new Promise<number>((resolve) => parent.stdout.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))));
    // (a zombie, exited but not yet reaped by its new parent, is gone)
    const alive = (p: number) => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${p}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    await new Promise((r) => setTimeout(r, 700)); // the list is read, the scan under way
    assert.ok(alive(pid), 'the scanner is scanning');
    parent.kill('SIGKILL');
    const t0 = performance.now();
    while (alive(pid) && performance.now() - t0 < 4000) await new Promise((r) => setTimeout(r, 50));
    const gone = !alive(pid);
    if (!gone) process.kill(pid, 'SIGKILL');
    assert.ok(gone, 'the orphaned scanner ended within 4 s');
  },
);
