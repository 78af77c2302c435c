// The step profile of bench:pretrain (bench/kernel-profile.ts over native/profiler.cc): libtorch's
// profiler started and stopped from TypeScript, its lines summed per step, kernels grouped into the
// families bench/pretrain_torch.py uses. On the CPU the profiler sees ATen ops; kernels need a GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as torch from '../../src/torch';
import { kernelFamily, parseProfile, profileMarkdown, startKernelProfile, stopKernelProfile, summarize } from '../../bench/kernel-profile';

test('kernel families: the kernels of a SemAIM step land in their family, casts before the generic elementwise match', () => {
  const cases: [string, string][] = [
    ['nvjet_tst_192x192_64x4_1x2_h_bz_coopA_NTN', 'matmul'],
    ['sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64', 'matmul'],
    ['cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x64', 'attention'],
    ['semaim_layer_norm_bwd_vec8', 'layernorm'],
    ['void at::native::(anonymous namespace)::GammaBetaBackwardCUDAKernel<c10::BFloat16, float>', 'layernorm'],
    ['semaim_gelu_bwd_bias_bf16', 'gelu'],
    ['semaim_pixel_targets_f32', 'pixel targets'],
    ['void at::native::vectorized_elementwise_kernel<4, at::native::bfloat16_copy_kernel_cuda(at::TensorIteratorBase&)', 'copy / cast'],
    ['void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, std::array<char*, 3ul> >', 'elementwise'],
    ['Memcpy HtoD (Pinned -> Device)', 'copy / cast'],
    ['void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::func_wrapper_t<float, at::native::sum_functor', 'reduction'],
    ['some_kernel_nobody_knows', 'other'],
  ];
  for (const [name, family] of cases) assert.equal(kernelFamily(name), family, name);
});

test('kernel profile: lines are summed per step, GPU kernels kept apart from CPU ops, families and Markdown from them', () => {
  const text = ['cuda\t6\t3000\tnvjet_tst_a', 'cuda\t3\t600\tsemaim_layer_norm_fwd_vec8', 'cpu\t3\t9000\taten::linear', 'cuda\t3\t300\tnvjet_tst_b', ''].join(
    '\n',
  );
  const rows = parseProfile(text, 3);
  assert.deepEqual(rows[0], { device: 'cuda', name: 'nvjet_tst_a', perStep: 2, msPerStep: 1 });
  const p = summarize(rows, 3, true);
  assert.equal(p.gpu, true);
  assert.deepEqual(
    p.rows.map((r) => r.name),
    ['nvjet_tst_a', 'semaim_layer_norm_fwd_vec8', 'nvjet_tst_b'],
  );
  assert.ok(Math.abs(p.msPerStep - 1.3) < 1e-12);
  assert.deepEqual(
    p.families.map((f) => [f.family, Number(f.msPerStep.toFixed(6)), f.perStep]),
    [
      ['matmul', 1.1, 3],
      ['layernorm', 0.2, 1],
    ],
  );
  const md = profileMarkdown(p, 'test');
  assert.match(md, /\| matmul \| 1\.1 \| 84\.6% \| 3 \|/);
  assert.match(md, /\| `semaim_layer_norm_fwd_vec8` \| layernorm \| 0\.20 \| 1 \|/);
  // A CUDA run whose profiler saw no kernel (no CUPTI): the CPU ops, and no kernel families.
  const cpu = summarize(parseProfile('cpu\t3\t9000\taten::linear\n', 3), 3, true);
  assert.equal(cpu.gpu, false);
  assert.deepEqual(cpu.families, []);
  assert.throws(() => parseProfile('gpu\t1\t2\tx\n', 1), /unreadable line/);
});

test('kernel profile: libtorch profiler around CPU work sees each ATen op once per step; misuse is an error', () => {
  assert.throws(() => stopKernelProfile(1, false), /not running/);
  const a = torch.randn([32, 32]);
  startKernelProfile(false);
  try {
    assert.throws(() => startKernelProfile(false), /already running/);
    for (let s = 0; s < 3; s++) torch.scope(() => a.matmul(a).relu().sum());
  } finally {
    const p = stopKernelProfile(3, false);
    assert.equal(p.gpu, false);
    const mm = p.rows.find((r) => r.name === 'aten::mm');
    assert.ok(mm, `aten::mm among ${p.rows.map((r) => r.name).join(', ')}`);
    assert.equal(mm.perStep, 1);
    assert.ok(mm.msPerStep > 0);
    assert.equal(p.rows.find((r) => r.name === 'aten::relu')?.perStep, 1);
  }
  a.dispose();
  assert.throws(() => stopKernelProfile(1, false), /not running/);
});

test('bench:pretrain worker --kernel-profile: the profiled steps after the measured ones, tables to the file, summary in the JSON line; a profiler that fails is reported', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'semaim-kprof-'));
  try {
    const out = path.join(dir, 'kernels.md');
    const worker = path.join(__dirname, '..', '..', 'bench', 'pretrain_worker.js');
    const args = ['--preset', 'vit_tiny', '--img', '16', '--patch', '4', '--decoder-depth', '1', '--batch', '2', '--warmup', '1', '--steps', '1'];
    const r = spawnSync(process.execPath, [worker, ...args, '--threads', '1', '--kernel-profile', '2', '--kernel-profile-out', out], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(result.kernelProfile.steps, 2);
    assert.equal(result.kernelProfile.gpu, false);
    assert.equal(result.stepsMs.length, 1); // the profiled steps are not among the measured ones
    const md = fs.readFileSync(out, 'utf8');
    assert.match(md, /^Kernel profile: vit_tiny 16² batch 2: CPU op time/);
    assert.match(md, /\| `aten::addmm` \| [\d.]+ \| \d+ \|/);
    // A profiler that cannot start costs the profile, not the measured steps.
    const broken = spawnSync(
      process.execPath,
      ['--require', path.join(__dirname, 'break-profiler.js'), worker, ...args, '--threads', '1', '--kernel-profile', '2'],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    assert.equal(broken.status, 0, broken.stderr);
    const partial = JSON.parse(broken.stdout.trim().split('\n').pop()!);
    assert.equal(partial.kernelProfileError, 'the profiler cannot start here');
    assert.equal(partial.kernelProfile, undefined);
    assert.equal(partial.stepsMs.length, 1);
    const bad = spawnSync(process.execPath, [worker, ...args, '--kernel-profile', 'x'], { encoding: 'utf8', timeout: 60_000 });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--kernel-profile takes a number of steps, not x/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
