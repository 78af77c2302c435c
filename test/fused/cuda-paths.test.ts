// The GPU-only parts of the fused kernels, CUDA graphs, event timing and the attention backend, on a CUDA
// device. Skipped where there is none (CI, laptops); run by scripts/gpu-check.sh. The CPU-side checks of
// the same code are in the other files of this folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { F, fused } from '../../src/torch';
import { SemAIM, makeConfig } from '../../src/semaim';
import { AdamW, clipGradNorm } from '../../src/optim';
import { CudaGraphStep } from '../../src/run/cuda-graph-step';
import { PhaseTimer } from '../../src/run/phase-timer';
import { setPhaseProbe, markPhase } from '../../src/semaim/phases';
import { withPrecision, type Precision } from '../../src/run/precision';
import { forwardBackward } from '../../src/train/pretrain-step';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pretrain } from '../../src/train/pretrain';
import { PRETRAIN_OPTIONS } from '../../src/train/pretrain-options';
import { resolveOptions } from '../../src/util/options';
import { readMetrics } from '../../src/run/metrics';
import { MemoryLabelledData } from '../../src/data';
import { memoryTrainData } from '../eval/helpers';

const cuda = torch.cuda.isAvailable();
const skip = cuda ? false : 'no CUDA device (libtorch built without CUDA or no GPU)';
const DEV = 'cuda';

function tinyModel(): SemAIM {
  torch.manualSeed(7);
  const cfg = makeConfig('vit_tiny', {
    imgSize: 64,
    patchSize: 8,
    embedDim: 96,
    depth: 4,
    numHeads: 3,
    decoderDepth: 2,
    target: { type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 },
    order: { type: 'semantic', source: 'online', filter: true, lambda: 0.01 },
  });
  return new SemAIM(cfg).initWeights().to({ device: DEV });
}

function cosine(a: torch.Tensor, b: torch.Tensor): number {
  return torch.scope(() => a.float().flatten(0, -1).mul(b.float().flatten(0, -1)).sum().item() / (a.float().norm().item() * b.float().norm().item() + 1e-30));
}

test('the fused kernels compile with NVRTC for this GPU', { skip }, (t) => {
  const st = fused.kernelStatus(true);
  t.diagnostic(`fused kernels: ${st.message}`);
  // --fused auto (pretrain's default) takes the LayerNorm kernel here.
  assert.equal(resolveOptions(PRETRAIN_OPTIONS, { device: DEV }).fused, 'layernorm');
  assert.equal(st.loaded, true, st.message);
});

