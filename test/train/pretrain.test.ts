import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { pretrain, TrainData } from '../../src/train/pretrain';
import type { MetricsRecord } from '../../src/train';
import { MemoryLabelledData } from '../../src/data';
import { memoryTrainData, whileDrawingGlobally } from '../eval/helpers';
import { PRETRAIN_OPTIONS, checkCudaGraphs, fusedKindsOf, modelConfigFrom, validatePretrain } from '../../src/train/pretrain-options';
import { native } from '../../src/torch/native';
import { CheckpointManager } from '../../src/run/checkpoints';
import { readCheckpoint, stateDigest, stepDirName, type LoadedCheckpoint } from '../../src/io/checkpoint';
import { disposeAll } from '../../src/io';
import { readMetrics } from '../../src/run/metrics';
import { resolveOptions, OptionError, parseArgv } from '../../src/util/options';
import { SemAIM, VisionTransformer } from '../../src/semaim';
import { saveTensors } from '../../src/io';
import { paramGroupsWeightDecay } from '../../src/optim';
import { TINY_SEMAIM } from './helpers';

/** Deterministic in-memory images: smooth random blobs, shuffled per epoch from the seed. */
function memoryData(n: number, batch: number, seed: number, opts: { nan?: boolean } = {}): TrainData {
  const g = new torch.Generator(seed);
  const all = torch.randn([n, 3, 4, 4], { generator: g });
  const up = torch.F.interpolate(all, 16, 'bilinear');
  const pixels = up.toFloat32Array();
  all.dispose();
  up.dispose();
  if (opts.nan) pixels.fill(NaN, 0, pixels.length / 2);
  return memoryTrainData(new MemoryLabelledData(pixels, [n, 3, 16, 16], new Int32Array(n), 1), batch, seed);
}

function options(outDir: string, extra: Record<string, unknown> = {}) {
  return resolveOptions(PRETRAIN_OPTIONS, {
    ...TINY_SEMAIM,
    decoderDepth: 2,
    blur: false,
    batchSize: 4,
    epochs: 3,
    warmupEpochs: 1,
    blr: 1.5e-3,
    logEvery: 1,
    checkpointEvery: 3,
    keepLast: 3,
    outDir,
    threads: 1,
    seed: 3,
    ...extra,
  });
}

const quiet = { log: () => {} };

function disposeCheckpoint(c: LoadedCheckpoint): void {
  disposeAll(c.model);
  disposeAll(c.extra);
}

test('an interrupted and resumed run gives the same losses as an uninterrupted one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-resume-'));
  const full = await pretrain(options(join(dir, 'a'), { maxSteps: 9 }), memoryData(16, 4, 1), quiet);
  assert.equal(full.steps, 9);
  const stop = { requested: false };
  const first = await pretrain(options(join(dir, 'b'), { maxSteps: 9 }), memoryData(16, 4, 1), {
    ...quiet,
    stop,
    onStep: (s) => {
      if (s === 5) stop.requested = true;
    },
  });
  assert.equal(first.stoppedBy, 'signal');
  assert.equal(first.steps, 5);
  const second = await pretrain(options(join(dir, 'b'), { maxSteps: 9 }), memoryData(16, 4, 1), quiet);
  assert.equal(second.steps, 9);
  const a = readMetrics(join(dir, 'a', 'metrics.jsonl')).map((r) => [r.step, r.loss] as [number, number]);
  const b = readMetrics(join(dir, 'b', 'metrics.jsonl')).map((r) => [r.step, r.loss] as [number, number]);
  assert.deepEqual(
    b.map(([s]) => s),
    a.map(([s]) => s),
  );
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i][1] - b[i][1]) <= 1e-6 * Math.abs(a[i][1]), `step ${a[i][0]}: ${a[i][1]} vs ${b[i][1]}`);
  rmSync(dir, { recursive: true, force: true });
});

