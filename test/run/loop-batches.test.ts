// The training loop asks its job for the batches its optimiser steps take and no more: with
// --accum-iter 2 and 5 batches per epoch, batches 0..3 of each epoch (the fifth would be built, then
// dropped, and its loader would call the epoch "stopped early"); a resumed epoch from where it left off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { Linear } from '../../src/nn';
import { AdamW, GradScaler, gradNorm } from '../../src/optim';
import { EMA } from '../../src/run/ema';
import { trainLoop, type TrainJob } from '../../src/run/loop';
import { checkpointsToWrite } from '../../src/run/train-state';
import { captureStderr } from '../output';
import { disposeAll, loadTensors, saveTensors } from '../../src/io';
import { stateDigest } from '../../src/io/checkpoint';

interface Batch {
  x: torch.Tensor;
  y: torch.Tensor;
  /** The loss is NaN (its gradient stays finite). */
  nan?: boolean;
  /** The loss is multiplied by 1e160: its gradient's square overflows AdamW's second moment, the weights stay finite. */
  huge?: boolean;
}

interface RunOptions {
  logEvery?: number;
  progress?: boolean;
  checkpointEvery?: number;
  /** The lr schedule (per fractional epoch); constant 0.01 without. */
  schedule?: (epoch: number) => number;
  /** Gets each step's lr (after the step). */
  lrs?: number[];
  /** Asks the loop to stop after this step. */
  stopAt?: number;
  /** Gets the weights at the end. */
  weights?: number[];
  /** --epochs (2 without). */
  epochs?: number;
  /** Batches per epoch (5 without: 2 steps at --accum-iter 2). */
  batchesPerEpoch?: number;
  /** Gets the seconds the result reports. */
  seconds?: number[];
  /** Gets the first and last loss the result reports. */
  losses?: number[];
  /** Gets the epochs the job's onEpochEnd is called with. */
  epochEnds?: number[];
  /** Gets what the job's onFinish is called with (epochs, nothing left to do), and how the run stopped. */
  finishes?: [number, boolean][];
  stoppedBy?: string[];
  /** The score of each step's checkpoint (scores[step - 1]; none without), lower better unless higherIsBetter. */
  scores?: number[];
  higherIsBetter?: boolean;
  /** Adds noise from the global generator to the inputs (as dropout draws from it). */
  globalNoise?: boolean;
  /** Adds that noise from the job's own stream 'noise' instead, which earlier releases drew from the global generator (formerlyGlobal). */
  ownNoise?: boolean;
  /** The job's kind and model config ('pretrain', { case: 'linear' } without). */
  kind?: 'pretrain' | 'finetune';
  config?: Record<string, unknown>;
  /** Keeps an EMA copy (decay 0.5), whose weights `weights` then gets after the model's. */
  ema?: boolean;
  /** Gives the loop an AbortSignal aborted before it starts. */
  aborted?: boolean;
  /** The batches the job's data gives of each epoch, at most (batchesPerEpoch without). */
  gives?: number;
  /** Called when the run resumes (its checkpoint restored, during the start). */
  onResume?: () => void;
  /** --accum-iter (2 without). */
  accumIter?: number;
  /** A loss scaler (initial scale 2^4, growing at every step), whose scale at the end `scales` gets. */
  scaler?: boolean;
  scales?: number[];
  /** The job runs each micro-batch's forward and backward itself (forwardBackward, as --cuda-graphs does). */
  ownBackward?: boolean;
  /** The score of the checkpoints (in place of `scores`), asked when the loop saves. */
  score?: () => number | null;
  /** The job's --precision option (none without). */
  precision?: string;
  /** Gets the loop's log lines. */
  log?: (line: string) => void;
  /** The first step's losses are NaN, their gradients finite (the weights stay finite). */
  nanFirstStep?: boolean;
  /** The first step's losses are huge: the optimiser state becomes Inf, the losses and the weights stay finite. */
  hugeFirstStep?: boolean;
  /** Called after each step with the step number (after the loop's own onStep). */
  onStep?: (step: number) => void;
}

