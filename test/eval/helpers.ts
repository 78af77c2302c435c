// Shared fixtures of the evaluation tests: tiny encoders saved as exported files, labelled images in
// memory, and in-memory data factories.
import { readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { saveTensors } from '../../src/io';
import { EncoderConfig, VisionTransformer } from '../../src/semaim';
import { DataFactories, EvalDataRequest, MemoryLabelledData } from '../../src/data';
import { TrainBatch, TrainData, pretrain } from '../../src/train/pretrain';
import { PRETRAIN_OPTIONS } from '../../src/train/pretrain-options';
import { resolveOptions } from '../../src/util/options';

export const TINY: EncoderConfig = { imgSize: 8, patchSize: 4, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 2 };

/** Writes `<dir>/<name>.safetensors` + `.json` (as `semaim export`) for a seeded random encoder. */
export function writeEncoder(dir: string, cfg: EncoderConfig = TINY, seed = 1, name = 'encoder'): string {
  torch.manualSeed(seed);
  const enc = new VisionTransformer(cfg).initWeights();
  const path = join(dir, `${name}.safetensors`);
  saveTensors(path, enc.stateDict(), { config: JSON.stringify(cfg) });
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(cfg));
  enc.dispose();
  return path;
}

/**
 * n images [3, size, size] whose class (0..classes-1) sets a colour offset and a bright quadrant, plus
 * seeded noise: learnable by a tiny model in a few steps.
 */
export function toyImages(n: number, classes: number, size: number, seed: number): MemoryLabelledData {
  const g = new torch.Generator(seed);
  const x = torch.scope(() => torch.randn([n, 3, size, size], { generator: g }).mul(0.3).toFloat32Array());
  const labels = Int32Array.from({ length: n }, (_, i) => i % classes);
  const per = 3 * size * size;
  for (let i = 0; i < n; i++) {
    const c = labels[i];
    for (let ch = 0; ch < 3; ch++)
      for (let y = 0; y < size; y++)
        for (let xx = 0; xx < size; xx++) {
          const q = (y < size / 2 ? 0 : 2) + (xx < size / 2 ? 0 : 1);
          x[i * per + (ch * size + y) * size + xx] += (ch === c % 3 ? 1 : -0.5) + (q === c % 4 ? 1.5 : 0);
        }
  }
  return new MemoryLabelledData(
    x,
    [n, 3, size, size],
    labels,
    classes,
    Array.from({ length: classes }, (_, i) => `class${i}`),
  );
}

/** Pre-training data over a labelled set (labels dropped), shuffled per epoch from the seed. */
export function memoryTrainData(data: MemoryLabelledData, batch: number, seed: number): TrainData {
  const per = data.imageShape.reduce((a, b) => a * b, 1);
  const n = data.size;
  return {
    batchesPerEpoch: Math.floor(n / batch),
    async *epoch(epoch: number, start: number, end = Infinity): AsyncGenerator<TrainBatch> {
      const perm = torch.randperm(n, { generator: new torch.Generator(seed * 1000 + epoch) });
      const order = Array.from(perm.data() as BigInt64Array, Number);
      perm.dispose();
      for (let b = start; b < Math.min(Math.floor(n / batch), end); b++) {
        const images = new Float32Array(batch * per);
        for (let i = 0; i < batch; i++) images.set(data.images.subarray(order[b * batch + i] * per, (order[b * batch + i] + 1) * per), i * per);
        yield { images, shape: [batch, ...data.imageShape] };
      }
    },
    close() {},
  };
}

/** Factories over fixed train/test sets (the limit picks a class-balanced subset). */
export function memoryFactories(train: MemoryLabelledData, test: MemoryLabelledData, requests: EvalDataRequest[] = []): DataFactories {
  return {
    makeEvalData(r) {
      requests.push(r);
      const d = r.split === 'train' ? train : test;
      return r.limit ? d.subset(r.limit, r.seed) : d;
    },
    makeTrainData(o) {
      return memoryTrainData(train, o.batchSize, o.seed);
    },
  };
}

/** Max |a − b|. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Frees earlier tests' unreachable tensors (garbage collection, then a turn of the event loop for their
 * finalizers): a live-tensor count taken after this does not drop when a job lets the event loop turn.
 */
export async function settleGarbage(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Runs `job` and counts the event-loop turns it allowed meanwhile (a setImmediate chain that runs while the job yields). */
export async function countingLoopTurns<T>(job: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let ticking = true;
  const tick = (): void => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    return { result: await job(), turns };
  } finally {
    ticking = false;
  }
}

/**
 * Runs `job` while the program draws from the global generator at every event-loop turn the job allows (as
 * the caller or another job of the process may); gives the job's result and how many draws came between.
 */
export async function whileDrawingGlobally<T>(job: () => Promise<T>): Promise<{ result: T; draws: number }> {
  let draws = 0;
  let drawing = true;
  const draw = (): void => {
    if (!drawing) return;
    torch.rand([10]).dispose();
    draws++;
    setImmediate(draw);
  };
  setImmediate(draw);
  try {
    return { result: await job(), draws };
  } finally {
    drawing = false;
  }
}

/** A 2-step pre-training run in `outDir` of a ViT of TINY's size (decoder of 1 block, no blur) on 16 toy images. */
export async function pretrainTinyRun(outDir: string, more: Record<string, unknown> = {}): Promise<void> {
  const o = resolveOptions(PRETRAIN_OPTIONS, {
    model: 'vit_tiny',
    imgSize: 8,
    patchSize: 4,
    embedDim: 16,
    depth: 2,
    numHeads: 2,
    decoderDepth: 1,
    blur: false,
    batchSize: 8,
    epochs: 1,
    warmupEpochs: 0,
    maxSteps: 2,
    outDir,
    threads: 1,
    ...more,
  });
  await pretrain(o, memoryTrainData(toyImages(16, 2, 8, 1), 8, 1), { log: () => {} });
}

/**
 * A tiny pre-training run whose evaluation sees the run prune its checkpoint: the job resolves step 1 (step 2
 * is held aside), and `prune()` (the factories' first data request calls it) puts step 2 back and removes
 * step 1, as a run saving step 2 with --keep-last 1 does while the job sets up. `newest`: step 2's folder.
 */
export async function runPrunedWhileDataIsMade(
  dir: string,
  f: DataFactories,
): Promise<{ run: string; newest: string; oldest: string; prune: () => void; factories: DataFactories }> {
  const run = join(dir, 'pre');
  await pretrainTinyRun(run, { checkpointEvery: 1 });
  const [oldest, newest] = readdirSync(join(run, 'checkpoints'))
    .filter((n) => n.startsWith('step-'))
    .sort()
    .map((n) => join(run, 'checkpoints', n));
  const aside = join(dir, 'step-aside');
  renameSync(newest, aside);
  let pruned = false;
  const prune = () => {
    if (pruned) return;
    pruned = true;
    renameSync(aside, newest);
    rmSync(oldest, { recursive: true });
  };
  const factories: DataFactories = {
    ...f,
    makeEvalData(r, slice) {
      prune();
      return f.makeEvalData(r, slice);
    },
  };
  return { run, newest, oldest, prune, factories };
}
