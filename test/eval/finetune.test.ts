import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { OptionError, resolveOptions } from '../../src/util/options';
import { FINETUNE_OPTIONS } from '../../src/eval/options';
import { ViTClassifier } from '../../src/eval/classifier';
import { finetune, makeFinetuneOptimizer } from '../../src/eval/finetune';
import { runFinetune } from '../../src/eval/run';
import { sha256File } from '../../src/semaim';
import { readMetrics } from '../../src/run/metrics';
import { CheckpointManager } from '../../src/run/checkpoints';
import { loadTensors, disposeAll, saveTensors } from '../../src/io';
import { MemoryLabelledData } from '../../src/data';
import { TINY, countingLoopTurns, memoryFactories, pretrainTinyRun, runPrunedWhileDataIsMade, toyImages, whileDrawingGlobally, writeEncoder } from './helpers';
import { captureStderr } from '../output';

test('layer-wise lr decay: lr = base × 0.65^(L+1−layer) with cls/patch_embed at 0, blocks.i at i+1, fc_norm/head at L+1', () => {
  const L = 4;
  const model = new ViTClassifier({ ...TINY, depth: L, numClasses: 10, pool: 'avg' });
  const o = resolveOptions(FINETUNE_OPTIONS, { checkpoint: 'x' });
  const opt = makeFinetuneOptimizer(model, o, 1);
  const base = 2e-3;
  opt.setLr(base);
  const layerOf = (name: string) => {
    if (name === 'cls_token' || name === 'pos_embed' || name.startsWith('patch_embed.')) return 0;
    const m = /^blocks\.(\d+)\./.exec(name);
    if (m) return Number(m[1]) + 1;
    assert.match(name, /^(fc_norm|head)\./);
    return L + 1;
  };
  const seen = new Set<string>();
  for (const g of opt.paramGroups) {
    for (const [name, p] of g.params) {
      seen.add(name);
      const want = base * 0.65 ** (L + 1 - layerOf(name));
      assert.ok(Math.abs(g.lr - want) <= 1e-15, `${name}: lr ${g.lr}, expected ${want}`);
      const noDecay = p.ndim <= 1 || name === 'cls_token' || name === 'pos_embed';
      assert.equal(g.weightDecay, noDecay ? 0 : 0.05, `${name} weight decay`);
    }
  }
  assert.equal(seen.size, model.parameters().length, 'every parameter is in a group');
  assert.ok(seen.has('head.weight') && seen.has('fc_norm.weight') && !seen.has('norm.weight'));
  assert.ok(seen.has('pos_embed'), 'MAE fine-tuning trains the position embedding (layer 0, no weight decay)');
  opt.dispose();
  model.dispose();
});

test('the classifier loads a pre-trained encoder and starts its head as MAE (trunc_normal 2e-5)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-'));
  const path = writeEncoder(dir);
  const { tensors } = loadTensors(path);
  torch.manualSeed(0);
  const model = new ViTClassifier({ ...TINY, numClasses: 5, pool: 'avg' }).initWeights();
  const missing = model.loadEncoder(tensors);
  assert.deepEqual(missing.sort(), ['fc_norm.bias', 'fc_norm.weight', 'head.bias', 'head.weight']);
  assert.deepEqual(model.blocks.at(1).mlp.fc2.weight.toFloat64Array(), tensors.get('blocks.1.mlp.fc2.weight')!.toFloat64Array());
  const w = torch.scope(() => {
    const big = new ViTClassifier({ ...TINY, numClasses: 1000, pool: 'avg' }).initWeights();
    try {
      return big.head.weight.toFloat64Array();
    } finally {
      big.dispose();
    }
  });
  const std = Math.sqrt(w.reduce((a, v) => a + v * v, 0) / w.length);
  assert.ok(Math.abs(std / 2e-5 - 1) < 0.05, `head std ${std}`);
  assert.ok(model.head.bias!.toFloat64Array().every((v) => v === 0));
  tensors.delete('blocks.0.attn.qkv.weight');
  assert.throws(() => model.loadEncoder(tensors), /lack blocks\.0\.attn\.qkv\.weight/);
  disposeAll(tensors);
  model.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function ftOptions(outDir: string, checkpoint: string, extra: Record<string, unknown> = {}) {
  return resolveOptions(FINETUNE_OPTIONS, {
    checkpoint,
    outDir,
    batchSize: 4,
    epochs: 3,
    warmupEpochs: 1,
    blr: 2e-2,
    logEvery: 1,
    checkpointEvery: 3,
    keepLast: 2,
    evalBatchSize: 8,
    threads: 1,
    seed: 5,
    ema: true,
    emaDecay: 0.9,
    dropPath: 0.1,
    ...extra,
  });
}

