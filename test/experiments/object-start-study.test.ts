// The object-start study end to end at toy size: one run per S it trains with, initialisation and
// checkpoints scored with S = cls / gap / self against the random-centre baseline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveOptions, OptionError } from '../../src/util/options';
import { objectStartCommand } from '../../src/cli/object-start-command';
import {
  OBJECT_STUDY_OPTIONS,
  objectStartStudy,
  parseTrainTokens,
  plannedSteps,
  studyMarkdown,
  studyPretrainOptions,
  studyRunDir,
} from '../../src/experiments/object-start-study';
import { pretrain } from '../../src/train/pretrain';
import { trainDataRequest } from '../../src/train/pretrain-options';
import { makeTrainData } from '../../src/data';
import { listCheckpoints } from '../../src/io/checkpoint';

/** A model and run small enough for a test (one block each side, one thread). */
const TOY_MODEL = { imgSize: 16, patchSize: 4, embedDim: 16, depth: 1, numHeads: 2, decoderDepth: 1, batchSize: 4, threads: 1, numWorkers: 0 };

test('plannedSteps: every --checkpoint-every steps and the last, at most --points of them', () => {
  assert.deepEqual(plannedSteps({ steps: 8, points: 4 }), [2, 4, 6, 8]);
  assert.deepEqual(plannedSteps({ steps: 40, points: 4 }), [10, 20, 30, 40]);
  assert.deepEqual(plannedSteps({ steps: 10, points: 4 }), [3, 6, 9, 10]);
  assert.deepEqual(plannedSteps({ steps: 5, points: 1 }), [5]);
  assert.deepEqual(plannedSteps({ steps: 2, points: 4 }), [1, 2]);
  assert.throws(() => parseTrainTokens('cls,foo'), OptionError);
  assert.throws(
    () => parseTrainTokens('cls, self,cls'),
    (e: Error) => e instanceof OptionError && /names a token twice: cls, self,cls/.test(e.message),
  );
  assert.deepEqual(parseTrainTokens(' self ,gap,'), ['self', 'gap']);
});

