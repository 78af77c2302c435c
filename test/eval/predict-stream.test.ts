// `semaim predict` streams its output: after every batch its predictions are in the CSV's temporary file
// and in the JSON's lines (memory holds one batch, not every image's prediction, which grew the heap by
// about 0.7 KB an image and would pass V8's longest string near 1.7 M images), the final names appear
// only when both files are complete, and a stop, an error or a full disk mid-way leaves the earlier pair
// as it was and no temporary file; those a killed run left are removed by the next.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands';
import { predict, type PredictList, type PredictOptions } from '../../src/eval/predict';
import { countingLoopTurns, writeEncoder } from './helpers';
import { quiet } from '../output';

const DEAD_PID = 2 ** 22 + 1; // above Linux's pid_max: no such process
let root = '';
let lp = '';

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'semaim-predict-stream-'));
  const encoder = writeEncoder(root);
  lp = join(root, 'lp');
  const data = ['--dataset', 'synthetic', '--train-limit', '64', '--test-limit', '16', '--threads', '1', '--num-workers', '0'];
  await quiet(() => commands.linprobe.run(['--checkpoint', encoder, ...data, '--epochs', '1', '--batch-size', '16', '--out-dir', lp]));
});
after(() => rmSync(root, { recursive: true, force: true }));

const N = 200;
const BATCH = 16;
const job = (out: string, o: Partial<PredictOptions> = {}): PredictOptions => ({
  checkpoint: lp,
  dataset: 'synthetic',
  limit: N,
  batchSize: BATCH,
  threads: 1,
  numWorkers: 0,
  progress: null,
  onWarning: () => {},
  out,
  ...o,
});

/** The one file of `dir` whose name matches `pattern`. */
function only(dir: string, pattern: RegExp): string {
  const found = readdirSync(dir).filter((n) => pattern.test(n));
  assert.equal(found.length, 1, `one file matching ${pattern} in ${readdirSync(dir).join(', ')}`);
  return join(dir, found[0]);
}

test('every batch’s predictions are on the disk before the next batch is read; the final files appear only at the end', async () => {
  const dir = join(root, 'stream');
  const out = join(dir, 'p.json');
  const seen: number[] = [];
  let lastCsv = '';
  const r = await predict(
    job(out, {
      onProgress: (done) => {
        assert.ok(!existsSync(out) && !existsSync(join(dir, 'p.csv')), 'no final file while images are left');
        const csv = readFileSync(only(dir, /^p\.csv\.tmp-\d+-\d+$/), 'utf8');
        assert.equal(csv.split('\n').length - 2, done, `the CSV's temporary file has a row per image done (${done})`);
        const lines = readFileSync(only(dir, /^p\.json\.predictions\.tmp-\d+-\d+$/), 'utf8');
        assert.equal(lines.split('\n').length, done, `the JSON's prediction lines hold every image done (${done})`);
        seen.push(done);
        lastCsv = csv;
      },
    }),
  );
  assert.deepEqual(
    seen,
    Array.from({ length: Math.ceil(N / BATCH) }, (_, b) => Math.min(N, (b + 1) * BATCH)),
  );
  assert.equal(r.count, N);
  assert.equal(readFileSync(join(dir, 'p.csv'), 'utf8'), lastCsv, 'the CSV is the file the rows were streamed to');
  const list = JSON.parse(readFileSync(out, 'utf8')) as PredictList;
  assert.equal(list.count, N);
  assert.equal(list.predictions.length, N);
  assert.deepEqual(list.skipped, []);
  assert.deepEqual(readdirSync(dir).sort(), ['p.csv', 'p.json'], 'no temporary file and no lock left');
});

test('predict lets the event loop turn after every batch of images, also with its loader on the main thread (numWorkers 0)', async () => {
  // 5 batches of synthetic images made on this thread: every await resolved at once, and timers waited for all of them
  const { turns } = await countingLoopTurns(() => predict(job(join(root, 'turns', 'p.json'), { limit: 5 * BATCH })));
  assert.ok(turns >= 4, `the event loop turned ${turns} times during 5 batches`);
});

