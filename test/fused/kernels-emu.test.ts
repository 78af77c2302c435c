// The CUDA kernels of native/kernels/fused.cu run on the CPU through the SIMT emulator
// (native/kernels/simt-emu.h, one thread per CUDA thread, with the addon's launch configurations from
// launch.h) and are compared with libtorch's unfused ops: their indexing (strided rows, halos, patch
// order), warp and block reductions, and 16-bit rounding, without a GPU. Needs g++ (C++20); the runner is
// built once per source version into build/emu-runner/ of this checkout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as torch from '../../src/torch';
import { F, Tensor } from '../../src/torch';
import { gaussianBlur, gaussianKernel, normalizePatches, patchify } from '../../src/semaim/targets';
import { rnd, assertClose, cpuOnly } from '../torch/helpers';

const KERNELS = path.join(__dirname, '..', '..', '..', 'native', 'kernels');
const hasGpp = spawnSync('g++', ['--version']).status === 0;
const skip = cpuOnly || (hasGpp ? false : 'no g++ to build the emulator');

type Code = 'f32' | 'bf16' | 'f16';
const DTYPE: Record<Code, torch.DType> = { f32: 'float32', bf16: 'bfloat16', f16: 'float16' };

let runner: string | null = null;
function emulator(): string {
  if (runner) return runner;
  const files = ['emu-runner.cc', 'simt-emu.h', 'fused.cu', 'launch.h'];
  const hash = createHash('sha256');
  for (const f of files) hash.update(fs.readFileSync(path.join(KERNELS, f)));
  // In this checkout's build/ (git ignores it), not in the temp folder: a runner found under a name every
  // user can predict in a shared /tmp may be anyone's program, and was run as whoever ran the tests (root).
  const dir = path.join(__dirname, '..', '..', '..', 'build', 'emu-runner');
  fs.mkdirSync(dir, { recursive: true });
  const bin = path.join(dir, `semaim-emu-runner-${hash.digest('hex').slice(0, 16)}`);
  if (!fs.existsSync(bin)) {
    const tmp = `${bin}.${process.pid}`;
    const r = spawnSync('g++', ['-std=c++20', '-O1', '-pthread', '-Wall', '-Wextra', '-Werror', '-o', tmp, path.join(KERNELS, 'emu-runner.cc')], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `building the emulator failed:\n${r.stderr}`);
    fs.renameSync(tmp, bin);
  }
  runner = bin;
  return bin;
}

function bytes(t: Tensor): Buffer {
  const a = t.contiguous().data();
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function readTensor(file: string, dtype: torch.DType, shape: number[]): Tensor {
  const b = fs.readFileSync(file);
  const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  const data = dtype === 'float32' ? new Float32Array(ab) : new Uint16Array(ab);
  return torch.tensor(data, { dtype, shape });
}

/** Runs one job: writes the inputs, runs the emulator, returns the folder with the outputs. */
function runJob(job: string, inputs: Record<string, Tensor>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'semaim-emu-'));
  fs.writeFileSync(path.join(dir, 'job.txt'), job);
  for (const [name, t] of Object.entries(inputs)) fs.writeFileSync(path.join(dir, name), bytes(t));
  const r = spawnSync(emulator(), [dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, `emu-runner ${job}: ${r.stderr}`);
  return dir;
}

/** Rows of a tensor as the addon passes them: (rowsPerBatch, batch stride, row stride) and the bytes from its first element. */
function rows(t: Tensor): { perBatch: number; sB: number; sT: number; base: Tensor } {
  const D = t.shape[t.shape.length - 1];
  if (t.shape.length === 3 && t.strides[2] === 1) return { perBatch: t.shape[1], sB: t.strides[0], sT: t.strides[1], base: t };
  return { perBatch: t.numel / D, sB: 0, sT: D, base: t.contiguous() };
}

/** The code paths the kernel took in the last job (the runner's paths.txt). */
function paths(dir: string): string {
  return fs.readFileSync(path.join(dir, 'paths.txt'), 'utf8').trim();
}

/** `t` preceded by `pad` zeros, flat: the file of a view that starts `pad` elements into its storage. */
function padded(t: Tensor, pad: number): Tensor {
  return pad ? torch.cat([torch.zeros([pad], { dtype: t.dtype }), t.contiguous().reshape([-1])]) : t;
}