test('a run stopped or killed between log steps, resumed, logs the very lines an uninterrupted run logs', async () => {
  // --log-every 4 with checkpoints at steps 3, 6, 9 and epoch ends (4, 8): a stop at step 5 writes a
  // line off the cadence, a crash at step 7 leaves a checkpoint (6) with steps 5 and 6 not yet logged
  const dir = mkdtempSync(join(tmpdir(), 'semaim-resume-window-'));
  const opts = (name: string) => options(join(dir, name), { maxSteps: 12, logEvery: 4 });
  const lines = (name: string) => readMetrics(join(dir, name, 'metrics.jsonl')).map((r) => [r.step, r.loss]);
  try {
    await pretrain(opts('full'), memoryData(16, 4, 1), quiet);
    const full = lines('full');
    assert.deepEqual(
      full.map(([s]) => s),
      [4, 8, 12],
    );

    const stop = { requested: false };
    const stopAt5 = { ...quiet, stop, onStep: (s: number) => void (s === 5 && (stop.requested = true)) };
    assert.equal((await pretrain(opts('signal'), memoryData(16, 4, 1), stopAt5)).steps, 5);
    assert.deepEqual(
      lines('signal').map(([s]) => s),
      [4, 5],
      'the stopped run shows where it stopped',
    );
    await pretrain(opts('signal'), memoryData(16, 4, 1), quiet);
    assert.deepEqual(lines('signal'), full);

    const crashAt7 = {
      ...quiet,
      onStep: (s: number) => {
        if (s === 7) throw new Error('killed');
      },
    };
    await assert.rejects(pretrain(opts('crash'), memoryData(16, 4, 1), crashAt7), /killed/);
    await pretrain(opts('crash'), memoryData(16, 4, 1), quiet);
    assert.deepEqual(lines('crash'), full);

    // a finished run started again keeps its lines
    await pretrain(opts('crash'), memoryData(16, 4, 1), quiet);
    assert.deepEqual(lines('crash'), full);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run stopped by a signal and resumed keeps the best checkpoint an uninterrupted run keeps', async () => {
  // the checkpoint written at a stop scores a partial loss window that an uninterrupted run never scores:
  // it may not become 'best', or the resumed run ends with another best/ than the uninterrupted one
  const dir = mkdtempSync(join(tmpdir(), 'semaim-resume-best-'));
  const opts = (name: string, maxSteps = 12) => options(join(dir, name), { maxSteps, logEvery: 4, keepLast: 10, blr: 0.05 });
  const bests = (name: string) => {
    const root = join(dir, name, 'checkpoints');
    const steps = readdirSync(root).filter((d) => d.startsWith('step-') && Number(d.slice(5)) > 5);
    const best = (d: string) => (JSON.parse(readFileSync(join(root, d, 'state.json'), 'utf8')) as { best: number | null }).best;
    return { perStep: steps.sort().map((d) => [d, best(d)]), weights: readFileSync(join(root, 'best', 'model.safetensors')) };
  };
  try {
    const fullRun = await pretrain(opts('full'), memoryData(16, 4, 1), quiet);
    const full = bests('full');
    // every logged loss (steps 4, 8, 12) is a checkpoint's score: 'best' is the lowest one
    const logged = readMetrics(join(dir, 'full', 'metrics.jsonl')).map((r) => r.loss as number);
    assert.equal(logged.length, 3);
    assert.equal(fullRun.best, Math.min(...logged));
    const stop = { requested: false };
    const stopAt5 = { ...quiet, stop, onStep: (s: number) => void (s === 5 && (stop.requested = true)) };
    assert.equal((await pretrain(opts('signal'), memoryData(16, 4, 1), stopAt5)).steps, 5);
    await pretrain(opts('signal'), memoryData(16, 4, 1), quiet);
    const resumed = bests('signal');
    assert.deepEqual(resumed.perStep, full.perStep, 'the best score each later checkpoint records');
    assert.ok(resumed.weights.equals(full.weights), "best/ holds the uninterrupted run's best weights");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run stopped by --max-steps and continued keeps the best checkpoint an uninterrupted run keeps (the stop scores a partial loss window)', async () => {
  // pre-training's score is the logged loss: at a --max-steps stop off the --log-every cadence it is the mean of
  // the few steps since the last line, which an uninterrupted run never scores there
  const dir = mkdtempSync(join(tmpdir(), 'semaim-maxsteps-best-'));
  const opts = (name: string, maxSteps: number) => options(join(dir, name), { maxSteps, logEvery: 4, keepLast: 10, blr: 0.05 });
  const bests = (name: string, after: number) => {
    const root = join(dir, name, 'checkpoints');
    const steps = readdirSync(root).filter((d) => d.startsWith('step-') && Number(d.slice(5)) >= after);
    const best = (d: string) => (JSON.parse(readFileSync(join(root, d, 'state.json'), 'utf8')) as { best: number | null }).best;
    return { perStep: steps.sort().map((d) => [d, best(d)]), weights: readFileSync(join(root, 'best', 'model.safetensors')) };
  };
  try {
    await pretrain(opts('full', 12), memoryData(16, 4, 1), quiet);
    // 5: off both cadences (a one-step window); 8: an epoch end on the log cadence, which the uninterrupted run scores too
    for (const at of [5, 8]) {
      const name = `stopped-at-${at}`;
      assert.equal((await pretrain(opts(name, at), memoryData(16, 4, 1), quiet)).stoppedBy, 'maxSteps');
      await pretrain(opts(name, 12), memoryData(16, 4, 1), quiet);
      const continued = bests(name, at === 5 ? 6 : at);
      assert.deepEqual(continued.perStep, bests('full', at === 5 ? 6 : at).perStep, `stopped at ${at}: the best score each later checkpoint records`);
      assert.ok(continued.weights.equals(bests('full', 0).weights), `stopped at ${at}: best/ holds the uninterrupted run's best weights`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run stopped between log steps logs its last step without an older step’s gradient norm', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-stop-log-'));
  try {
    const stop = { requested: false };
    const r = await pretrain(options(dir, { maxSteps: 9, logEvery: 4 }), memoryData(16, 4, 1), {
      ...quiet,
      stop,
      onStep: (s) => {
        if (s === 5) stop.requested = true;
      },
    });
    assert.equal(r.steps, 5);
    const rows = readMetrics(join(dir, 'metrics.jsonl'));
    assert.deepEqual(
      rows.map((m) => m.step),
      [4, 5],
    );
    assert.ok(Number.isFinite(rows[0].gradNorm), 'measured at the log step');
    assert.equal(rows[1].gradNorm, null, 'step 5 was not measured: no value rather than step 4’s');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a corrupted latest checkpoint falls back to the previous one with a warning', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ckpt-'));
  await pretrain(options(dir, { maxSteps: 7 }), memoryData(16, 4, 2), quiet);
  const warnings: string[] = [];
  const mgr = new CheckpointManager(dir, 3, (m) => warnings.push(m));
  const list = mgr.list();
  assert.deepEqual(
    list.map((c) => c.step),
    [7, 6, 4],
  );
  const f = join(list[0].dir, 'model.safetensors');
  const bytes = readFileSync(f);
  bytes[bytes.length - 3] ^= 0xff;
  writeFileSync(f, bytes);
  const loaded = mgr.loadLatest();
  assert.equal(loaded?.step, 6);
  assert.match(warnings.join('\n'), /step-00000007.*SHA-256/);
  for (const t of [...loaded!.model.values(), ...loaded!.extra.values()]) t.dispose();
  assert.ok(existsSync(join(dir, 'checkpoints', 'best', 'state.json')));
  rmSync(dir, { recursive: true, force: true });
});

test('a run whose data now gives another number of steps per epoch is refused before any step, its checkpoint and metrics kept', async () => {
  // images added to a folder dataset between two calls: the resumed run went on at its old (epoch, batch)
  // with a step count of the old layout, its epochs going backwards, and trained past --epochs
  const dir = mkdtempSync(join(tmpdir(), 'semaim-data-changed-'));
  try {
    await pretrain(options(dir, { maxSteps: 6 }), memoryData(16, 4, 1), quiet); // 4 steps per epoch
    const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
    await assert.rejects(
      pretrain(options(dir), memoryData(24, 4, 1), quiet), // 6 steps per epoch
      /made 4 optimiser steps per epoch, the data now gives 6 \(6 batches per epoch at --accum-iter 1\)/,
    );
    assert.deepEqual(
      new CheckpointManager(dir).list().map((c) => c.step),
      [6, 4, 3],
    );
    assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'), metrics);
    // the same data resumes
    assert.equal((await pretrain(options(dir), memoryData(16, 4, 1), quiet)).steps, 12);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a checkpoint of a release that did not record stepsPerEpoch is refused when the data now gives another number of steps per epoch', async () => {
  // checkpoints written before stepsPerEpoch was recorded place the run by step, epoch and batch alone: resumed
  // on data that gives another count, the run went on at its old (epoch, batch) with the old step count
  const dir = mkdtempSync(join(tmpdir(), 'semaim-data-changed-old-'));
  try {
    await pretrain(options(dir, { maxSteps: 6 }), memoryData(16, 4, 1), quiet); // 4 steps per epoch
    for (const { dir: ckpt } of new CheckpointManager(dir).list()) {
      const path = join(ckpt, 'state.json');
      const { stepsPerEpoch: _recorded, ...state } = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
      writeFileSync(path, JSON.stringify({ ...state, stateSha256: stateDigest(state) }, null, 1));
    }
    const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
    await assert.rejects(
      pretrain(options(dir), memoryData(24, 4, 1), quiet), // 6 steps per epoch
      /made 4 optimiser steps per epoch, the data now gives 6 \(6 batches per epoch at --accum-iter 1\)/,
    );
    assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'), metrics);
    // the same data resumes
    assert.equal((await pretrain(options(dir), memoryData(16, 4, 1), quiet)).steps, 12);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run started with options that changed nothing resumes without them (options refused as inert since)', async () => {
  // --order-precision with --order raster, the blur's size with --no-blur, --ema-decay without --ema: a run
  // started with them (the library took them; the command did before it refused them) could not resume as
  // typed (refused now) nor without them (a changed recipe, and the model config's blur size a changed model)
  const dir = mkdtempSync(join(tmpdir(), 'semaim-inert-resume-'));
  try {
    const inert = { order: 'raster', orderPrecision: 'fp32', blurKernel: 5, blurSigma: 2, emaDecay: 0.5, similarityTokens: 'gap', centers: 7 };
    await pretrain(options(dir, { ...inert, maxSteps: 6 }), memoryData(16, 4, 1), quiet);
    assert.equal((await pretrain(options(dir, { order: 'raster' }), memoryData(16, 4, 1), quiet)).steps, 12);
    // an option read by one of the two runs is still a change: the blur's size with the blur on now
    await assert.rejects(
      pretrain(options(dir, { order: 'raster', blur: true, epochs: 4 }), memoryData(16, 4, 1), quiet),
      /started with other settings[^]*--blur +false +true/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an aborted AbortSignal stops the run at a step boundary after a checkpoint; the same job then resumes from it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-abort-'));
  const controller = new AbortController();
  const first = await pretrain(options(dir, { maxSteps: 9 }), memoryData(16, 4, 1), {
    ...quiet,
    signal: controller.signal,
    onStep: (s) => {
      if (s === 4) controller.abort();
    },
  });
  assert.equal(first.stoppedBy, 'signal');
  assert.equal(first.steps, 4);
  assert.equal(first.signal, undefined);
  assert.match(first.checkpoint ?? '', /step-0*4$/);
  const again = await pretrain(options(dir, { maxSteps: 9 }), memoryData(16, 4, 1), quiet);
  assert.equal(again.steps, 9);
  // aborted before it starts: no step and no checkpoint (it trained one and wrote its checkpoint), and the result says it stopped
  const early = await pretrain(options(join(dir, 'b'), { maxSteps: 9 }), memoryData(16, 4, 1), { ...quiet, signal: AbortSignal.abort() });
  assert.deepEqual([early.stoppedBy, early.steps, early.checkpoint], ['signal', 0, null]);
  assert.equal(existsSync(join(dir, 'b', 'checkpoints')), false);
  // a stopped run resumed with its signal aborted already: no step, no new checkpoint
  const resumed = await pretrain(options(dir, { maxSteps: 12 }), memoryData(16, 4, 1), { ...quiet, signal: AbortSignal.abort() });
  assert.deepEqual([resumed.stoppedBy, resumed.steps], ['signal', 9]);
  assert.match(resumed.checkpoint ?? '', /step-0*9$/);
  rmSync(dir, { recursive: true, force: true });
});

test('pretrain closes the data it is given when it refuses an option', async () => {
  const data = memoryData(16, 4, 1);
  let closed = 0;
  const spy: TrainData = { ...data, epoch: (e, s) => data.epoch(e, s), close: () => void closed++ };
  await assert.rejects(pretrain(options('/nonexistent/abc', { accumIter: 5 }), spy, quiet), (e: unknown) => e instanceof OptionError && e.key === 'accumIter');
  assert.equal(closed, 1);
});

test('pretrain checks its hooks before any work: an AbortController as signal, an unknown or misspelt hook, a value of another kind are OptionErrors naming it, no folder made, no lock or listener left', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-hooks-'));
  try {
    const out = join(dir, 'run');
    const listeners = process.listenerCount('SIGINT');
    const refused = (key: string, detail: RegExp) => (e: unknown) => e instanceof OptionError && e.key === key && detail.test(e.detail);
    for (const [hooks, key, detail] of [
      // a TypeError once the run had written config.json and taken run.lock, which it kept (the same call: RunInUseError naming this process)
      [{ signal: new AbortController() }, 'signal', /expected an AbortSignal \(an AbortController's \.signal\), got an object \(AbortController\)/],
      [{ onstep: () => {} }, 'onstep', /unknown option; did you mean 'onStep'\?/],
      // the evaluation jobs' spelling: the progress line stayed on
      [{ progress: null }, 'progress', /expected true or false, got null/],
      [{ catchSignals: 'false' }, 'catchSignals', /expected true or false, got "false"/],
      [{ onStep: 'log' }, 'onStep', /expected a function, got "log"/],
      [5, 'hooks', /expected an object of hooks/],
    ] as const) {
      let closed = 0;
      const data = memoryData(16, 4, 1);
      await assert.rejects(pretrain(options(out, { maxSteps: 2 }), { ...data, close: () => void closed++ }, hooks as never), refused(key, detail));
      assert.equal(closed, 1, 'the data is closed');
      assert.equal(existsSync(out), false, `no run folder for ${key}`);
    }
    assert.equal(process.listenerCount('SIGINT'), listeners);
    const r = await pretrain(options(out, { maxSteps: 2 }), memoryData(16, 4, 1), { ...quiet, signal: new AbortController().signal, onStep: undefined });
    assert.equal(r.steps, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a teacher whose weights cannot be loaded fails the run with its model freed and no run folder made', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-bad-teacher-'));
  try {
    // a config and layout that pass the option checks, weights that loading refuses (NaN)
    const enc = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4 };
    const teacher = join(dir, 'teacher.safetensors');
    const t = new VisionTransformer(enc).initWeights(3);
    const weights = t.stateDict();
    torch.noGrad(() => weights.get('norm.weight')!.fill_(NaN));
    saveTensors(teacher, weights);
    t.dispose();
    writeFileSync(join(dir, 'teacher.json'), JSON.stringify(enc));
    const data = memoryData(16, 4, 1);
    const live = torch.memoryStats().liveTensors;
    const outDir = join(dir, 'run');
    await assert.rejects(pretrain(options(outDir, { maxSteps: 1, target: 'features', teacher }), data, quiet), /NaN\/Inf/);
    assert.equal(torch.memoryStats().liveTensors, live, 'the failed run freed its model');
    assert.equal(existsSync(outDir), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pretrain gives libtorch back the thread count it had (a process-wide setting)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-threads-'));
  const before = torch.getNumThreads();
  try {
    torch.setNumThreads(2);
    await pretrain(options(dir, { maxSteps: 1, threads: 1 }), memoryData(16, 4, 1), quiet);
    assert.equal(torch.getNumThreads(), 2);
  } finally {
    torch.setNumThreads(before);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pretrain gives the fused kernels’ switch back as it found it, the CPU paths (onCpu) included', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-fused-switch-'));
  try {
    torch.fused.setFused(['layernorm', 'gelu'], { onCpu: true });
    await pretrain(options(dir, { maxSteps: 1 }), memoryData(16, 4, 1), quiet);
    assert.deepEqual([torch.fused.fusedKinds(), torch.fused.fusedOnCpu()], [['layernorm', 'gelu'], true]);
  } finally {
    torch.fused.setFused('none');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pretrain leaves the caller’s global random stream where it was (it seeds it from --seed while it runs), also when resumed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-caller-rng-'));
  const nextDraws = async (between: () => Promise<unknown>) => {
    torch.manualSeed(5);
    await between();
    return torch.scope(() => Array.from(torch.rand([4]).toFloat32Array()));
  };
  try {
    const expected = await nextDraws(async () => {});
    assert.deepEqual(await nextDraws(() => pretrain(options(dir, { maxSteps: 2, checkpointEvery: 1 }), memoryData(16, 4, 1), quiet)), expected);
    // the second call resumes from the first's checkpoint, which sets the global generator from it
    assert.deepEqual(await nextDraws(() => pretrain(options(dir, { maxSteps: 3, checkpointEvery: 1 }), memoryData(16, 4, 1), quiet)), expected, 'resumed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a pre-training with drop path gives the same losses and weights while the program draws from the global generator between its steps (jobs at once in one process)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-own-streams-'));
  try {
    const run = async (out: string) => {
      const losses: number[] = [];
      await pretrain(options(join(dir, out), { maxSteps: 4, dropPath: 0.5 }), memoryData(16, 4, 1), {
        ...quiet,
        onMetrics: (r) => void losses.push(r.loss ?? NaN),
      });
      return { losses, weights: readFileSync(join(dir, out, 'checkpoints', 'step-00000004', 'model.safetensors')) };
    };
    const alone = await run('alone');
    const { result: beside, draws } = await whileDrawingGlobally(() => run('beside'));
    assert.ok(draws >= 4, `${draws} global draws came between the steps`);
    assert.deepEqual(beside.losses, alone.losses);
    assert.ok(beside.weights.equals(alone.weights), 'the same final weights');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a library caller sees every metrics line as it is written (onMetrics), and progress: false keeps stderr quiet', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-metrics-'));
  const seen: MetricsRecord[] = [];
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => written.push(String(chunk)) > 0) as typeof process.stderr.write;
  try {
    await pretrain(options(dir, { maxSteps: 4, logEvery: 2 }), memoryData(16, 4, 1), { ...quiet, progress: false, onMetrics: (r) => seen.push(r) });
  } finally {
    process.stderr.write = write;
  }
  assert.deepEqual(written, []);
  assert.deepEqual(seen, readMetrics(join(dir, 'metrics.jsonl')));
  assert.deepEqual(
    seen.map((r) => r.step),
    [2, 4],
  );
  assert.equal(typeof seen[1].loss, 'number');
  rmSync(dir, { recursive: true, force: true });
});

test('pretrain catches SIGINT while it runs unless catchSignals is false, and leaves the process’s listeners as it found them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-sigint-'));
  const listeners = process.listenerCount('SIGINT');
  const interruptAt2 = (s: number) => {
    if (s === 2) process.emit('SIGINT', 'SIGINT');
  };
  const caught = await pretrain(options(join(dir, 'a'), { maxSteps: 4 }), memoryData(16, 4, 1), { ...quiet, onStep: interruptAt2 });
  assert.deepEqual([caught.stoppedBy, caught.steps, caught.signal], ['signal', 2, 'SIGINT']);
  const ignored = await pretrain(options(join(dir, 'b'), { maxSteps: 4 }), memoryData(16, 4, 1), { ...quiet, catchSignals: false, onStep: interruptAt2 });
  assert.deepEqual([ignored.stoppedBy, ignored.steps], ['maxSteps', 4]);
  assert.equal(process.listenerCount('SIGINT'), listeners);
  rmSync(dir, { recursive: true, force: true });
});

test('a NaN loss stops the run with a clear message and writes no checkpoint after it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-nan-'));
  const lines: string[] = [];
  const r = await pretrain(options(dir, { maxSteps: 6 }), memoryData(16, 4, 3, { nan: true }), { log: (l) => lines.push(l) });
  assert.equal(r.stoppedBy, 'nonfinite');
  assert.match(lines.join('\n'), /NaN\/Inf/);
  assert.equal(new CheckpointManager(dir).list().length, 0);
  // JSON has no NaN: the loss is null, and the norm, measured at this log step, says it was not finite (null would read "not measured")
  const [row] = readMetrics(join(dir, 'metrics.jsonl'));
  assert.equal(row.loss, null);
  assert.equal(row.gradNorm, 'NaN');
  rmSync(dir, { recursive: true, force: true });
});

