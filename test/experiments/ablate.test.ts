import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OptionError, resolveOptions } from '../../src/util/options';
import { DataError } from '../../src/util/errors';
import { ABLATE_OPTIONS } from '../../src/experiments/ablate-options';
import {
  RANDOM_INIT,
  ablate,
  ablationRecipe,
  currentFingerprint,
  fingerprint,
  limitTrainData,
  pretrainOptionsFor,
  timeLoader,
  type AblationResult,
  type AblationRun,
} from '../../src/experiments/ablate';
import { ablationMarkdown, stat, summarise } from '../../src/experiments/ablate-report';
import { jsonText } from '../../src/util/safe-write';
import { PRETRAIN_OPTIONS, modelConfigFrom } from '../../src/train/pretrain-options';
import { TrainData } from '../../src/train/pretrain';
import { memoryFactories, memoryTrainData, toyImages } from '../eval/helpers';
import { TINY_ABLATION, TINY_PRETRAIN } from './helpers';

/** The small two-class labelled data of the tests that run whole ablations. */
const toyData = () => memoryFactories(toyImages(16, 2, 8, 1), toyImages(8, 2, 8, 2));

test('a tiny ablation: matched pre-trains per order, k-NN + linear probe, table and JSON, resumable', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-'));
  const train = toyImages(32, 3, 8, 1);
  const testData = toyImages(12, 3, 8, 2);
  const o = resolveOptions(ABLATE_OPTIONS, {
    orders: 'raster,semantic',
    seeds: 2,
    budget: 'small',
    ...TINY_PRETRAIN,
    pretrainLimit: 20,
    linprobeEpochs: 2,
    k: '5,20',
    trainLimit: 30,
    outDir: dir,
    threads: 1,
  });
  const lines: string[] = [];
  const r = await ablate(o, memoryFactories(train, testData), { log: (l) => lines.push(l), command: 'semaim ablate --orders raster,semantic' });
  assert.equal(r.runs.length, 6, '2 orders + the random-init baseline, 2 seeds each');
  assert.deepEqual(
    r.summary.map((s) => s.order),
    ['raster', 'semantic', RANDOM_INIT],
  );
  for (const run of r.runs.filter((x) => x.order !== RANDOM_INIT)) {
    assert.equal(run.pretrain.steps, 2, 'pretrain-limit 20 / batch 8: 2 whole batches per epoch');
    assert.equal(run.pretrain.imagesPerEpoch, 16);
    assert.match(run.pretrain.sha256, /^[0-9a-f]{64}$/);
    assert.ok(Number.isFinite(run.pretrain.lastLoss));
    for (const p of ['cls', 'mean']) {
      assert.deepEqual(
        run.eval[p].knn.map((k) => k.k),
        [5, 20],
      );
      assert.ok(run.eval[p].linprobe.top1 >= 0 && run.eval[p].linprobe.top1 <= 1);
    }
  }
  // Same seed, same initial weights: the raster and semantic runs differ only in the order.
  const cfgA = JSON.parse(readFileSync(join(dir, 'runs', 'raster-seed0', 'config.json'), 'utf8'));
  const cfgB = JSON.parse(readFileSync(join(dir, 'runs', 'semantic-seed0', 'config.json'), 'utf8'));
  const diff = Object.keys(cfgA.options).filter((k) => JSON.stringify(cfgA.options[k]) !== JSON.stringify(cfgB.options[k]));
  assert.deepEqual(diff.sort(), ['order', 'outDir']);
  assert.equal(r.headlineK, 20);
  const md = readFileSync(join(dir, 'ablation.md'), 'utf8');
  assert.match(md, /\| order \| runs \| k-NN top-1 % \(k=20, \[CLS\]\) \|/);
  assert.match(md, /\| raster \| 2 \| [\d.]+ ± [\d.]+ \|/);
  assert.match(md, /\| none \(random init\) \| 2 \| .* \| – \| – \|\n/);
  assert.match(md, /semaim ablate --orders raster,semantic/);
  assert.match(md, /, 30 train \/ 12 test images\./, 'the images the evaluation used (the small recipe allows 1000 test images)');
  assert.deepEqual(r.runs[0].evalImages, { train: 30, test: 12 });
  assert.match(md, /, 1 epochs of 16 images/, 'pre-training: the 2 whole batches of pretrain-limit 20 of the 32 images');
  const json = JSON.parse(readFileSync(join(dir, 'ablation.json'), 'utf8'));
  assert.equal(json.format, 'semaim.ablation/1');
  assert.equal(json.runs.length, 6);
  assert.equal(json.summary[0].scores.mean.knnTop1.n, 2);
  // Running again reuses every finished run.
  const again: string[] = [];
  const r2 = await ablate(o, memoryFactories(train, testData), { log: (l) => again.push(l) });
  assert.equal(again.filter((l) => /already done/.test(l)).length, 6);
  assert.deepEqual(r2.summary, r.summary);
  assert.ok(existsSync(join(dir, 'runs', 'semantic-seed1', 'ablation-eval.json')));
  assert.equal(r2.complete, true);
  // A stored evaluation whose scores are not objects is set aside and the run evaluated again (the table crashed on it).
  const evalFile = join(dir, 'runs', 'raster-seed1', 'ablation-eval.json');
  const stored = JSON.parse(readFileSync(evalFile, 'utf8'));
  writeFileSync(evalFile, JSON.stringify({ ...stored, eval: { ...stored.eval, cls: 5 } }));
  const redo: string[] = [];
  const r2b = await ablate(o, memoryFactories(train, testData), { log: (l) => redo.push(l) });
  assert.ok(
    redo.some((l) => /'eval' holds a score that is not an object; moved to .*, evaluating the run again/.test(l)),
    redo.join('\n'),
  );
  assert.deepEqual(
    r2b.summary.map((x) => [x.runs, x.scores]),
    r.summary.map((x) => [x.runs, x.scores]),
    'the same scores',
  );
  // A moved (or copied) folder is still the finished ablation: its runs are found where they are now.
  const moved = `${dir}-moved`;
  renameSync(dir, moved);
  const r3 = await ablate({ ...o, outDir: moved }, memoryFactories(train, testData), { log: () => {} });
  assert.equal(r3.complete, true, 'a moved ablation is complete');
  assert.ok(r3.runs.every((x) => x.runDir.startsWith(moved)));
  assert.doesNotMatch(readFileSync(join(moved, 'ablation.md'), 'utf8'), /Partial/);
  renameSync(moved, dir);
  // ... but not with another recipe in the same folder.
  const other = resolveOptions(ABLATE_OPTIONS, { ...o, epochs: 2 });
  await assert.rejects(ablate(other, memoryFactories(train, testData), { log: () => {} }), /made with another recipe \(pretrain\.epochs: 1 → 2/);
  rmSync(dir, { recursive: true, force: true });
});