interface LnCase {
  T: Code;
  R: Code;
  W: Code;
  O: Code;
  residual: boolean;
  weights: boolean;
  shape: number[];
  /** Narrow dim 1 of a longer tensor (x read through its strides). */
  narrowed?: boolean;
  /** Narrow the last dim of a wider tensor: rows `D + 1` apart, so only some are 16-byte aligned. */
  narrowLast?: boolean;
  /** x, r start that many elements into their storage (misaligned for the vector path). */
  xOff?: number;
  rOff?: number;
  /** The paths the kernel must take: the 16-byte vector path, the scalar one, or both (row by row). */
  path: 'vector' | 'scalar' | 'vector scalar';
}

test("emulated LayerNorm kernel: strided rows, residual add in x's dtype, 16-bit rounding, statistics, vector and scalar paths", { skip }, () => {
  const cases: LnCase[] = [
    { T: 'f32', R: 'bf16', W: 'f32', O: 'bf16', residual: true, weights: true, shape: [2, 6, 72], narrowed: true, path: 'vector' }, // bf16 autocast
    { T: 'f32', R: 'f32', W: 'f32', O: 'f32', residual: false, weights: false, shape: [3, 5, 33], narrowed: true, path: 'scalar' },
    { T: 'bf16', R: 'bf16', W: 'bf16', O: 'f32', residual: false, weights: true, shape: [10, 40], path: 'vector' },
    { T: 'f16', R: 'f16', W: 'f32', O: 'f16', residual: true, weights: true, shape: [2, 3, 96], path: 'vector' },
    // Wide rows in registers: ViT-H's 1280, the widest (2048, float32: 16 chunks of 4 per lane), and one over it.
    { T: 'bf16', R: 'bf16', W: 'f32', O: 'bf16', residual: true, weights: true, shape: [1, 2, 1280], path: 'vector' },
    { T: 'f32', R: 'f32', W: 'f32', O: 'f32', residual: true, weights: true, shape: [1, 2, 2048], path: 'vector' },
    { T: 'f16', R: 'f16', W: 'f16', O: 'f16', residual: false, weights: true, shape: [2, 2056], path: 'scalar' },
    // Scalar fallbacks: x or r misaligned, D not a multiple of 8 (16-bit r), rows of a narrowed last dim (some aligned).
    { T: 'bf16', R: 'bf16', W: 'f32', O: 'bf16', residual: true, weights: true, shape: [2, 3, 64], xOff: 1, path: 'scalar' },
    { T: 'f32', R: 'bf16', W: 'f32', O: 'f32', residual: true, weights: false, shape: [2, 3, 64], rOff: 1, path: 'scalar' },
    { T: 'f32', R: 'f16', W: 'f32', O: 'f16', residual: true, weights: true, shape: [2, 3, 36], path: 'scalar' },
    { T: 'f16', R: 'f16', W: 'f32', O: 'f32', residual: true, weights: true, shape: [2, 5, 64], narrowLast: true, path: 'vector scalar' },
  ];
  torch.scope(() => {
    for (const c of cases) {
      const D = c.shape[c.shape.length - 1];
      const [B, T] = c.shape;
      const src = (shape: number[]) => rnd(shape, { dtype: 'float32', lo: -3, hi: 3 }).to({ dtype: DTYPE[c.T] });
      // The tensor whose bytes the runner reads (x's storage) and x, a view of it.
      let full: Tensor | null = null;
      let x: Tensor;
      if (c.narrowed) {
        full = src([B, T + 1, D]);
        x = full.narrow(1, 0, T);
      } else if (c.narrowLast) {
        full = src([B, T, D + 1]);
        x = full.narrow(2, 0, D);
      } else {
        x = src(c.shape);
      }
      const r = rnd(c.shape, { dtype: 'float32', seed: 7 }).to({ dtype: DTYPE[c.R] });
      const w = rnd([D], { dtype: 'float32', seed: 8 }).to({ dtype: DTYPE[c.W] });
      const b = rnd([D], { dtype: 'float32', seed: 9 }).to({ dtype: DTYPE[c.W] });
      const xr = rows(x);
      const rr = rows(r);
      const M = x.numel / D;
      const job =
        `ln ${c.T} ${c.R} ${c.W} ${c.O} ${M} ${D} ${xr.perBatch} ${xr.sB} ${xr.sT} ${c.residual ? 1 : 0} ${rr.sB} ${rr.sT} ` +
        `${c.weights ? 1 : 0} ${c.weights ? 1 : 0} 1e-6 ${c.xOff ?? 0} ${c.rOff ?? 0}`;
      // A narrowed x starts at its base's first element: the kernel reads the base's bytes through x's strides.
      const inputs: Record<string, Tensor> = {
        'x.bin': padded(full ?? xr.base, c.xOff ?? 0),
        'r.bin': padded(rr.base, c.rOff ?? 0),
        'w.bin': w,
        'b.bin': b,
      };
      const dir = runJob(job, inputs);
      const what = `${c.T}/${c.R}/${c.W}/${c.O} ${c.shape.join('x')} residual=${c.residual}`;
      assert.equal(paths(dir), c.path, `${what} paths`);
      const h = c.residual ? x.add(r) : x;
      assert.equal(h.dtype, DTYPE[c.T]);
      if (c.residual) assertClose(readTensor(path.join(dir, 'h.bin'), DTYPE[c.T], c.shape), h, 0, 0, `${what} h`);
      const hf = h.float();
      const want = F.layerNorm(hf, [D], c.weights ? w.float() : null, c.weights ? b.float() : null, 1e-6).to({ dtype: DTYPE[c.O] });
      const ulp = c.O === 'bf16' ? 2 ** -7 : c.O === 'f16' ? 2 ** -10 : 2e-6;
      assertClose(readTensor(path.join(dir, 'y.bin'), DTYPE[c.O], c.shape), want, ulp * 4, ulp, `${what} y`);
      const mean = hf.reshape([M, D]).mean(1);
      const rstd = hf.reshape([M, D]).var(1, false).add(1e-6).rsqrt();
      assertClose(readTensor(path.join(dir, 'mean.bin'), 'float32', [M]), mean, 1e-6, 1e-5, `${what} mean`);
      assertClose(readTensor(path.join(dir, 'rstd.bin'), 'float32', [M]), rstd, 1e-6, 1e-5, `${what} rstd`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

interface LnbCase {
  T: Code;
  R: Code;
  W: Code;
  O: Code;
  M: number;
  D: number;
  weight: boolean;
  bias: boolean;
  /** The gradient of h itself (residual form, h used downstream). */
  gh: boolean;
  /** The residual's gradient written in R as well. */
  dr: boolean;
  /** The launch's SM count (0: unbounded grid, a block per 32 rows); 1 bounds it at 6 blocks (grid-stride rows). */
  sms?: number;
  /** src, gy, gh and the outputs start that many elements into their buffers (misaligned). */
  off?: number;
  /** gh alone starts that many elements further into its buffer (every other pointer aligned). */
  ghOff?: number;
  /**
   * Rows as batches of `perBatch` rows: src's in a buffer of `srcTokens` rows per batch (a narrowed sequence),
   * gh's and the outputs' in one of `outTokens` (the gradient of the whole sequence); else contiguous.
   */
  layout?: { perBatch: number; srcTokens: number; outTokens: number; srcPad?: number };
  path: 'vector' | 'scalar';
}

test('emulated LayerNorm backward kernel equals native_layer_norm_backward (+ gh, + cast to R), dw/db summed over blocks', { skip }, () => {
  const cases: LnbCase[] = [
    // bf16 autocast's residual stream: float32 h, bf16 gradient of the output, the branch's gradient in bf16.
    { T: 'f32', R: 'bf16', W: 'f32', O: 'bf16', M: 150, D: 72, weight: true, bias: true, gh: true, dr: true, path: 'vector' },
    // The same with gh alone one element off its 16-byte boundary: a vector load of it would fault on a GPU.
    { T: 'f32', R: 'bf16', W: 'f32', O: 'bf16', M: 150, D: 72, weight: true, bias: true, gh: true, dr: true, ghOff: 1, path: 'scalar' },
    { T: 'f32', R: 'f32', W: 'f32', O: 'f32', M: 70, D: 33, weight: false, bias: false, gh: false, dr: false, path: 'scalar' },
    { T: 'bf16', R: 'bf16', W: 'bf16', O: 'f32', M: 40, D: 64, weight: true, bias: true, gh: false, dr: false, path: 'vector' },
    { T: 'f16', R: 'f16', W: 'f32', O: 'f16', M: 300, D: 96, weight: true, bias: false, gh: true, dr: false, sms: 1, path: 'vector' },
    { T: 'f16', R: 'f16', W: 'f16', O: 'f32', M: 50, D: 40, weight: false, bias: true, gh: true, dr: false, path: 'vector' },
    // The widest row in registers (1024), and one over it (scalar, any width).
    { T: 'bf16', R: 'bf16', W: 'f32', O: 'bf16', M: 40, D: 1024, weight: true, bias: true, gh: true, dr: false, path: 'vector' },
    { T: 'f32', R: 'f32', W: 'f32', O: 'f32', M: 40, D: 1032, weight: true, bias: true, gh: true, dr: false, path: 'scalar' },
    // Scalar fallbacks: misaligned tensors, D not a multiple of 8 with a 16-bit tensor; grid-stride rows.
    { T: 'bf16', R: 'bf16', W: 'f32', O: 'bf16', M: 200, D: 64, weight: true, bias: true, gh: true, dr: false, off: 1, sms: 1, path: 'scalar' },
    { T: 'f32', R: 'f16', W: 'f32', O: 'f16', M: 45, D: 36, weight: true, bias: true, gh: true, dr: true, path: 'scalar' },
    // The decoder's keys: the first N of N + 1 tokens of each sequence read in place, the gradient written
    // into a buffer of all N + 1 (the row left out untouched); vector and scalar paths.
    {
      T: 'f32',
      R: 'f32',
      W: 'f32',
      O: 'bf16',
      M: 96,
      D: 64,
      weight: true,
      bias: true,
      gh: false,
      dr: false,
      layout: { perBatch: 16, srcTokens: 17, outTokens: 17 },
      path: 'vector',
    },
    {
      T: 'f32',
      R: 'bf16',
      W: 'f32',
      O: 'bf16',
      M: 256,
      D: 64,
      weight: true,
      bias: true,
      gh: true,
      dr: true,
      sms: 1,
      layout: { perBatch: 16, srcTokens: 17, outTokens: 18 },
      path: 'vector',
    },
    {
      T: 'f32',
      R: 'f32',
      W: 'f32',
      O: 'f32',
      M: 60,
      D: 34,
      weight: true,
      bias: false,
      gh: true,
      dr: false,
      layout: { perBatch: 12, srcTokens: 13, outTokens: 13 },
      path: 'scalar',
    },
    // A batch stride that is no multiple of the chunk (src's batches one element apart more): every row
    // aligned in batch 0 only, so the scalar path.
    {
      T: 'f32',
      R: 'f32',
      W: 'f32',
      O: 'f32',
      M: 64,
      D: 32,
      weight: true,
      bias: true,
      gh: false,
      dr: false,
      layout: { perBatch: 16, srcTokens: 16, outTokens: 17, srcPad: 1 },
      path: 'scalar',
    },
  ];
  torch.scope(() => {
    for (const c of cases) {
      const { M, D } = c;
      const off = c.off ?? 0;
      const what = `${c.T}/${c.R}/${c.W}/${c.O} ${M}x${D} w=${c.weight} b=${c.bias} gh=${c.gh} dr=${c.dr} off=${off}${c.ghOff ? ` ghOff=${c.ghOff}` : ''}`;
      const src = rnd([M, D], { dtype: 'float32', lo: -3, hi: 3, seed: 61 })
        .add(rnd([M, 1], { dtype: 'float32', seed: 62 }))
        .to({ dtype: DTYPE[c.T] });
      const w = rnd([D], { dtype: 'float32', seed: 63 }).to({ dtype: DTYPE[c.W] });
      const b = rnd([D], { dtype: 'float32', seed: 64 }).to({ dtype: DTYPE[c.W] });
      const gy = rnd([M, D], { dtype: 'float32', seed: 65 }).to({ dtype: DTYPE[c.O] });
      const gh = rnd([M, D], { dtype: 'float32', seed: 66 }).to({ dtype: DTYPE[c.T] });
      // The statistics as the forward saves them (float), and libtorch's backward of LayerNorm in float.
      const sf = src.float();
      const mean = sf.mean(1);
      const rstd = sf.var(1, false).add(1e-6).rsqrt();
      const { want, wantW, wantB } = torch.scope(() => {
        const xl = sf.detach().requiresGrad_();
        const wl = w.float().detach().requiresGrad_();
        const bl = b.float().detach().requiresGrad_();
        F.layerNorm(xl, [D], c.weight ? wl : null, c.bias ? bl : null, 1e-6).backward(gy.float());
        const d = c.gh ? xl.grad!.add(gh.float()) : xl.grad!;
        return { want: d, wantW: c.weight ? wl.grad! : null, wantB: c.bias ? bl.grad! : null };
      });
      let job = `lnb ${c.T} ${c.R} ${c.W} ${c.O} ${M} ${D} ${c.weight ? 1 : 0} ${c.bias ? 1 : 0} ${c.gh ? 1 : 0} ${c.dr ? 1 : 0} ${c.sms ?? 0} ${off}`;
      const L = c.layout;
      const batches = L ? M / L.perBatch : 1;
      // With a layout: the rows inside buffers of more tokens per batch (src's other tokens not zero, so that reading them shows).
      const spread = (rows: Tensor, tokens: number, seed: number, pad = 0): Tensor =>
        torch.scope(() => {
          const buf = rnd([batches, tokens * D + pad], { dtype: 'float32', lo: 50, hi: 60, seed }).to({ dtype: rows.dtype });
          buf.narrow(1, 0, L!.perBatch * D).copy_(rows.reshape([batches, L!.perBatch * D]));
          return buf;
        });
      if (L) job += ` ${L.perBatch} ${L.srcTokens * D + (L.srcPad ?? 0)} ${D} ${L.outTokens * D} ${D}`;
      else if (c.ghOff) job += ` ${M} ${M * D} ${D} ${M * D} ${D}`; // contiguous rows, written out so that ghOff can follow
      if (c.ghOff) job += ` ${c.ghOff}`;
      const inputs: Record<string, Tensor> = {
        'src.bin': L ? spread(src, L.srcTokens, 67, L.srcPad) : padded(src, off),
        'mean.bin': mean,
        'rstd.bin': rstd,
        'w.bin': w,
        'gy.bin': padded(gy, off),
        'gh.bin': L ? spread(gh, L.outTokens, 68) : padded(gh, off + (c.ghOff ?? 0)),
      };
      const dir = runJob(job, inputs);
      assert.equal(paths(dir), c.path, `${what} paths`);
      const ulp = (t: Code): number => (t === 'bf16' ? 2 ** -7 : t === 'f16' ? 2 ** -10 : 2e-6);
      // Rounded once to T (and R): within an ulp of the float reference, plus float noise of the cancelling sum.
      // With a layout, the rows of the outputs' buffer that hold no row are left as they were (zero).
      const readAs = (file: string, t: Code): Tensor => {
        if (!L) return readTensor(path.join(dir, file), DTYPE[t], [M, D]).float();
        const written = readTensor(path.join(dir, file), DTYPE[t], [batches * L.outTokens * D - (L.outTokens - L.perBatch) * D]).float();
        const all = torch.cat([written, torch.zeros([(L.outTokens - L.perBatch) * D])]).reshape([batches, L.outTokens, D]);
        assert.equal(
          all
            .narrow(1, L.perBatch, L.outTokens - L.perBatch)
            .abs()
            .max()
            .item(),
          0,
          `${what} ${file}: nothing written between rows`,
        );
        return all.narrow(1, 0, L.perBatch).reshape([M, D]);
      };
      assertClose(readAs('dsrc.bin', c.T), want, 2e-5, ulp(c.T) + 1e-5, `${what} dsrc`);
      if (c.dr) assertClose(readAs('dr.bin', c.R), want, 2e-5, ulp(c.R) + 1e-5, `${what} dr`);
      else assert.equal(fs.existsSync(path.join(dir, 'dr.bin')), false);
      const grid = Number(fs.readFileSync(path.join(dir, 'grid.txt'), 'utf8'));
      assert.ok(grid > 1, `${what}: more than one block (${grid})`);
      if (c.sms) assert.equal(grid, 6, `${what}: the grid bounded by the SM count`);
      // Every block's row of the partial sums written (NaN where not), summed as the addon does (at::sum(0)).
      for (const [file, ref] of [
        ['dwpart.bin', wantW],
        ['dbpart.bin', wantB],
      ] as const) {
        if (!ref) {
          assert.equal(fs.existsSync(path.join(dir, file)), false, `${what} ${file} absent`);
          continue;
        }
        const part = readTensor(path.join(dir, file), 'float32', [grid, D]);
        assert.equal(Number(part.isnan().any().item()), 0, `${what} ${file}: every block wrote its row`);
        assertClose(part.sum(0), ref, 1e-4, 1e-5, `${what} ${file} summed`);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A column-sum kernel's job (then removed): the vector path, the grid, and block sums [grid, width] adding up to want's column sums. */
function checkColumnSums(dir: string, want: Tensor, grid: number, tol: number, what: string): void {
  const [rows, width] = want.shape;
  assert.equal(paths(dir), 'vector', `${what} path`);
  assert.equal(Number(fs.readFileSync(path.join(dir, 'grid.txt'), 'utf8')), grid, `${what} grid`);
  const part = readTensor(path.join(dir, 'dbpart.bin'), 'float32', [grid, width]);
  assert.equal(Number(part.isnan().any().item()), 0, `${what}: every block wrote every column`);
  assertClose(part.sum(0), want.float().sum(0), tol, tol * rows, `${what} bias gradient`);
  fs.rmSync(dir, { recursive: true, force: true });
}

test("emulated GELU backward kernel equals GELU's backward and sums it over rows for the bias, in float32, bfloat16 and float16", { skip }, () => {
  torch.scope(() => {
    for (const T of ['f32', 'bf16', 'f16'] as Code[]) {
      // D: a few chunks per block (most threads idle), ViT-B's 3072 and the widest row, 4096 (every thread
      // holds all its chunks); sms 1: 4 blocks walking 21 rows (blocks of 5 and 6 rows), 0: a block per row.
      for (const [D, sms] of [
        [40, 1],
        [3072, 0],
        [4096, 1],
      ]) {
        const dtype = DTYPE[T];
        const rows = 21;
        const pre = rnd([rows, D], { dtype: 'float32', lo: -4, hi: 4 }).to({ dtype });
        const g = rnd([rows, D], { dtype: 'float32', seed: 4 }).to({ dtype });
        // The reference in float from the stored values (libtorch 1.13 has no float16 GELU on the CPU).
        const v = pre.float().requiresGrad_();
        F.gelu(v).backward(g.float());
        const want = v.grad!.to({ dtype });
        const ulp = T === 'bf16' ? 2 ** -7 : T === 'f16' ? 2 ** -10 : 2e-6;
        const what = `${T} D ${D} sms ${sms}`;
        const dir = runJob(`geluBwd ${T} ${rows} ${D} ${sms}`, { 'g.bin': g, 'pre.bin': pre });
        assertClose(readTensor(path.join(dir, 'out.bin'), dtype, [rows, D]), want, ulp * 2, ulp, `${what} gradient`);
        // The bias's gradient sums the stored (rounded) gradient, as libtorch's sum over d would.
        checkColumnSums(dir, want, sms ? 4 : rows, 1e-4, what);
      }
    }
  });
});

test("emulated q/k/v backward kernel stacks dq, dk, dv into qkv's gradient and sums it over rows for the bias", { skip }, () => {
  torch.scope(() => {
    for (const T of ['f32', 'bf16', 'f16'] as Code[]) {
      // D 24: each of q, k, v a few chunks; 768 (ViT-B, 3·D = 2304) and 1024 (ViT-L: 3,072 of the 4,096 a
      // block holds); sms 1: 4 blocks walking the 13 rows, 0: a block per row.
      for (const [D, sms] of [
        [24, 1],
        [768, 0],
        [1024, 1],
      ]) {
        const dtype = DTYPE[T];
        const rows = 13;
        const [dq, dk, dv] = [0, 1, 2].map((i) => rnd([rows, D], { dtype: 'float32', seed: 20 + i }).to({ dtype }));
        const want = torch.stack([dq, dk, dv], 1); // [rows, 3, D]: qkv's [B, T, 3, H, hd] layout
        const what = `${T} D ${D} sms ${sms}`;
        const dir = runJob(`qkvBwd ${T} ${rows} ${D} ${sms}`, { 'dq.bin': dq, 'dk.bin': dk, 'dv.bin': dv });
        const got = readTensor(path.join(dir, 'out.bin'), dtype, [rows, 3, D]);
        assert.equal(got.float().sub(want.float()).abs().max().item(), 0, `${what}: the three stacked`);
        checkColumnSums(dir, want.reshape([rows, 3 * D]), sms ? 4 : rows, 1e-5, what);
      }
    }
  });
});

test("the kernels' 16-bit conversions equal libtorch's: every half to float, floats of every exponent to half and bfloat16", { skip }, () => {
  // Random bit patterns (every exponent, subnormals, NaNs) and the rounding edges: ties, overflow, underflow.
  const rand = new Uint32Array(1 << 16);
  let s = 12345;
  for (let i = 0; i < rand.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    rand[i] = (s ^ (s >>> 15) ^ Math.imul(i, 2654435761)) >>> 0;
  }
  const edges = [
    65504,
    65519.99,
    65520,
    65536,
    2 ** -14,
    2 ** -24,
    2 ** -25,
    1.5 * 2 ** -25,
    2 ** -26,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    1 + 2 ** -8,
    1 + 3 * 2 ** -8,
  ];
  const floats = new Float32Array(rand.length + 2 * edges.length + 4);
  floats.set(new Float32Array(rand.buffer));
  floats.set([...edges, ...edges.map((e) => -e), 0, -0, Infinity, -Infinity], rand.length);
  torch.scope(() => {
    const f = torch.tensor(floats, { dtype: 'float32' });
    const dir = runJob(`convert ${floats.length}`, { 'in.bin': f });
    const notNan = f.eq(f);
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const got = readTensor(path.join(dir, dtype === 'float16' ? 'f16.bin' : 'bf16.bin'), dtype, [floats.length]);
      const want = f.to({ dtype });
      assert.deepEqual(Array.from(got.isnan().data() as Uint8Array), Array.from(want.isnan().data() as Uint8Array), `${dtype}: NaN where libtorch has NaN`);
      // Bitwise (signed zeros included) where not NaN.
      const gotBits = new Uint16Array(bytes(got).buffer.slice(0));
      const wantBits = new Uint16Array(bytes(want).buffer.slice(0));
      const ok = notNan.data() as Uint8Array;
      for (let i = 0; i < floats.length; i++) {
        if (ok[i] && gotBits[i] !== wantBits[i]) assert.fail(`${dtype}: ${floats[i]} -> ${gotBits[i].toString(16)}, libtorch ${wantBits[i].toString(16)}`);
      }
    }
    const bits = new Uint16Array(65536).map((_, i) => i);
    const halves = torch.tensor(bits, { dtype: 'float16', shape: [65536] }).float();
    const got = readTensor(path.join(dir, 'halves.bin'), 'float32', [65536]);
    const gotF = new Uint32Array(bytes(got).buffer.slice(0));
    const wantF = new Uint32Array(bytes(halves).buffer.slice(0));
    const gotValues = got.data() as Float32Array;
    for (let i = 0; i < 65536; i++) {
      const nan = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (nan ? !Number.isNaN(gotValues[i]) : gotF[i] !== wantF[i])
        assert.fail(`half ${i.toString(16)} -> ${gotF[i].toString(16)}, libtorch ${wantF[i].toString(16)}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

test('emulated pixel-target kernel equals blur + patchify + per-patch normalisation', { skip }, () => {
  torch.scope(() => {
    // the last: two images, and patches of fewer values (2·2·3) than a warp
    for (const [P, K, norm, H, B] of [
      [16, 9, true, 32, 1],
      [4, 3, false, 16, 1],
      [8, 0, true, 16, 1],
      [2, 3, true, 8, 2],
    ] as const) {
      const images = rnd([B, 3, H, H + P], { dtype: 'float32', lo: -2, hi: 2 });
      const want = torch.scope(() => {
        const src = K ? gaussianBlur(images, K, 1) : images;
        const t = patchify(src, P);
        return norm ? normalizePatches(t) : t;
      });
      // The normalised Gaussian the addon uploads: one channel of gaussianKernel's.
      const weights = K ? gaussianKernel(K, 1, 1) : null;
      const dir = runJob(`targets ${B} 3 ${H} ${H + P} ${P} ${K} ${norm ? 1 : 0}`, { 'img.bin': images, ...(weights ? { 'weights.bin': weights } : {}) });
      assertClose(readTensor(path.join(dir, 'out.bin'), 'float32', want.shape), want, 2e-5, 2e-5, `B ${B} P ${P} K ${K} norm ${norm}`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
