// What a GPU run does differently, checked on the CPU: uint8 uploads normalised on the device, options
// that resolve from --device, cuDNN autotuning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { makeTrainData } from '../../src/data';
import { DeviceImages } from '../../src/run/device-images';
import { cudnnAutotune } from '../../src/run/cudnn-autotune';
import { autoPrecision, withPrecision } from '../../src/run/precision';
import { globalRngStates, restoreGlobalRngStates } from '../../src/run/rng-state';
import { pretrain, TrainBatch } from '../../src/train/pretrain';
import { PRETRAIN_OPTIONS, trainDataRequest, uploadsUint8, validatePretrain } from '../../src/train/pretrain-options';
import { readMetrics } from '../../src/run/metrics';
import { OptionError, resolveOptions } from '../../src/util/options';
import { checkDevice, checkGpuShare, cudaIndex, withProcessThreads } from '../../src/run/device';
import { KNN_OPTIONS, LINPROBE_OPTIONS, FINETUNE_OPTIONS } from '../../src/eval/options';
import { TINY_SEMAIM } from './helpers';

function options(extra: Record<string, unknown> = {}) {
  return resolveOptions(PRETRAIN_OPTIONS, {
    ...TINY_SEMAIM,
    decoderDepth: 2,
    blur: false,
    dataset: 'synthetic',
    syntheticSize: 32,
    numWorkers: 0,
    batchSize: 8,
    epochs: 1,
    warmupEpochs: 0,
    blr: 1.5e-3,
    logEvery: 1,
    checkpointEvery: 100,
    threads: 1,
    seed: 5,
    ...extra,
  });
}

async function firstBatch(upload: string): Promise<{ batch: TrainBatch; normalize: unknown }> {
  const data = makeTrainData(trainDataRequest(options({ upload })));
  try {
    for await (const batch of data.epoch(0, 0)) return { batch, normalize: data.normalize };
    throw new Error('no batch');
  } finally {
    await data.close();
  }
}

test('--upload: auto sends uint8 to a GPU and float32 on the CPU', () => {
  assert.equal(uploadsUint8('auto', 'cpu'), false);
  assert.equal(uploadsUint8('auto', 'cuda'), true);
  assert.equal(uploadsUint8('auto', 'cuda:1'), true);
  assert.equal(uploadsUint8('uint8', 'cpu'), true);
  assert.equal(uploadsUint8('float32', 'cuda'), false);
});

test('uint8 batches normalised on the device: the loader formula applied to the float32 batch rounded to grey levels', async () => {
  const f = await firstBatch('float32');
  const u = await firstBatch('uint8');
  assert.ok(f.batch.images instanceof Float32Array);
  assert.ok(u.batch.images instanceof Uint8Array);
  assert.equal(f.normalize, null);
  assert.deepEqual(u.normalize, { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
  assert.deepEqual(u.batch.shape, f.batch.shape);
  assert.equal(u.batch.images.byteLength * 4, f.batch.images.byteLength);
  const up = new DeviceImages(u.normalize as never);
  const { mean, std } = u.normalize as { mean: number[]; std: number[] };
  torch.scope(() => {
    const a = up.upload(u.batch.images, u.batch.shape, 'cpu');
    const b = new DeviceImages(null).upload(f.batch.images, f.batch.shape, 'cpu');
    assert.equal(a.dtype, 'float32');
    assert.deepEqual(a.shape, [8, 3, 16, 16]);
    // The device applies the loader's normalisation to the bytes (float32 rounding only)...
    const scale = torch.tensor(
      std.map((s) => 1 / (255 * s)),
      { shape: [1, 3, 1, 1], dtype: 'float64' },
    );
    const bias = torch.tensor(
      mean.map((m, c) => -m / std[c]),
      { shape: [1, 3, 1, 1], dtype: 'float64' },
    );
    const bytes = torch.tensor(u.batch.images, { shape: u.batch.shape, dtype: 'uint8' }).double();
    const exact = bytes.mul(scale).add(bias);
    assert.ok(a.double().sub(exact).abs().max().item() <= 1e-6);
    // ...and the bytes are the float32 batch's grey levels rounded to the nearest whole level.
    const levels = b.double().sub(bias).div(scale);
    const off = levels.sub(bytes).abs().max().item();
    assert.ok(off <= 0.5 + 1e-3, `max |float level − uint8 level| = ${off}`);
    assert.ok(b.abs().max().item() > 1, 'the batch is normalised (values beyond [0, 1])');
  });
  up.dispose();
  assert.throws(() => new DeviceImages(null).upload(u.batch.images, u.batch.shape, 'cpu'), /uint8 batch needs the normalisation/);
});

test('pre-training on uint8 uploads follows the float32 uploads (inputs differ by < half a grey level)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-upload-'));
  const quiet = { log: () => {} };
  for (const upload of ['float32', 'uint8'])
    await pretrain(options({ upload, maxSteps: 3, outDir: join(dir, upload) }), makeTrainData(trainDataRequest(options({ upload }))), quiet);
  const a = readMetrics(join(dir, 'float32', 'metrics.jsonl')) as { step: number; loss: number }[];
  const b = readMetrics(join(dir, 'uint8', 'metrics.jsonl')) as { step: number; loss: number }[];
  assert.equal(a.length, 3);
  assert.deepEqual(
    b.map((r) => r.step),
    a.map((r) => r.step),
  );
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs(a[i].loss - b[i].loss) <= 1e-3 * Math.abs(a[i].loss), `step ${a[i].step}: ${a[i].loss} vs ${b[i].loss}`);
  rmSync(dir, { recursive: true, force: true });
});