test('the recipes resolve to valid pre-training configs', () => {
  for (const budget of ['full', 'small'] as const) {
    const o = resolveOptions(ABLATE_OPTIONS, { budget });
    const p = pretrainOptionsFor(o, ablationRecipe(budget), 'multicenter', 0, '/tmp/x');
    const cfg = modelConfigFrom(p);
    assert.equal(cfg.imgSize, 32);
    assert.equal(cfg.patchSize, 4);
    assert.equal(cfg.order.type, 'multicenter');
    assert.equal(p.blur, false);
  }
  assert.equal(modelConfigFrom(pretrainOptionsFor(resolveOptions(ABLATE_OPTIONS, {}), ablationRecipe('full'), 'semantic', 0, '/tmp/x')).embedDim, 192);
});

test('a fingerprint recorded before an option existed matches while the option has the value its absence means (pretrain resumes such a run)', () => {
  const recipe = ablationRecipe('small');
  const o = resolveOptions(ABLATE_OPTIONS, { budget: 'small' });
  const opts = pretrainOptionsFor(o, recipe, 'semantic', 0, '/tmp/x');
  const absent = Object.entries(PRETRAIN_OPTIONS).filter(([, spec]) => 'absentMeans' in spec);
  assert.ok(absent.some(([k]) => k === 'emaSchedule'));
  for (const [key, spec] of absent) {
    const absentMeans = (spec as { absentMeans: unknown }).absentMeans;
    // an ablation folder from before 2026-12-03 has no emaSchedule; --ema off resolves it to 'constant'
    const now = fingerprint({ ...opts, [key]: absentMeans }, recipe, [20]);
    const before = { ...now, pretrain: Object.fromEntries(Object.entries(now.pretrain as object).filter(([k]) => k !== key)) };
    assert.deepEqual(currentFingerprint(before), now, `${key} absent = ${String(absentMeans)}`);
  }
  // another value than the absent one is another recipe: an old folder (which ran without it) is refused
  const authors = fingerprint({ ...opts, ema: true, emaSchedule: 'authors' }, recipe, [20]);
  assert.equal((authors.pretrain as Record<string, unknown>).emaSchedule, 'authors');
});

