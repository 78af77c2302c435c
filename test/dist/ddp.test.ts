// Data-parallel training is the same function as one process with the whole batch: 2 Gloo processes
// × batch b against 1 process × batch 2b, in float64, for a small MLP and a small SemAIM model, with
// c10d's Reducer (gradients all-reduced from hooks during backward) and after backward, with and
// without gradient accumulation (noSync), through global-norm clipping and AdamW; gradients all-reduced
// in fp16/bf16 (the compress hook's arithmetic exactly, in both modes); and a peer that dies before a
// synchronised backward.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import * as dist from '../../src/dist';
import { distNative } from '../../src/dist/native-dist';
import { buildModel, CaseModel, CaseResult, train } from './workers/ddp-case';
import { lineWith, runWorkers, workerScript, WorkerRun } from './helpers';
import { inTempDir } from '../temp-dir';

const info = dist.distBuildInfo();
const gloo = info.gloo ? false : 'the addon was built without Gloo';
const GLOBAL_BATCH = 8;
const STEPS = 3;

/**
 * max |a - b| / max |b| over one tensor, with max |b| floored at 1e-6: some gradients are exactly zero
 * in exact arithmetic (the cross-attention key bias: a constant added to every key shifts all scores of
 * a query equally) and only float noise in practice.
 */
function relErr(a: number[], b: number[]): number {
  assert.equal(a.length, b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-6);
}

function reference(kind: CaseModel): CaseResult {
  const m = buildModel(kind, 17, GLOBAL_BATCH);
  try {
    return train(m, { steps: STEPS, from: 0, to: GLOBAL_BATCH, accum: 1, backward: (loss) => loss.backward() });
  } finally {
    m.module.dispose();
  }
}

/**
 * Runs `script` on 2 ranks with each DDP mode this addon has as its arguments ('overlap' needs libtorch's
 * Reducer); every rank must exit 0 having printed `linesPerMode` lines per mode.
 */
async function runInEachMode(script: string, linesPerMode = 1): Promise<WorkerRun[]> {
  const modes = info.reducer ? ['after-backward', 'overlap'] : ['after-backward'];
  const runs = await runWorkers(script, 2, modes, { timeoutMs: 60_000 });
  for (const r of runs) {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines.length, linesPerMode * modes.length, `rank ${r.rank}: ${JSON.stringify(r.lines)}\n${r.stderr}`);
  }
  return runs;
}

function compare(runs: WorkerRun[], c: string, ref: CaseResult, tol: number): void {
  const [r0, r1] = runs.map((run) => run.lines.find((l) => l.case === c) as unknown as CaseResult & { mode: string; buckets: number[][] });
  assert.ok(r0 && r1, `case ${c} missing:\n${runs.map((r) => r.stderr).join('\n')}`);
  for (const [name, want] of Object.entries(ref.grads)) {
    for (const r of [r0, r1]) assert.ok(relErr(r.grads[name], want) <= tol, `${c}: gradient of ${name} differs by ${relErr(r.grads[name], want)}`);
  }
  for (const [name, want] of Object.entries(ref.params)) {
    // A gradient that is float noise (max |g| ~ 1e-13) still moves AdamW's parameter by up to lr per
    // step (g / (|g| + eps)); for those only the size of the change is checked.
    const noiseOnly = name in ref.grads && Math.max(...ref.grads[name].map(Math.abs)) < 1e-9;
    for (const r of [r0, r1]) {
      const err = noiseOnly ? Math.max(...r.params[name].map((v, i) => Math.abs(v - want[i]))) : relErr(r.params[name], want);
      assert.ok(err <= (noiseOnly ? 1e-4 : tol), `${c}: ${name} after ${STEPS} steps differs by ${err}`);
    }
  }
  for (let s = 0; s < STEPS; s++) {
    const avg = (r0.losses[s] + r1.losses[s]) / 2;
    assert.ok(Math.abs(avg - ref.losses[s]) <= tol * Math.abs(ref.losses[s]), `${c}: step ${s} loss ${avg} vs ${ref.losses[s]}`);
  }
  assert.equal(r0.mode, c.split(':')[1]);
  assert.ok(r0.buckets.length >= 2, `${c}: expected several buckets with the tiny bucket cap, got ${r0.buckets.length}`);
  assert.deepEqual([...r0.buckets.flat()].sort((a, b) => a - b), Object.keys(ref.grads).map((_, i) => i), `${c}: every parameter in exactly one bucket`);
}