test("'auto' options resolve from --device: bf16 and uint8 uploads on a GPU, fp32 and float32 on the CPU", () => {
  const gpu = resolveOptions(PRETRAIN_OPTIONS, { device: 'cuda:1' });
  assert.equal(gpu.precision, 'bf16');
  assert.equal(gpu.upload, 'uint8');
  const cpu = resolveOptions(PRETRAIN_OPTIONS, {});
  assert.equal(cpu.precision, 'fp32');
  assert.equal(cpu.upload, 'float32');
  const explicit = resolveOptions(PRETRAIN_OPTIONS, { device: 'cuda', precision: 'fp16', upload: 'float32' });
  assert.equal(explicit.precision, 'fp16');
  assert.equal(explicit.upload, 'float32');
  for (const table of [KNN_OPTIONS, LINPROBE_OPTIONS, FINETUNE_OPTIONS]) {
    assert.equal(resolveOptions(table, { checkpoint: 'x', device: 'cuda' }).precision, 'bf16');
    assert.equal(resolveOptions(table, { checkpoint: 'x' }).precision, 'fp32');
  }
});

test('cuDNN autotuning: on for a CUDA run, untouched on the CPU, restored afterwards', () => {
  assert.equal(torch.backends.cudnn.benchmark, false);
  const noop = cudnnAutotune('cpu');
  assert.equal(torch.backends.cudnn.benchmark, false);
  noop();
  const restore = cudnnAutotune('cuda:0'); // only flips libtorch's flag: needs no GPU
  assert.equal(torch.backends.cudnn.benchmark, true);
  restore();
  assert.equal(torch.backends.cudnn.benchmark, false);
});

test('checkpointed generator states: the CPU one always, the CUDA one only for a CUDA run', () => {
  const states = globalRngStates('cpu');
  assert.deepEqual([...states.keys()], ['rng.global']);
  const a = torch.rand([5]).toFloat32Array();
  restoreGlobalRngStates(states, 'cpu');
  assert.deepEqual(torch.rand([5]).toFloat32Array(), a, 'the CPU generator continues from the saved state');
  restoreGlobalRngStates(new Map([...states, ['rng.cuda', states.get('rng.global')!]]), 'cpu'); // a GPU checkpoint resumed on the CPU
  for (const t of states.values()) t.dispose();
  if (!torch.cuda.isAvailable()) assert.throws(() => globalRngStates('cuda:0'), /no CUDA|CUDA/);
});

test('--precision auto on a GPU: bf16 from compute capability 8.0 on, fp16 (with loss scaling) before', () => {
  assert.equal(
    autoPrecision({ device: 'cpu' }, () => 9),
    'fp32',
  );
  assert.equal(
    autoPrecision({ device: 'cuda' }, () => 9),
    'bf16',
  ); // H100
  assert.equal(
    autoPrecision({ device: 'cuda:1' }, (i) => (i === 1 ? 8 : 7)),
    'bf16',
  ); // A100 as device 1
  assert.equal(
    autoPrecision({ device: 'cuda:0' }, () => 7),
    'fp16',
  ); // V100 / T4
  assert.equal(
    autoPrecision({ device: 'cuda' }, () => null),
    'bf16',
  ); // unknown: no CUDA here to ask
});

test('--device is checked before any work: its form, CUDA present, the device index in range', () => {
  assert.doesNotThrow(() => checkDevice('cpu'));
  for (const bad of ['gpu', 'cuda:', 'cuda:x', 'cpu:0', 'CUDA']) {
    assert.throws(
      () => checkDevice(bad),
      (e: unknown) => e instanceof OptionError && e.key === 'device' && /must be cpu, cuda or cuda:N/.test(e.message),
      bad,
    );
  }
  if (!torch.cuda.isAvailable()) {
    assert.throws(() => checkDevice('cuda'), /CUDA is not available/);
    assert.throws(() => resolveAndValidate({ device: 'cuda:0' }), /CUDA is not available/);
  } else {
    assert.doesNotThrow(() => checkDevice('cuda:0'));
    assert.throws(() => checkDevice(`cuda:${torch.cuda.deviceCount()}`), /there (is|are) \d+ CUDA device/);
  }
});