test('gradients that overflow while the loss is still finite: no checkpoint of NaN weights, and the good ones are kept', async () => {
  // lr 1e3: the loss of step 2 (3 on some CPUs) is finite, but its update writes NaN weights (the old loop saved
  // them as that step, called it the last good checkpoint, and pruned the one before under keepLast 1)
  const dir = mkdtempSync(join(tmpdir(), 'semaim-diverge-'));
  const lines: string[] = [];
  const o = options(dir, { lr: 1e3, warmupEpochs: 0, logEvery: 100, checkpointEvery: 1, keepLast: 1, maxSteps: 8 });
  const r = await pretrain(o, memoryData(16, 4, 1), { log: (l) => lines.push(l), progress: false });
  assert.equal(r.stoppedBy, 'nonfinite');
  // (the step whose update overflows is 2 or 3, as the CPU's kernels round: the checkpoint before it is the last good one)
  const stop = /stopping: the weights became NaN\/Inf by step (\d+) .*The last good checkpoint is .*(step-\d{8})/.exec(lines.join('\n'));
  assert.ok(stop && Number(stop[1]) >= 2, lines.join('\n'));
  const lastGood = stepDirName(Number(stop[1]) - 1);
  assert.equal(stop[2], lastGood);
  // lr × weight decay (1e3 × 0.05) ≥ 1 flipped and grew the weights: the advice names the weight decay, not --blr
  assert.match(
    lines.join('\n'),
    /Start afresh with a lower --weight-decay or lr \(at lr [\d.]+ AdamW multiplied the weights by 1 − lr × weight decay = -[\d.]+ at every step\)/,
  );
  const manager = new CheckpointManager(dir);
  const kept = manager.list().map((c) => c.dir);
  assert.deepEqual(
    kept.map((d) => d.split('/').pop()),
    [lastGood],
  );
  const best = join(dir, 'checkpoints', 'best');
  for (const d of existsSync(best) ? [...kept, best] : kept) disposeCheckpoint(readCheckpoint(d)); // every one loads with finite values
  rmSync(dir, { recursive: true, force: true });
});