for (const device of ['cpu', 'cuda'] as const) {
  test(
    `fine-tuning on ${device}: an interrupted and resumed run gives the same losses as an uninterrupted one (drop path included)`,
    {
      skip: device === 'cuda' && !torch.cuda.isAvailable() && 'no CUDA device',
    },
    async () => {
      // The drop-path masks come from the run's own stream (rng.dropPath, drawn on the host on every device);
      // some CUDA backward kernels accumulate with atomics, hence the looser tolerance there.
      const tol = device === 'cuda' ? 1e-4 : 1e-5;
      const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-resume-'));
      const enc = writeEncoder(dir);
      const train = toyImages(16, 3, 8, 1);
      const testData = toyImages(9, 3, 8, 2);
      const quiet = { log: () => {} };
      const full = await finetune(ftOptions(join(dir, 'a'), enc, { maxSteps: 10, device }), { train, test: testData }, quiet);
      assert.equal(full.steps, 10);
      assert.equal(full.stoppedBy, 'maxSteps');
      assert.ok(full.accuracy && full.emaAccuracy);
      const stop = { requested: false };
      const first = await finetune(
        ftOptions(join(dir, 'b'), enc, { maxSteps: 10, device }),
        { train, test: testData },
        {
          ...quiet,
          stop,
          onStep: (s) => {
            if (s === 6) stop.requested = true;
          },
        },
      );
      assert.equal(first.stoppedBy, 'signal');
      assert.equal(first.steps, 6);
      assert.equal(first.accuracy, null);
      const second = await finetune(ftOptions(join(dir, 'b'), enc, { maxSteps: 10, device }), { train, test: testData }, quiet);
      assert.equal(second.steps, 10);
      const losses = (d: string) =>
        readMetrics(join(dir, d, 'metrics.jsonl'))
          .filter((r) => r.loss !== undefined)
          .map((r) => [r.step, r.loss] as [number, number]);
      const a = losses('a');
      const b = losses('b');
      assert.deepEqual(
        b.map(([s]) => s),
        a.map(([s]) => s),
      );
      assert.equal(a.length, 10);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i][1] - b[i][1]) <= tol * Math.abs(a[i][1]), `step ${a[i][0]}: ${a[i][1]} vs ${b[i][1]}`);
      assert.deepEqual(second.accuracy, full.accuracy);
      assert.deepEqual(second.emaAccuracy, full.emaAccuracy);
      // Test evaluations at each epoch end (4 steps per epoch) and at the end.
      const evals = readMetrics(join(dir, 'a', 'metrics.jsonl'))
        .filter((r) => r.testTop1 !== undefined)
        .map((r) => r.step);
      assert.deepEqual(evals, [4, 8, 10]);
      // Checkpoints: fine-tuning format, verified, with the RNG states.
      const latest = new CheckpointManager(join(dir, 'b')).loadLatest()!;
      assert.equal(latest.step, 10);
      assert.ok(latest.extra.has('rng.global') && latest.extra.has('rng.mix') && latest.extra.has('rng.dropPath') && latest.extra.has('ema.head.weight'));
      assert.equal(latest.extra.has('rng.cuda'), device === 'cuda');
      assert.ok(latest.model.has('fc_norm.weight') && latest.model.has('head.weight') && !latest.model.has('norm.weight'));
      disposeAll(latest.model);
      disposeAll(latest.extra);
      rmSync(dir, { recursive: true, force: true });
    },
  );
}

