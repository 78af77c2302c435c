// The CUDA kernel source compiles for Hopper (sm_90) with nvcc, warnings as errors, and defines every
// kernel the addon launches — where nvcc is installed (skipped otherwise, e.g. in CI). The compiler the
// addon uses at run time, NVRTC, is checked by scripts/check-kernels.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const SRC = path.join(__dirname, '..', '..', '..', 'native', 'kernels', 'fused.cu');
const hasNvcc = spawnSync('nvcc', ['--version']).status === 0;

/** The kernel names native/fused.cc launches (launch.h's naming and LayerNorm combinations, forward and backward). */
function expectedKernels(): string[] {
  const codes = ['f32', 'bf16', 'f16'];
  const names: string[] = [];
  for (const t of codes) {
    for (const r of codes) {
      for (const w of codes) {
        for (const o of codes) {
          const ok = (r === t || (t === 'f32' && r !== 'f32')) && (w === 'f32' || w === t) && (o === t || o === 'f32' || t === 'f32');
          if (ok) names.push(`semaim_layer_norm_${t}_${r}_${w}_${o}`, `semaim_layer_norm_bwd_${t}_${r}_${w}_${o}`);
        }
      }
    }
    names.push(`semaim_gelu_bwd_bias_${t}`, `semaim_qkv_bwd_bias_${t}`);
  }
  return [...names, 'semaim_pixel_targets_f32'];
}

test('nvcc compiles the kernels for sm_90 without warnings, with every kernel the addon launches', { skip: hasNvcc ? false : 'nvcc not on PATH' }, () => {
  const r = spawnSync('nvcc', ['-arch=sm_90', '--ptx', '-Werror', 'all-warnings', '-o', '-', SRC], { encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr);
  const entries = [...r.stdout.matchAll(/^\.visible \.entry (\w+)\(/gm)].map((m) => m[1]).sort();
  assert.deepEqual(entries, expectedKernels().sort());
});