test('the compiled kernels are kept on disk: a second process loads them instead of running NVRTC', { skip }, () => {
  const cache = mkdtempSync(join(tmpdir(), 'semaim-kernel-cache-'));
  try {
    const status = () =>
      execFileSync(
        process.execPath,
        ['-e', `process.stdout.write(require(${JSON.stringify(join(__dirname, '../../src/torch'))}).fused.kernelStatus(true).message)`],
        {
          env: { ...process.env, SEMAIM_KERNEL_CACHE: cache },
          encoding: 'utf8',
        },
      );
    assert.doesNotMatch(status(), /cached/);
    assert.equal(readdirSync(cache).filter((f) => f.endsWith('.cubin')).length, 1);
    assert.match(status(), /\(cached: .*\.cubin\)/);
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});

test('SemAIM on cuda: the fused kernels give the unfused loss and gradients (float32, and bf16 autocast)', { skip }, () => {
  for (const precision of ['fp32', 'bf16'] as Precision[]) {
    torch.scope(() => {
      const model = tinyModel();
      const images = torch.randn([4, 3, 64, 64], { device: DEV });
      const noise = torch.rand([4, 64], { device: DEV });
      const run = (): { loss: number; grad: torch.Tensor } => {
        model.zeroGrad();
        return torch.scope(() => {
          const { order } = withPrecision(precision, DEV, () => model.makeOrder(images, { noise }));
          const out = withPrecision(precision, DEV, () => model.forward(images, order));
          out.loss.backward();
          const grad = torch.cat([...model.parameters()].map((p) => p.grad!.float().flatten(0, -1)));
          return { loss: out.loss.item(), grad };
        });
      };
      const plain = run();
      fused.setFused('all');
      let fast: ReturnType<typeof run>;
      try {
        fast = run();
      } finally {
        fused.setFused('none');
      }
      const lossTol = precision === 'fp32' ? 1e-4 : 1e-2;
      assert.ok(Math.abs(fast.loss - plain.loss) <= lossTol * Math.abs(plain.loss), `${precision}: loss ${fast.loss} vs ${plain.loss}`);
      const c = cosine(fast.grad, plain.grad);
      assert.ok(c > (precision === 'fp32' ? 0.99999 : 0.999), `${precision}: gradient cosine ${c}`);
      model.dispose();
    });
  }
});

test('a CUDA-graph step replays the eager steps (optimiser outside the graph), with and without the fused kernels', { skip }, () => {
  for (const [precision, kinds] of [
    ['fp32', 'none'],
    ['bf16', 'all'],
  ] as const) {
    const losses: Record<'eager' | 'graph', number[]> = { eager: [], graph: [] };
    for (const mode of ['eager', 'graph'] as const) {
      torch.scope(() => {
        fused.setFused(kinds);
        const model = tinyModel();
        const optimizer = new AdamW(model.namedParameters(), { lr: 1e-3, betas: [0.9, 0.95], weightDecay: 0.05 });
        const gen = new torch.Generator(11);
        const images = torch.keep(torch.randn([4, 3, 64, 64], { generator: gen }).to({ device: DEV }));
        const noise = torch.keep(torch.zeros([4, 64], { device: DEV }));
        const lossOut = torch.keep(torch.zeros([], { device: DEV }));
        const body = (): void => forwardBackward(model, { images, noise, lossOut }, { precision, orderPrecision: precision, device: DEV });
        const graph = mode === 'graph' ? new CudaGraphStep(body, { warmup: 1, clearGrads: () => optimizer.zeroGrad(), inputs: { noise } }) : null;
        try {
          for (let s = 0; s < 5; s++) {
            const batchNoise = torch.rand([4, 64], { generator: gen });
            torch.scope(() => {
              if (graph) {
                graph.setInputs({ noise: batchNoise });
                graph.run();
              } else {
                noise.copy_(batchNoise);
                body();
              }
              clipGradNorm(model.namedParameters(), 3);
              optimizer.step();
              if (!graph) optimizer.zeroGrad();
            });
            losses[mode].push(lossOut.item());
          }
          if (graph) assert.equal(graph.captured, true);
        } finally {
          graph?.dispose();
          fused.setFused('none');
          for (const t of [images, noise, lossOut]) t.dispose();
          optimizer.dispose();
          model.dispose();
        }
      });
    }
    const tol = precision === 'fp32' ? 1e-4 : 2e-3; // attention backward kernels use atomics: not bit-reproducible
    losses.eager.forEach((l, i) =>
      assert.ok(Math.abs(losses.graph[i] - l) <= tol * Math.abs(l), `${precision}/${kinds} step ${i}: graph ${losses.graph[i]} vs eager ${l}`),
    );
    assert.ok(losses.eager[4] !== losses.eager[0], 'the optimiser changed the weights');
  }
});

test('the phase timer measures every phase with CUDA events, and they add up to the step', { skip }, () => {
  torch.scope(() => {
    const model = tinyModel();
    const images = torch.randn([4, 3, 64, 64], { device: DEV });
    const noise = torch.rand([4, 64], { device: DEV });
    const timer = new PhaseTimer(true);
    setPhaseProbe(timer);
    try {
      for (let s = 0; s < 2; s++) {
        torch.cuda.synchronize();
        const t0 = process.hrtime.bigint();
        timer.beginStep();
        torch.scope(() => {
          const { order } = model.makeOrder(images, { noise });
          const out = model.forward(images, order);
          markPhase('backward');
          out.loss.backward();
        });
        const p = timer.endStep();
        const wall = Number(process.hrtime.bigint() - t0) / 1e6;
        if (s === 0) continue; // warm-up
        const gpu = p.gpu!;
        for (const phase of ['similarity', 'order', 'targets', 'encoder', 'decoder', 'head', 'loss', 'backward'] as const) {
          assert.ok((gpu[phase] ?? -1) >= 0 && (p.host[phase] ?? -1) >= 0, `${phase}: ${gpu[phase]} ms`);
        }
        const sum = Object.values(gpu).reduce((a, b) => a + b, 0);
        assert.ok(sum <= wall * 1.05 + 1, `GPU phases ${sum} ms within the step's ${wall} ms`);
      }
    } finally {
      setPhaseProbe(null);
      model.dispose();
    }
  });
});

test('attention on cuda: a fused backend for the packed bf16 layout; cuDNN and flash agree with the reference', { skip }, (t) => {
  torch.scope(() => {
    const [B, T, H, hd] = [2, 197, 12, 64];
    const qkv = torch.randn([B, T, 3, H, hd], { device: DEV, dtype: 'bfloat16' }).permute(2, 0, 3, 1, 4);
    const [q, k, v] = [qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2)];
    const choice = F.sdpaBackend(q, k, v, { causal: true });
    t.diagnostic(`SDPA backend for [${B}, ${H}, ${T}, ${hd}] bf16 causal: ${choice}; priority ${F.sdpaPriority() || '(libtorch < 2.6)'}`);
    assert.ok(['flash', 'cudnn', 'efficient'].includes(choice), choice);
    const ref = F.attentionReference(q.double(), k.double(), v.double(), { causal: true });
    const { major, minor } = torch.version();
    if (major < 2 || (major === 2 && minor < 6)) return;
    const before = F.sdpaPriority();
    try {
      for (const order of ['cudnn,flash,efficient,math', 'flash,efficient,math']) {
        F.sdpaPriority(order);
        const out = F.scaledDotProductAttention(q, k, v, { causal: true });
        const err = out.double().sub(ref).abs().max().item();
        const picked = F.sdpaBackend(q, k, v, { causal: true });
        t.diagnostic(`${order.split(',')[0]}: backend ${picked}, max error ${err.toExponential(2)}`);
        assert.ok(err < 5e-2, `${order}: ${err}`);
        // The unlisted cuDNN is off, so flash runs (it ran cuDNN while the switch was never turned off).
        if (order.startsWith('flash')) assert.equal(picked, 'flash');
      }
    } finally {
      F.sdpaPriority(before);
    }
  });
});