test("finetune refuses a caller's data of another image size or class count as a DataError (ERR_DATA), before any step", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-data-'));
  const enc = writeEncoder(dir);
  try {
    const o = ftOptions(join(dir, 'run'), enc);
    await assert.rejects(finetune(o, { train: toyImages(8, 3, 16, 1), test: toyImages(6, 3, 8, 2) }, { log: () => {} }), {
      code: 'ERR_DATA',
      message: /train images are \[3,16,16\], the encoder expects \[3,8,8\]/,
    });
    await assert.rejects(finetune(o, { train: toyImages(8, 3, 8, 1), test: toyImages(6, 4, 8, 2) }, { log: () => {} }), {
      code: 'ERR_DATA',
      message: /train data has 3 classes, test data 4/,
    });
    assert.ok(!existsSync(join(dir, 'run', 'metrics.jsonl')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('finetune and runFinetune check their hooks before any work: an AbortController as signal, a misspelt hook, a value of another kind are OptionErrors naming it, no data opened, no folder made', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-hooks-'));
  const enc = writeEncoder(dir);
  try {
    const out = join(dir, 'run');
    const o = ftOptions(out, enc, { maxSteps: 2 });
    const refused = (key: string, detail: RegExp) => (e: unknown) => e instanceof OptionError && e.key === key && detail.test(e.detail);
    let opened = 0;
    const factories = memoryFactories(toyImages(8, 3, 8, 1), toyImages(6, 3, 8, 2));
    const counting = { ...factories, makeEvalData: (r: Parameters<typeof factories.makeEvalData>[0]) => (opened++, factories.makeEvalData(r)) };
    for (const [hooks, key, detail] of [
      // a TypeError once the run had taken run.lock, which it kept
      [{ signal: new AbortController() }, 'signal', /expected an AbortSignal/],
      [{ onstep: () => {} }, 'onstep', /unknown option; did you mean 'onStep'\?/],
      [{ progress: null }, 'progress', /expected true or false, got null/],
      [{ group: 1 }, 'group', /expected an object or null, got 1/],
    ] as const) {
      await assert.rejects(finetune(o, { train: toyImages(8, 3, 8, 1), test: toyImages(6, 3, 8, 2) }, hooks as never), refused(key, detail));
      await assert.rejects(runFinetune(o, counting, hooks as never), refused(key, detail));
      assert.equal(opened, 0, 'no data opened');
      assert.equal(existsSync(out), false, `no run folder for ${key}`);
    }
    const r = await finetune(
      o,
      { train: toyImages(8, 3, 8, 1), test: toyImages(6, 3, 8, 2) },
      { log: () => {}, progress: false, signal: new AbortController().signal },
    );
    assert.equal(r.steps, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a fine-tuning with drop path gives the same losses and weights while the program draws from the global generator between its steps (jobs at once in one process)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-own-streams-'));
  try {
    const enc = writeEncoder(dir);
    const data = { train: toyImages(16, 3, 8, 1), test: toyImages(9, 3, 8, 2) };
    const run = async (out: string) => {
      const r = await finetune(ftOptions(join(dir, out), enc, { maxSteps: 4, dropPath: 0.5, ema: false }), data, { log: () => {} });
      const losses = readMetrics(join(dir, out, 'metrics.jsonl')).map((m) => m.loss);
      return { losses, accuracy: r.accuracy, weights: readFileSync(join(dir, out, 'checkpoints', 'step-00000004', 'model.safetensors')) };
    };
    const alone = await run('alone');
    const { result: beside, draws } = await whileDrawingGlobally(() => run('beside'));
    assert.ok(draws >= 4, `${draws} global draws came between the steps`);
    assert.deepEqual(beside.losses, alone.losses);
    assert.deepEqual(beside.accuracy, alone.accuracy);
    assert.ok(beside.weights.equals(alone.weights), 'the same final weights');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the peak lr scales by batch × accum-iter × processes (MAE), and every epoch reads the training data shuffled', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-accum-'));
  const enc = writeEncoder(dir);
  const train = toyImages(16, 3, 8, 1);
  const passes: { shuffle: boolean; epoch: number }[] = [];
  const batches = train.batches.bind(train);
  train.batches = (o) => {
    passes.push({ shuffle: o.shuffle, epoch: o.epoch });
    return batches(o);
  };
  try {
    // 16 images in steps of 4 × 2: 2 steps per epoch; step 3 sets the lr at epoch 1.0, the warm-up's end: the peak
    const o = ftOptions(join(dir, 'run'), enc, { accumIter: 2, epochs: 2, warmupEpochs: 1, blr: 2e-2, ema: false, evalEvery: 0 });
    const r = await finetune(o, { train, test: toyImages(6, 3, 8, 2) }, { log: () => {}, progress: false });
    assert.equal(r.steps, 4);
    const lr = readMetrics(join(dir, 'run', 'metrics.jsonl')).find((m) => m.step === 3 && m.lr !== undefined)!.lr as number;
    const peak = (2e-2 * 4 * 2) / 256;
    assert.ok(Math.abs(lr - peak) < 1e-12 * peak, `lr ${lr}, expected blr × 4 × 2 / 256 = ${peak}`);
    assert.deepEqual(
      passes,
      [0, 1].map((epoch) => ({ shuffle: true, epoch })),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fine-tuning learns the toy task and writes finetune.json', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-json-'));
  const enc = writeEncoder(dir);
  const train = toyImages(48, 3, 8, 3);
  const testData = toyImages(24, 3, 8, 4);
  const o = ftOptions(join(dir, 'run'), enc, {
    epochs: 6,
    warmupEpochs: 1,
    batchSize: 8,
    blr: 5e-2,
    mixup: 0,
    cutmix: 0,
    smoothing: 0,
    ema: false,
    evalEvery: 0,
  });
  const { result: r, stderr } = await captureStderr(() => runFinetune(o, memoryFactories(train, testData), { log: () => {} }));
  assert.ok(r.result && r.path && existsSync(r.path));
  // the test-set evaluation shows its progress, with a rate (it was silent)
  assert.match(stderr, /^test \(epoch 6\) \[#{20}\] 24\/24 \| (img\/s [\d.]+ \| )?elapsed/m);
  const json = JSON.parse(readFileSync(r.path, 'utf8'));
  assert.equal(json.command, 'finetune');
  assert.ok(json.top1 >= 0.8, `top-1 ${json.top1}`);
  assert.equal(json.data.numClasses, 3);
  assert.equal(json.config.layerDecay, 0.65);
  assert.equal(json.details.steps, 36);
  assert.match(json.checkpoint.sha256, /^[0-9a-f]{64}$/);
  assert.match(json.details.finetuneSha256, /^[0-9a-f]{64}$/);
  assert.ok(existsSync(join(json.details.finetuneCheckpoint, 'model.safetensors')));
  assert.match(r.table, /\| fine-tune \(36 steps\) \|/);

  // killed after its last checkpoint, before finetune.json: the same command evaluates that checkpoint
  // and writes it (it said 'nothing to do' and 'run again to continue', forever), logging no second record
  rmSync(r.path);
  const lines: string[] = [];
  const again = await runFinetune(o, memoryFactories(train, testData), { log: (l) => lines.push(l) });
  assert.match(lines.join('\n'), /nothing to do: .* already reached step 36 of 36/);
  assert.ok(again.result && again.path && existsSync(again.path), 'finetune.json written again');
  const json2 = JSON.parse(readFileSync(again.path, 'utf8'));
  for (const k of ['top1', 'top5', 'perClass', 'checkpoint', 'details']) assert.deepEqual(json2[k], json[k], k);
  const evals = readMetrics(join(dir, 'run', 'metrics.jsonl')).filter((m) => 'testTop1' in m);
  assert.deepEqual(
    evals.map((m) => m.step),
    [36],
    'one final evaluation record',
  );

  // the same for a run stopped by --max-steps (it said 'nothing to do' and 'run again to continue', and wrote nothing)
  const capped = { ...o, outDir: join(dir, 'capped'), maxSteps: 12 };
  const first = await runFinetune(capped, memoryFactories(train, testData), { log: () => {} });
  assert.equal(first.stoppedBy, 'maxSteps');
  assert.ok(first.path && existsSync(first.path));
  rmSync(first.path);
  const cappedLines: string[] = [];
  const cappedAgain = await runFinetune(capped, memoryFactories(train, testData), { log: (l) => cappedLines.push(l) });
  assert.match(cappedLines.join('\n'), /nothing to do: .* already reached step 12 of 12/);
  assert.ok(cappedAgain.path && existsSync(cappedAgain.path), 'finetune.json of the capped run written again');
  assert.equal(JSON.parse(readFileSync(cappedAgain.path, 'utf8')).details.steps, 12);
  rmSync(dir, { recursive: true, force: true });
});

test("a final evaluation that fails keeps the run's last steps: written unscored, then evaluated and scored by the same command", async () => {
  // the final checkpoint is written after the final evaluation, which scores it: when that evaluation threw
  // (test images unreadable by now), every step since the last checkpoint was lost and trained again
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-end-'));
  try {
    const enc = writeEncoder(dir);
    const train = toyImages(24, 3, 8, 3);
    const testData = toyImages(12, 3, 8, 4);
    const opts = (out: string) => ftOptions(join(dir, out), enc, { batchSize: 8, evalEvery: 0, checkpointEvery: 100, keepLast: 5 });
    const reference = await runFinetune(opts('reference'), memoryFactories(train, testData), { log: () => {} });
    assert.ok(reference.result);
    const broken = { on: true };
    const flaky = Object.create(testData, {
      batches: {
        value: (...a: Parameters<MemoryLabelledData['batches']>) => {
          if (broken.on) throw new Error('test images unreadable');
          return testData.batches(...a);
        },
      },
    }) as MemoryLabelledData;
    await assert.rejects(runFinetune(opts('run'), memoryFactories(train, flaky), { log: () => {} }), /test images unreadable/);
    const last = join(dir, 'run', 'checkpoints', 'step-00000009');
    assert.ok(existsSync(last), 'the last steps are kept');
    assert.equal(JSON.parse(readFileSync(join(last, 'state.json'), 'utf8')).endUnscored, true);
    broken.on = false;
    const lines: string[] = [];
    const again = await runFinetune(opts('run'), memoryFactories(train, flaky), { log: (l) => lines.push(l) });
    assert.match(lines.join('\n'), /nothing to do: .* already reached step 9 of 9/);
    assert.match(lines.join('\n'), /the run's end is scored now/);
    assert.ok(again.path && reference.path);
    const [a, b] = [again.path, reference.path].map((p) => JSON.parse(readFileSync(p, 'utf8')));
    for (const k of ['top1', 'top5', 'perClass']) assert.deepEqual(a[k], b[k], k);
    // the end as a run that never failed wrote it: its step and best/ hold the same weights, scored
    assert.equal(JSON.parse(readFileSync(join(last, 'state.json'), 'utf8')).endUnscored, undefined);
    for (const ck of ['step-00000009', 'best'])
      assert.equal(
        sha256File(join(dir, 'run', 'checkpoints', ck, 'model.safetensors')),
        sha256File(join(dir, 'reference', 'checkpoints', ck, 'model.safetensors')),
        ck,
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resumed fine-tuning records the encoder it started from when --checkpoint now names another, and says so', async () => {
  // it recorded the newly resolved encoder (a pre-training continued since) in finetune.json and the later
  // checkpoints, though the weights it continued from came from the first
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-encoder-'));
  const enc = writeEncoder(dir);
  const original = sha256File(enc);
  const train = toyImages(16, 3, 8, 5);
  const testData = toyImages(9, 3, 8, 6);
  const o = ftOptions(join(dir, 'run'), enc, { maxSteps: 10, ema: false, checkpointEvery: 2 });
  const stop = { requested: false };
  const first = await runFinetune(o, memoryFactories(train, testData), {
    log: () => {},
    stop,
    onStep: (s) => {
      if (s === 5) stop.requested = true;
    },
  });
  assert.equal(first.stoppedBy, 'signal');
  writeEncoder(dir, TINY, 2); // the same path, other weights
  const now = sha256File(enc);
  assert.notEqual(now, original);
  const lines: string[] = [];
  const r = await runFinetune(o, memoryFactories(train, testData), { log: (l) => lines.push(l) });
  assert.ok(r.path && r.result, r.table);
  const text = lines.join('\n');
  assert.match(text, /resumed from /);
  assert.match(
    text,
    new RegExp(
      `--checkpoint .*encoder\\.safetensors now resolves to .*\\(sha256 ${now.slice(0, 16)}…\\), not the encoder this run started from, .*\\(sha256 ${original.slice(0, 16)}…\\)`,
    ),
  );
  assert.equal(lines.filter((l) => /now resolves to/.test(l)).length, 1, 'one line');
  assert.equal(JSON.parse(readFileSync(r.path, 'utf8')).checkpoint.sha256, original, 'finetune.json');
  assert.equal(r.result.checkpoint.sha256, original);
  const latest = new CheckpointManager(join(dir, 'run')).loadLatest()!;
  disposeAll(latest.model);
  disposeAll(latest.extra);
  assert.equal(latest.step, 10);
  assert.equal((latest.state.encoder as { sha256: string }).sha256, original, 'state.json of a checkpoint written after the resume');
  assert.equal(JSON.parse(readFileSync(join(dir, 'run', 'config.json'), 'utf8')).encoder.sha256, original, 'config.json');
  rmSync(dir, { recursive: true, force: true });
});

test('a fine-tuning resumed on data whose classes are named otherwise (a class folder renamed: its labels renumbered) is refused before any step', async () => {
  // it continued silently: the steps before the stop learnt class 0 as one name, those after as another, and
  // finetune.json named the classes as the data now does
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-classes-'));
  const enc = writeEncoder(dir);
  const train = toyImages(16, 3, 8, 5);
  const testData = toyImages(9, 3, 8, 6);
  const renamed = (d: MemoryLabelledData, names: string[]) => new MemoryLabelledData(d.images, [d.size, ...d.imageShape], d.labels, d.numClasses, names);
  const o = ftOptions(join(dir, 'run'), enc, { maxSteps: 6, ema: false, checkpointEvery: 2 });
  try {
    const stop = { requested: false };
    const onStep = (s: number) => {
      if (s === 3) stop.requested = true;
    };
    const first = await finetune(o, { train, test: testData }, { log: () => {}, stop, onStep });
    assert.equal(first.stoppedBy, 'signal');
    const moved = ['class1', 'class2', 'zebra'];
    await assert.rejects(
      finetune(o, { train: renamed(train, moved), test: renamed(testData, moved) }, { log: () => {} }),
      (e: Error) => /classes are named otherwise/.test(e.message) && /class 0 was "class0", the training data now names it "class1"/.test(e.message),
    );
    // names now a prefix of those before: the first one gone is named, not a class -1
    await assert.rejects(finetune(o, { train: renamed(train, ['class0', 'class1']), test: testData }, { log: () => {} }), (e: Error) =>
      /class 2 was "class2", the training data now names it null \(of 2 classes\)/.test(e.message),
    );
    assert.deepEqual(
      new CheckpointManager(join(dir, 'run')).list().map((c) => c.step),
      [3, 2],
      'nothing trained',
    );
    // the same names (other objects) continue it
    const again = await finetune(o, { train: renamed(train, ['class0', 'class1', 'class2']), test: testData }, { log: () => {} });
    assert.equal(again.steps, 6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a fine-tuning that diverges between log steps is not evaluated at the epoch end, and writes no result', async () => {
  // the old loop checked only at log steps: its epoch-end evaluations of NaN weights went into metrics.jsonl
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-diverge-'));
  const enc = writeEncoder(dir);
  const o = ftOptions(join(dir, 'run'), enc, { blr: 1e6, warmupEpochs: 0, logEvery: 100, checkpointEvery: 100, evalEvery: 1, ema: false, mixup: 0, cutmix: 0 });
  const lines: string[] = [];
  const r = await runFinetune(o, memoryFactories(toyImages(16, 3, 8, 1), toyImages(8, 3, 8, 2)), { log: (l) => lines.push(l) });
  assert.equal(r.stoppedBy, 'nonfinite');
  assert.equal(r.result, null);
  assert.match(r.table, /fine-tuning diverged \(NaN\/Inf\) after \d+ steps; no result was written/);
  assert.match(lines.join('\n'), /stopping: the (loss|weights) became NaN\/Inf by step 4 /, 'at the end of the first epoch, before its evaluation');
  const metrics = join(dir, 'run', 'metrics.jsonl');
  assert.deepEqual(existsSync(metrics) ? readMetrics(metrics).filter((m) => 'testTop1' in m) : [], []);
  rmSync(dir, { recursive: true, force: true });
});

test('no tensor outlives feature extraction, k-NN, the linear probe or fine-tuning', async () => {
  const { knnClassify } = await import('../../src/eval/knn');
  const { linprobeOnFeatures } = await import('../../src/eval/linprobe');
  const { extractFeatures } = await import('../../src/eval/features');
  const { loadEncoder } = await import('../../src/semaim');
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-leak-'));
  const enc = writeEncoder(dir);
  const train = toyImages(16, 3, 8, 1);
  const testData = toyImages(9, 3, 8, 2);
  const run = async (i: number) => {
    const { encoder } = loadEncoder(enc);
    const tr = await extractFeatures(encoder, train, { batchSize: 5, pooling: 'cls', label: null });
    const te = await extractFeatures(encoder, testData, { batchSize: 5, pooling: 'mean', label: null });
    knnClassify(tr, te, { ks: [3, 5], numClasses: 3, chunkSize: 4, label: null });
    const lp = await linprobeOnFeatures(tr, te, 3, { epochs: 2, batchSize: 4, blr: 0.1, label: null });
    lp.probe.dispose();
    tr.features.dispose();
    te.features.dispose();
    encoder.dispose();
    await finetune(ftOptions(join(dir, `ft${i}`), enc, { epochs: 2, maxSteps: 5, checkpointEvery: 2 }), { train, test: testData }, { log: () => {} });
  };
  await run(0);
  const before = torch.memoryStats().liveTensors;
  await run(1);
  assert.equal(torch.memoryStats().liveTensors, before);
  rmSync(dir, { recursive: true, force: true });
});

test("fine-tuning into a pre-training run's folder is refused, naming what the folder holds, and moves nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-wrong-dir-'));
  try {
    const pre = join(dir, 'pre');
    await pretrainTinyRun(pre, { checkpointEvery: 1 });
    const before = readdirSync(join(pre, 'checkpoints')).sort();
    const o = ftOptions(pre, writeEncoder(dir), { epochs: 2, warmupEpochs: 1, batchSize: 8 });
    await assert.rejects(
      runFinetune(o, memoryFactories(toyImages(16, 2, 8, 2), toyImages(8, 2, 8, 3)), { log: () => {} }),
      /pre holds a pretrain run \(.*step-0+2\), not a finetune run: give finetune its own --out-dir/,
    );
    assert.deepEqual(readdirSync(join(pre, 'checkpoints')).sort(), before, 'the pre-training checkpoints stay where they were');
    assert.ok(!existsSync(join(pre, 'previous')), 'nothing moved aside');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a batch larger than the training images is an option error of finetune and of the online linear probe (before its test features)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-batch-'));
  try {
    const enc = writeEncoder(dir, { ...TINY, imgSize: 16 });
    const { commands } = await import('../../src/cli/commands');
    const common = [
      '--checkpoint',
      enc,
      '--dataset',
      'synthetic',
      '--train-limit',
      '32',
      '--test-limit',
      '8',
      '--num-workers',
      '0',
      '--threads',
      '1',
      '--epochs',
      '1',
    ];
    const batchError = (message: RegExp) => (e: unknown) => e instanceof OptionError && e.key === 'batchSize' && message.test(e.message);
    await assert.rejects(
      commands.finetune.run([...common, '--warmup-epochs', '0', '--batch-size', '64', '--out-dir', join(dir, 'ft')]),
      batchError(/the training set \(32 images\) gives no full step of 64 × 1 × 1 images/),
    );
    await assert.rejects(
      commands.linprobe.run([...common, '--no-cache-features', '--batch-size', '64', '--out-dir', join(dir, 'lp')]),
      batchError(/64 exceeds the 32 training images \(the online probe, --no-cache-features, drops partial batches\)/),
    );
    assert.equal(existsSync(join(dir, 'ft')) || existsSync(join(dir, 'lp')), false, 'no out-dir');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a fine-tuning whose encoder weights do not fit frees its model and leaves no --out-dir', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-misfit-'));
  try {
    // a timm global_pool='avg' encoder (fc_norm, no final norm) fine-tuned with --pool cls: norm is missing
    const enc = writeEncoder(dir);
    const { tensors } = loadTensors(enc);
    const renamed = new Map([...tensors].map(([k, v]) => [k.replace(/^norm\./, 'fc_norm.'), v]));
    const avg = join(dir, 'avg.safetensors');
    saveTensors(avg, renamed);
    disposeAll(tensors);
    writeFileSync(join(dir, 'avg.json'), readFileSync(enc.replace(/\.safetensors$/, '.json')));
    const data = { train: toyImages(8, 3, 8, 1), test: toyImages(4, 3, 8, 2) };
    const start = torch.memoryStats().liveTensors;
    for (let i = 0; i < 3; i++) {
      // named with the file and the way out (it was 'the encoder weights lack norm.weight, norm.bias' alone)
      await assert.rejects(
        finetune(ftOptions(join(dir, `ft${i}`), avg, { pool: 'cls' }), data, { log: () => {} }),
        /avg\.safetensors: the encoder weights lack norm\.weight, norm\.bias: they are a timm global_pool='avg' model \(fc_norm, no final norm\): fine-tune it with pool 'avg' \(--pool avg\)$/,
      );
    }
    assert.equal(torch.memoryStats().liveTensors, start, 'the classifier of each refused run was freed');
    assert.deepEqual(
      readdirSync(dir).sort(),
      ['avg.json', 'avg.safetensors', 'encoder.json', 'encoder.safetensors'],
      'nor is the --out-dir it made left behind empty',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("finetune of a run folder whose checkpoint the run prunes while the data is set up starts from the run's newest checkpoint and records it", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-pruned-'));
  try {
    const data = memoryFactories(toyImages(16, 2, 8, 2), toyImages(8, 2, 8, 3));
    const { run, newest, factories } = await runPrunedWhileDataIsMade(dir, data);
    const o = ftOptions(join(dir, 'ft'), run, { epochs: 1, warmupEpochs: 0, batchSize: 8, ema: false });
    const r = await runFinetune(o, factories, { log: () => {} });
    assert.ok(r.path, r.table);
    const json = JSON.parse(readFileSync(r.path, 'utf8'));
    assert.equal(json.checkpoint.weights, join(newest, 'model.safetensors'), 'the checkpoint it read, not the pruned one it resolved first');
    assert.equal(json.checkpoint.sha256, sha256File(join(newest, 'model.safetensors')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('evaluateClassifier refuses data that gives fewer or more images than its size (DataError), as extractFeatures does, not an accuracy over part of it', async () => {
  const { evaluateClassifier } = await import('../../src/eval/finetune');
  const data = toyImages(9, 3, 8, 2);
  const model = new ViTClassifier({ ...TINY, numClasses: 3, pool: 'avg' });
  try {
    for (const size of [12, 6]) {
      const wrong = { ...data, size, numClasses: 3, batches: (o: Parameters<typeof data.batches>[0]) => data.batches(o), close: () => {} };
      await assert.rejects(evaluateClassifier(model, wrong, { batchSize: 4, label: null }), { code: 'ERR_DATA', message: /gave 9 images/ });
    }
  } finally {
    model.dispose();
  }
});

test('evaluateClassifier lets the event loop turn after every batch of images, also of data at hand at once (in memory)', async () => {
  // (fine-tuning's test-set evaluation at an epoch's end: a whole pass without a turn, a program's timers and requests waiting for it)
  const { evaluateClassifier } = await import('../../src/eval/finetune');
  const model = new ViTClassifier({ ...TINY, numClasses: 3, pool: 'avg' });
  try {
    const { result: acc, turns } = await countingLoopTurns(() => evaluateClassifier(model, toyImages(40, 3, 8, 2), { batchSize: 4, label: null }));
    assert.equal(acc.n, 40);
    assert.ok(turns >= 9, `the event loop turned ${turns} times during 10 batches`);
  } finally {
    model.dispose();
  }
});

test("evaluateClassifier feeds the images in the model's dtype, as finetuneStep does: a float64 classifier is scored, as its float32 copy is", async () => {
  // (before: a float64 model, which finetuneStep trains, failed in its patch embedding: "Input type (float) and bias type (double) should be the same")
  const { evaluateClassifier } = await import('../../src/eval/finetune');
  const data = toyImages(9, 3, 8, 2);
  torch.manualSeed(4);
  const model = new ViTClassifier({ ...TINY, numClasses: 3, pool: 'avg' }).initWeights();
  torch.noGrad(() => model.head.weight.normal_(0, 1)); // (logits that differ between images)
  const wide = new ViTClassifier({ ...TINY, numClasses: 3, pool: 'avg' });
  try {
    wide.loadStateDict(model.stateDict());
    wide.to({ dtype: 'float64' });
    const want = await evaluateClassifier(model, data, { batchSize: 4, label: null });
    const got = await evaluateClassifier(wide, data, { batchSize: 4, label: null });
    assert.equal(got.n, 9);
    assert.deepEqual(got, want);
  } finally {
    model.dispose();
    wide.dispose();
  }
});

test('fine-tuning evaluates every --eval-every epochs and keeps the most accurate checkpoint as best/', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-best-'));
  try {
    const enc = writeEncoder(dir);
    const o = ftOptions(join(dir, 'run'), enc, {
      epochs: 4,
      warmupEpochs: 1,
      batchSize: 8,
      blr: 5e-2,
      mixup: 0,
      cutmix: 0,
      smoothing: 0,
      ema: false,
      evalEvery: 2,
    });
    // test images of noise: the accuracy moves from one evaluation to the next (the toy task's is 1 at once)
    const noise = torch.scope(() => torch.randn([24, 3, 8, 8], { generator: new torch.Generator(6) }).toFloat32Array());
    const testData = new MemoryLabelledData(
      noise,
      [24, 3, 8, 8],
      Int32Array.from({ length: 24 }, (_, i) => i % 3),
      3,
    );
    const r = await runFinetune(o, memoryFactories(toyImages(48, 3, 8, 3), testData), { log: () => {}, progress: false });
    // 6 steps an epoch: evaluated after epochs 2 and 4, not after every epoch
    const evals = readMetrics(join(dir, 'run', 'metrics.jsonl')).filter((m) => 'testTop1' in m);
    assert.deepEqual([...new Set(evals.map((m) => m.step))], [12, 24]);
    const top1 = evals.map((m) => m.testTop1 as number);
    assert.notEqual(top1[0], top1[1], `the two evaluations differ (else the best says nothing): ${top1}`);
    const most = Math.max(...top1);
    const best = JSON.parse(readFileSync(join(dir, 'run', 'checkpoints', 'best', 'state.json'), 'utf8'));
    assert.deepEqual([best.step, best.best], [evals[top1.indexOf(most)].step, most], 'best/: the highest top-1, not the lowest');
    assert.equal(JSON.parse(readFileSync(r.path!, 'utf8')).details.bestTop1, most);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a fresh fine-tuning (--no-resume) moves the earlier run's finetune.json to previous/ with its checkpoints and metrics", async () => {
  // it stayed: stopped before its end, the new run's folder showed the old run's accuracy, whose
  // finetuneCheckpoint (moved to previous/) the new run's checkpoint of that step could take the place of
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-fresh-'));
  try {
    const enc = writeEncoder(dir);
    const f = () => memoryFactories(toyImages(16, 3, 8, 1), toyImages(9, 3, 8, 2));
    const run = join(dir, 'run');
    const o = (extra: Record<string, unknown> = {}) => ftOptions(run, enc, { epochs: 2, evalEvery: 0, ema: false, dropPath: 0, mixup: 0, cutmix: 0, ...extra });
    const first = await runFinetune(o(), f(), { log: () => {}, progress: false });
    assert.ok(first.path && existsSync(first.path));
    const old = readFileSync(first.path, 'utf8');
    const stop = { requested: false };
    const second = await runFinetune(o({ resume: false, seed: 6 }), f(), {
      log: () => {},
      progress: false,
      stop,
      onStep: (s) => void (s === 2 && (stop.requested = true)),
    });
    assert.equal(second.stoppedBy, 'signal');
    assert.ok(!existsSync(join(run, 'finetune.json')), "the earlier run's result is not left beside the new run");
    const [previous] = readdirSync(join(run, 'previous'));
    assert.deepEqual(readdirSync(join(run, 'previous', previous)).sort(), ['checkpoints', 'config.json', 'finetune.json', 'metrics.jsonl']);
    assert.equal(readFileSync(join(run, 'previous', previous, 'finetune.json'), 'utf8'), old);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stop requested during the final evaluation stops the run as a signal does, its steps kept unscored; the same call scores them', async () => {
  // the evaluation never checked the request (nor, with a loader whose batches are always ready, let a signal's
  // handler run): Ctrl-C during the last evaluation of a large test set waited for it, and the run exited 0
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ft-stop-end-'));
  const enc = writeEncoder(dir);
  const train = toyImages(16, 3, 8, 7);
  const testData = toyImages(9, 3, 8, 8);
  const o = ftOptions(join(dir, 'run'), enc, { maxSteps: 4, evalEvery: 0, evalBatchSize: 2, ema: false });
  try {
    const stop = { requested: false };
    let batchesScored = 0;
    const stopping = Object.create(testData, {
      batches: {
        value: async function* (p: Parameters<MemoryLabelledData['batches']>[0]) {
          for await (const b of testData.batches(p)) {
            yield b;
            if (++batchesScored === 1) stop.requested = true;
          }
        },
      },
    }) as MemoryLabelledData;
    const lines: string[] = [];
    const first = await finetune(o, { train, test: stopping }, { log: (l) => lines.push(l), stop, progress: false });
    assert.equal(first.stoppedBy, 'signal');
    assert.equal(first.steps, 4);
    assert.equal(first.accuracy, null);
    assert.equal(batchesScored, 1, 'the evaluation stopped at its next batch');
    assert.match(lines.join('\n'), /stopping on request during the run's end: its steps are kept in .*step-00000004.*unscored/);
    assert.ok(!existsSync(join(dir, 'run', 'finetune.json')));
    const again = await finetune(o, { train, test: testData }, { log: () => {}, progress: false });
    assert.equal(again.stoppedBy, 'maxSteps');
    assert.equal(again.steps, 4);
    assert.ok(again.accuracy !== null && again.accuracy.n === 9);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
