// The CUDA-graph step's host-side logic, checked without a GPU: where it is refused and why, static-shape
// inputs, and that the step it captures (src/train/pretrain-step.ts) is capture-safe by construction: no host
// read, upload or data-dependent shape inside it. What only a GPU can show (the capture succeeds, replays
// equal the eager steps) is in cuda-paths.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import * as torch from '../../src/torch';
import { fused } from '../../src/torch';
import { native } from '../../src/torch/native';
import { SemAIM, makeConfig } from '../../src/semaim';
import { CudaGraphStep, cudaGraphRefusal } from '../../src/run/cuda-graph-step';
import { forwardBackward } from '../../src/train/pretrain-step';
import { rnd, cpuOnly } from '../torch/helpers';

test('CUDA graphs are refused off CUDA, without a CUDA build, with fp16 loss scaling and with the phase timer', () => {
  assert.match(cudaGraphRefusal({ device: 'cpu', precision: 'fp32', cudaBuild: true })!, /need a CUDA device \(got cpu\)/);
  assert.match(cudaGraphRefusal({ device: 'cuda', precision: 'bf16', cudaBuild: false })!, /CUDA libtorch/);
  assert.match(cudaGraphRefusal({ device: 'cuda', precision: 'fp16', cudaBuild: true })!, /found-inf flag on the host/);
  assert.match(cudaGraphRefusal({ device: 'cuda:0', precision: 'bf16', cudaBuild: true, phaseTimer: true })!, /phase timer/);
  assert.equal(cudaGraphRefusal({ device: 'cuda:0', precision: 'bf16', cudaBuild: true }), null);
  assert.equal(cudaGraphRefusal({ device: 'cuda', precision: 'fp32', cudaBuild: true }), null);
});

test('the graph step keeps static inputs: another shape or dtype is refused, a batch is copied in', () => {
  torch.scope(() => {
    const noise = torch.zeros([2, 4]);
    const step = new CudaGraphStep(() => {}, { warmup: 1, clearGrads: () => {}, inputs: { noise } });
    assert.throws(
      () => step.setInputs({ noise: torch.zeros([3, 4]) }),
      /CUDA graphs need static shapes: input 'noise' was \[2, 4\] float32 at capture, now \[3, 4\] float32/,
    );
    assert.throws(() => step.setInputs({ noise: torch.zeros([2, 4], { dtype: 'float64' }) }), /static shapes/);
    assert.throws(() => step.setInputs({ images: torch.zeros([2, 4]) }), /no static input 'images'/);
    step.setInputs({ noise: torch.ones([2, 4]) });
    assert.equal(noise.sum().item(), 8);
    assert.equal(step.captured, false);
    assert.throws(() => new CudaGraphStep(() => {}, { warmup: 0, clearGrads: () => {}, inputs: {} }), /warmup must be a positive integer/);
    if (!native.cudaBuild) assert.throws(() => step.run(), /no CUDA/); // the side stream needs CUDA
  });
});

test('bench:pretrain worker refuses --cuda-graphs on the CPU with the reason, before building anything', { skip: cpuOnly }, () => {
  const worker = path.join(__dirname, '..', '..', 'bench', 'pretrain_worker.js');
  const r = spawnSync(process.execPath, [worker, '--cuda-graphs', '--device', 'cpu', '--steps', '1'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--cuda-graphs refused: CUDA graphs need a CUDA device \(got cpu\)/);
  assert.equal(r.stdout, '');
});

// Addon calls that read device data on the host, upload host data, or give data-dependent shapes: none may
// run inside a captured step.
const HOST_SYNC = ['item', 'toBuffer', 'sharedBuffer', 'fromBuffer', 'format', 'nonzero', 'maskedSelect'] as const;

test('the captured step (order pass, forward, backward) makes no host read or upload, fused or not', { skip: cpuOnly }, () => {
  const calls: string[] = [];
  const n = native as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved = new Map(HOST_SYNC.map((k) => [k, n[k]]));
  for (const k of HOST_SYNC) {
    const f = saved.get(k)!;
    n[k] = function (this: unknown, ...args: unknown[]) {
      // checkOrder reads CPU order values only (on a GPU it skips the read), so it is not a capture hazard.
      if (!/checkOrder/.test(new Error().stack ?? '')) calls.push(k);
      return f.apply(this, args);
    };
  }
  try {
    torch.scope(() => {
      torch.manualSeed(0);
      const cfg = makeConfig('vit_tiny', {
        imgSize: 32,
        patchSize: 8,
        embedDim: 48,
        depth: 2,
        numHeads: 3,
        decoderDepth: 2,
        target: { type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 },
        order: { type: 'semantic', source: 'online', filter: true, lambda: 0.01 },
      });
      const model = new SemAIM(cfg).initWeights();
      const t = { images: rnd([2, 3, 32, 32], { dtype: 'float32' }), noise: rnd([2, 16], { dtype: 'float32', lo: 0, hi: 1 }), lossOut: torch.zeros([]) };
      for (const kinds of ['all', 'none'] as const) {
        // On the GPU the targets always run in the addon (its Gaussian stays on the device); the CPU's
        // TypeScript targets upload theirs, so the 'none' run takes the addon's path too.
        fused.setFused(kinds === 'all' ? 'all' : ['targets'], { onCpu: true });
        try {
          calls.length = 0;
          forwardBackward(model, t, { precision: 'fp32', orderPrecision: 'fp32', device: 'cpu' });
          assert.deepEqual(calls, [], `fused ${kinds}: host syncs inside the step`);
          assert.ok(Number.isFinite(t.lossOut.item()));
        } finally {
          fused.setFused('none');
        }
      }
      model.dispose();
    });
  } finally {
    for (const [k, f] of saved) n[k] = f;
  }
});