test('a fingerprint recorded before --shuffle-buffer, --upload or --order-precision existed matches at what their absence meant', () => {
  // semaim before 3795bf2 (2026-12-02) had no --shuffle-buffer (nor shard datasets, which alone read it); before
  // 5cff3ac and a2a632b (2026-11-26) no --upload (the loader handed float32) nor --order-precision (the similarity
  // pass ran in float32): their folders were refused as 'made with another recipe (pretrain.shuffleBuffer: – → 1000)'
  const recipe = ablationRecipe('small');
  const o = resolveOptions(ABLATE_OPTIONS, { budget: 'small' });
  const opts = pretrainOptionsFor(o, recipe, 'semantic', 0, '/tmp/x');
  const without = (fp: Record<string, unknown>, key: string) => ({
    ...fp,
    pretrain: Object.fromEntries(Object.entries(fp.pretrain as object).filter(([k]) => k !== key)),
  });
  for (const [key, absent] of [
    ['shuffleBuffer', 1000],
    ['upload', 'float32'],
    ['orderPrecision', 'fp32'],
  ] as const) {
    const now = fingerprint({ ...opts, [key]: absent }, recipe, [20]);
    assert.deepEqual(currentFingerprint(without(now, key)), now, `${key} absent = ${absent}`);
  }
  // the order's similarity pass under --precision ('same') is not what a run before the option computed
  const same = fingerprint({ ...opts, precision: 'bf16', orderPrecision: 'same' }, recipe, [20]);
  assert.notDeepEqual(currentFingerprint(without(same, 'orderPrecision')), same);
});

test('limitTrainData caps the batches per epoch and honours the start index', async () => {
  const data: TrainData = memoryTrainData(toyImages(40, 2, 8, 1), 4, 1);
  const lim = limitTrainData(data, 3);
  assert.equal(lim.batchesPerEpoch, 3);
  let n = 0;
  for await (const _ of lim.epoch(0, 0)) n++;
  assert.equal(n, 3);
  n = 0;
  for await (const _ of lim.epoch(0, 2)) n++;
  assert.equal(n, 1);
  n = 0;
  for await (const _ of lim.epoch(0, 3)) n++;
  assert.equal(n, 0, 'a start at the cap: the epoch is done');
  assert.deepEqual(stat([1, 2, 3]), { mean: 2, std: 1, n: 3 });
  // one seed has no spread to give: NaN, written as null in ablation.json, not a measured 0
  assert.deepEqual(stat([0.5]), { mean: 0.5, std: NaN, n: 1 });
  assert.equal(jsonText(stat([0.5, NaN])), '{\n  "mean": 0.5,\n  "std": null,\n  "n": 1\n}\n');
});

test('timeLoader measures a short epoch too: an epoch of 3 batches or fewer ended in its warm-up and cost nothing in the plan', async () => {
  const slowData = (batches: number): TrainData => ({
    batchesPerEpoch: batches,
    async *epoch() {
      for (let i = 0; i < batches; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5)); // each batch takes a while to load
        yield {} as never;
      }
    },
    close() {},
  });
  for (const batches of [1, 2, 3]) assert.ok((await timeLoader(slowData(batches))) > 0, `${batches} batches: the loader's time is measured`);
  assert.equal(await timeLoader(slowData(0)), 0, 'an empty epoch has nothing to measure');
});