test('processes of one machine on CUDA take a GPU each: cuda:N for several and more processes than GPUs are refused', () => {
  const gpus = (n: number) => () => n;
  const refusal = (device: string, processes: number, n: number): OptionError | null => {
    try {
      checkGpuShare(device, processes, gpus(n));
      return null;
    } catch (e) {
      assert.ok(e instanceof OptionError, String(e));
      return e;
    }
  };
  assert.equal(refusal('cpu', 4, 0), null, 'the CPU is shared by any number of processes');
  assert.equal(refusal('cuda', 1, 1), null);
  assert.equal(refusal('cuda:1', 1, 2), null, 'one process may name its GPU');
  assert.equal(refusal('cuda', 2, 2), null);
  assert.equal(refusal('cuda', 8, 8), null);
  const named = refusal('cuda:0', 2, 2);
  assert.equal(named?.key, 'device');
  assert.match(named!.message, /cuda:0 names one GPU for all 2 processes on this machine: give --device cuda, and process i trains on cuda:i/);
  const tooMany = refusal('cuda', 2, 1);
  assert.equal(tooMany?.key, 'nprocPerNode');
  assert.match(tooMany!.message, /2 processes on this machine's 1 CUDA device: each process trains on a GPU of its own \(NCCL\), so start at most 1/);
  assert.match(refusal('cuda', 9, 8)!.message, /9 processes on this machine's 8 CUDA devices/);
  let asked = 0;
  checkGpuShare('cuda', 1, () => ++asked);
  checkGpuShare('cpu', 3, () => ++asked);
  assert.equal(asked, 0, 'the GPUs are counted only when several processes want one each');
});

function resolveAndValidate(extra: Record<string, unknown>): void {
  validatePretrain(resolveOptions(PRETRAIN_OPTIONS, extra));
}

test("cudaIndex: 'cuda' is device 0 (its compute capability picks --precision auto), 'cuda:N' device N, the CPU none", () => {
  assert.equal(cudaIndex('cuda'), 0);
  assert.equal(cudaIndex('cuda:3'), 3);
  assert.equal(cudaIndex('cpu'), null);
  assert.equal(
    autoPrecision({ device: 'cuda' }, (i) => (i === 0 ? 9 : 7)),
    'bf16',
  );
});

test("a job's libtorch threads: --threads as given, else the cores shared among this machine's processes of the run; the count before is given back", async () => {
  const before = torch.getNumThreads();
  const cores = availableParallelism();
  assert.equal(await withProcessThreads(3, async () => torch.getNumThreads()), 3);
  assert.equal(torch.getNumThreads(), before);
  const env = { RANK: '0', WORLD_SIZE: String(cores), LOCAL_RANK: '0', LOCAL_WORLD_SIZE: String(cores), MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' };
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    assert.equal(await withProcessThreads(undefined, async () => torch.getNumThreads()), 1, `${cores} cores among ${cores} processes`);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  assert.equal(torch.getNumThreads(), before);
});

test("jobs at once: the caller's thread count comes back after the last, also when the first ends first; meanwhile the latest started still running sets it", async () => {
  const before = torch.getNumThreads();
  try {
    torch.setNumThreads(2);
    let endA!: () => void;
    let endB!: () => void;
    const a = withProcessThreads(3, () => new Promise<void>((r) => (endA = r)));
    const b = withProcessThreads(4, () => new Promise<void>((r) => (endB = r))); // started after a, ends after it
    assert.equal(torch.getNumThreads(), 4, 'the job started last sets it');
    endA();
    await a;
    assert.equal(torch.getNumThreads(), 4, 'b, still running, keeps its count');
    endB();
    await b;
    assert.equal(torch.getNumThreads(), 2, "the caller's count");
  } finally {
    torch.setNumThreads(before);
  }
});

test('--precision: fp16 (loss scaling) is refused on the CPU before any work; bf16 runs the forward under bfloat16 autocast, fp32 as it is', () => {
  assert.throws(
    () => validatePretrain(resolveOptions(PRETRAIN_OPTIONS, { precision: 'fp16' })),
    (e: unknown) => e instanceof OptionError && e.key === 'precision' && /fp16 needs a CUDA device/.test(e.message),
  );
  assert.doesNotThrow(() => validatePretrain(resolveOptions(PRETRAIN_OPTIONS, { precision: 'bf16' })));
  const [x, w] = [torch.rand([2, 8]), torch.rand([4, 8])];
  assert.equal(withPrecision('bf16', 'cpu', () => torch.F.linear(x, w)).dtype, 'bfloat16');
  assert.equal(withPrecision('fp32', 'cpu', () => torch.F.linear(x, w)).dtype, 'float32');
  assert.equal(torch.F.linear(x, w).dtype, 'float32', 'autocast ends with the job');
});