test('given a signal aborted already, predict rejects with an AbortError before any work: no output folder, no batch, not even a checkpoint read', async () => {
  const dir = join(root, 'aborted-before');
  const out = join(dir, 'p.json');
  let batches = 0;
  const reason = new Error('request cancelled');
  const aborted = (e: NodeJS.ErrnoException) => e.code === 'ERR_ABORTED' && e.name === 'AbortError' && e.cause === reason;
  await assert.rejects(predict(job(out, { signal: AbortSignal.abort(reason), onProgress: () => batches++ })), aborted);
  assert.equal(batches, 0, 'no batch read');
  assert.equal(existsSync(dir), false, 'no output folder made');
  // as embed: the abort is the answer, not what the work would have found
  await assert.rejects(predict(job(out, { checkpoint: join(root, 'no-such-probe'), signal: AbortSignal.abort(reason) })), aborted);
  assert.equal(existsSync(dir), false);
});

test('stopped (AbortSignal) part-way, or on a disk that fills part-way: the earlier pair untouched, no temporary file', async () => {
  const dir = join(root, 'stop');
  const out = join(dir, 'p.json');
  await predict(job(out, { limit: 40, topK: 1 }));
  const before = ['p.json', 'p.csv'].map((f) => readFileSync(join(dir, f), 'utf8'));
  const unchanged = (why: string) => {
    assert.deepEqual(readdirSync(dir).sort(), ['p.csv', 'p.json'], `${why}: no temporary file and no lock left`);
    assert.deepEqual(
      ['p.json', 'p.csv'].map((f) => readFileSync(join(dir, f), 'utf8')),
      before,
      `${why}: the earlier pair`,
    );
  };

  const ac = new AbortController();
  let batches = 0;
  await assert.rejects(
    predict(
      job(out, {
        overwrite: true,
        signal: ac.signal,
        onProgress: () => {
          if (++batches === 3) ac.abort();
        },
      }),
    ),
    (e: NodeJS.ErrnoException) => e.code === 'ERR_ABORTED',
  );
  assert.equal(batches, 3, 'stopped after the batch it was aborted in');
  unchanged('stopped');

  // the disk fills after the third batch: the next write (the CSV's rows) fails, naming the file
  const fs = require('node:fs') as typeof import('node:fs');
  const real = fs.writeSync;
  let full = false;
  fs.writeSync = ((...args: Parameters<typeof real>) => {
    if (full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return real(...args);
  }) as typeof real;
  batches = 0;
  try {
    await assert.rejects(
      predict(
        job(out, {
          overwrite: true,
          onProgress: () => {
            if (++batches === 3) full = true;
          },
        }),
      ),
      /cannot write .*p\.csv: ENOSPC.*\(the disk is full: /,
    );
  } finally {
    fs.writeSync = real;
  }
  assert.equal(batches, 3);
  unchanged('a full disk');
});

test('the temporary files of a killed predict are removed when the next one starts, not those of a live process', async () => {
  const dir = join(root, 'killed');
  const out = join(dir, 'p.json');
  const left = ['p.csv', 'p.json', 'p.json.predictions', 'p.json.skipped'].map((f, i) => `${f}.tmp-${DEAD_PID}-${i}`);
  const live = 'p.csv.tmp-1-0'; // pid 1 is alive
  await predict(job(out, { limit: 20 }));
  for (const f of [...left, live]) writeFileSync(join(dir, f), 'half written');
  let checked = false;
  await predict(
    job(out, {
      limit: 20,
      overwrite: true,
      onProgress: () => {
        if (checked) return;
        checked = true;
        for (const f of left) assert.ok(!existsSync(join(dir, f)), `${f} is gone from the start`);
      },
    }),
  );
  assert.ok(checked);
  assert.deepEqual(readdirSync(dir).sort(), ['p.csv', 'p.csv.tmp-1-0', 'p.json']);
});