test(
  'semaim pretrain --cuda-graphs (and --fused all) follows the eager run: eager warm-up, capture, replays, a resume (bf16, semantic order, EMA map)',
  { skip },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-graphs-'));
    const pixels = torch.scope(() => torch.F.interpolate(torch.randn([32, 3, 4, 4], { generator: new torch.Generator(5) }), 32, 'bilinear').toFloat32Array());
    const data = () => memoryTrainData(new MemoryLabelledData(pixels, [32, 3, 32, 32], new Int32Array(32), 1), 8, 1);
    const options = (out: string, cudaGraphs: boolean, fused = 'none') =>
      resolveOptions(PRETRAIN_OPTIONS, {
        ...{ model: 'vit_tiny', imgSize: 32, patchSize: 4, embedDim: 64, depth: 2, numHeads: 2, decoderDepth: 2, batchSize: 8 },
        ...{ ema: true, similaritySource: 'ema', epochs: 4, warmupEpochs: 1, blr: 1.5e-3, logEvery: 1, checkpointEvery: 100 },
        ...{ maxSteps: 12, device: 'cuda', precision: 'bf16', outDir: join(dir, out), seed: 3, cudaGraphs, fused },
      });
    const quiet = { log: () => {} };
    const losses = (out: string) => readMetrics(join(dir, out, 'metrics.jsonl')).map((r) => r.loss as number);
    try {
      await pretrain(options('eager', false), data(), quiet);
      await pretrain(options('graphs', true), data(), quiet);
      const stop = { requested: false };
      await pretrain(options('resumed', true), data(), { ...quiet, stop, onStep: (s) => void (s === 6 && (stop.requested = true)) });
      await pretrain(options('resumed', true), data(), quiet);
      await pretrain(options('fused-graphs', true, 'all'), data(), quiet);
      assert.deepEqual(fused.fusedKinds(), [], 'pretrain restores the fused kinds it found');
      const eager = losses('eager');
      assert.equal(eager.length, 12);
      // bf16, and attention's backward uses atomics: close, not bit-equal; stale or cleared gradients after the capture would drift far
      for (const [run, tol] of [
        ['graphs', 5e-3],
        ['resumed', 5e-3],
        ['fused-graphs', 1e-2],
      ] as const) {
        const l = losses(run);
        assert.equal(l.length, 12, run);
        l.forEach((x, i) => assert.ok(Math.abs(x - eager[i]) <= tol * Math.abs(eager[i]), `${run} step ${i + 1}: ${x} vs eager ${eager[i]}`));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