async function run(outDir: string, maxSteps: number, calls: number[][], resume: boolean, o: RunOptions = {}): Promise<number> {
  torch.manualSeed(1);
  const model = new Linear(3, 1, { dtype: 'float64' });
  const optimizer = new AdamW(model.namedParameters(), { lr: 0.01 });
  const ema = o.ema ? new EMA(new Linear(3, 1, { dtype: 'float64' }), model, 0.5) : null;
  const noiseGen = new torch.Generator(7);
  const scaler = o.scaler ? new GradScaler({ initScale: 16, growthInterval: 1 }) : null;
  const noisy = o.globalNoise || o.ownNoise;
  const job: TrainJob<Batch> = {
    kind: o.kind ?? 'pretrain',
    model,
    optimizer,
    schedule: o.schedule ?? (() => 0.01),
    scaler,
    ema,
    generators: o.ownNoise ? { noise: noiseGen } : {},
    formerlyGlobal: ['noise'],
    config: o.config ?? { case: 'linear' },
    options: { case: 'accum', ...(o.precision && { precision: o.precision }) },
    batchesPerEpoch: o.batchesPerEpoch ?? 5,
    async *batches(epoch: number, start: number, end: number) {
      calls.push([epoch, start, end]);
      for (let b = start; b < Math.min(o.gives ?? o.batchesPerEpoch ?? 5, end); b++) {
        const x = torch.randn([4, 3], { dtype: 'float64', generator: new torch.Generator(1000 * epoch + b) });
        yield { x, y: x.sum(1, true), nan: o.nanFirstStep && epoch === 0 && b < 2, huge: o.hugeFirstStep && epoch === 0 && b < 2 };
      }
    },
    batchSize: (b) => b.x.shape[0],
    loss: (b) => {
      const loss = model
        .forward(noisy ? b.x.add(torch.randn(b.x.shape, { dtype: 'float64', generator: o.ownNoise ? noiseGen : undefined }).mul(0.1)) : b.x)
        .sub(b.y)
        .square()
        .mean();
      return b.nan ? loss.add(torch.full([], NaN, { dtype: 'float64' })) : b.huge ? loss.mul(1e160) : loss;
    },
    best: { score: (state) => (o.score ? o.score() : (o.scores?.[state.step - 1] ?? null)), lowerIsBetter: !o.higherIsBetter },
    ...(o.onResume && { onResume: o.onResume }),
    ...(o.ownBackward && {
      forwardBackward(b: Batch) {
        const loss = job.loss(b);
        loss.backward();
        return loss;
      },
    }),
    ...(o.epochEnds && { onEpochEnd: async (epoch: number) => void o.epochEnds?.push(epoch) }),
    ...(o.finishes && { onFinish: async (epochs: number, _state: unknown, done: boolean) => void o.finishes?.push([epochs, done]) }),
  };
  const stop = { requested: false };
  const onStep = (step: number) => {
    o.lrs?.push(optimizer.paramGroups[0].lr);
    if (step === o.stopAt) stop.requested = true;
    o.onStep?.(step);
  };
  const r = await trainLoop(
    job,
    {
      outDir,
      device: 'cpu',
      accumIter: o.accumIter ?? 2,
      epochs: o.epochs ?? 2,
      maxSteps,
      logEvery: o.logEvery ?? 1,
      checkpointEvery: o.checkpointEvery ?? 1,
      keepLast: 2,
      resume,
      clipGrad: 0,
    },
    { progress: o.progress ?? false, catchSignals: false, log: o.log ?? (() => {}), stop, onStep, ...(o.aborted && { signal: AbortSignal.abort() }) },
  );
  o.weights?.push(...[...model.namedParameters(), ...(ema?.shadow.namedParameters() ?? [])].flatMap(([, p]) => [...p.toFloat64Array()]));
  o.seconds?.push(r.seconds);
  o.losses?.push(r.firstLoss, r.lastLoss);
  o.stoppedBy?.push(r.stoppedBy);
  if (scaler) o.scales?.push(scaler.getScale());
  return r.steps;
}

