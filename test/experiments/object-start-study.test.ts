// The object-start study end to end at toy size: one run per S it trains with, initialisation and
// checkpoints scored with S = cls / gap / self against the random-centre baseline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveOptions, OptionError } from '../../src/util/options';
import { OBJECT_STUDY_OPTIONS, objectStartStudy, parseTrainTokens, pickCheckpoints, studyPretrainOptions } from '../../src/experiments/object-start-study';

test('pickCheckpoints spreads the evaluation points evenly and keeps the last', () => {
  assert.deepEqual(pickCheckpoints([2, 4, 6, 8], 4), [2, 4, 6, 8]);
  assert.deepEqual(pickCheckpoints([10, 20, 30, 40, 50, 60, 70, 80, 90], 3), [40, 60, 90]);
  assert.deepEqual(pickCheckpoints([5, 1, 3], 1), [5]);
  assert.throws(() => parseTrainTokens('cls,foo'), OptionError);
});

test('object-start study: init and checkpoints per trained S, scored with cls / gap / self, table and JSON', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-objstart-'));
  try {
    const o = resolveOptions(OBJECT_STUDY_OPTIONS, {
      outDir: dir,
      trainTokens: 'cls,self',
      steps: 4,
      points: 2,
      testSize: 24,
      imgSize: 16,
      patchSize: 4,
      embedDim: 16,
      depth: 1,
      numHeads: 2,
      decoderDepth: 1,
      batchSize: 4,
      threads: 1,
      numWorkers: 0,
    });
    assert.equal(studyPretrainOptions(o, 'self').similarityTokens, 'self');
    assert.equal(studyPretrainOptions(o, 'cls').syntheticSize, 16, 'fresh images: batch × steps');
    const r = await objectStartStudy(o, () => {});
    assert.equal(r.n, 24);
    assert.deepEqual(
      r.points.map((p) => [p.trainedWith, p.step]),
      [
        ['cls', 0],
        ['cls', 2],
        ['cls', 4],
        ['self', 0],
        ['self', 2],
        ['self', 4],
      ],
    );
    for (const p of r.points) {
      for (const t of ['cls', 'gap', 'self'] as const) assert.ok(p.byTokens[t].fraction >= 0 && p.byTokens[t].fraction <= 1);
      assert.ok(p.randomCentre > 0 && p.randomCentre < 1);
    }
    assert.deepEqual(r.points[0].byTokens, r.points[3].byTokens, 'both runs start from the same weights');
    const cfg = (t: string) => JSON.parse(readFileSync(join(dir, `trained-${t}`, 'config.json'), 'utf8')).options;
    assert.equal(cfg('self').similarityTokens, 'self');
    assert.equal(cfg('cls').similarityTokens, 'cls');
    assert.match(readFileSync(join(dir, 'object-start.md'), 'utf8'), /\| self \| 4 \| [\d.]+ ± [\d.]+ \|/);
    assert.ok(existsSync(join(dir, 'object-start.json')));
    // Again: the finished runs are not trained again.
    const lines: string[] = [];
    const again = await objectStartStudy(o, (l) => lines.push(l));
    assert.ok(lines.some((l) => /nothing to do/.test(l)));
    assert.deepEqual(again.points, r.points);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