test('a resumed run moves a checkpoint holding NaN/Inf values aside and goes on from the last good one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-nan-ckpt-'));
  const o = (maxSteps: number) => options(dir, { checkpointEvery: 1, maxSteps });
  await pretrain(o(2), memoryData(16, 4, 1), quiet);
  // step 2 as an older semaim wrote it after a divergence: NaN weights under a valid state.json
  const step2 = join(dir, 'checkpoints', 'step-00000002');
  const loaded = readCheckpoint(step2);
  const [name, first] = [...loaded.model][0];
  loaded.model.set(name, torch.fullLike(first, NaN));
  rmSync(step2, { recursive: true });
  new CheckpointManager(dir).save(2, { model: loaded.model, extra: loaded.extra, state: loaded.state, modelMetadata: loaded.modelMetadata });
  disposeCheckpoint(loaded);
  first.dispose();
  const lines: string[] = [];
  const r = await pretrain(o(3), memoryData(16, 4, 1), { log: (l) => lines.push(l), progress: false });
  assert.deepEqual([r.stoppedBy, r.steps], ['maxSteps', 3]);
  assert.match(lines.join('\n'), /step-00000002 holds NaN\/Inf values, from a run that diverged \(.*tensor '.*' holds \d+ NaN\/Inf value/);
  assert.match(lines.join('\n'), /resumed from .*step-00000001/);
  assert.equal(readdirSync(join(dir, 'checkpoints', 'corrupt')).length, 1);
  rmSync(dir, { recursive: true, force: true });
});

