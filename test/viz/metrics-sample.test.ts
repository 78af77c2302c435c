// A long metrics.jsonl is read as a sample that draws the same curves (each metric's min and max per
// bucket, every NaN/Inf and evaluation record, the first and the last), with the summary's figures
// counted over every record; a short one is read whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readMetricsSample } from '../../src/viz/metrics-sample';
import { isNonFinite } from '../../src/viz/run-data';

test("a metrics file above the sampling size keeps each metric's extremes per bucket and every special record; the totals count every record", () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-metrics-sample-'));
  try {
    const path = join(dir, 'metrics.jsonl');
    const lines: string[] = [];
    const all: Record<string, unknown>[] = [];
    for (let s = 1; s <= 5000; s++) {
      const r: Record<string, unknown> =
        s % 1000 === 0
          ? { step: s, testTop1: s / 10000 }
          : { step: s, loss: 2 + Math.sin(s * 0.37), imgPerSec: 100 + (s % 7), gradNorm: s === 2222 ? 'Infinity' : 1 + (s % 13) / 10 };
      all.push(r);
      lines.push(JSON.stringify(r));
    }
    lines.splice(10, 0, 'not json');
    writeFileSync(path, lines.join('\n') + '\n');
    const isRecord = () => true;
    const whole = readMetricsSample(path, isRecord, isNonFinite);
    assert.equal(whole.sampled, false);
    assert.equal(whole.records.length, 5000);
    const m = readMetricsSample(path, isRecord, isNonFinite, { sampleAbove: 1000, buckets: 50 });
    assert.equal(m.sampled, true);
    assert.deepEqual(m.unreadable, [11]);
    assert.deepEqual(m.totals, whole.totals);
    const losses = all.filter((r) => typeof r.loss === 'number');
    assert.equal(m.totals.loggedSteps, losses.length);
    assert.equal(m.totals.minLoss, Math.min(...losses.map((r) => r.loss as number)));
    assert.deepEqual(m.totals.firstLoss, [1, losses[0].loss]);
    assert.deepEqual(m.totals.lastLoss, [4999, losses[losses.length - 1].loss], 'the last finite loss, though the sample need not hold its record');
    const rates = losses.map((r) => r.imgPerSec as number).sort((a, b) => a - b);
    assert.equal(m.totals.medianImgPerSec, (rates[(rates.length - 1) >> 1] + rates[rates.length >> 1]) / 2);
    assert.ok(m.records.length < 50 * 3 * 2 + 10, `${m.records.length} records kept`);
    const steps = m.records.map((r) => r.step as number);
    assert.deepEqual(
      steps,
      [...steps].sort((a, b) => a - b),
      'in file order',
    );
    for (const s of [1, 1000, 2000, 2222, 5000]) assert.ok(steps.includes(s), `step ${s} kept`);
    // every 101 lines (a bucket) holds the records with its lowest and highest loss
    for (let b = 0; b < 50; b++) {
      const inBucket = losses.filter((r) => Math.floor(((r.step as number) + ((r.step as number) > 10 ? 1 : 0)) / 101) === b);
      if (!inBucket.length) continue;
      const lo = inBucket.reduce((x, y) => ((y.loss as number) < (x.loss as number) ? y : x));
      const hi = inBucket.reduce((x, y) => ((y.loss as number) > (x.loss as number) ? y : x));
      assert.ok(steps.includes(lo.step as number) && steps.includes(hi.step as number), `bucket ${b}`);
    }
    // the last record is kept also when it is an ordinary step (not an extreme of its bucket, not special)
    const plain = { step: 5001, loss: 2, imgPerSec: 103, gradNorm: 1.6 };
    writeFileSync(path, lines.join('\n') + '\n' + JSON.stringify(plain) + '\n');
    const withPlain = readMetricsSample(path, isRecord, isNonFinite, { sampleAbove: 1000, buckets: 50 });
    assert.deepEqual(withPlain.records[withPlain.records.length - 1], plain, 'the curves run to the last step');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file one line above the sampling size whose last line has no newline (a run killed mid-line) is sampled', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-metrics-sample-'));
  try {
    const path = join(dir, 'metrics.jsonl');
    const lines = Array.from({ length: 21 }, (_, i) => JSON.stringify({ step: i + 1, loss: 1 + (i % 3) }));
    writeFileSync(path, lines.join('\n'));
    const m = readMetricsSample(path, () => true, isNonFinite, { sampleAbove: 20, buckets: 5 });
    assert.equal(m.sampled, true, '21 lines');
    assert.equal(m.totals.records, 21);
    writeFileSync(path, lines.slice(0, 20).join('\n'));
    assert.equal(readMetricsSample(path, () => true, isNonFinite, { sampleAbove: 20, buckets: 5 }).sampled, false, '20 lines');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('isNonFinite: a loss of null, any other value written as "Infinity", "-Infinity" or "NaN"', () => {
  assert.equal(isNonFinite('loss', null), true);
  assert.equal(isNonFinite('loss', 'NaN'), false);
  for (const v of ['Infinity', '-Infinity', 'NaN']) assert.equal(isNonFinite('gradNorm', v), true, v);
  for (const v of [null, 3, 'inf']) assert.equal(isNonFinite('gradNorm', v), false, String(v));
});
