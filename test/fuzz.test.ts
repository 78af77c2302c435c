// What scripts/fuzz.js found, kept as small cases, and a short deterministic sweep of every fuzz
// target through the fuzzer's own code (in-process; the script runs thousands of cases per target,
// each in a child process, see its header).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { deserializeSafetensors, writeSafetensors } from '../src/io/safetensors';
import { resolvePredictor } from '../src/eval/classifier-source';
import { verifyCheckpoint } from '../src/io/checkpoint';
import { CheckpointError } from '../src/util/errors';
import { readRun } from '../src/viz/run-data';
import { renderReport } from '../src/viz/report';
import { readShard, ShardReadError } from '../src/data/shards/tar-samples';
import { loadShardTable } from '../src/data/shards/shard-index';
import { cifarBinary } from '../src/data/sources/cifar';
import { openImage } from '../src/data/codecs/decode';
import { DecodeError } from '../src/data/codecs/errors';

interface Fuzzer {
  TARGETS: Record<string, unknown>;
  runCase(target: string, seed: number, i: number): Promise<string>;
  runTarget(
    target: string,
    seed: number,
    n: number,
    o: { timeout: number; maxMemMb: number; verbose: boolean; shown: Record<string, number>; log: (s: string) => void },
  ): Promise<{ findings: { target: string; i: number; what: string }[]; counts: Record<string, number> }>;
  setWork(dir: string): void;
}
const fuzzer = require(join(__dirname, '..', '..', 'scripts', 'fuzz.js')) as Fuzzer;

/** JSON text nested `n` deep (JSON.parse reads it; JSON.stringify and naive recursion overflow the stack). */
const deep = (n: number) => '['.repeat(n) + '0' + ']'.repeat(n);