test('--blr scales by the effective batch, accumulated steps included: lr = blr × batch × accumIter / 256', async () => {
  // No warm-up and a cosine over 1000 epochs: the lr of the first steps is the peak (to 3e-6 of it).
  const dir = mkdtempSync(join(tmpdir(), 'semaim-accum-lr-'));
  await pretrain(options(dir, { accumIter: 2, blr: 1e-3, warmupEpochs: 0, epochs: 1000, maxSteps: 2, logEvery: 1 }), memoryData(16, 4, 1), quiet);
  const lrs = readMetrics(join(dir, 'metrics.jsonl')).map((r) => r.lr as number);
  assert.equal(lrs.length, 2);
  const peak = (1e-3 * 4 * 2) / 256; // 3.125e-5, not the 1.5625e-5 of batch 4 alone
  for (const lr of lrs) assert.ok(Math.abs(lr - peak) < 1e-4 * peak, `lr ${lr}, expected ${peak}`);
  rmSync(dir, { recursive: true, force: true });
});

test('bad configs are refused before any work, naming the key', () => {
  assert.throws(
    () => resolveOptions(PRETRAIN_OPTIONS, { batchSzie: 4 }),
    (e: unknown) => e instanceof OptionError && e.key === 'batchSzie',
  );
  assert.throws(
    () => modelConfigFrom(options('/nonexistent', { imgSize: 30, patchSize: 4 })),
    (e: unknown) => e instanceof OptionError && e.key === 'imgSize' && e.message === "option 'imgSize': 30 is not divisible by --patch-size 4",
  );
  assert.throws(() => resolveOptions(PRETRAIN_OPTIONS, { order: 'spiral' }), /order.*must be one of/);
  assert.throws(() => resolveOptions(PRETRAIN_OPTIONS, { epochs: 'many' }), /epochs.*expected a number/);
  assert.throws(() => parseArgv(['--no-such-flag', '1'], PRETRAIN_OPTIONS), /option 'noSuchFlag': unknown option \(see --help\)/);
  assert.throws(
    () => validatePretrain(options('/x', { epochs: 2, warmupEpochs: 2 })),
    (e: unknown) => e instanceof OptionError && e.key === 'warmupEpochs' && /must be below --epochs \(2\)/.test(e.message),
  );
  assert.throws(
    () => modelConfigFrom(options('/x', { decoderDepth: 5 })),
    (e: unknown) => e instanceof OptionError && e.key === 'decoderDepth',
  );
  assert.equal(existsSync('/nonexistent'), false);
  const { options: parsed } = parseArgv(['--batch-size', '8', '--no-blur', '--order=raster'], PRETRAIN_OPTIONS);
  assert.deepEqual(resolveOptions(PRETRAIN_OPTIONS, parsed).batchSize, 8);
  assert.equal(resolveOptions(PRETRAIN_OPTIONS, parsed).blur, false);
});

