// NCCL on a GPU: process groups of one process (NCCL takes a GPU per rank; the GPU sessions have one) on
// cuda:0: the collectives on CUDA tensors, DistributedDataParallel's step, `semaim pretrain` as a torchrun
// worker against the same run alone, and the refusal of more processes than GPUs. Skipped where libtorch
// has no CUDA or the addon no NCCL (CI); run on a GPU machine by scripts/gpu-check.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dist from '../../src/dist';
import * as torch from '../../src/torch';
import { lineWith, runWorkers, workerScript } from './helpers';

const skip = !torch.cuda.isAvailable()
  ? 'no CUDA device (libtorch built without CUDA or no GPU)'
  : !dist.distBuildInfo().nccl
    ? 'the addon was built without NCCL (a CUDA libtorch with ProcessGroupNCCL and nccl.h)'
    : false;

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
// The processes this test starts create their tensors where they say (not on SEMAIM_TEST_DEVICE's device).
const env = { ...process.env, NODE_OPTIONS: (process.env.NODE_OPTIONS ?? '').replace(/--require \S*test-device\.js/, '').trim() };
const root = mkdtempSync(join(tmpdir(), 'semaim-nccl-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

test('NCCL collectives on CUDA tensors: values, dtypes and device kept; the helpers the trainer uses; a CPU tensor refused', { skip }, async () => {
  const [run] = await runWorkers(workerScript('nccl'), 1, ['collectives'], { env, timeoutMs: 60_000 });
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(lineWith(run, 'backend'), { backend: 'nccl', device: 'cuda:0', worldSize: 1 });
  const r = lineWith(run, 'collectives');
  assert.ok((r.devices as string[]).every((d) => d === 'cuda:0'), `results left the GPU: ${JSON.stringify(r.devices)}`);
  assert.deepEqual(r.dtypes, ['float32', 'bfloat16', 'int64', 'float32', 'float32']);
  assert.deepEqual(r.sum, [1, 10]);
  assert.deepEqual(r.avg, [3, 5]);
  assert.deepEqual(r.max, [-4, 7]);
  assert.deepEqual(r.coalesced, [[1, 2, 3], [0.5, -1]]);
  assert.deepEqual(r.broadcast, [7, 8]);
  assert.deepEqual(r.gathered, [[2, 4, 6]]);
  assert.deepEqual(r.toRoot, [[9]]);
  assert.deepEqual(r.broadcastCoalesced, [1, 1]);
  assert.deepEqual(r.averageNumbers, [0.25, 10]);
  assert.deepEqual(r.anyTrue, [true, false]);
  assert.deepEqual(r.json, [{ rank: 0, name: 'shard-0' }]);
  assert.match(String(r.cpuRefused), /^dist\.allReduce: the NCCL group of rank 0 takes tensors on cuda:0, got one on cpu$/);
  assert.equal(r.pending, 0);
});

test('DistributedDataParallel on the GPU over NCCL: each mode and compression gives the step its own gradients (one rank)', { skip }, async () => {
  const [run] = await runWorkers(workerScript('nccl'), 1, ['ddp'], { env, timeoutMs: 60_000 });
  assert.equal(run.code, 0, run.stderr);
  const cases = run.lines.filter((l) => 'ddp' in l) as { ddp: string; mode: string; buckets: number[][]; maxDiff: number; maxGrad: number; gradDevices: string[] }[];
  assert.ok(cases.length >= 3, `${cases.length} cases ran:\n${run.stderr}`);
  for (const c of cases) {
    const [mode, compress] = c.ddp.split(':');
    assert.equal(c.mode, mode);
    assert.ok(c.buckets.length > 1, `${c.ddp}: ${c.buckets.length} bucket(s), expected several at 1 kB each`);
    assert.deepEqual(c.gradDevices, ['cuda:0']);
    // averaged over one rank: the gradient itself, rounded to the half type when compressed
    const tol = compress === 'none' ? 0 : (compress === 'bf16' ? 2 ** -8 : 2 ** -11) * c.maxGrad;
    assert.ok(c.maxDiff <= tol, `${c.ddp}: gradients differ from the step without DDP by ${c.maxDiff} (allowed ${tol})`);
    assert.ok(c.maxGrad > 0);
  }
});

const PRETRAIN = [
  'pretrain', '--dataset', 'synthetic', '--synthetic-size', '64', '--img-size', '32', '--patch-size', '8', '--model', 'vit_tiny',
  '--embed-dim', '64', '--depth', '2', '--num-heads', '2', '--decoder-depth', '1', '--batch-size', '16', '--max-steps', '6',
  '--warmup-epochs', '0.5', '--log-every', '1', '--num-workers', '0', '--seed', '3', '--precision', 'fp32',
];

function losses(outDir: string): number[] {
  return readFileSync(join(outDir, 'metrics.jsonl'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l) as { loss?: number })
    .filter((r) => typeof r.loss === 'number')
    .map((r) => r.loss as number);
}

test('semaim pretrain as a torchrun worker of one on cuda (an NCCL group) trains as the run alone', { skip }, async () => {
  const alone = spawnSync(process.execPath, [CLI, ...PRETRAIN, '--device', 'cuda', '--out-dir', join(root, 'alone')], { encoding: 'utf8', timeout: 120_000, env });
  assert.equal(alone.status, 0, `${alone.stdout}\n${alone.stderr}`);
  const [worker] = await runWorkers(CLI, 1, [...PRETRAIN, '--device', 'cuda', '--out-dir', join(root, 'worker')], { timeoutMs: 120_000, env });
  assert.equal(worker.code, 0, worker.stderr);
  const [a, w] = [losses(join(root, 'alone')), losses(join(root, 'worker'))];
  assert.equal(a.length, 6);
  assert.equal(w.length, a.length);
  for (const [i, v] of a.entries()) assert.ok(Math.abs(w[i] - v) <= 1e-4 * Math.abs(v), `step ${i + 1}: ${w[i]} as a worker, ${v} alone`);
});

test('more processes on this machine than GPUs, or one GPU named for several, is refused before anything starts', { skip }, () => {
  const n = torch.cuda.deviceCount();
  for (const [flags, pattern] of [
    [['--nproc-per-node', String(n + 1), '--device', 'cuda'], new RegExp(`--nproc-per-node: ${n + 1} processes on this machine's ${n} CUDA device`)],
    [['--nproc-per-node', '2', '--device', 'cuda:0'], /--device: cuda:0 names one GPU for all 2 processes/],
  ] as const) {
    const out = join(root, `refused-${flags[3]}`);
    const r = spawnSync(process.execPath, [CLI, ...PRETRAIN, ...flags, '--out-dir', out], { encoding: 'utf8', timeout: 60_000, env });
    assert.equal(r.status, 2, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.equal(existsSync(out), false, 'the refused run wrote its folder');
  }
});