test('a k above the training images is refused before any pre-training (it failed after the first run was written), leaving no --out-dir', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-k-'));
  try {
    const out = join(dir, 'out');
    const { commands } = await import('../../src/cli/commands');
    await assert.rejects(
      commands.ablate.run(['--dataset', 'synthetic', '--train-limit', '15', '--out-dir', out, '--threads', '1']),
      (e: Error) => e instanceof OptionError && e.key === 'k' && /k = 30 exceeds the 15 training images of --train-limit/.test(e.message),
    );
    assert.equal(existsSync(out), false, 'nothing written');
    // a dataset smaller than the limit: known once it is opened, still before the first pre-training
    const o = resolveOptions(ABLATE_OPTIONS, {
      orders: 'raster',
      ...TINY_PRETRAIN,
      k: '5,20',
      outDir: out,
      threads: 1,
    });
    await assert.rejects(
      ablate(o, memoryFactories(toyImages(12, 3, 8, 1), toyImages(6, 3, 8, 2)), {}),
      (e: Error) => e instanceof OptionError && e.key === 'k' && /k = 20 exceeds the 12 training images/.test(e.message),
    );
    assert.equal(existsSync(join(out, 'runs', 'raster-seed0')), false, 'no run was pre-trained');
    assert.equal(existsSync(out), false, 'nor is the --out-dir it made left behind empty');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an evaluation training split of one image is refused before any pre-training (the linear probe of the first run failed on it)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-one-'));
  try {
    const out = join(dir, 'out');
    const { commands } = await import('../../src/cli/commands');
    await assert.rejects(
      commands.ablate.run([
        ...['--dataset', 'synthetic', '--train-limit', '1', '--test-limit', '4', '--k', '1', '--orders', 'raster', '--no-baseline', '--budget', 'small'],
        ...['--img-size', '8', '--patch-size', '4', '--embed-dim', '16', '--depth', '1', '--num-heads', '2', '--decoder-depth', '1'],
        ...['--epochs', '1', '--batch-size', '8', '--pretrain-limit', '16', '--out-dir', out, '--threads', '1'],
      ]),
      (e: Error) => e instanceof OptionError && e.key === 'trainLimit' && /at least 2/.test(e.message),
    );
    assert.equal(existsSync(out), false, 'nothing written');
    // a training split of one image: known once it is opened, still before the first pre-training
    const factories = memoryFactories(toyImages(16, 2, 8, 1), toyImages(6, 2, 8, 2));
    const make = factories.makeEvalData.bind(factories);
    factories.makeEvalData = async (r) => (r.split === 'train' ? toyImages(16, 2, 8, 1).subset(1) : make(r));
    const o = resolveOptions(ABLATE_OPTIONS, { orders: 'raster', ...TINY_PRETRAIN, pretrainLimit: 16, k: '1', outDir: out, threads: 1, baseline: false });
    await assert.rejects(ablate(o, factories, { log: () => {} }), (e: Error) => e instanceof DataError && /1 training image.*at least 2/.test(e.message));
    assert.equal(existsSync(join(out, 'runs', 'raster-seed0')), false, 'no run was pre-trained');
    assert.equal(existsSync(out), false, 'nor is the --out-dir it made left behind empty');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("ablation.md's numbers: the seeds it names, pre-training in minutes, the evaluation limits asked for, a diverged run in its own row", () => {
  const recipe = ablationRecipe('small');
  const o = resolveOptions(ABLATE_OPTIONS, { orders: 'raster,semantic', seed: 3, seeds: 2, budget: 'small', trainLimit: 400 });
  const run = (order: string, seed: number, seconds: number): AblationRun =>
    ({ order, seed, pretrain: { lastLoss: 0.5, seconds }, eval: {}, evalSeconds: 0 }) as unknown as AblationRun;
  const runs = [run('raster', 3, 90), run('raster', 4, 150), run('semantic', 3, 120)];
  const diverged = [{ order: 'semantic', seed: 4, runDir: 'x', step: 7, checkpoint: null, fingerprint: {} }];
  const r = {
    budget: 'small',
    options: o,
    recipe,
    pretrainOptions: pretrainOptionsFor(o, recipe, 'raster', 3, '/x'),
    headlineK: 20,
    runs,
    diverged,
    summary: summarise(runs, ['raster', 'semantic'], recipe.poolings, 20, diverged),
    seconds: 600,
    complete: true,
    planned: 4,
  } as unknown as Omit<AblationResult, 'markdown'>;
  const md = ablationMarkdown(r);
  assert.match(md, /seeds 3\.\.4\)/, 'seed 3 and --seeds 2 are seeds 3..4');
  // pre-train min: 90 s and 150 s are 2.0 ± 0.7 min; one run of 120 s is 2.0
  assert.match(md, /\| raster \| 2 \|.*\| 0\.5000 ± 0\.0000 \| 2\.0 ± 0\.7 \|\n/);
  assert.match(md, /\| semantic \| 1 \(1 diverged\) \|.*\| 0\.5000 \| 2\.0 \|\n/);
  assert.match(md, /, at most 400 train \/ at most 1000 test images\./, "--train-limit 400 and the small recipe's 1000 test images");
  assert.match(md, /Wall time of this call 10\.0 min; pre-training and evaluation summed over the runs 6\.0 min\./);
  // partial: the same command continues runs still to do, not a diverged one (it diverges again)
  assert.match(ablationMarkdown({ ...r, complete: false, planned: 5 }), /\*\*Partial: 3 of 5 runs done; run the same command again to continue\.\*\*/);
  assert.match(ablationMarkdown({ ...r, complete: false }), /\*\*Partial: 3 of 4 runs done\.\*\*/);
});

test('an evaluation split none of whose images could be read is a DataError, not scores of null kept in ablation-eval.json', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-unreadable-'));
  try {
    const factories = memoryFactories(toyImages(32, 3, 8, 1), toyImages(12, 3, 8, 2));
    const make = factories.makeEvalData.bind(factories);
    // every test image unusable: each row of each batch stands in for one (as a folder of files that do not decode)
    factories.makeEvalData = async (r) => {
      const d = await make(r);
      if (r.split !== 'test') return d;
      return {
        ...d,
        size: d.size,
        numClasses: d.numClasses,
        imageShape: d.imageShape,
        async *batches(b) {
          for await (const x of d.batches(b)) yield { ...x, standIns: Int32Array.from(x.labels.keys()) };
        },
        close: () => d.close(),
      };
    };
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, trainLimit: 30, cacheEvalImages: false, outDir: dir });
    await assert.rejects(
      ablate(o, factories, { log: () => {} }),
      (e: unknown) => e instanceof DataError && /^test data: none of its 12 images could be read/.test((e as Error).message),
    );
    assert.equal(existsSync(join(dir, 'runs', 'raster-seed0', 'ablation-eval.json')), false, 'no scores kept for the run');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ablation.md names the batch the linear probe trained with: all the training features when they are fewer than its batch', () => {
  const recipe = ablationRecipe('small'); // probe batch 256
  const o = resolveOptions(ABLATE_OPTIONS, { orders: 'raster', budget: 'small', trainLimit: 100, k: '10' });
  const text = (evalImages?: { train: number; test: number }) => {
    const runs = [{ order: 'raster', seed: 0, pretrain: { lastLoss: 0.5, seconds: 60 }, eval: {}, evalSeconds: 0, evalImages }] as unknown as AblationRun[];
    const r = {
      budget: 'small',
      options: o,
      recipe,
      pretrainOptions: pretrainOptionsFor(o, recipe, 'raster', 0, '/x'),
      headlineK: 10,
      runs,
      diverged: [],
      summary: summarise(runs, ['raster'], recipe.poolings, 10),
      seconds: 60,
      complete: true,
      planned: 1,
    } as unknown as Omit<AblationResult, 'markdown'>;
    return /linear probe: [^\n]*/.exec(ablationMarkdown(r))![0];
  };
  // 100 training features: one batch of 100 per epoch, lr = blr × 100 / 256 (it said "batch 256")
  assert.match(text({ train: 100, test: 50 }), /SGD momentum 0\.9, batch 100 \(every training feature, fewer than 256\), blr 0\.1,/);
  assert.match(text({ train: 5000, test: 1000 }), /SGD momentum 0\.9, batch 256, blr 0\.1,/);
  assert.match(text(undefined), /SGD momentum 0\.9, batch 256, blr 0\.1,/, 'runs stored before their image counts: the batch asked for');
});