test('with --accum-iter the loop asks for the batches up to the last whole step of each epoch, and a resumed epoch from its next batch', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-batches-'));
  try {
    const calls: number[][] = [];
    assert.equal(await run(join(dir, 'whole'), 4, calls, false), 4);
    assert.deepEqual(calls, [
      [0, 0, 4],
      [1, 0, 4],
    ]);
    const resumed: number[][] = [];
    assert.equal(await run(join(dir, 'cut'), 3, resumed, false), 3);
    assert.equal(await run(join(dir, 'cut'), 4, resumed, true), 4);
    assert.deepEqual(resumed, [
      [0, 0, 4],
      [1, 0, 4],
      [1, 2, 4],
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with --accum-iter each step takes the lr of its fractional epoch in steps, and a run stopped mid-epoch off the checkpoint cadence resumes to the same weights (the EMA copy and the global random stream included, also into a job that now draws that stream from a generator of its own)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-accum-'));
  const schedule = (epoch: number) => 0.01 * (1 + epoch);
  try {
    const lrs: number[] = [];
    const whole: number[] = [];
    const epochEnds: number[] = [];
    assert.equal(
      await run(join(dir, 'whole'), 4, [], false, { schedule, lrs, weights: whole, checkpointEvery: 100, epochEnds, globalNoise: true, ema: true }),
      4,
    );
    assert.deepEqual(epochEnds, [1], "the job evaluates at the first epoch's end; the last one is the run's end (onFinish)");
    // 5 batches per epoch at --accum-iter 2: 2 steps per epoch, at epochs 0, 0.5, 1, 1.5
    assert.deepEqual(
      lrs.map((lr) => Number(lr.toPrecision(12))),
      [0.01, 0.015, 0.02, 0.025],
    );
    // stopped after step 3 (epoch 1, batch 2; its checkpoint is written at the stop), then resumed
    const calls: number[][] = [];
    const resumed: number[] = [];
    assert.equal(await run(join(dir, 'cut'), 4, calls, false, { schedule, stopAt: 3, checkpointEvery: 100, globalNoise: true, ema: true }), 3);
    // (the resumed run's global generator continues from the checkpoint's state, not from the seed)
    assert.equal(await run(join(dir, 'cut'), 4, calls, true, { schedule, weights: resumed, checkpointEvery: 100, globalNoise: true, ema: true }), 4);
    assert.deepEqual(calls, [
      [0, 0, 4],
      [1, 0, 4],
      [1, 2, 4],
    ]);
    assert.deepEqual(resumed, whole);
    // a checkpoint of a release that drew this noise from the global generator (it has no rng.noise): a job
    // that draws it from its own stream continues that stream from the checkpoint's global state
    const upgraded: number[] = [];
    assert.equal(await run(join(dir, 'upgrade'), 4, [], false, { schedule, stopAt: 3, checkpointEvery: 100, globalNoise: true, ema: true }), 3);
    assert.equal(await run(join(dir, 'upgrade'), 4, [], true, { schedule, weights: upgraded, checkpointEvery: 100, ownNoise: true, ema: true }), 4);
    assert.deepEqual(upgraded, whole);
    // a fractional --epochs ends after the step its last batch belongs to: 1.25 epochs of 2 steps are 3 steps
    assert.equal(await run(join(dir, 'part'), 100, [], false, { epochs: 1.25 }), 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resumed run counts the seconds its checkpoint records, and records them in its own checkpoints', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-seconds-'));
  try {
    assert.equal(await run(dir, 2, [], false), 2);
    // as a long run's checkpoint records them (a state.json without its digest, as older ones, still resumes)
    const path = join(dir, 'checkpoints', 'step-00000002', 'state.json');
    const state = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    delete state.stateSha256;
    writeFileSync(path, JSON.stringify({ ...state, seconds: 1e6 }));
    const seconds: number[] = [];
    assert.equal(await run(dir, 4, [], true, { seconds }), 4);
    assert.ok(seconds[0] >= 1e6 && seconds[0] < 1e6 + 600, `${seconds[0]}`);
    const last = JSON.parse(readFileSync(join(dir, 'checkpoints', 'step-00000004', 'state.json'), 'utf8')) as { seconds: number };
    assert.equal(last.seconds, seconds[0]);
    // a checkpoint from before the seconds were recorded: unknown, NaN (not the seconds of this call alone)
    const { seconds: _, ...older } = JSON.parse(readFileSync(join(dir, 'checkpoints', 'step-00000004', 'state.json'), 'utf8')) as Record<string, unknown>;
    delete older.stateSha256;
    writeFileSync(join(dir, 'checkpoints', 'step-00000004', 'state.json'), JSON.stringify(older));
    assert.equal(await run(dir, 6, [], true, { seconds, epochs: 3 }), 6);
    assert.ok(Number.isNaN(seconds[1]), `${seconds[1]}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a wall clock stepped back during a run (NTP) neither makes its seconds negative nor its images per second absurd: durations are read from the monotonic clock', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-clock-'));
  const realNow = Date.now;
  try {
    const seconds: number[] = [];
    // after step 1 every Date.now() reads an hour earlier
    const onStep = (step: number) => {
      if (step !== 1) return;
      const back = realNow() - 3_600_000;
      Date.now = () => back;
    };
    assert.equal(await run(dir, 4, [], false, { seconds, onStep }), 4);
    Date.now = realNow;
    assert.ok(seconds[0] >= 0 && seconds[0] < 600, `seconds ${seconds[0]}`);
    const state = JSON.parse(readFileSync(join(dir, 'checkpoints', 'step-00000004', 'state.json'), 'utf8')) as { seconds: number };
    assert.equal(state.seconds, seconds[0]);
    const rates = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { imgPerSec: number }).imgPerSec);
    assert.equal(rates.length, 4);
    // 8 images a step (2 micro-batches of 4) of a 3-weight model: far below 10^8 images per second, not 8 / 10^-9
    for (const r of rates) assert.ok(r > 0 && r < 1e8, `imgPerSec ${rates.join(', ')}`);
  } finally {
    Date.now = realNow;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the result reports the first and last logged loss; the job's onFinish runs once at the end, and again on a finished run started again (nothing left to do), which stops as the run did", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-finish-'));
  try {
    const finishes: [number, boolean][] = [];
    const stoppedBy: string[] = [];
    const losses: number[] = [];
    await run(join(dir, 'all'), 4, [], false, { finishes, stoppedBy, losses });
    const logged = readFileSync(join(dir, 'all', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { loss: number }).loss);
    assert.equal(logged.length, 4);
    assert.notEqual(logged[0], logged[3]);
    assert.deepEqual(losses, [logged[0], logged[3]], 'the first and the last logged loss');
    await run(join(dir, 'all'), 4, [], true, { finishes, stoppedBy });
    await run(join(dir, 'budget'), 3, [], false, { finishes, stoppedBy });
    await run(join(dir, 'budget'), 3, [], true, { finishes, stoppedBy });
    assert.deepEqual(finishes, [
      [2, false],
      [2, true],
      [1.5, false],
      [1.5, true],
    ]);
    assert.deepEqual(stoppedBy, ['finished', 'finished', 'maxSteps', 'maxSteps']);
    // aborted before it starts (a Ctrl-C during a resume's checks): stopped, as a run with steps left is, not the job's end done again
    await run(join(dir, 'all'), 4, [], true, { finishes, stoppedBy, aborted: true });
    assert.equal(finishes.length, 4, 'no onFinish');
    assert.equal(stoppedBy[4], 'signal');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("'best' is the checkpoint of the lowest score (or the highest, where higher is better), kept through a resume", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-best-'));
  const best = (name: string) => JSON.parse(readFileSync(join(dir, name, 'checkpoints', 'best', 'state.json'), 'utf8')) as { step: number; best: number };
  try {
    const scores = [3, 1, 2, 5];
    await run(join(dir, 'low'), 4, [], false, { scores });
    assert.deepEqual([best('low').step, best('low').best], [2, 1]);
    await run(join(dir, 'high'), 4, [], false, { scores, higherIsBetter: true });
    assert.deepEqual([best('high').step, best('high').best], [4, 5]);
    // resumed after step 2, the run compares with the best its checkpoint records
    await run(join(dir, 'resumed'), 2, [], false, { scores });
    await run(join(dir, 'resumed'), 4, [], true, { scores });
    assert.deepEqual([best('resumed').step, best('resumed').best], [2, 1]);
    // a tie is not better: 'best' stays the earlier checkpoint
    await run(join(dir, 'tie'), 4, [], false, { scores: [3, 1, 1, 5] });
    assert.deepEqual([best('tie').step, best('tie').best], [2, 1]);
    // a checkpoint of an earlier release records its best as bestLoss (pre-training) or bestTop1 (fine-tuning)
    for (const [name, field, higherIsBetter] of [
      ['bestLoss', 'bestLoss', false],
      ['bestTop1', 'bestTop1', true],
    ] as const) {
      const older = [3, 2, 1, 5].map((x) => (higherIsBetter ? 6 - x : x));
      await run(join(dir, name), 2, [], false, { scores: older, higherIsBetter });
      const path = join(dir, name, 'checkpoints', 'step-00000002', 'state.json');
      const { best: recorded, stateSha256: _, ...state } = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
      assert.equal(recorded, higherIsBetter ? 4 : 2);
      writeFileSync(path, JSON.stringify({ ...state, [field]: higherIsBetter ? 5.5 : 0.5 }));
      // step 3 scores better than step 2 but not than the best recorded: 'best' stays step 2's
      await run(join(dir, name), 4, [], true, { scores: older, higherIsBetter });
      assert.equal(best(name).step, 2, field);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a resume refuses a checkpoint a newer semaim wrote (its model file's format version), saying so", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-newer-'));
  try {
    await run(dir, 2, [], false);
    const ckpt = join(dir, 'checkpoints', 'step-00000002');
    const model = join(ckpt, 'model.safetensors');
    const { tensors, metadata } = loadTensors(model);
    const sha256 = saveTensors(model, tensors, { ...metadata, format: 'semaim.pretrain/2' });
    disposeAll(tensors);
    const path = join(ckpt, 'state.json');
    const state = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown> & { files: Record<string, string> };
    state.files['model.safetensors'] = sha256;
    writeFileSync(path, JSON.stringify({ ...state, stateSha256: stateDigest(state) }));
    await assert.rejects(run(dir, 4, [], true), (e: Error) => {
      assert.doesNotMatch(e.message, /not a pretrain run/);
      assert.match(e.message, /step-0+2.* was written by a newer semaim \(format 'semaim\.pretrain\/2'; this one reads 'semaim\.pretrain\/1'\)/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resume refuses a checkpoint of another kind of run or of another model', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-refuse-'));
  try {
    await run(dir, 2, [], false);
    await assert.rejects(run(dir, 4, [], true, { kind: 'finetune' }), /holds a pretrain run .*not a finetune run: give finetune its own --out-dir/);
    await assert.rejects(run(dir, 4, [], true, { config: { case: 'other' } }), /was made for another model \(case: "linear" → "other"\)/);
    assert.equal(await run(dir, 4, [], true), 4);

    // a teacher's config as a run from before 2026-12-03 recorded it (the exporter's whole .json) is the same
    // encoder as the fields recorded now; another encoder is named by the field that differs
    const enc = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4 };
    const withTeacher = (teacherConfig: Record<string, unknown>) => ({
      config: { case: 'linear', target: { type: 'features', teacher: 't.safetensors', teacherConfig } },
    });
    const old = join(dir, 'old-teacher');
    await run(old, 2, [], false, withTeacher({ ...enc, timm: { num_classes: 0, global_pool: 'token' } }));
    await assert.rejects(run(old, 4, [], true, withTeacher({ ...enc, depth: 3 })), /was made for another model \(target\.teacherConfig\.depth: 2 → 3\)/);
    assert.equal(await run(old, 4, [], true, withTeacher(enc)), 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a finished run whose last line is off the --log-every cadence, started again, keeps that line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-finished-'));
  try {
    await run(dir, 4, [], false, { logEvery: 3 });
    const metrics = () => readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
    const before = metrics();
    assert.deepEqual(
      before
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { step: number }).step),
      [3, 4],
    );
    assert.equal(await run(dir, 4, [], true, { logEvery: 3 }), 4);
    assert.equal(metrics(), before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the progress line shows from the first step, not from the first --log-every step; the last step, off the --log-every cadence, shows its gradient norm', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-progress-'));
  let stderr: string;
  try {
    ({ stderr } = await captureStderr(() => run(join(dir, 'run'), 4, [], false, { logEvery: 100, progress: true })));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const lines = stderr.split('\n').filter((l) => l.startsWith('pretrain ['));
  assert.match(lines[0] ?? '', /^pretrain \[.*\] 1\/4 \| epoch 0\.50 \| elapsed \d+:\d\d ETA --:--$/, stderr);
  assert.match(
    lines[lines.length - 1],
    /^pretrain \[#{20}\] 4\/4 \| loss .* \| img\/s .* \| lr .* \| gnorm \d\S* \| epoch 2\.00 \| elapsed \d+:\d\d ETA 0:00$/,
  );
});

test('a decimal --epochs makes the steps it names, not one more from the binary rounding of epochs × steps per epoch', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-epochs-'));
  try {
    // 50 batches at --accum-iter 2: 25 steps per epoch, and 0.28 × 25 is 7.000000000000001 in binary
    assert.equal(await run(join(dir, 'a'), 100, [], false, { epochs: 0.28, batchesPerEpoch: 50, checkpointEvery: 100, logEvery: 100 }), 7);
    assert.equal(await run(join(dir, 'b'), 100, [], false, { epochs: 0.29, batchesPerEpoch: 50, checkpointEvery: 100, logEvery: 100 }), 8);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("data giving fewer of an epoch's batches than the loop asked is refused, not carried into the next epoch's first step", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-short-'));
  try {
    // 4 batches asked of each epoch (2 steps at --accum-iter 2), 3 given: the third's gradient went into the next epoch's first step
    await assert.rejects(run(dir, 4, [], false, { gives: 3 }), {
      name: 'DataError',
      message: /epoch 0: the data gave 3 of the 4 batches asked \(batches 0 to 3\)/,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the first metrics line's images per second counts the time of its steps, not the start's (a resume's checks and loading)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-rate-'));
  const now = performance.now;
  try {
    await run(dir, 2, [], false);
    // the resume's start takes 1000 s (the monotonic clock moved on while the checkpoint is restored)
    let offset = 0;
    performance.now = () => now.call(performance) + offset;
    await run(dir, 4, [], true, { onResume: () => void (offset += 1e6) });
    const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; imgPerSec: number });
    assert.deepEqual(
      lines.map((l) => l.step),
      [1, 2, 3, 4],
    );
    // 8 images in the step: over 1000 s, 0.008 img/s
    assert.ok(lines[2].imgPerSec > 1, `${lines[2].imgPerSec} img/s`);
  } finally {
    performance.now = now;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the loop refuses data with fewer batches per epoch than --accum-iter, and a job running its own backward with accumulation or loss scaling', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-refused-'));
  try {
    await assert.rejects(run(dir, 4, [], false, { batchesPerEpoch: 1 }), /the data gives 1 batches per epoch, fewer than --accum-iter 2/);
    const ownBackward = /a job that runs its own forward and backward \(CUDA graphs\) needs --accum-iter 1 and no fp16 loss scaling/;
    await assert.rejects(run(dir, 4, [], false, { ownBackward: true }), ownBackward);
    await assert.rejects(run(dir, 4, [], false, { ownBackward: true, accumIter: 1, scaler: true }), ownBackward);
    assert.equal(await run(dir, 2, [], false, { ownBackward: true, accumIter: 1 }), 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("with --accum-iter a step's logged loss is the mean of its micro-batches' losses, and its gradient that of their mean", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-accum-loss-'));
  try {
    assert.equal(await run(dir, 1, [], false), 1);
    const [line] = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { loss: number; gradNorm: number });
    // the first step by hand: run()'s model and its first two batches
    const [loss, norm] = torch.scope(() => {
      torch.manualSeed(1);
      const model = new Linear(3, 1, { dtype: 'float64' });
      const losses = [0, 1].map((b) => {
        const x = torch.randn([4, 3], { dtype: 'float64', generator: new torch.Generator(b) });
        return model.forward(x).sub(x.sum(1, true)).square().mean();
      });
      const mean = losses[0].add(losses[1]).div(2);
      mean.backward();
      return [mean.item(), gradNorm(model.namedParameters()).item()];
    });
    assert.ok(Math.abs(line.loss - loss) < 1e-6 * loss, `logged loss ${line.loss}, the micro-batches' mean ${loss}`);
    assert.ok(Math.abs(line.gradNorm - norm) < 1e-9 * norm, `logged gradient norm ${line.gradNorm}, that of the mean loss ${norm}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a metrics line's images per second counts the images of every micro-batch of its steps", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-images-'));
  const now = performance.now;
  try {
    // every step takes 100 s on the monotonic clock: 2 micro-batches of 4 images, 0.08 img/s
    let offset = 0;
    performance.now = () => now.call(performance) + offset;
    assert.equal(await run(dir, 2, [], false, { onStep: () => void (offset += 1e5) }), 2);
    const rates = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { imgPerSec: number }).imgPerSec);
    assert.equal(rates.length, 2);
    for (const rate of rates) assert.ok(Math.abs(rate - 0.08) < 0.008, `${rate} img/s`);
  } finally {
    performance.now = now;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the run's last checkpoint is written after the job's end (onFinish), scored as that end leaves it: fine-tuning's last evaluation may be 'best'", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-last-best-'));
  try {
    const finishes: [number, boolean][] = [];
    // no score until the job's end, as fine-tuning's without an evaluation before its last
    assert.equal(await run(dir, 4, [], false, { finishes, score: () => (finishes.length ? 0.5 : null) }), 4);
    assert.deepEqual(finishes, [[2, false]]);
    const best = JSON.parse(readFileSync(join(dir, 'checkpoints', 'best', 'state.json'), 'utf8')) as { step: number; best: number };
    assert.deepEqual([best.step, best.best], [4, 0.5]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a loss scaler continues from its checkpoint: a resumed run ends with the scale of an uninterrupted one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-scaler-'));
  try {
    const whole: number[] = [];
    const scales: number[] = [];
    assert.equal(await run(join(dir, 'whole'), 4, [], false, { scaler: true, weights: whole, scales }), 4);
    const resumed: number[] = [];
    assert.equal(await run(join(dir, 'cut'), 2, [], false, { scaler: true, scales }), 2);
    assert.equal(await run(join(dir, 'cut'), 4, [], true, { scaler: true, weights: resumed, scales }), 4);
    // initial scale 16, doubled after each step without an overflow
    assert.deepEqual(scales, [256, 64, 256]);
    assert.deepEqual(resumed, whole);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a NaN loss between log steps stops the run at the next checkpoint, also when the losses after it are finite again (and the weights are)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-nan-'));
  try {
    const stoppedBy: string[] = [];
    assert.equal(await run(dir, 4, [], false, { nanFirstStep: true, logEvery: 10, checkpointEvery: 2, stoppedBy }), 2);
    assert.deepEqual(stoppedBy, ['nonfinite']);
    assert.equal(existsSync(join(dir, 'checkpoints')) ? readdirSync(join(dir, 'checkpoints')).length : 0, 0, 'no checkpoint after the NaN loss');
    // the advice: a lower lr or more warm-up, and full precision where the run had less
    for (const precision of [undefined, 'fp32', 'bf16']) {
      const lines: string[] = [];
      await run(join(dir, `advice-${precision}`), 4, [], false, { nanFirstStep: true, logEvery: 10, checkpointEvery: 2, precision, log: (l) => lines.push(l) });
      const advice = /Start afresh with a lower --blr or more --warmup-epochs(, or --precision fp32)?: /.exec(lines.join('\n'));
      assert.ok(advice, lines.join('\n'));
      assert.equal(advice[1] !== undefined, precision === 'bf16', `${precision}: ${advice[0]}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run that diverges between log steps writes the metrics line of the window that diverged, as one that diverges at a log step does', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-nan-line-'));
  try {
    const lastLine = (out: string) => {
      const lines = existsSync(join(out, 'metrics.jsonl')) ? readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').filter(Boolean) : [];
      return lines.length ? (JSON.parse(lines[lines.length - 1]) as { step: number; loss: number | null }) : null;
    };
    // found at the log step 2, and found at the checkpoint of step 2 with the next log step at 10: the same line
    for (const logEvery of [2, 10]) {
      const out = join(dir, `log-every-${logEvery}`);
      const stoppedBy: string[] = [];
      const losses: number[] = [];
      assert.equal(await run(out, 4, [], false, { nanFirstStep: true, logEvery, checkpointEvery: 2, stoppedBy, losses }), 2);
      assert.deepEqual(stoppedBy, ['nonfinite']);
      assert.deepEqual(lastLine(out), { ...lastLine(out), step: 2, loss: null }, `--log-every ${logEvery}: metrics.jsonl ends with the NaN window`);
      assert.ok(Number.isNaN(losses[1]), `--log-every ${logEvery}: the result's last loss is ${losses[1]}, not the NaN window's`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an optimiser state that became Inf while the losses and the weights stayed finite is not checkpointed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-loop-inf-state-'));
  try {
    const stoppedBy: string[] = [];
    const lines: string[] = [];
    assert.equal(await run(dir, 4, [], false, { hugeFirstStep: true, logEvery: 10, checkpointEvery: 2, stoppedBy, log: (l) => lines.push(l) }), 2);
    assert.deepEqual(stoppedBy, ['nonfinite']);
    assert.match(lines.join('\n'), /stopping: the weights became NaN\/Inf by step 2/);
    assert.equal(existsSync(join(dir, 'checkpoints')) ? readdirSync(join(dir, 'checkpoints')).length : 0, 0, 'no checkpoint of the Inf state');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("checkpointsToWrite counts the checkpoints of the loop's policy: each multiple of --checkpoint-every and each epoch end before the last step once, and the last", () => {
  // steps 2, 4, 6, 8 (every 2) and 4, 8 (epoch ends) before step 10, and step 10
  assert.equal(checkpointsToWrite(0, 10, 2, 4), 5);
  // resumed at step 3: 6, 9 (every 3) and 4, 8 (epoch ends), and step 10
  assert.equal(checkpointsToWrite(3, 10, 3, 4), 5);
  // 3, 6, 9, 12 (every 3) and 4, 8, 12 (epoch ends), 12 once, and step 13
  assert.equal(checkpointsToWrite(0, 13, 3, 4), 7);
  assert.equal(checkpointsToWrite(10, 10, 2, 4), 0, 'finished: none');
});