test('the no-decay set is biases, norms, 1-D parameters and the [CLS] token', () => {
  const model = new SemAIM(modelConfigFrom(options('/x')));
  const [noDecay, decay] = paramGroupsWeightDecay(model.namedParameters(), { weightDecay: 0.05, noWeightDecay: ['cls_token', 'pos_embed'] });
  const nd = [...noDecay.params].map(([n]) => n);
  const d = [...decay.params].map(([n, p]) => [n, p.ndim] as [string, number]);
  assert.ok(nd.includes('cls_token'));
  for (const n of nd) assert.ok(/\.bias$|norm\d?\.weight$|^norm\.weight$|^cls_token$/.test(n), n);
  for (const [n, nd2] of d) assert.ok(nd2 >= 2 && /weight$/.test(n) && !/norm/.test(n), n);
  assert.equal(nd.length + d.length, model.parameters().length);
  assert.equal(
    [...model.namedParameters()].some(([n]) => n === 'pos_embed'),
    false,
    'pos_embed is a fixed buffer',
  );
  model.dispose();
});

test('--cuda-graphs and --fused are refused before any work where they cannot run, with the reason; --fused auto', () => {
  const refusal = (extra: Record<string, unknown>) => () => validatePretrain(options('/nonexistent', { cudaGraphs: true, ...extra }));
  const byCudaGraphs = (re: RegExp) => (e: unknown) => e instanceof OptionError && e.key === 'cudaGraphs' && re.test(e.message);
  assert.throws(refusal({ accumIter: 2 }), byCudaGraphs(/needs --accum-iter 1 \(got 2\)/));
  assert.throws(refusal({ device: 'cpu' }), byCudaGraphs(/need a CUDA device \(got cpu\)/));
  assert.throws(refusal({ dropPath: 0.1 }), byCudaGraphs(/needs --drop-path 0 \(got 0.1\)/));
  const onCuda = { cudaGraphs: true, device: 'cuda', precision: 'bf16' as const, accumIter: 1, dropPath: 0 };
  if (!native.cudaBuild) assert.throws(() => checkCudaGraphs(onCuda), byCudaGraphs(/addon built against a CUDA libtorch/));
  assert.doesNotThrow(() => validatePretrain(options('/nonexistent', { cudaGraphs: false, accumIter: 2 })));
  const byFused = (re: RegExp) => (e: unknown) => e instanceof OptionError && e.key === 'fused' && re.test(e.message);
  assert.throws(() => validatePretrain(options('/nonexistent', { fused: 'layernorm,softmax' })), byFused(/unknown fused kernel kind\(s\) softmax/));
  assert.throws(() => validatePretrain(options('/nonexistent', { fused: 'all' })), byFused(/CUDA devices only \(got --device cpu\)/));
  if (!native.cudaBuild) assert.throws(() => fusedKindsOf({ fused: 'gelu', device: 'cuda' }), byFused(/cannot run here/));
  // layernorm-backward without layernorm: the model never takes the LayerNorm kernel, so its backward neither
  const needsLayerNorm = byFused(/layernorm-backward is the backward of the layernorm kernel and has no effect without it/);
  assert.throws(() => fusedKindsOf({ fused: 'layernorm-backward,gelu', device: 'cuda' }), needsLayerNorm);
  assert.throws(() => fusedKindsOf({ fused: 'layernorm-backward', device: 'cpu' }), needsLayerNorm);
  assert.deepEqual(fusedKindsOf({ fused: 'none', device: 'cpu' }), []);
  // auto (the default): LayerNorm where the kernels compile on a GPU, nothing elsewhere, never refused.
  assert.equal(PRETRAIN_OPTIONS.fused.default, 'auto');
  assert.equal(resolveOptions(PRETRAIN_OPTIONS, { device: 'cpu' }).fused, 'none');
  assert.deepEqual(fusedKindsOf({ fused: 'auto', device: 'cpu' }), []);
  if (!native.cudaBuild) {
    assert.equal(resolveOptions(PRETRAIN_OPTIONS, { device: 'cuda' }).fused, 'none');
    assert.deepEqual(fusedKindsOf({ fused: 'auto', device: 'cuda' }), []);
  }
  assert.equal(existsSync('/nonexistent'), false);
});

