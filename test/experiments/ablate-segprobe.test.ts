// `semaim ablate --eval segprobe`: the segmentation probe as an extra column, scored once per run
// and kept in the run folder, so that it can be added to a finished ablation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OptionError, resolveOptions } from '../../src/util/options';
import { DataError } from '../../src/util/errors';
import { ABLATE_OPTIONS } from '../../src/experiments/ablate-options';
import { RANDOM_INIT, ablate, ablationExitCode, measureAblation } from '../../src/experiments/ablate';
import { ablationSegRecipe } from '../../src/experiments/ablate-segprobe';
import { memoryFactories, toyImages } from '../eval/helpers';
import { squares } from '../eval/seg-helpers';
import { TINY_ABLATION, TINY_PRETRAIN } from './helpers';
import { readCheckpointState, stateDigest } from '../../src/io/checkpoint';
import { sha256File } from '../../src/io/file-sha256';

/** Toy labelled images and the toy squares as the masked data. */
const segFactories = () => ({
  ...memoryFactories(toyImages(32, 3, 8, 1), toyImages(12, 3, 8, 2)),
  makeSegData: (r: { split: string }) => (r.split === 'train' ? squares(32, 1) : squares(12, 2)),
});

test('ablate --eval segprobe adds a seg mIoU column, scores every run once and adds it to a finished ablation', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-'));
  try {
    const train = toyImages(32, 3, 8, 1);
    const testData = toyImages(12, 3, 8, 2);
    const segRequests: string[] = [];
    const factories = {
      ...memoryFactories(train, testData),
      makeSegData: (r: { split: string; imgSize: number; dataset: string }) => {
        segRequests.push(`${r.dataset}/${r.split}@${r.imgSize}`);
        return r.split === 'train' ? squares(32, 1) : squares(12, 2);
      },
    };
    const base = {
      orders: 'raster',
      seeds: 1,
      budget: 'small',
      ...TINY_PRETRAIN,
      pretrainLimit: 16,
      linprobeEpochs: 1,
      k: '5',
      trainLimit: 30,
      outDir: dir,
      threads: 1,
      pooling: 'cls',
      dataset: 'synthetic',
    };
    // Without the column first: a finished ablation.
    const plain = await ablate(resolveOptions(ABLATE_OPTIONS, base), factories, { log: () => {} });
    assert.equal(plain.runs[0].segprobe, undefined);
    assert.doesNotMatch(plain.markdown, /seg mIoU/);
    const lines: string[] = [];
    const o = resolveOptions(ABLATE_OPTIONS, { ...base, eval: 'segprobe', segprobeEpochs: 2 });
    const r = await ablate(o, factories, { log: (l) => lines.push(l) });
    assert.equal(lines.filter((l) => /already done/.test(l)).length, 2, 'pre-training and k-NN / linear probe reused');
    assert.deepEqual(segRequests, ['synthetic/train@8', 'synthetic/test@8']);
    assert.equal(r.runs.length, 2);
    for (const run of r.runs) {
      assert.ok(run.segprobe && run.segprobe.mIoU >= 0 && run.segprobe.mIoU <= 1, `${run.order}: ${run.segprobe?.mIoU}`);
      assert.equal(run.segprobe.baselineMIoU, 0.375, 'all background: (0.75 + 0) / 2');
      assert.ok(existsSync(join(run.runDir, 'ablation-segprobe.json')));
    }
    assert.notEqual(r.runs[0].segprobe!.mIoU, r.runs[1].segprobe!.mIoU, 'the pre-trained and the random-init encoders differ');
    assert.match(r.markdown, /\| order \| runs \| k-NN top-1 % \(k=5, \[CLS\]\) \| linear top-1 % \(\[CLS\]\) \| seg mIoU % \|/);
    assert.match(r.markdown, new RegExp(`\\| ${RANDOM_INIT.replace(/[()]/g, '\\$&')} \\| 1 \\| .* \\| [\\d.]+ \\| – \\| – \\|\\n`));
    assert.match(r.markdown, /seg mIoU: segmentation probe on synthetic \(2 classes\), 32 train \/ 12 test images/);
    const json = JSON.parse(readFileSync(join(dir, 'ablation.json'), 'utf8'));
    assert.equal(json.summary[0].segMIoU.n, 1);
    // Again: every score is read back, none recomputed.
    const again: string[] = [];
    const r2 = await ablate(o, factories, { log: (l) => again.push(l) });
    assert.deepEqual(
      r2.runs.map((x) => x.segprobe!.seconds),
      r.runs.map((x) => x.segprobe!.seconds),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("ablate --budget-minutes with --eval segprobe counts the segmentation probe in each run's planned evaluation", async () => {
  const opened: string[] = [];
  const factories = {
    ...memoryFactories(toyImages(32, 3, 8, 1), toyImages(12, 3, 8, 2)),
    makeSegData: (r: { split: string }) => {
      opened.push(r.split);
      return r.split === 'train' ? squares(32, 1) : squares(12, 2);
    },
  };
  const base = { orders: 'raster', seeds: 1, budget: 'small', ...TINY_PRETRAIN, pretrainLimit: 16, linprobeEpochs: 1, k: '5' };
  const o = resolveOptions(ABLATE_OPTIONS, { ...base, trainLimit: 30, threads: 1, pooling: 'cls', dataset: 'synthetic', eval: 'segprobe' });
  const lines: string[] = [];
  const m = await measureAblation(o, factories, (l) => lines.push(l));
  // the probe ran once, whole, on its own data (the toy one takes milliseconds, so its time is not compared)
  assert.deepEqual(opened.sort(), ['test', 'train']);
  assert.ok(
    lines.some((l) => /measured segmentation probe: [\d.]+ s per run/.test(l)),
    lines.join('\n'),
  );
  assert.ok(m.evalSeconds > 0);
});

test('ablate --eval segprobe needs data with masks, named before any work', () => {
  const o = resolveOptions(ABLATE_OPTIONS, { eval: 'segprobe', dataset: 'cifar10' });
  assert.throws(
    () => ablationSegRecipe(o, 'small'),
    (e: Error) => e instanceof OptionError && /dataset 'cifar10' has none: pass --seg-dataset synthetic/.test(e.message),
  );
  assert.throws(() => ablationSegRecipe({ ...o, segDataset: 'seg-folder' }, 'small'), /needs --seg-data-path/);
  const r = ablationSegRecipe({ ...o, segDataset: 'synthetic' }, 'small')!;
  assert.deepEqual([r.data.dataset, r.data.segClasses, r.data.trainLimit, r.data.testLimit], ['synthetic', 'shapes', 1000, 500]);
  assert.equal(ablationSegRecipe(resolveOptions(ABLATE_OPTIONS, {}), 'small'), null, 'off by default');
});

test('ablate --eval segprobe refuses masked data of one training image before any pre-training (its probe failed after the first run)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-one-'));
  try {
    const factories = { ...segFactories(), makeSegData: (r: { split: string }) => (r.split === 'train' ? squares(1, 1) : squares(12, 2)) };
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, trainLimit: 30, baseline: false, eval: 'segprobe', outDir: dir });
    await assert.rejects(
      ablate(o, factories, { log: () => {} }),
      (e: Error) => e instanceof DataError && /train split has 1 image: the probe trains on at least 2/.test(e.message),
    );
    assert.equal(existsSync(join(dir, 'runs', 'raster-seed0')), false, 'no run was pre-trained');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ablate --eval segprobe refuses test masks without a labelled pixel before any pre-training (there is nothing to score)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-ignored-'));
  try {
    const ignored = () => {
      const d = squares(12, 2);
      d.masks.fill(255);
      return d;
    };
    const factories = { ...segFactories(), makeSegData: (r: { split: string }) => (r.split === 'train' ? squares(32, 1) : ignored()) };
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, trainLimit: 30, baseline: false, eval: 'segprobe', outDir: dir });
    await assert.rejects(
      ablate(o, factories, { log: () => {} }),
      (e: Error) => e instanceof DataError && /test data: no labelled pixel in its 12 masks/.test(e.message),
    );
    assert.equal(existsSync(join(dir, 'runs', 'raster-seed0')), false, 'no run was pre-trained');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a --jobs shard scores the segmentation probe of its own runs only (each shard scored every finished run, at once)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-shard-'));
  try {
    const factories = segFactories();
    const o = { ...TINY_ABLATION, seeds: 2, trainLimit: 30, outDir: dir };
    // a finished ablation of 4 runs (raster and the baseline, 2 seeds), then the column added by 2 shards
    await ablate(resolveOptions(ABLATE_OPTIONS, o), factories, { log: () => {} });
    const lines: string[] = [];
    await ablate(resolveOptions(ABLATE_OPTIONS, { ...o, eval: 'segprobe', shard: '0/2' }), factories, { log: (l) => lines.push(l) });
    const mine = lines.filter((l) => /already done/.test(l)).length;
    const scored = lines.filter((l) => /segmentation probe mIoU/.test(l)).length;
    assert.equal(mine, 2, 'half of the runs are shard 0/2');
    assert.equal(scored, mine, lines.join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unreadable ablation-segprobe.json is scored again, as an unreadable ablation-eval.json is (it stopped the ablation with a bare JSON error)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-unreadable-'));
  try {
    const factories = segFactories();
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, trainLimit: 30, outDir: dir, eval: 'segprobe' });
    const r = await ablate(o, factories, { log: () => {} });
    const file = join(r.runs[0].runDir, 'ablation-segprobe.json');
    for (const text of ['{"mIoU": 0.', 'null']) {
      writeFileSync(file, text);
      const again = await ablate(o, factories, { log: () => {} });
      assert.equal(again.runs[0].segprobe!.mIoU, r.runs[0].segprobe!.mIoU, text);
      assert.equal(JSON.parse(readFileSync(file, 'utf8')).mIoU, r.runs[0].segprobe!.mIoU, 'written again');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--stop-after-minutes is honoured before the segmentation probe of a finished run: the ablation stops incomplete, nothing scored, and the next call adds the column', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-deadline-'));
  try {
    const factories = segFactories();
    const base = { ...TINY_ABLATION, trainLimit: 30, outDir: dir };
    await ablate(resolveOptions(ABLATE_OPTIONS, base), factories, { log: () => {} });
    const o = resolveOptions(ABLATE_OPTIONS, { ...base, eval: 'segprobe' });
    const lines: string[] = [];
    const stopped = await ablate({ ...o, stopAfterMinutes: 1e-6 }, factories, { log: (l) => lines.push(l) });
    assert.equal(stopped.complete, false);
    assert.equal(ablationExitCode(stopped), 75, 'the exit code says it stopped');
    assert.ok(
      lines.some((l) => l === "--stop-after-minutes 0.000001 reached before the segmentation probe of 'raster' seed 0; run the same command again to continue"),
      lines.join('\n'),
    );
    const scored = ['raster-seed0', 'random-init-seed0'].filter((d) => existsSync(join(dir, 'runs', d, 'ablation-segprobe.json')));
    assert.deepEqual(scored, [], 'no probe ran after the time was up');
    const r = await ablate(o, factories, { log: () => {} });
    assert.equal(r.complete, true);
    assert.ok(r.runs.every((run) => run.segprobe !== undefined));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--stop-after-minutes reached while a run is evaluated stops before its segmentation probe, keeping its scores: the next call scores the probe only', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-deadline-run-'));
  const now = performance.now;
  try {
    const factories = segFactories();
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, trainLimit: 30, outDir: dir, eval: 'segprobe', stopAfterMinutes: 60 });
    const lines: string[] = [];
    // the monotonic clock passes the limit during the first pre-training (its timer, never fired, plays no part)
    const onStep = () => void (performance.now = () => now.call(performance) + 61 * 60_000);
    const stopped = await ablate(o, factories, { log: (l) => lines.push(l), onStep });
    performance.now = now;
    assert.equal(ablationExitCode(stopped), 75);
    assert.ok(
      lines.includes("--stop-after-minutes 60 reached before the segmentation probe of 'raster' seed 0; run the same command again to continue"),
      lines.join('\n'),
    );
    const run = join(dir, 'runs', 'raster-seed0');
    assert.ok(existsSync(join(run, 'ablation-eval.json')), 'its k-NN and linear probe scores are kept');
    assert.equal(existsSync(join(run, 'ablation-segprobe.json')), false);
    const again: string[] = [];
    const r = await ablate(o, factories, { log: (l) => again.push(l) });
    assert.equal(ablationExitCode(r), 0);
    assert.ok(again.some((l) => /raster seed 0: already done/.test(l)));
    assert.ok(r.runs.every((x) => x.segprobe !== undefined));
  } finally {
    performance.now = now;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a Ctrl-C while --eval segprobe scores a run stops the ablation with exit code 130 and writes no score (the probe ignored it and every run was scored)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-signal-'));
  try {
    const o = TINY_ABLATION;
    const src = JSON.stringify(join(__dirname, '..', '..', 'src'));
    const helpers = JSON.stringify(join(__dirname, '..', 'eval', 'helpers'));
    const segHelpers = JSON.stringify(join(__dirname, '..', 'eval', 'seg-helpers'));
    // a finished ablation, then the column added; the SIGINT comes as the first probe starts, and is handled
    // (the event loop turns) before the probe's first batch
    const script = `
      const src = ${src};
      const { resolveOptions } = require(src + '/util/options');
      const { ABLATE_OPTIONS } = require(src + '/experiments/ablate-options');
      const { ablate } = require(src + '/experiments/ablate');
      const run = require(src + '/eval/segprobe-run');
      const { memoryFactories, toyImages } = require(${helpers});
      const { squares } = require(${segHelpers});
      const f = { ...memoryFactories(toyImages(32, 3, 8, 1), toyImages(12, 3, 8, 2)), makeSegData: (r) => (r.split === 'train' ? squares(32, 1) : squares(12, 2)) };
      const o = { ...${JSON.stringify(o)}, outDir: ${JSON.stringify(dir)} };
      (async () => {
        await ablate(resolveOptions(ABLATE_OPTIONS, o), f, { log: () => {} });
        const probe = run.segprobeEncoder;
        run.segprobeEncoder = async (...args) => {
          process.kill(process.pid, 'SIGINT');
          await new Promise((resolve) => setTimeout(resolve, 50));
          return probe(...args);
        };
        await ablate(resolveOptions(ABLATE_OPTIONS, { ...o, eval: 'segprobe' }), f, { log: () => {} });
      })().then(() => { process.exitCode = 3; }, (e) => { process.exitCode = e.exitCode ?? 1; console.error(e.message); });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 130, r.stderr);
    assert.match(r.stderr, /interrupted while scoring the segmentation probe of 'raster' seed 0; run the same command again to continue/);
    const scored = ['raster-seed0', 'random-init-seed0'].filter((d) => existsSync(join(dir, 'runs', d, 'ablation-segprobe.json')));
    assert.deepEqual(scored, [], 'no score written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a run's segmentation probe scored on the masked images of another --seed is scored again (the images are drawn by --seed)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-seed-'));
  try {
    const seeds: number[] = [];
    const factories = {
      ...memoryFactories(toyImages(32, 3, 8, 1), toyImages(12, 3, 8, 2)),
      makeSegData: (r: { split: string; seed: number }) => {
        seeds.push(r.seed);
        return r.split === 'train' ? squares(32, 1) : squares(12, 2);
      },
    };
    const at = (seed: number) =>
      resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, trainLimit: 30, seeds: 2, seed, outDir: dir, eval: 'segprobe' });
    await ablate(at(0), factories, { log: () => {} });
    const r = await ablate(at(1), factories, { log: () => {} });
    assert.deepEqual(seeds, [0, 0, 1, 1], 'the masked images of --seed 0, then of --seed 1');
    for (const run of r.runs) assert.equal(JSON.parse(readFileSync(join(run.runDir, 'ablation-segprobe.json'), 'utf8')).fingerprint.dataSeed, 1, run.runDir);
    // a score stored before the images' seed was recorded is reused
    const file = join(r.runs[0].runDir, 'ablation-segprobe.json');
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    delete stored.fingerprint.dataSeed;
    writeFileSync(file, JSON.stringify({ ...stored, mIoU: 0.123 }));
    assert.equal((await ablate(at(1), factories, { log: () => {} })).runs[0].segprobe!.mIoU, 0.123);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a run evaluated again because its checkpoint holds other weights now is probed again too: its segmentation score is not the earlier weights'", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-weights-'));
  try {
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, trainLimit: 30, outDir: dir, eval: 'segprobe' });
    const first = await ablate(o, segFactories(), { log: () => {} });
    const { runDir, pretrain } = first.runs[0];
    const file = join(runDir, 'ablation-segprobe.json');
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).fingerprint.weights, pretrain.sha256, 'the score names the weights it scored');
    // a marker: a score reused as it is keeps it
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), mIoU: 0.123 }));
    assert.equal((await ablate(o, segFactories(), { log: () => {} })).runs[0].segprobe!.mIoU, 0.123, 'the same weights: reused');
    // the scored checkpoint replaced by one of other weights (valid: its state.json records them)
    const step = pretrain.checkpoint!;
    const weights = join(step, 'model.safetensors');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 4] ^= 1; // the lowest bits of the last float
    writeFileSync(weights, bytes);
    const state = readCheckpointState(step);
    (state.files as Record<string, string>)['model.safetensors'] = sha256File(weights);
    state.stateSha256 = stateDigest(state);
    writeFileSync(join(step, 'state.json'), JSON.stringify(state));
    const lines: string[] = [];
    const r = await ablate(o, segFactories(), { log: (l) => lines.push(l) });
    assert.ok(
      lines.some((l) => /changed since it was evaluated, evaluating it again/.test(l)),
      lines.join('\n'),
    );
    assert.notEqual(r.runs[0].pretrain.sha256, pretrain.sha256);
    assert.notEqual(r.runs[0].segprobe!.mIoU, 0.123, "the earlier weights' score is not tabulated beside the new weights' k-NN and linear probe");
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).fingerprint.weights, r.runs[0].pretrain.sha256);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a segmentation score whose fingerprint records options an earlier semaim recorded (since left out at those values, or neutral) is reused', async () => {
  // ablation-segprobe.json keeps the run's pre-training options as the release that scored it recorded them: one
  // recorded before an option was left out of the fingerprint at its value (shuffleBuffer 1000, upload float32) or
  // made neutral (cudaGraphs, fused) no longer matched, and every run of the folder was probed again
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-older-'));
  try {
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, trainLimit: 30, outDir: dir, eval: 'segprobe' });
    const first = await ablate(o, segFactories(), { log: () => {} });
    const file = join(first.runs[0].runDir, 'ablation-segprobe.json');
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    const older = { ...stored.fingerprint.pretrain, shuffleBuffer: 1000, upload: 'float32', cudaGraphs: false, fused: 'none' };
    const sorted = Object.fromEntries(Object.entries(older).sort());
    writeFileSync(file, JSON.stringify({ ...stored, mIoU: 0.123, fingerprint: { ...stored.fingerprint, pretrain: sorted } }));
    assert.equal((await ablate(o, segFactories(), { log: () => {} })).runs[0].segprobe!.mIoU, 0.123);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a segmentation score stored before the weights were recorded is not reused for a run evaluated again on other weights: it scored the earlier ones', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-seg-older-weights-'));
  try {
    const o = resolveOptions(ABLATE_OPTIONS, { ...TINY_ABLATION, baseline: false, trainLimit: 30, outDir: dir, eval: 'segprobe' });
    const first = await ablate(o, segFactories(), { log: () => {} });
    const { runDir, pretrain } = first.runs[0];
    const file = join(runDir, 'ablation-segprobe.json');
    // as a release before the weights were recorded wrote it (it scored the weights ablation-eval.json names)
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    delete stored.fingerprint.weights;
    writeFileSync(file, JSON.stringify({ ...stored, mIoU: 0.123 }));
    assert.equal((await ablate(o, segFactories(), { log: () => {} })).runs[0].segprobe!.mIoU, 0.123, 'the same weights: reused');
    // the scored checkpoint replaced by one of other weights (valid: its state.json records them)
    const step = pretrain.checkpoint!;
    const weights = join(step, 'model.safetensors');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 4] ^= 1;
    writeFileSync(weights, bytes);
    const state = readCheckpointState(step);
    (state.files as Record<string, string>)['model.safetensors'] = sha256File(weights);
    state.stateSha256 = stateDigest(state);
    writeFileSync(join(step, 'state.json'), JSON.stringify(state));
    const r = await ablate(o, segFactories(), { log: () => {} });
    assert.notEqual(r.runs[0].pretrain.sha256, pretrain.sha256);
    assert.notEqual(r.runs[0].segprobe!.mIoU, 0.123, "the earlier weights' score is not tabulated beside the new weights' k-NN and linear probe");
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).fingerprint.weights, r.runs[0].pretrain.sha256);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