test('DDP: 2 processes × batch 4 = 1 process × batch 8 (float64 MLP and SemAIM; overlap and after-backward; accumulation)', { skip: gloo }, async () => {
  const cases = ['mlp:after-backward:1', 'mlp:after-backward:2', 'semaim:after-backward:1'];
  if (info.reducer) cases.push('mlp:overlap:1', 'mlp:overlap:2', 'semaim:overlap:1', 'semaim:overlap:2');
  const runs = await runWorkers(workerScript('ddp'), 2, [String(GLOBAL_BATCH), String(STEPS), ...cases, 'dead-peer']);
  for (const run of runs) assert.equal(run.code, 0, `rank ${run.rank} failed:\n${run.stderr}`);
  const refs = { mlp: reference('mlp'), semaim: reference('semaim') };
  for (const c of cases) compare(runs, c, refs[c.split(':')[0] as CaseModel], 1e-10);

  // Then rank 1 exited: rank 0's synchronised backward fails with a coded error naming the op and rank.
  const dead = lineWith(runs[0], 'deadPeer');
  const e = dead.deadPeer as { code: string; op: string; rank: number; message: string; mode: string };
  assert.equal(e.code, 'ERR_DIST_PEER', e.message);
  assert.equal(e.rank, 0);
  assert.match(e.message, e.mode === 'overlap' ? /^dist\.backward \(gradient all-reduce\) failed on rank 0 of 2 \(gloo\): .*another rank exited/
    : /^dist\.allReduceCoalesced failed on rank 0 of 2 \(gloo\): .*another rank exited/);
  assert.equal(dead.failed, true, 'the group is marked failed, so that shutdown abandons it instead of waiting');
  assert.ok(Number(dead.ms) < 10_000, `the error came after ${dead.ms} ms`);
});

test('bucketsBySize: reverse order, caps, one dtype per bucket, an oversized tensor alone', () => {
  const ts = [torch.zeros([10]), torch.zeros([10]), torch.zeros([100]), torch.zeros([5], { dtype: 'float64' }), torch.zeros([3])];
  try {
    // bytes: 40, 40, 400, 40 (float64), 12
    assert.deepEqual(dist.bucketsBySize(ts, 100), [[4], [3], [2], [1, 0]]);
    assert.deepEqual(dist.bucketsBySize(ts, 1000), [[4], [3], [2, 1, 0]]);
    assert.deepEqual(dist.bucketsBySize(ts, 80), [[4], [3], [2], [1, 0]], 'a bucket filled exactly to the cap');
  } finally {
    for (const t of ts) t.dispose();
  }
});

test('gradients compressed to fp16 (bf16 where Gloo sums it) give the compress hook’s arithmetic exactly, with the Reducer and after backward', { skip: gloo }, async () => {
  const runs = await runWorkers(workerScript('ddp-compress'), 2);
  const d = dist.distBuildInfo();
  for (const r of runs) {
    assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
    assert.equal(r.lines.length, 4, `rank ${r.rank}: ${JSON.stringify(r.lines)}`);
    for (const l of r.lines) {
      const what = `rank ${r.rank}, ${l.mode}, ${l.compress}`;
      if (!(l.compress === 'fp16' ? d.glooFloat16 : d.glooBFloat16)) {
        const why = d.glooFloat16 ? "compress the gradients with 'fp16'" : "its Gloo was built without torch's dtypes";
        assert.match(String(l.refused), new RegExp(`gloo backend of libtorch .* cannot sum ${l.compress === 'fp16' ? 'float16' : 'bfloat16'}.*${why}`), what);
        continue;
      }
      assert.equal(l.refused, undefined, `${what}: ${l.refused}`);
      assert.equal(l.modeUsed, l.mode, what);
      assert.equal(l.exact, true, `${what}: not Σ half(half(g) / W)`);
      assert.equal(l.differsFromFloatMean, true, `${what}: equal to the float32 mean (no compression happened)`);
      assert.ok((l.maxRel as number) < (l.compress === 'fp16' ? 2e-3 : 1.6e-2), `${what}: ${l.maxRel} from the float32 mean`);
    }
  }
});