function withDir(run: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-fuzz-test-'));
  return Promise.resolve(run(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function safetensorsWithHeader(header: string): Uint8Array {
  const json = Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json]);
}

test('safetensors: a shape, dtype or data_offsets nested too deeply to print is refused with a plain error (a CheckpointError) naming the file', () => {
  for (const field of ['shape', 'dtype', 'data_offsets']) {
    const entry = { dtype: 'F32', shape: [1], data_offsets: [0, 4] } as Record<string, unknown>;
    entry[field] = '@';
    const header = JSON.stringify({ t: entry }).replace('"@"', deep(100000));
    assert.throws(
      () => deserializeSafetensors(safetensorsWithHeader(header), 'hostile.safetensors'),
      (e: Error) =>
        (e.constructor === Error || e.constructor === CheckpointError) && /^hostile\.safetensors: tensor 't': .*nested too deeply to print/.test(e.message),
    );
  }
});

test('verifyCheckpoint returns (does not throw) the problem of a state.json nested too deeply for JSON.stringify', () =>
  withDir((dir) => {
    writeFileSync(join(dir, 'state.json'), `{"step": ${deep(100000)}}`);
    assert.match(verifyCheckpoint(dir, 'weights')!, /^state\.json: step is \(a value nested too deeply to print\), not a non-negative integer$/);
    // Fields it checks are fine, but its own digest cannot be computed: it was not written by semaim.
    writeFileSync(join(dir, 'state.json'), `{"step": 1, "files": {"model.safetensors": "x"}, "stateSha256": "x", "other": ${deep(100000)}}`);
    assert.match(verifyCheckpoint(dir, 'weights')!, /does not match its recorded stateSha256/);
  }));

test('report: a config.json or metrics line nested deeper than the stack is shown, not a RangeError', () =>
  withDir((dir) => {
    writeFileSync(join(dir, 'config.json'), `{"options": {"a": ${'{"b":'.repeat(100000)}0${'}'.repeat(100000)}, "list": ${deep(100000)}}}`);
    writeFileSync(join(dir, 'metrics.jsonl'), `{"step": 1, "loss": 1, "epoch": ${deep(100000)}}\n`);
    const html = renderReport(readRun(dir), { generatedAt: new Date(0) });
    assert.match(html, /a value nested too deeply to print/);
    assert.match(html, /<td>a(\.b){31}<\/td>/); // flattened to a depth, the rest as one value
  }));

test('predict: a linprobe.json that is not JSON, not an object or has a non-string encoder path is refused naming the file', () =>
  withDir((dir) => {
    writeSafetensors(join(dir, 'probe.safetensors'), {}, { format: 'semaim.linprobe/1' });
    const file = join(dir, 'linprobe.json');
    for (const [text, why] of [
      ['{"config": {"pooling": "cls"', /linprobe\.json: .*JSON/],
      ['null', /linprobe\.json: not a JSON object/],
      ['{"config": null}', /linprobe\.json: pooling "missing" is not cls, mean or gap/],
      ['{"config": {"pooling": "cls"}, "checkpoint": {"kind": "checkpoint", "weights": 7}}', /linprobe\.json: checkpoint\.weights is 7, not a path/],
    ] as const) {
      writeFileSync(file, text);
      assert.throws(
        () => resolvePredictor(dir),
        (e: Error) => (e.constructor === Error || e.constructor === CheckpointError) && why.test(e.message),
      );
    }
  }));

test('report: chart ticks over x values near 2^53 (a hostile metrics step) end, in a 64 MB heap', () => {
  const svg = join(__dirname, '..', 'src', 'viz', 'svg.js');
  const code = `const { niceTicks } = require(${JSON.stringify(svg)}); console.log(JSON.stringify(niceTicks(2 ** 53, 2 ** 53 + 2, 6)));`;
  const r = spawnSync(process.execPath, ['--max-old-space-size=64', '-e', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr.slice(-300));
  assert.deepEqual(JSON.parse(r.stdout), [2 ** 53, 2 ** 53 + 2]);
});

/** A one-member ustar archive whose size field is `size` (12 bytes), checksum correct. */
function tarWithSizeField(size: string): Buffer {
  const h = Buffer.alloc(512);
  h.write('a.cls', 0, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(size, 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write('0', 156, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  const body = Buffer.alloc(512);
  body.write('1', 0);
  return Buffer.concat([h, body, Buffer.alloc(1024)]);
}

test('tar shard: a member whose size field tar-stream reads as null fails the shard (ShardReadError) instead of hanging the reader', () =>
  withDir(async (dir) => {
    const path = join(dir, 's.tar');
    // A size field that tar-stream reads as null (a base-256 field whose first byte is neither 0x80 nor 0xff),
    // which passes its own size >= 0 check: it then never ends the member nor the stream.
    for (const size of ['\x81' + '0'.repeat(10) + '\0']) {
      writeFileSync(path, tarWithSizeField(size));
      await assert.rejects(
        async () => {
          for await (const _ of readShard(path)) void _;
        },
        (e: Error) => e instanceof ShardReadError && /s\.tar: corrupt after 0 sample\(s\) \(member 'a\.cls' has an invalid size field\)/.test(e.message),
      );
    }
    writeFileSync(path, tarWithSizeField('00000000001\0')); // the same shard with a valid size: read (no image, so no sample)
    for await (const _ of readShard(path)) assert.fail('a member without an image is not a sample');
  }));

test('CIFAR binary: a label byte outside the classes is refused naming the file; a short batches.meta.txt does not shrink the classes', () =>
  withDir((dir) => {
    const rec = Buffer.alloc(3073 * 2);
    rec[3073] = 7;
    writeFileSync(join(dir, 'data_batch_1.bin'), rec);
    for (const k of [2, 3, 4, 5]) writeFileSync(join(dir, `data_batch_${k}.bin`), Buffer.alloc(3073));
    writeFileSync(join(dir, 'batches.meta.txt'), 'plane\ncar\n');
    const ds = cifarBinary(dir);
    assert.equal(ds.classes.length, 10);
    assert.equal(ds.label(1), 7);
    rec[3073] = 10;
    writeFileSync(join(dir, 'data_batch_1.bin'), rec);
    assert.throws(() => cifarBinary(dir), /data_batch_1\.bin: image 1 has label 10, but CIFAR-10 has 10 classes/);
  }));

test('shards: an index.json with entries that are not objects, class names that are not strings or fields nested too deeply is used for what it can say', () =>
  withDir(async (dir) => {
    const shard = join(dir, 'shard-000000.tar');
    writeFileSync(shard, await tarOfOneSample());
    const index = (rest: string) => writeFileSync(join(dir, 'index.json'), `{"format": "semaim.shards/1", "samples": 1, ${rest}}`);
    for (const [rest, classes] of [
      ['"shards": [null, 3, {"file": 7}], "classes": ["a", "b", "c", "d"]', ['a', 'b', 'c', 'd']],
      ['"shards": [], "classes": "<script>"', ['0', '1', '2', '3']],
      ['"shards": [], "classes": ["a", ["b"], "c", "d"]', ['0', '1', '2', '3']],
      [`"shards": [{"file": "other.tar", "bytes": ${deep(100000)}}], "source": ${deep(100000)}`, ['0', '1', '2', '3']],
    ] as const) {
      index(rest);
      const t = loadShardTable([shard], { onWarning: () => {} });
      assert.equal(t.total, 1);
      assert.deepEqual(t.classes, classes);
    }
  }));

/** A shard of one sample labelled 3 (a tiny PNG and its .cls). */
function tarOfOneSample(): Promise<Buffer> {
  const { pack } = require('tar-stream') as typeof import('tar-stream');
  const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010800000000', 'hex');
  return new Promise((resolve, reject) => {
    const p = pack();
    const chunks: Buffer[] = [];
    p.on('data', (c: unknown) => chunks.push(c as Buffer));
    p.on('end', () => resolve(Buffer.concat(chunks)));
    p.on('error', reject);
    p.entry({ name: 'a/0.png' }, png);
    p.entry({ name: 'a/0.cls' }, '3');
    p.finalize();
  });
}

test('JPEG: a header claiming more 8×8 blocks than the file has bits is refused when opened, before its planes are allocated', () => {
  // Baseline grey 4000×4000 (16 MP, within the pixel limit), one DC and one AC table, then a 4-byte scan.
  const dht = (cls: number) => [0xff, 0xc4, 0, 20, cls, 1, ...new Array(15).fill(0), 0];
  const dqt = [0xff, 0xdb, 0, 67, 0, ...new Array(64).fill(1)];
  const sof = [0xff, 0xc0, 0, 11, 8, 4000 >> 8, 4000 & 255, 4000 >> 8, 4000 & 255, 1, 1, 0x11, 0];
  const sos = [0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0];
  const bytes = Buffer.from([0xff, 0xd8, ...dqt, ...sof, ...dht(0x00), ...dht(0x10), ...sos, 0, 0, 0, 0, 0xff, 0xd9]);
  assert.throws(
    () => openImage(bytes),
    (e: Error) => e instanceof DecodeError && e.reason === 'truncated' && /4000×4000 needs at least 31250 bytes of scan data/.test(e.message),
  );
});

/** Cases scripts/fuzz.js found ([target, seed, case]), each a defect fixed since; replayed as the script makes them. */
const FOUND: [string, number, number][] = [
  ['safetensors', 1, 3], // a shape nested too deeply: RangeError from the error message
  ['encoder', 1, 42], // the same through resolveEncoder
  ['checkpoint', 1, 15], // verifyCheckpoint threw on a deeply nested state.json value
  ['report', 1, 1], // a deeply nested config.json overflowed the report's stack
  ['report', 1, 162], // a deeply nested metrics field (String() of an array)
  ['tar', 1, 888], // a size field tar-stream reads as null: readShard never ended
  ['cifar', 1, 5], // a label without a class
  ['linprobe', 1, 13], // linprobe.json not JSON: a SyntaxError naming no file
  ['linprobe', 1, 146], // linprobe.json null: a TypeError
  ['linprobe', 3, 1470], // an encoder path that is not one: the error did not say it came from linprobe.json
  ['linprobe', 3, 1563], // a probe tensor renamed: a StateDictError naming no file
  ['shard-index', 1, 2], // class names that are not strings were used
  ['shard-index', 1, 32], // a field nested too deeply: saving the index overflowed the stack
  ['jpeg', 4, 2441], // 678 bytes claiming 9000×9000: a quarter of a gigabyte of planes before the data ran out
  ['journal', 1, 3], // a journal renaming '.partial' onto '' (the folder): every write there failed, naming neither the journal nor what to do
  ['journal', 1, 4], // a journal renaming ../victim/x.partial onto ../victim/x: a file outside the folder replaced
  ['lock', 1, 7], // a lock of pid -1 (kill(-1, 0) succeeds): held forever
  ['lock', 1, 21], // a lock of pid 0 (the process group): held forever
];

test('fuzz: the cases the fuzzer found are handled', () =>
  withDir(async (dir) => {
    fuzzer.setWork(dir);
    const failures: string[] = [];
    for (const [target, seed, i] of FOUND) {
      try {
        await fuzzer.runCase(target, seed, i);
      } catch (e) {
        failures.push(`${target} seed ${seed} case ${i}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    assert.deepEqual(failures, []);
  }));

test('fuzz sweep: a few cases of every target of scripts/fuzz.js are handled (refused cleanly or read correctly)', () =>
  withDir(async (dir) => {
    fuzzer.setWork(dir);
    const failures: string[] = [];
    for (const target of Object.keys(fuzzer.TARGETS)) {
      for (let i = 0; i < 20; i++) {
        try {
          await fuzzer.runCase(target, 1, i);
        } catch (e) {
          failures.push(`${target} ${i}: ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
    assert.deepEqual(failures, []);
  }));

test('a fuzz child that dies between two cases is a finding, not a target that ends early with none', () =>
  withDir(async (dir) => {
    // preloaded into the child: it exits 3 once it has reported its first case done
    const preload = join(dir, 'dies-after-a-case.js');
    writeFileSync(
      preload,
      `const fs = require('node:fs'); const write = fs.writeSync;
       fs.writeSync = (fd, s, ...rest) => { const n = write(fd, s, ...rest); if (fd === 1 && String(s).startsWith('D ')) process.exit(3); return n; };`,
    );
    const before = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = `--require ${JSON.stringify(preload)}`;
    try {
      fuzzer.setWork(dir);
      const { findings, counts } = await fuzzer.runTarget('lock', 1, 3, { timeout: 60, maxMemMb: 400, verbose: false, shown: {}, log: () => {} });
      assert.equal(counts.handled, 1);
      assert.equal(findings.length, 1);
      assert.equal(findings[0].i, 1);
      assert.match(findings[0].what, /^crash: the child exited 3 .*between cases, before case 1; cases 1\.\.2 not run/);
    } finally {
      if (before === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = before;
    }
  }));

test('fuzz.js refuses a count that is not a number (exit 2, naming it) instead of restarting its child forever', () => {
  const r = spawnSync(process.execPath, [join(__dirname, '..', '..', 'scripts', 'fuzz.js'), '--cases', '1k', 'lock'], { encoding: 'utf8', timeout: 8000 });
  assert.equal(r.status, 2, `status ${r.status} (signal ${r.signal}): ${r.stderr}`);
  assert.match(r.stderr, /--cases takes a number >= 0, not 1k/);
});
