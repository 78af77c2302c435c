// The linear probe's two numbers: the final probe's accuracy and, as the authors' main_linprobe.py prints,
// the maximum over the epochs (details.bestTop1), the test set evaluated after every epoch by default.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LINPROBE_OPTIONS, resolveOptions, runLinprobe, torch, type data } from '../../src';
import { toyImages, writeEncoder } from './helpers';

torch.setNumThreads(1);

const factories = (): data.DataFactories => ({
  makeEvalData: (r) => (r.split === 'train' ? toyImages(32, 2, 8, 1) : toyImages(16, 2, 8, 2)),
  makeTrainData: () => {
    throw new Error('not used');
  },
});

interface Details {
  bestTop1: number;
  history: { epoch: number; top1?: number }[];
}

test('linprobe reports the final accuracy and the best over its epochs (every epoch evaluated by default)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-lp-best-'));
  try {
    const enc = writeEncoder(dir);
    const base = { checkpoint: enc, epochs: 4, batchSize: 8, threads: 1, evalBatchSize: 8, blr: 20 };
    const every = await runLinprobe(resolveOptions(LINPROBE_OPTIONS, { ...base, outDir: join(dir, 'every') }), factories());
    const d = every.result.details as unknown as Details;
    const top1s = d.history.map((e) => e.top1);
    assert.equal(top1s.length, 4);
    assert.ok(
      top1s.every((t) => typeof t === 'number'),
      `every epoch evaluated: ${JSON.stringify(top1s)}`,
    );
    assert.equal(d.bestTop1, Math.max(...(top1s as number[])));
    assert.equal(top1s[3], every.result.rows[0].accuracy.top1, 'the last epoch is the final probe');

    const end = await runLinprobe(resolveOptions(LINPROBE_OPTIONS, { ...base, evalEvery: 0, outDir: join(dir, 'end') }), factories());
    const e = end.result.details as unknown as Details;
    assert.deepEqual(
      e.history.map((h) => h.top1 !== undefined),
      [false, false, false, true],
    );
    assert.equal(e.bestTop1, end.result.rows[0].accuracy.top1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