// The code around the captured step (static inputs, the order noise drawn outside it, the job's own
// forward and backward, the optimiser after it) without the capture itself, which needs a GPU
// (test/fused/cuda-paths.test.ts runs the capture there).
test('--cuda-graphs’s step path, run eagerly, trains exactly as the plain step, through a resume', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-static-step-'));
  const losses = (d: string) => readMetrics(join(d, 'metrics.jsonl')).map((r) => r.loss);
  const orders: Record<string, Record<string, unknown>> = {
    semantic: {},
    'semantic, EMA map': { ema: true, similaritySource: 'ema' },
    stochastic: { order: 'stochastic' },
    raster: { order: 'raster' },
  };
  for (const [name, extra] of Object.entries(orders)) {
    const o = (d: string) => options(join(dir, name, d), { maxSteps: 8, ...extra });
    await pretrain(o('plain'), memoryData(16, 4, 1), quiet);
    const stop = { requested: false };
    const onStep = (s: number) => void (s === 5 && (stop.requested = true));
    const first = await pretrain(o('static'), memoryData(16, 4, 1), { ...quiet, stop, onStep, staticStepWithoutCapture: true });
    assert.equal(first.stoppedBy, 'signal');
    await pretrain(o('static'), memoryData(16, 4, 1), { ...quiet, staticStepWithoutCapture: true });
    const plain = losses(join(dir, name, 'plain'));
    assert.equal(plain.length, 8);
    assert.deepEqual(losses(join(dir, name, 'static')), plain, name);
  }
  rmSync(dir, { recursive: true, force: true });
});

