// The pre-training EMA's decay: the authors' engine sets timm ModelEma's decay at each epoch's start to
// 0.999 + epoch/100 · (0.9999 − 0.999) for the first 100 epochs, 0.9999 after
// (engines/engine_pretrain.py:129-134). `--ema-schedule authors` (the default with --ema) does the same
// from --ema-decay; `constant` keeps --ema-decay; runs stored before the option resume as `constant`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { Linear } from '../../src/nn';
import { EMA, authorsEmaDecay } from '../../src/run/ema';
import { CheckpointManager } from '../../src/run/checkpoints';
import { recipeChanges } from '../../src/run/recipe';
import { pretrain } from '../../src/train/pretrain';
import { PRETRAIN_OPTIONS } from '../../src/train/pretrain-options';
import { resolveOptions } from '../../src/util/options';
import { MemoryLabelledData } from '../../src/data';
import { memoryTrainData } from '../eval/helpers';
import { TINY_SEMAIM } from './helpers';

test("authorsEmaDecay is the authors' per-epoch ramp from the start value to 0.9999 over 100 epochs", () => {
  // their line, evaluated as Python does it: 0.999 + epoch / 100 * (0.9999 - 0.999)
  for (const [epoch, want] of [
    [0, 0.999],
    [1, 0.999009],
    [50, 0.99945],
    [99, 0.999891],
    [100, 0.9999],
    [400, 0.9999],
  ])
    assert.ok(Math.abs(authorsEmaDecay(0.999, epoch) - want) < 1e-12, `epoch ${epoch}: ${authorsEmaDecay(0.999, epoch)} vs ${want}`);
  assert.ok(Math.abs(authorsEmaDecay(0.5, 10) - (0.5 + 0.1 * 0.4999)) < 1e-12);
});

test('EMA.startEpoch applies the schedule to the next updates; without a schedule the decay stays', () => {
  const src = new Linear(3, 2);
  const shadow = new Linear(3, 2);
  const ema = new EMA(shadow, src, 0.5, (epoch) => epoch / 10);
  const fixed = new EMA(new Linear(3, 2), src, 0.5);
  ema.startEpoch(3);
  fixed.startEpoch(3);
  assert.equal(ema.decay, 0.3);
  assert.equal(fixed.decay, 0.5);
  const before = shadow.weight.toFloat64Array();
  torch.noGrad(() => src.weight.add_(torch.ones(src.weight.shape)));
  ema.update();
  const now = src.weight.toFloat64Array();
  shadow.weight.toFloat64Array().forEach((v, i) => assert.ok(Math.abs(v - (0.3 * before[i] + 0.7 * now[i])) < 1e-6, `[${i}]`));
  for (const m of [src, shadow, fixed.shadow]) m.dispose();
});

test("a new EMA starts as a copy of its source (not the shadow model's own initialisation), in eval mode, outside autograd; its state round-trips under ema.<name>", () => {
  const src = new Linear(3, 2);
  const shadow = new Linear(3, 2);
  const ema = new EMA(shadow, src, 0.9);
  assert.deepEqual(shadow.weight.toFloat32Array(), src.weight.toFloat32Array());
  assert.deepEqual(shadow.bias!.toFloat32Array(), src.bias!.toFloat32Array());
  assert.equal(shadow.training, false);
  assert.equal(shadow.weight.requiresGrad, false);
  const saved = new Map([...ema.stateTensors()].map(([k, t]) => [k, t.clone()]));
  assert.deepEqual([...saved.keys()].sort(), ['ema.bias', 'ema.weight']);
  const otherSource = new Linear(3, 2);
  const other = new EMA(new Linear(3, 2), otherSource, 0.9);
  other.loadStateTensors(saved);
  assert.deepEqual(other.shadow.weight.toFloat32Array(), src.weight.toFloat32Array(), 'a resumed EMA continues from the saved shadow');
  // a checkpoint that lacks a shadow tensor is refused, the shadow unchanged (not left at its own initialisation)
  const partial = new Map([...saved].filter(([k]) => k !== 'ema.bias'));
  const third = new EMA(new Linear(3, 2), otherSource, 0.9);
  assert.throws(() => third.loadStateTensors(partial), /no EMA weights for a parameter \(ema\.bias\)/);
  assert.deepEqual(third.shadow.weight.toFloat32Array(), otherSource.weight.toFloat32Array());
  for (const t of saved.values()) t.dispose();
  for (const m of [src, shadow, other.shadow, third.shadow, otherSource]) m.dispose();
});