/** worker.js in `dir`: `body` inside an async function, with semaim's torch and dist required and `g` the process group. */
function writeWorker(dir: string, body: string): string {
  const src = join(__dirname, '..', '..', 'src');
  const script = join(dir, 'worker.js');
  writeFileSync(
    script,
    `const torch = require(${JSON.stringify(join(src, 'torch'))});
const dist = require(${JSON.stringify(join(src, 'dist'))});
(async () => {
  const g = await dist.initProcessGroup({ timeoutMs: 20000 });
${body}
})();`,
  );
  return script;
}

test(
  'DDP: ranks whose parameters differ only in dtype (float64 on rank 1) or in where a 0-dim one sits are refused on every rank, in both modes',
  { skip: gloo },
  inTempDir('semaim-ddp-', async (dir) => {
    const script = writeWorker(
      dir,
      `  const p = (shape, dtype = 'float32') => torch.rand(shape, { dtype }).requiresGrad_();
  const own = { dtype: [['w', p([3, 4], g.rank === 1 ? 'float64' : 'float32')], ['b', p([3], g.rank === 1 ? 'float64' : 'float32')]],
    order: g.rank === 0 ? [['t', p([])], ['b', p([4])]] : [['b', p([4])], ['t', p([])]] };
  for (const mode of process.argv.slice(2)) for (const [how, params] of Object.entries(own)) {
    try {
      new dist.DistributedDataParallel({ namedParameters: () => params, namedBuffers: () => [] }, g, { mode });
      console.log(JSON.stringify({ mode, how, accepted: true }));
    } catch (e) {
      console.log(JSON.stringify({ mode, how, error: e.message }));
    }
  }
  dist.destroyProcessGroup();
`,
    );
    for (const r of await runInEachMode(script, 2)) {
      // before: accepted, and rank 1 then held rank 0's float32 bits read as float64 (or the 0-dim
      // parameter's gradient was averaged with an element of the other)
      for (const l of r.lines) assert.match(String(l.error), /DistributedDataParallel: rank [01] has different parameters/, `rank ${r.rank}, ${l.mode}, ${l.how}`);
    }
  }),
);

test(
  "DDP: every rank starts from rank 0's frozen parameters too (requiresGrad false), as torch's DDP, not only from its trained ones and buffers",
  { skip: gloo },
  inTempDir('semaim-ddp-', async (dir) => {
    const script = writeWorker(
      dir,
      `  for (const mode of process.argv.slice(2)) {
    const w = torch.full([2], g.rank + 1).requiresGrad_();
    const frozen = torch.full([3], 10 * (g.rank + 1));
    const scale = torch.full([1], 100 * (g.rank + 1));
    new dist.DistributedDataParallel({ namedParameters: () => [['w', w], ['frozen', frozen]], namedBuffers: () => [['scale', scale]] }, g, { mode });
    console.log(JSON.stringify({ mode, w: [...w.toFloat64Array()], frozen: [...frozen.toFloat64Array()], scale: [...scale.toFloat64Array()] }));
  }
  dist.destroyProcessGroup();
`,
    );
    for (const r of await runInEachMode(script)) {
      // before: rank 1 kept its own frozen parameter ([20, 20, 20])
      for (const l of r.lines) assert.deepEqual([l.w, l.frozen, l.scale], [[1, 1], [10, 10, 10], [100]], `rank ${r.rank}, ${l.mode}`);
    }
  }),
);