test("summarise: k-NN top-1 at the headline k, whichever k the runs list first; each pooling's own scores", () => {
  const scores = (knn5: number, knn20: number, lin: number) => ({
    knn: [
      { k: 5, top1: knn5 },
      { k: 20, top1: knn20 },
    ],
    linprobe: { top1: lin, top5: 1 },
  });
  const run = (seed: number, cls: number) =>
    ({
      order: 'raster',
      seed,
      pretrain: { lastLoss: 0.5, seconds: 1 },
      eval: { cls: scores(0.1, cls, 0.3), mean: scores(0.2, 0.6, 0.4) },
      evalSeconds: 0,
    }) as unknown as AblationRun;
  const [s] = summarise([run(0, 0.5), run(1, 0.7)], ['raster'], ['cls', 'mean'], 20);
  assert.ok(Math.abs(s.scores.cls.knnTop1.mean - 0.6) < 1e-12, `k-NN at k 20: ${s.scores.cls.knnTop1.mean}`);
  assert.ok(Math.abs(s.scores.mean.knnTop1.mean - 0.6) < 1e-12 && Math.abs(s.scores.mean.linTop1.mean - 0.4) < 1e-12);
  assert.ok(Number.isNaN(summarise([run(0, 0.5)], ['raster'], ['cls'], 10)[0].scores.cls.knnTop1.mean), 'a k the runs did not evaluate is no number');
});