test('--ema-schedule resolves to authors with --ema; a run stored without it resumes only as constant', () => {
  const tiny = { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, decoderDepth: 1 };
  assert.equal(resolveOptions(PRETRAIN_OPTIONS, tiny, { ema: true }).emaSchedule, 'authors');
  assert.equal(resolveOptions(PRETRAIN_OPTIONS, tiny).emaSchedule, 'constant');
  const stored = (o: Record<string, unknown>) => {
    const r: Record<string, unknown> = { ...resolveOptions(PRETRAIN_OPTIONS, tiny, o) };
    delete r.emaSchedule;
    return r;
  };
  // without --ema the schedule is moot and old runs resume as before
  assert.deepEqual(recipeChanges(PRETRAIN_OPTIONS, stored({}), resolveOptions(PRETRAIN_OPTIONS, tiny)), []);
  // an old --ema run decayed at a constant rate: resuming under the ramp would change the recipe
  const changes = recipeChanges(PRETRAIN_OPTIONS, stored({ ema: true }), resolveOptions(PRETRAIN_OPTIONS, tiny, { ema: true }));
  assert.deepEqual(changes, [{ key: 'emaSchedule', before: 'constant', now: 'authors' }]);
  assert.deepEqual(recipeChanges(PRETRAIN_OPTIONS, stored({ ema: true }), resolveOptions(PRETRAIN_OPTIONS, tiny, { ema: true, emaSchedule: 'constant' })), []);
});

test('pre-training under the ramp: the EMA equals the constant one through epoch 0 and differs from epoch 1 on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ema-schedule-'));
  const emaTensorsAt = (out: string, step: number) => {
    const mgr = new CheckpointManager(out, 5);
    const found = mgr.list().find((c) => c.step === step);
    assert.ok(found, `${out}: no checkpoint at step ${step}`);
    const ck = mgr.load(found.dir);
    const all = new Map([...ck.model, ...ck.extra]);
    const ema = [...all].filter(([k]) => k.startsWith('ema.')).map(([k, t]) => [k, t.toFloat64Array()] as const);
    for (const t of all.values()) t.dispose();
    assert.ok(ema.length > 0, 'the checkpoint holds the EMA');
    return new Map(ema);
  };
  try {
    for (const emaSchedule of ['authors', 'constant']) {
      const g = new torch.Generator(5);
      const pixels = torch.randn([16, 3, 16, 16], { generator: g });
      const data = memoryTrainData(new MemoryLabelledData(pixels.toFloat32Array(), [16, 3, 16, 16], new Int32Array(16), 1), 4, 5);
      pixels.dispose();
      const o = resolveOptions(PRETRAIN_OPTIONS, {
        ...TINY_SEMAIM,
        decoderDepth: 1,
        blur: false,
        batchSize: 4,
        epochs: 2,
        warmupEpochs: 0,
        lr: 0.05, // the weights must move for their averages to differ
        logEvery: 4,
        keepLast: 5,
        threads: 1,
        seed: 3,
        ema: true,
        similaritySource: 'ema',
        emaDecay: 0.5, // the ramp's first step, 0.5 → 0.504999, shows within two epochs
        emaSchedule,
        outDir: join(dir, emaSchedule),
      });
      await pretrain(o, data, { log: () => {} });
    }
    const [a4, c4, a8, c8] = [
      emaTensorsAt(join(dir, 'authors'), 4),
      emaTensorsAt(join(dir, 'constant'), 4),
      emaTensorsAt(join(dir, 'authors'), 8),
      emaTensorsAt(join(dir, 'constant'), 8),
    ];
    for (const [k, v] of a4) assert.deepEqual(v, c4.get(k), `${k} after epoch 0`);
    const maxDiff = Math.max(...[...a8].map(([k, v]) => Math.max(...v.map((x, i) => Math.abs(x - c8.get(k)![i])))));
    assert.ok(maxDiff > 1e-4, `the EMAs after epoch 1 differ (max |Δ| ${maxDiff})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