test(
  'DDP: a constructor whose same-model check fails (the peer is gone) releases the tensor of that check',
  { skip: gloo },
  inTempDir('semaim-ddp-', async (dir) => {
    const script = writeWorker(
      dir,
      `  await g.barrier();
  if (g.rank === 1) process.exit(0);
  await new Promise((r) => setTimeout(r, 500));
  const w = torch.full([2], 1).requiresGrad_();
  const before = torch.memoryStats().liveTensors;
  let code = null;
  try {
    new dist.DistributedDataParallel({ namedParameters: () => [['w', w]], namedBuffers: () => [] }, g, { mode: 'after-backward' });
  } catch (e) {
    code = e.code;
  }
  console.log(JSON.stringify({ code, leaked: torch.memoryStats().liveTensors - before }));
  process.exit(0);
`,
    );
    const [r0] = await runWorkers(script, 2, [], { timeoutMs: 60_000 });
    // before: 1 (the tensor of (count, elements, checksum) was made outside the try that disposes it)
    assert.deepEqual(lineWith(r0, 'leaked'), { code: 'ERR_DIST_PEER', leaked: 0 }, r0.stderr);
  }),
);

test(
  'DDP: backward(loss, { sync: false }) keeps the gradients local, in both modes; the next synchronised backward averages what was accumulated (after-backward: a missing gradient as zeros); disposed, it refuses',
  { skip: gloo },
  inTempDir('semaim-ddp-', async (dir) => {
    const script = writeWorker(
      dir,
      `  for (const mode of process.argv.slice(2)) {
    const w = torch.full([2], 1).requiresGrad_();
    // after-backward takes a parameter that got no gradient as zeros (the Reducer needs findUnusedParameters)
    const unused = torch.full([1], 1).requiresGrad_();
    const params = mode === 'after-backward' ? [['w', w], ['unused', unused]] : [['w', w]];
    const ddp = new dist.DistributedDataParallel({ namedParameters: () => params, namedBuffers: () => [] }, g, { mode });
    ddp.backward(w.mul(g.rank + 1).sum(), { sync: false });
    const local = [...w.grad.toFloat64Array()];
    ddp.backward(w.mul(g.rank + 1).sum());
    const synced = [...w.grad.toFloat64Array()];
    ddp.dispose();
    let disposed = '';
    try { ddp.backward(w.sum()); } catch (e) { disposed = e.message; }
    console.log(JSON.stringify({ mode, local, synced, unused: unused.grad && [...unused.grad.toFloat64Array()], disposed }));
  }
  dist.destroyProcessGroup();
`,
    );
    for (const r of await runInEachMode(script)) {
      // rank r accumulates (r + 1) twice: the mean of 2 and 4
      const own = r.rank + 1;
      for (const l of r.lines) {
        assert.deepEqual([l.local, l.synced, l.unused], [[own, own], [3, 3], l.mode === 'after-backward' ? [0] : null], `rank ${r.rank}, ${l.mode}`);
        assert.equal(l.disposed, 'DistributedDataParallel: disposed', 'a disposed wrapper refuses to run backward');
      }
    }
  }),
);

test(
  "DDP overlap with findUnusedParameters: as PyTorch's DDP (find_unused_parameters=True), a parameter one rank leaves unused is averaged with its zeros, one no rank uses keeps no gradient, and the next step runs",
  { skip: gloo || (!info.reducer && "the addon was built without c10d's Reducer") },
  inTempDir('semaim-ddp-', async (dir) => {
    const script = writeWorker(
      dir,
      `  const w = torch.full([2], 1).requiresGrad_();
  const u = torch.full([1], 1).requiresGrad_(); // used by rank 1 alone
  const v = torch.full([1], 1).requiresGrad_(); // used by no rank
  const params = [['w', w], ['u', u], ['v', v]];
  const ddp = new dist.DistributedDataParallel({ namedParameters: () => params, namedBuffers: () => [] }, g, { mode: 'overlap', findUnusedParameters: true });
  const grad = (p) => p.grad && [...p.grad.toFloat64Array()];
  for (let step = 0; step < 2; step++) {
    let loss = w.mul(g.rank + 1).sum();
    if (g.rank === 1) loss = loss.add(u.mul(3).sum());
    ddp.backward(loss);
    console.log(JSON.stringify({ step, w: grad(w), u: grad(u), v: grad(v) }));
  }
  ddp.dispose();
  dist.destroyProcessGroup();
`,
    );
    // PyTorch 1.13's DDP on the same model: scripts/golden_ddp_unused.py
    const want = [
      { step: 0, w: [1.5, 1.5], u: [1.5], v: null },
      { step: 1, w: [3, 3], u: [3], v: null },
    ];
    for (const r of await runWorkers(script, 2, [], { timeoutMs: 60_000 })) {
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.lines, want, `rank ${r.rank}\n${r.stderr}`);
    }
  }),
);

