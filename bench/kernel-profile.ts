// Where a training step's GPU time goes, by kernel and kernel family, measured on semaim's own step
// (bench/pretrain_worker.ts --kernel-profile): libtorch's profiler (native/profiler.cc, CUPTI on a CUDA
// build) around a few steps. bench/pretrain_torch.py --kernel-profile gives the same tables for eager
// PyTorch, grouped by the same families (bench/kernel-families.json). On the CPU there are no kernels;
// the tables then list ATen ops with inclusive times (an op's time contains the ops it calls).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../src/torch/native';

export interface ProfiledName {
  device: 'cpu' | 'cuda';
  name: string;
  /** Calls or launches per step. */
  perStep: number;
  msPerStep: number;
}

export interface KernelProfile {
  steps: number;
  /** Whether the rows are GPU kernels (else CPU ops, inclusive times). */
  gpu: boolean;
  /** Summed over the rows (kernels do not nest; CPU ops do, so on the CPU this overcounts). */
  msPerStep: number;
  rows: ProfiledName[];
  /** By kernel family (GPU kernels only: the families are of kernel names, not op names). */
  families: { family: string; msPerStep: number; perStep: number }[];
}

type Families = [string, string[]][];
let families: Families | null = null;

/** The families of bench/kernel-families.json (found beside this file's source, from src or dist). */
function kernelFamilies(): Families {
  if (!families) {
    const candidates = [path.join(__dirname, 'kernel-families.json'), path.join(__dirname, '..', '..', 'bench', 'kernel-families.json')];
    const file = candidates.find((f) => fs.existsSync(f));
    if (!file) throw new Error(`kernel-families.json not found (looked in ${candidates.join(', ')})`);
    families = (JSON.parse(fs.readFileSync(file, 'utf8')) as { families: Families }).families;
  }
  return families;
}

/** The family of a kernel name: the first whose substrings one occurs in it, else 'other'. */
export function kernelFamily(name: string): string {
  for (const [family, keys] of kernelFamilies()) if (keys.some((k) => name.includes(k))) return family;
  return 'other';
}

/** The profiler's lines ("device\tcount\tmicroseconds\tname") as rows per step. */
export function parseProfile(text: string, steps: number): ProfiledName[] {
  const rows: ProfiledName[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [device, count, us, ...name] = line.split('\t');
    if ((device !== 'cpu' && device !== 'cuda') || !name.length) throw new Error(`kernel profile: unreadable line ${JSON.stringify(line)}`);
    rows.push({ device, name: name.join('\t'), perStep: Number(count) / steps, msPerStep: Number(us) / 1e3 / steps });
  }
  return rows;
}

/** Starts the profiler; the caller synchronises the device first and runs whole training steps until stopKernelProfile. */
export function startKernelProfile(cuda: boolean): void {
  native.profilerStart(cuda);
}

/** Stops the profiler (after the caller synchronised the device) and sums what it saw over `steps` steps. */
export function stopKernelProfile(steps: number, cuda: boolean): KernelProfile {
  return summarize(parseProfile(native.profilerStop(), steps), steps, cuda);
}

/** Rows of one device (GPU kernels when there are any), sorted by time, with their families. */
export function summarize(all: ProfiledName[], steps: number, cuda: boolean): KernelProfile {
  const gpu = cuda && all.some((r) => r.device === 'cuda');
  const rows = all.filter((r) => r.device === (gpu ? 'cuda' : 'cpu')).sort((a, b) => b.msPerStep - a.msPerStep);
  const byFamily = new Map<string, { msPerStep: number; perStep: number }>();
  for (const r of gpu ? rows : []) {
    const family = kernelFamily(r.name);
    const f = byFamily.get(family) ?? { msPerStep: 0, perStep: 0 };
    f.msPerStep += r.msPerStep;
    f.perStep += r.perStep;
    byFamily.set(family, f);
  }
  return {
    steps,
    gpu,
    msPerStep: rows.reduce((s, r) => s + r.msPerStep, 0),
    rows,
    families: [...byFamily].map(([family, f]) => ({ family, ...f })).sort((a, b) => b.msPerStep - a.msPerStep),
  };
}

/** The profile as Markdown: families, then the top kernels (or CPU ops). */
export function profileMarkdown(p: KernelProfile, title: string, top = 30): string {
  const what = p.gpu ? 'GPU kernel time' : 'CPU op time (inclusive: nested ops counted in each)';
  const unit = p.gpu ? 'launches/step' : 'calls/step';
  const lines = [
    `${title}: ${what} per step ${p.msPerStep.toFixed(1)} ms over ${p.rows.reduce((s, r) => s + r.perStep, 0).toFixed(0)} ${p.gpu ? 'kernel launches' : 'op calls'} (libtorch profiler, mean of ${p.steps} steps).`,
    '',
  ];
  if (p.gpu)
    lines.push(
      `| family | ms/step | share | ${unit} |`,
      '|---|---:|---:|---:|',
      ...p.families.map(
        (f) => `| ${f.family} | ${f.msPerStep.toFixed(1)} | ${((100 * f.msPerStep) / Math.max(p.msPerStep, 1e-9)).toFixed(1)}% | ${f.perStep.toFixed(0)} |`,
      ),
      '',
    );
  lines.push(
    `| ${p.gpu ? 'kernel' : 'op'} (top ${top} by time) |${p.gpu ? ' family |' : ''} ms/step | ${unit} |`,
    p.gpu ? '|---|---|---:|---:|' : '|---|---:|---:|',
    ...p.rows.slice(0, top).map((r) => {
      const short = r.name.length <= 110 ? r.name : r.name.slice(0, 107) + '...';
      return `| \`${short.replace(/\|/g, '/')}\` |${p.gpu ? ` ${kernelFamily(r.name)} |` : ''} ${r.msPerStep.toFixed(2)} | ${r.perStep.toFixed(0)} |`;
    }),
  );
  return lines.join('\n') + '\n';
}