test('sizes known before work are refused naming the flag, before any folder exists (loader, loop and launcher wording, exit 1)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-pretrain-sizes-'));
  try {
    const out = join(dir, 'run');
    const { commands } = await import('../../src/cli/commands');
    const argv = [
      '--model',
      'vit_tiny',
      '--dataset',
      'synthetic',
      '--synthetic-size',
      '64',
      '--batch-size',
      '16',
      '--img-size',
      '32',
      '--patch-size',
      '4',
      '--out-dir',
      out,
    ];
    for (const [extra, key, message] of [
      [['--batch-size', '65'], 'batchSize', /65 exceeds the 64 images of --synthetic-size/],
      [['--accum-iter', '5'], 'accumIter', /5 exceeds the 4 batches per epoch of --synthetic-size 64 at --batch-size 16/],
      [['--img-size', '4', '--patch-size', '2'], 'imgSize', /the synthetic objects need images of at least 8 pixels, got 4/],
      // every process takes --batch-size images of each global batch
      [['--batch-size', '40', '--nproc-per-node', '2'], 'batchSize', /40 × 2 processes exceeds the 64 images of --synthetic-size/],
      [
        ['--accum-iter', '3', '--nproc-per-node', '2'],
        'accumIter',
        /3 exceeds the 2 batches per epoch of --synthetic-size 64 at --batch-size 16 × 2 processes/,
      ],
      [['--nnodes', '2', '--node-rank', '5'], 'nodeRank', /must be below --nnodes 2 \(0\.\.1\), got 5/],
      [['--nnodes', '2', '--node-rank', '2'], 'nodeRank', /must be below --nnodes 2 \(0\.\.1\), got 2/],
    ] as const) {
      assert.throws(
        () => commands.pretrain.parse([...argv, ...extra]),
        (e: unknown) => e instanceof OptionError && e.key === key && message.test(e.message),
        key,
      );
    }
    // data known only once opened: still refused before the out-dir is made
    await assert.rejects(
      pretrain(options(out, { accumIter: 5 }), memoryData(16, 4, 0), quiet),
      (e: unknown) => e instanceof OptionError && e.key === 'accumIter' && /5 exceeds the 4 batches per epoch the data gives at --batch-size 4/.test(e.message),
    );
    assert.equal(existsSync(out), false, 'no empty out-dir');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--order-precision: the similarity pass that orders the patches runs under --precision ('same') or in float32 ('fp32')", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-order-precision-'));
  // (the loss's two passes call it through the module: the order pass first, then the forward)
  const precision = require('../../src/run/precision') as typeof import('../../src/run/precision');
  const real = precision.withPrecision;
  const seen: string[] = [];
  precision.withPrecision = ((p: string, device: torch.Device, fn: () => unknown) => {
    seen.push(p);
    return real(p, device, fn);
  }) as typeof real;
  try {
    for (const orderPrecision of ['same', 'fp32']) {
      seen.length = 0;
      await pretrain(options(join(dir, orderPrecision), { precision: 'bf16', orderPrecision, maxSteps: 1 }), memoryData(16, 4, 1), quiet);
      assert.deepEqual(seen, [orderPrecision === 'fp32' ? 'fp32' : 'bf16', 'bf16'], orderPrecision);
    }
  } finally {
    precision.withPrecision = real;
    rmSync(dir, { recursive: true, force: true });
  }
});