test('DDP refuses, before any collective, bucket sizes that are not positive, a model on another device than its group and an unknown compression', () => {
  const w = torch.keep(torch.zeros([2]).requiresGrad_());
  try {
    const model = { namedParameters: () => [['w', w]] as [string, torch.Tensor][], namedBuffers: () => [] };
    // a group whose every collective would fail the test: the refusals come first
    const nccl = { rank: 0, worldSize: 2, backend: 'nccl', device: 'cuda:0' } as unknown as dist.ProcessGroup;
    assert.throws(() => new dist.DistributedDataParallel(model, nccl), /DistributedDataParallel: w is on cpu but the nccl group works on cuda:0: move the model to its device first/);
    assert.throws(() => new dist.DistributedDataParallel(model, nccl, { bucketCapMb: 0 }), /bucket sizes must be positive/);
    assert.throws(() => new dist.DistributedDataParallel(model, nccl, { firstBucketCapMb: 0 }), /bucket sizes must be positive/);
    const gloo = { rank: 0, worldSize: 2, backend: 'gloo', device: 'cpu' } as unknown as dist.ProcessGroup;
    assert.throws(() => new dist.DistributedDataParallel(model, gloo, { compress: 'fp8' as dist.GradCompression }), /compress must be 'none', 'fp16' or 'bf16', got 'fp8'/);
    // NCCL sums both half types in every libtorch; Gloo what distInfo says
    assert.deepEqual([dist.compressionRefusal('bf16', 'nccl'), dist.compressionRefusal('fp16', 'nccl'), dist.compressionRefusal('none', 'gloo')], [null, null, null]);
    const d = dist.distBuildInfo();
    assert.deepEqual(
      [dist.compressionRefusal('fp16', 'gloo') === null, dist.compressionRefusal('bf16', 'gloo') === null],
      [d.glooFloat16, d.glooBFloat16],
    );
  } finally {
    w.dispose();
  }
});

test("the addon's GradReducer: DDP's bucket assignment (first bucket cap, then the cap; the list reversed), its refusals, compress's dtypes, and a dispose that is idempotent", { skip: gloo || !info.reducer }, async () => {
  const g = await dist.ProcessGroup.create({ backend: 'gloo', rank: 0, worldSize: 1, masterPort: await dist.freePort(), timeoutMs: 10_000, env: {} });
  const params = [0, 1, 2, 3].map(() => torch.keep(torch.zeros([10]).requiresGrad_())); // 40 bytes each
  const Reducer = distNative.GradReducer!;
  try {
    const r = new Reducer(g.native, params.map((p) => p.h), 80, 40, false);
    // as torch's DistributedDataParallel: [[0], [1, 2], [3]] by size (40 bytes, then 80), reversed
    assert.deepEqual(r.buckets(), [[3], [1, 2], [0]]);
    assert.throws(() => r.compress('float32' as 'float16'), /gradient compression takes float16 or bfloat16/);
    r.compress('bfloat16');
    r.dispose();
    r.dispose();
    assert.throws(() => r.prepareBackward(), /the gradient reducer was disposed/);
    const half = new Reducer(g.native, params.map((p) => p.h), 80, 40, false);
    half.compress('float16');
    half.dispose();
    for (const [cap, first] of [[0, 40], [80, 0]]) assert.throws(() => new Reducer(g.native, params.map((p) => p.h), cap, first, false), /bucket sizes must be positive/);
    assert.throws(() => new Reducer(g.native, [], 80, 40, false), /no parameters/);
    const nonLeaf = torch.keep(params[0].mul(2));
    try {
      assert.throws(() => new Reducer(g.native, [params[1].h, nonLeaf.h], 80, 40, false), /parameter 1 is not a leaf tensor that requires grad/);
    } finally {
      nonLeaf.dispose();
    }
  } finally {
    for (const p of params) p.dispose();
    g.shutdown();
  }
});