// The child runs the ablation of `o` and exits with its error's exitCode, or 3 when it resolves.
async function ablateInChild(
  o: Record<string, unknown>,
  prelude: string,
  log: string,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const src = JSON.stringify(join(__dirname, '..', '..', 'src'));
  const helpers = JSON.stringify(join(__dirname, '..', 'eval', 'helpers'));
  const script = `
    const src = ${src};
    ${prelude}
    const { resolveOptions } = require(${src} + '/util/options');
    const { ABLATE_OPTIONS } = require(${src} + '/experiments/ablate-options');
    const { ablate } = require(${src} + '/experiments/ablate');
    const { memoryFactories, toyImages } = require(${helpers});
    ablate(resolveOptions(ABLATE_OPTIONS, ${JSON.stringify(o)}), memoryFactories(toyImages(16, 2, 8, 1), toyImages(8, 2, 8, 2)), { log: ${log} })
      .then(() => { process.exitCode = 3; }, (e) => { process.exitCode = e.exitCode ?? 1; console.error(e.message); });`;
  const p = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => p.on('exit', (c, s) => resolve([c, s])));
  return { code, signal, stderr };
}

test("a Ctrl-C while the ablation writes a file (a run's first drafts, its evaluation, the tables) leaves no .tmp-* file; it stops with exit code 130 unless the file was the last", async () => {
  // the first ablation-eval.json is raster's: the baseline is still to do
  const drafts: [string, number][] = [
    ['ablation-pretrain.json', 130],
    ['config.json', 130],
    ['ablation-eval.json', 130],
    ['ablation.json', 3],
  ];
  for (const [draft, expected] of drafts) {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-draft-signal-'));
    try {
      // the SIGINT arrives while the draft is under its temporary name, as a terminal's Ctrl-C to a --jobs
      // process at start-up may: with no handler yet, its default action killed the process there
      const o = { orders: 'raster', budget: 'small', ...TINY_PRETRAIN, linprobeEpochs: 1, k: '5', outDir: join(dir, 'ablation'), threads: 1 };
      const prelude = `
        const fs = require('node:fs');
        const writeFileSync = fs.writeFileSync;
        let sent = false;
        fs.writeFileSync = (...args) => {
          writeFileSync(...args);
          if (!sent && ${JSON.stringify(draft)} + '.tmp-' === String(args[0]).split('/').pop().replace(/tmp-.*$/, 'tmp-')) {
            sent = true;
            process.kill(process.pid, 'SIGINT');
          }
        };`;
      const r = await ablateInChild(o, prelude, '() => {}');
      assert.deepEqual([r.code, r.signal], [expected, null], `a SIGINT during the ${draft} draft (${r.stderr})`);
      const left = readdirSync(dir, { recursive: true }).filter((f) => String(f).includes('.tmp-'));
      assert.deepEqual(left, [], `no temporary file of ${draft} left`);
      if (draft === 'ablation.json')
        assert.equal(JSON.parse(readFileSync(join(dir, 'ablation', 'ablation.json'), 'utf8')).complete, true, 'the tables were written whole');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('a Ctrl-C while the ablation evaluates an encoder stops it at the next batch with exit code 130; that run has no result, the runs before keep theirs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-eval-signal-'));
  try {
    const o = {
      orders: 'raster',
      budget: 'small',
      ...TINY_PRETRAIN,
      linprobeEpochs: 1,
      k: '5',
      outDir: join(dir, 'ablation'),
      threads: 1,
      cacheEvalImages: false,
    };
    // The signal comes on the baseline's line, before its evaluation; its images then come as from a disk,
    // with the event loop turning while they are read (the toy images in memory come at once).
    const prelude = `
      const { MemoryLabelledData } = require(src + '/data/sources/memory-labelled');
      const batches = MemoryLabelledData.prototype.batches;
      MemoryLabelledData.prototype.batches = async function* (o) {
        for await (const b of batches.call(this, o)) {
          if (globalThis.signalled) await new Promise((resolve) => setTimeout(resolve, 20));
          yield b;
        }
      };`;
    const log = "(l) => { if (/baseline: random initialisation/.test(l)) { globalThis.signalled = true; process.kill(process.pid, 'SIGINT'); } }";
    const r = await ablateInChild(o, prelude, log);
    assert.deepEqual([r.code, r.signal], [130, null], `stopped as a process stopped by SIGINT (${r.stderr})`);
    assert.match(r.stderr, /interrupted while evaluating 'none \(random init\)' seed 0; run the same command again to continue/);
    const runs = join(dir, 'ablation', 'runs');
    assert.ok(existsSync(join(runs, 'raster-seed0', 'ablation-eval.json')), 'the raster run evaluated before the signal keeps its result');
    assert.ok(!existsSync(join(runs, 'random-init-seed0', 'ablation-eval.json')), 'the interrupted evaluation wrote no result');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("ablation.md names the evaluation limits asked for whole when only one is set (' / at most 500 test images' after no train limit)", () => {
  const text = (limits: Record<string, number>) => {
    const o = resolveOptions(ABLATE_OPTIONS, { budget: 'full', ...limits });
    const recipe = ablationRecipe('full');
    const r = {
      budget: 'full',
      options: o,
      recipe,
      pretrainOptions: pretrainOptionsFor(o, recipe, 'raster', 0, '/x'),
      headlineK: 20,
      runs: [],
      diverged: [],
      summary: [],
      seconds: 0,
      complete: false,
      planned: 1,
    } as unknown as Omit<AblationResult, 'markdown'>;
    return /epochs on cached features(.*)\n/.exec(ablationMarkdown(r))![1];
  };
  assert.equal(text({ testLimit: 500 }), ', at most 500 test images.');
  assert.equal(text({ trainLimit: 400 }), ', at most 400 train images.');
  assert.equal(text({ trainLimit: 400, testLimit: 500 }), ', at most 400 train / at most 500 test images.');
  assert.equal(text({}), '.');
});

test("ablation.json's pretrainOptions holds only what every pre-training got: not the first row's tokens of S (orders 'semantic:self,raster' recorded similarityTokens 'self' for all)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-common-'));
  try {
    const o = resolveOptions(ABLATE_OPTIONS, { orders: 'semantic:self,raster', budget: 'small', ...TINY_PRETRAIN, k: '5', outDir: dir, threads: 1 });
    o.stopAfterMinutes = 1e-6; // no run: only the record
    const r = await ablate(o, toyData(), { log: () => {} });
    assert.equal(r.runs.length, 0);
    assert.equal(r.pretrainOptions.similarityTokens, undefined);
    assert.equal(JSON.parse(readFileSync(join(dir, 'ablation.json'), 'utf8')).pretrainOptions.similarityTokens, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('another evaluation recipe is refused before any work, also when a new run comes before a finished one (it trained and evaluated the new run first, leaving a folder that neither recipe could continue)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-refuse-'));
  try {
    const first = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, outDir: dir });
    assert.equal((await ablate(first, toyData(), { log: () => {} })).complete, true);
    // a row added before the finished one, and another linear-probe length
    const other = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, orders: 'stochastic,raster', baseline: false, linprobeEpochs: 2, outDir: dir });
    await assert.rejects(ablate(other, toyData(), { log: () => {} }), /raster-seed0.*made with another recipe \(linprobe\.epochs: 1 → 2/s);
    assert.equal(existsSync(join(dir, 'runs', 'stochastic-seed0')), false, 'the new row was not pre-trained');
    // the recipe the folder was made with still continues it
    const again = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, orders: 'stochastic,raster', baseline: false, outDir: dir });
    assert.equal((await ablate(again, toyData(), { log: () => {} })).complete, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Flips a byte near the end of a checkpoint's model.safetensors (its tensor data, not its header): corrupt, as its SHA-256 says. */
function damageWeights(checkpoint: string): void {
  const weights = join(checkpoint, 'model.safetensors');
  const bytes = readFileSync(weights);
  bytes[bytes.length - 5] ^= 0xff;
  writeFileSync(weights, bytes);
}

test('a finished pre-training whose last step checkpoint is corrupt is evaluated from the checkpoint it resumed to (checkpoints/best), not refused as having none', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-corrupt-'));
  try {
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, outDir: dir });
    const first = await ablate(o, toyData(), { log: () => {} });
    // killed after its pre-training, before its evaluation was written; then its step checkpoint was damaged
    const run = join(dir, 'runs', 'raster-seed0');
    rmSync(join(run, 'ablation-eval.json'));
    const step = join(
      run,
      'checkpoints',
      readdirSync(join(run, 'checkpoints')).find((n) => n.startsWith('step-'))!,
    );
    damageWeights(step);
    const lines: string[] = [];
    const r = await ablate(o, toyData(), { log: (l) => lines.push(l) });
    assert.ok(
      lines.some((l) => /is corrupted/.test(l) && /resumed from .*checkpoints\/best/.test(lines.join('\n'))),
      lines.join('\n'),
    );
    assert.equal(r.complete, true);
    assert.equal(r.runs[0].pretrain.checkpoint, join(run, 'checkpoints', 'best'));
    assert.equal(r.runs[0].pretrain.sha256, first.runs[0].pretrain.sha256, 'the same weights, from the copy pretrain went on from');
    assert.deepEqual(r.summary, first.summary);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a finished run whose scored checkpoint was damaged since is evaluated again from the checkpoint pretrain goes on from, not reused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-scored-'));
  try {
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, outDir: dir });
    const first = await ablate(o, toyData(), { log: () => {} });
    const run = join(dir, 'runs', 'raster-seed0');
    const step = first.runs[0].pretrain.checkpoint!;
    assert.match(step, /step-/);
    damageWeights(step);
    const lines: string[] = [];
    const r = await ablate(o, toyData(), { log: (l) => lines.push(l) });
    assert.ok(
      lines.some((l) => /raster seed 0: its checkpoint .*step-.* changed since it was evaluated, evaluating it again/.test(l)),
      lines.join('\n'),
    );
    assert.ok(!lines.some((l) => /already done/.test(l)), lines.join('\n'));
    assert.equal(r.runs[0].pretrain.checkpoint, join(run, 'checkpoints', 'best'));
    assert.equal(r.runs[0].pretrain.sha256, first.runs[0].pretrain.sha256, 'the same weights, from the copy pretrain went on from');
    // the next call reuses the new evaluation, of a checkpoint that holds its weights
    const again: string[] = [];
    await ablate(o, toyData(), { log: (l) => again.push(l) });
    assert.ok(
      again.some((l) => /raster seed 0: already done/.test(l)),
      again.join('\n'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a finished run evaluated on the images of another --seed is evaluated again, not tabulated beside runs evaluated on this call's images", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-evalseed-'));
  try {
    // --train-limit and --test-limit draw a subset seeded by --seed (synthetic data is made from it)
    const at = (seed: number) =>
      resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, seeds: 2, seed, trainLimit: 8, testLimit: 4, outDir: dir });
    await ablate(at(0), toyData(), { log: () => {} });
    const lines: string[] = [];
    const r = await ablate(at(1), toyData(), { log: (l) => lines.push(l) });
    assert.deepEqual(
      r.runs.map((x) => [x.seed, x.evalSeed]),
      [
        [1, 1],
        [2, 1],
      ],
    );
    assert.ok(!lines.some((l) => /raster seed 1: already done/.test(l)), lines.join('\n'));
    assert.ok(
      lines.some((l) => /nothing to do: the run in .*raster-seed1/.test(l)),
      'its pre-training is not repeated',
    );
    // the same call again reuses both
    const again: string[] = [];
    await ablate(at(1), toyData(), { log: (l) => again.push(l) });
    assert.equal(again.filter((l) => /already done/.test(l)).length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