test('an interrupted, resumed study scores the same checkpoints as one never interrupted, and gives the same table', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-objstart-resume-'));
  try {
    const opts = (outDir: string) => resolveOptions(OBJECT_STUDY_OPTIONS, { outDir, trainTokens: 'cls', steps: 8, points: 2, testSize: 16, ...TOY_MODEL });
    const whole = await objectStartStudy(opts(join(dir, 'whole')), () => {});
    assert.deepEqual(
      whole.points.map((p) => p.step),
      [0, 4, 8],
    );
    // Stopped twice between the planned checkpoints 4 and 8 (each stop writes its own checkpoint), then run to the end.
    const o = opts(join(dir, 'stopped'));
    const po = studyPretrainOptions(o, 'cls');
    for (const at of [5, 6]) {
      const ac = new AbortController();
      const r = await pretrain(po, makeTrainData(trainDataRequest(po)), {
        log: () => {},
        progress: false,
        signal: ac.signal,
        catchSignals: false,
        onStep: (s) => s === at && ac.abort(),
      });
      assert.equal(r.stoppedBy, 'signal');
    }
    const resumed = await objectStartStudy(o, () => {});
    assert.deepEqual(
      resumed.points.map((p) => p.step),
      [0, 4, 8],
      'the planned steps, not the stops',
    );
    assert.deepEqual(resumed.points, whole.points);
    assert.equal(resumed.markdown, whole.markdown);
    assert.deepEqual(
      listCheckpoints(join(po.outDir, 'checkpoints')).map((c) => c.step),
      [8, 6, 5, 4],
      'the planned step-4 checkpoint is kept beside the two stops',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
      ...TOY_MODEL,
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
    const cfg = (t: string) => JSON.parse(readFileSync(join(dir, `trained-${t}-seed0`, 'config.json'), 'utf8')).options;
    assert.equal(cfg('self').similarityTokens, 'self');
    assert.equal(cfg('cls').similarityTokens, 'cls');
    assert.match(readFileSync(join(dir, 'object-start.md'), 'utf8'), /\| self \| 4 \| [\d.]+ ± [\d.]+ \|/);
    assert.ok(existsSync(join(dir, 'object-start.json')));
    // Again: the finished runs are not trained again.
    const lines: string[] = [];
    const again = await objectStartStudy(o, (l) => lines.push(l));
    assert.ok(lines.some((l) => /nothing to do/.test(l)));
    assert.deepEqual(again.points, r.points);
    // A corrupted checkpoint of its own runs: the study says what to do (it has no --no-verify).
    const ckpts = join(dir, 'trained-cls-seed0', 'checkpoints');
    const bad = readdirSync(ckpts).find((d) => d.startsWith('step-') && d.endsWith('2'))!;
    const weights = join(ckpts, bad, 'model.safetensors');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(weights, bytes);
    await assert.rejects(
      objectStartStudy(o, () => {}),
      (e: Error) => {
        assert.match(e.message, /not usable: .*move .* out of checkpoints\/ and run the same command again/);
        assert.doesNotMatch(e.message, /--no-verify/);
        return true;
      },
    );
    renameSync(join(ckpts, bad), join(dir, 'set-aside'));
    const after = await objectStartStudy(o, () => {});
    assert.deepEqual(
      after.points.filter((p) => p.trainedWith === 'cls').map((p) => p.step),
      [0, 4],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('object-start study with --seeds: one run per S and seed, the table gives mean ± std over the seeds', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-objstart-seeds-'));
  try {
    const o = resolveOptions(OBJECT_STUDY_OPTIONS, {
      outDir: dir,
      trainTokens: 'cls',
      seeds: 2,
      seed: 4,
      steps: 2,
      points: 1,
      testSize: 16,
      ...TOY_MODEL,
    });
    assert.equal(studyPretrainOptions(o, 'cls', 5).seed, 5);
    const r = await objectStartStudy(o, () => {});
    assert.deepEqual(
      r.points.map((p) => [p.trainedWith, p.seed, p.step]),
      [
        ['cls', 4, 0],
        ['cls', 4, 2],
        ['cls', 5, 0],
        ['cls', 5, 2],
      ],
    );
    assert.equal(JSON.parse(readFileSync(join(dir, 'trained-cls-seed4', 'config.json'), 'utf8')).options.seed, 4);
    assert.equal(JSON.parse(readFileSync(join(dir, 'trained-cls-seed5', 'config.json'), 'utf8')).options.seed, 5);
    // the table: one row per step, each cell the mean ± sample std of the two seeds' fractions
    const md = readFileSync(join(dir, 'object-start.md'), 'utf8');
    const rows = md.split('\n').filter((l) => /^\| cls \|/.test(l));
    assert.equal(rows.length, 2);
    const [a, b] = [r.points[1].byTokens.self.fraction, r.points[3].byTokens.self.fraction];
    const want = `${(50 * (a + b)).toFixed(1)} ± ${((100 * Math.abs(a - b)) / Math.SQRT2).toFixed(1)}`;
    assert.equal(rows[1].split('|')[5].trim(), want, `S = self at step 2: ${rows[1]}`);
    assert.match(md, /seeds 4\.\.5 \(test images of seed 4\)/);
    assert.match(md, /standard deviation over the 2 seeds/);
    assert.match(md, /the binomial standard error of one value is about 12\.5 points at most/, '16 test images: √(0.25 / 16)');
    // one seed missing from a row is said in the cell
    const partial = studyMarkdown({ ...r, points: r.points.slice(0, 3) });
    assert.match(partial, /\(1 of 2 seeds\)/);
    // The folders are named by each run's own seed: --seed 5 alone finds seed 5's run (it looked in
    // trained-cls, seed 4's, and refused: 'started with other settings (seed 4 → 5)').
    const one: string[] = [];
    const r5 = await objectStartStudy({ ...o, seed: 5, seeds: 1 }, (l) => one.push(l));
    assert.ok(
      one.some((l) => /nothing to do: the run in .*trained-cls-seed5 /.test(l)),
      one.join('\n'),
    );
    assert.deepEqual(
      r5.points.map((p) => p.seed),
      [5, 5],
    );
    // A folder of the older naming (trained-<S> for --seed's run) is still used for the seed it holds.
    renameSync(join(dir, 'trained-cls-seed4'), join(dir, 'trained-cls'));
    const old: string[] = [];
    await objectStartStudy({ ...o, seeds: 1 }, (l) => old.push(l));
    assert.ok(
      old.some((l) => /nothing to do: the run in .*trained-cls /.test(l)),
      old.join('\n'),
    );
    assert.ok(!existsSync(join(dir, 'trained-cls-seed4')));
    // ... and only for it: another seed's run is not continued from seed 4's folder
    assert.equal(studyRunDir(o, 'cls', 4), join(dir, 'trained-cls'));
    assert.equal(studyRunDir(o, 'cls', 7), join(dir, 'trained-cls-seed7'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a study run again with another --steps is refused in object-start's terms, before anything trains", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-objstart-steps-'));
  try {
    const o = resolveOptions(OBJECT_STUDY_OPTIONS, { outDir: dir, trainTokens: 'cls', steps: 2, points: 1, testSize: 16, ...TOY_MODEL });
    await objectStartStudy(o, () => {});
    await assert.rejects(
      objectStartStudy({ ...o, steps: 3 }, () => {}),
      (e: Error) => {
        assert.ok(e instanceof OptionError, String(e));
        assert.equal((e as OptionError).key, 'steps');
        assert.match(e.message, /trained with other settings of --steps \(its pre-training: synthetic-size \d+ → \d+\)/);
        assert.doesNotMatch(e.message, /--synthetic-size|--no-resume/, 'no option object-start lacks');
        return true;
      },
    );
    // a run with no checkpoint to resume (killed before its first) is no reason to refuse: pretrain starts it afresh
    rmSync(join(dir, 'trained-cls-seed0', 'checkpoints'), { recursive: true, force: true });
    const r = await objectStartStudy({ ...o, steps: 3 }, () => {});
    assert.equal(r.points.at(-1)?.step, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('points whose checkpoint a finished run lacks (other --points) are named in the JSON and the table, not left out silently', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-objstart-points-'));
  try {
    const o = resolveOptions(OBJECT_STUDY_OPTIONS, { outDir: dir, trainTokens: 'cls', steps: 4, points: 1, testSize: 16, ...TOY_MODEL });
    const first = await objectStartStudy(o, () => {});
    assert.deepEqual(first.missing, []);
    assert.doesNotMatch(first.markdown, /Not scored/);
    const r = await objectStartStudy({ ...o, points: 2 }, () => {});
    assert.deepEqual(
      r.points.map((p) => p.step),
      [0, 4],
    );
    assert.deepEqual(r.missing, [{ trainedWith: 'cls', seed: 0, step: 2 }]);
    const json = JSON.parse(readFileSync(join(dir, 'object-start.json'), 'utf8'));
    assert.deepEqual(json.missing, r.missing);
    assert.match(readFileSync(join(dir, 'object-start.md'), 'utf8'), /Not scored, .*: S = cls seed 0 step 2\./);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a diverged run's advice names object-start's options (it named --warmup-epochs, --no-resume and metrics.jsonl)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-objstart-nan-'));
  try {
    const o = resolveOptions(OBJECT_STUDY_OPTIONS, { outDir: dir, trainTokens: 'cls', steps: 4, points: 1, testSize: 16, blr: 1e8, ...TOY_MODEL });
    const lines: string[] = [];
    await assert.rejects(
      objectStartStudy(o, (l) => lines.push(l)),
      (e: Error) => {
        assert.match(e.message, /diverged .*a lower --blr or a larger --warmup-fraction/);
        assert.doesNotMatch(e.message, /metrics\.jsonl/);
        return true;
      },
    );
    const advice = lines.find((l) => /became NaN\/Inf/.test(l)) ?? '';
    assert.match(advice, /a lower --blr or a larger --warmup-fraction/, lines.join('\n'));
    assert.doesNotMatch(advice, /--warmup-epochs|--no-resume/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a test set beyond memory is refused before work (--test-size 1e9 grew to 8 GB, then failed on a typed array length)', () => {
  assert.throws(() => objectStartCommand.parse(['--test-size', '1000000000']), /option 'testSize': must be <= 1000000, got 1000000000/);
  assert.throws(
    () => objectStartCommand.parse(['--test-size', '200000']),
    /option 'testSize': 200000 test images of 32² take 2\.5 GiB in memory, more than 2: lower --test-size or --img-size/,
  );
  assert.ok(objectStartCommand.parse(['--test-size', '100000']));
});

test('--seeds: a row that one seed alone scored gives that value, not "± 0.0" (the sample std of one value is undefined, not 0)', () => {
  const o = resolveOptions(OBJECT_STUDY_OPTIONS, { seeds: 2, steps: 4, points: 1, testSize: 16, ...TOY_MODEL });
  const point = (seed: number, step: number, f: number) => ({
    trainedWith: 'cls' as const,
    seed,
    step,
    byTokens: { cls: { fraction: f, stdErr: 0.1 }, gap: { fraction: f, stdErr: 0.1 }, self: { fraction: f, stdErr: 0.1 } },
    randomCentre: 0.25,
  });
  const md = studyMarkdown({
    format: 'semaim.object-start/1',
    options: o,
    n: 16,
    points: [point(0, 0, 0.25), point(0, 4, 0.5), point(1, 0, 0.75)],
    missing: [{ trainedWith: 'cls', seed: 1, step: 4 }],
  });
  const rows = md.split('\n').filter((l) => /^\| cls \|/.test(l));
  assert.equal(rows[0].split('|')[3].trim(), '50.0 ± 35.4', 'both seeds: mean ± sample std');
  assert.equal(rows[1].split('|')[3].trim(), '50.0 (1 of 2 seeds)', rows[1]);
});

test("--steps × --batch-size beyond the synthetic images a run may draw is refused in object-start's terms (it named --synthetic-size, which object-start has not)", () => {
  for (const argv of [
    ['--steps', '2000000'],
    ['--batch-size', '100000000'],
  ])
    assert.throws(
      () => objectStartCommand.parse(argv),
      (e: unknown) =>
        e instanceof OptionError &&
        e.key === 'steps' &&
        /--batch-size/.test(e.flagMessage) &&
        !/synthetic-size/.test(e.flagMessage) &&
        /more than 100000000/.test(e.flagMessage),
      argv.join(' '),
    );
  assert.ok(objectStartCommand.parse(['--steps', '1562500'])); // 1,562,500 × 64 = 100,000,000
});
