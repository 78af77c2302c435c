// `npm run bench:pretrain`: one SemAIM pre-training step (semantic order with its no-grad similarity
// pass, fast-path forward, backward, clip 3, AdamW, zeroGrad) in TypeScript beside the same model and
// step in PyTorch (bench/pretrain_torch.py, run with $SEMAIM_PYTHON or /usr/bin/python3), same thread count, same
// warm-up and measured steps. Each side runs in its own child process, so the peak RSS (VmHWM) it
// reports is that run's alone.
//
// With --reference authors (or both), the authors'-style reference bench/pretrain_authors.py runs too:
// tokens in image order, explicit -inf masks, per-step forward_encoder pass, fp16 autocast + GradScaler
// on CUDA (ours: bf16). All sides then start from the same weights and images (a safetensors file the
// authors' script writes with --save-init) and log their first --log-losses step losses, so the loss
// curves can be compared; speed ratios are against the authors' reference.
//
// Configs: CPU: ViT-Tiny/4 at 32² (batch 64) and ViT-B/16 at 224² (batch 8), 12 decoder blocks each.
// CUDA: ViT-B/16 at 224², 12 decoder blocks, batch 64 and 256; ViT-L/16 at 224², 12 decoder blocks, batch 64.
// Options:
//   --reference ours|authors|both   PyTorch reference(s) beside TS    [ours on CPU, both on CUDA]
//   --log-losses N      log and compare the first N step losses         [50 on CUDA, 0 on CPU]
//   --device cpu|cuda   passed to both sides (CUDA: bf16 autocast; PyTorch ≥ 2 uses SDPA)   [cpu]
//   --threads N         intra-op threads on both sides                                       [2]
//   --rounds N          alternating TS/PyTorch rounds per config (the order flips each round) [1]
//   --only tiny|base|large   run one config (on CUDA, base = both batch sizes)
//   --only-batch N      CUDA: only the configs at this batch size (e.g. 256, the target's)
//   --batch-tiny N, --batch-base N, --steps-tiny N, --steps-base N, --warmup N   override the sizes
//   --quick             2 + 3 steps (smoke test)
//   --ablate-order      CUDA: also time TS with its similarity pass in fp32 (--order-precision fp32) at batch 256
// The speed levers of issue 19, each an extra TypeScript side beside the plain one (off by default):
//   --fused KINDS       the fused kernels (all, or a list of layernorm,layernorm-backward,gelu,qkv,targets,patch-embed; src/torch/fused.ts)
//   --cuda-graphs       CUDA only: the step captured once as a CUDA graph and replayed (with --fused: also fused)
//   --graphs-at KEY:BATCH[,...]   the CUDA-graph sides only at these configs (e.g. base:256,base:64)   [every config]
//   --sdpa ORDER        the attention backends' priority, e.g. cudnn,flash,efficient,math (libtorch >= 2.6)
//   --phase-timer       a side timed per phase (input upload, similarity pass, order, targets, encoder,
//                       decoder, head, loss, backward, optimizer): CUDA events on a GPU, wall time on the CPU
//   --write-docs        replace this benchmark's section of docs/BENCHMARKS.md
//                       ("## Pre-training step (CPU)" or "(CUDA)"); other sections are left alone
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { causeOf, cpuModel, writeBenchmarksSection } from './docs-section';
import { spawnSync } from 'node:child_process';
import { PRESETS } from '../src/semaim/config';
import { peakMatmulFlops, stepFlopsPerImage } from './flops';
import { ISSUE19, issue19Verdict } from './targets';
import * as torch from '../src/torch';
import { PHASES } from '../src/semaim/phases';
import type { PhaseTimes } from '../src/run/phase-timer';
import { exitUnlessCount } from './count-arg';
import { PY, throwIfNotRun } from './python';

const ROOT = path.join(__dirname, '..', '..');

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);

const device = opt('device', 'cpu');
const cuda = device.startsWith('cuda');
const threads = Number(opt('threads', '2'));
const rounds = Number(opt('rounds', '1'));
const quick = flag('quick');
const warmup = Number(opt('warmup', '2'));
const reference = opt('reference', cuda ? 'both' : 'ours');
if (!['ours', 'authors', 'both'].includes(reference)) throw new Error(`--reference must be ours, authors or both, not ${reference}`);
const logLosses = Number(opt('log-losses', cuda ? '50' : '0'));
const checkCount = (name: string, value: number, min: number) => exitUnlessCount(`--${name}`, opt(name, ''), value, min);
checkCount('threads', threads, 1);
checkCount('rounds', rounds, 1);
checkCount('warmup', warmup, 0);
checkCount('log-losses', logLosses, 0);
for (const name of ['batch-tiny', 'batch-base', 'steps-tiny', 'steps-base', 'steps', 'only-batch']) if (flag(name)) checkCount(name, Number(opt(name, '')), 1);

// tsOrderFp32: the TS step with its similarity pass outside autocast (before/after for that change).
// tsFused, tsGraphs, tsFusedGraphs, tsSdpa, tsPhases: the TS step with one of issue 19's levers.
type Side = 'ts' | 'tsOrderFp32' | 'tsFused' | 'tsGraphs' | 'tsFusedGraphs' | 'tsSdpa' | 'tsPhases' | 'pytorch' | 'authors';
const ablateOrder = cuda && flag('ablate-order');
const fusedKinds = opt('fused', '');
const cudaGraphs = flag('cuda-graphs');
if (cudaGraphs && !cuda) {
  process.stderr.write('--cuda-graphs refused: CUDA graphs need --device cuda\n');
  process.exit(2);
}
const graphsAt = opt('graphs-at', '').split(',').filter(Boolean);
const sdpaOrder = opt('sdpa', '');
const phaseTimer = flag('phase-timer');
const SIDES: Side[] = [
  'ts',
  ...(ablateOrder ? ['tsOrderFp32' as const] : []),
  ...(fusedKinds ? ['tsFused' as const] : []),
  ...(cudaGraphs ? ['tsGraphs' as const] : []),
  ...(cudaGraphs && fusedKinds ? ['tsFusedGraphs' as const] : []),
  ...(sdpaOrder ? ['tsSdpa' as const] : []),
  ...(phaseTimer ? ['tsPhases' as const] : []),
  ...(reference !== 'authors' ? ['pytorch' as const] : []),
  ...(reference !== 'ours' ? ['authors' as const] : []),
];
const SIDE_NAME: Record<Side, string> = {
  ts: 'TypeScript',
  tsOrderFp32: 'TypeScript, order pass fp32',
  tsFused: `TypeScript, fused kernels (${fusedKinds})`,
  tsGraphs: 'TypeScript, CUDA graphs',
  tsFusedGraphs: `TypeScript, fused (${fusedKinds}) + CUDA graphs`,
  tsSdpa: `TypeScript, attention ${sdpaOrder}`,
  tsPhases: 'TypeScript, phase timer',
  pytorch: 'ours in PyTorch',
  authors: "authors'-style PyTorch",
};
/** The worker flags of each TypeScript side (the plain one: none). */
const SIDE_FLAGS: Partial<Record<Side, string[]>> = {
  tsOrderFp32: ['--order-precision', 'fp32'],
  tsFused: ['--fused', fusedKinds],
  tsGraphs: ['--cuda-graphs'],
  tsFusedGraphs: ['--cuda-graphs', '--fused', fusedKinds],
  tsSdpa: ['--sdpa', sdpaOrder],
  tsPhases: ['--phase-timer', '--upload-input'],
};
/** Sides that log the loss curve (the others run the measured steps only). */
const LOGS_LOSSES: ReadonlySet<Side> = new Set<Side>(['ts', 'tsOrderFp32', 'tsFused', 'tsFusedGraphs', 'tsGraphs', 'pytorch', 'authors']);
const SIDE_PRECISION: Record<Side, string> = cuda
  ? {
      ts: 'bf16 autocast',
      tsOrderFp32: 'bf16 autocast (order pass fp32)',
      tsFused: 'bf16 autocast',
      tsGraphs: 'bf16 autocast',
      tsFusedGraphs: 'bf16 autocast',
      tsSdpa: 'bf16 autocast',
      tsPhases: 'bf16 autocast',
      pytorch: 'bf16 autocast',
      authors: 'fp16 autocast + GradScaler (order pass fp32)',
    }
  : {
      ts: 'fp32',
      tsOrderFp32: 'fp32',
      tsFused: 'fp32 (no kernels on the CPU)',
      tsGraphs: '–',
      tsFusedGraphs: '–',
      tsSdpa: 'fp32',
      tsPhases: 'fp32',
      pytorch: 'fp32',
      authors: 'fp32',
    };
/** The sides a config runs: the order ablation only at batch 256, the CUDA-graph sides where --graphs-at says. */
const sidesFor = (c: Config): Side[] =>
  SIDES.filter(
    (s) =>
      (s !== 'tsOrderFp32' || c.batch === 256) &&
      ((s !== 'tsGraphs' && s !== 'tsFusedGraphs') || graphsAt.length === 0 || graphsAt.includes(`${c.key}:${c.batch}`)),
  );

interface Config {
  key: 'tiny' | 'base' | 'large';
  label: string;
  preset: string;
  img: number;
  patch: number;
  decoderDepth: number;
  batch: number;
  steps: number;
}

const CPU_CONFIGS: Config[] = [
  {
    key: 'tiny',
    label: 'ViT-Tiny/4, 32², 12 dec',
    preset: 'vit_tiny',
    img: 32,
    patch: 4,
    decoderDepth: 12,
    batch: Number(opt('batch-tiny', '64')),
    steps: Number(opt('steps-tiny', quick ? '3' : '10')),
  },
  {
    key: 'base',
    label: 'ViT-B/16, 224², 12 dec',
    preset: 'vit_base',
    img: 224,
    patch: 16,
    decoderDepth: 12,
    batch: Number(opt('batch-base', '8')),
    steps: Number(opt('steps-base', quick ? '3' : '5')),
  },
];
const cudaSteps = Number(opt('steps', quick ? '3' : '20'));
const CUDA_CONFIGS: Config[] = [
  {
    key: 'tiny',
    label: 'ViT-Tiny/4, 32², 12 dec',
    preset: 'vit_tiny',
    img: 32,
    patch: 4,
    decoderDepth: 12,
    batch: Number(opt('batch-tiny', '64')),
    steps: cudaSteps,
  },
  // batch 256 first: it carries the ≥ 1.6× target, so it is measured even if a time limit cuts the run short
  { key: 'base', label: 'ViT-B/16, 224², 12 dec', preset: 'vit_base', img: 224, patch: 16, decoderDepth: 12, batch: 256, steps: cudaSteps },
  { key: 'base', label: 'ViT-B/16, 224², 12 dec', preset: 'vit_base', img: 224, patch: 16, decoderDepth: 12, batch: 64, steps: cudaSteps },
  { key: 'large', label: 'ViT-L/16, 224², 12 dec', preset: 'vit_large', img: 224, patch: 16, decoderDepth: 12, batch: 64, steps: cudaSteps },
];
// On CUDA the tiny config runs only when asked for (--only tiny).
const CONFIGS: Config[] = (cuda ? CUDA_CONFIGS : CPU_CONFIGS)
  .filter((c) => (process.argv.includes('--only') ? opt('only', '') === c.key : !(cuda && c.key === 'tiny')))
  .filter((c) => !flag('only-batch') || c.batch === Number(opt('only-batch', '0')));
// A typo (or a config this device does not have) would otherwise measure nothing, exit 0 and, with
// --write-docs, replace the recorded section by empty tables.
if (!CONFIGS.length) {
  const asked = ['only', 'only-batch'].filter(flag).map((k) => `--${k} ${opt(k, '')}`);
  const have = (cuda ? CUDA_CONFIGS : CPU_CONFIGS).map((c) => `${c.key} (batch ${c.batch})`).join(', ');
  process.stderr.write(`${asked.join(' ')}: no configuration on ${cuda ? 'CUDA' : 'the CPU'} matches (there: ${have}); nothing measured\n`);
  process.exit(2);
}

interface Phases {
  order: number;
  forward: number;
  backward: number;
  optimizer: number;
}
interface Result {
  side: string;
  params: number;
  msPerStep: number;
  minMs: number;
  imgPerSec: number;
  stepsMs: number[];
  cpuMsPerStep: number;
  minCpuMs: number;
  phasesMs: Phases | null;
  phaseTimer?: { gpuMs: PhaseTimes | null; hostMs: PhaseTimes };
  fused?: string[];
  fusedKernels?: string;
  /** The attention backends' priority and the backend libtorch picks for the encoder's and decoder's attention. */
  attention?: { priority: string; encoder: string; decoder: string };
  cudaGraphs?: boolean;
  firstLoss: number;
  lastLoss: number;
  losses?: number[];
  peakRssBytes: number;
  peakGpuBytes?: number;
  libtorch?: string;
  torch?: string;
  python?: string;
  sdpa?: boolean;
  precision?: string;
  yieldEachStep?: boolean;
  cpuAllocator?: { enabled: boolean; peakLiveBytes?: number; mappedBytes?: number; cachedBytes?: number };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function workerArgs(c: Config): string[] {
  return [
    '--preset',
    c.preset,
    '--img',
    String(c.img),
    '--patch',
    String(c.patch),
    '--decoder-depth',
    String(c.decoderDepth),
    '--batch',
    String(c.batch),
    '--warmup',
    String(warmup),
    '--steps',
    String(c.steps),
    '--threads',
    String(threads),
    '--device',
    device,
  ];
}

function spawnJSON(cmd: string, args: string[]): Record<string, unknown> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env } });
  throwIfNotRun(r, [cmd, ...args]);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  // Python's json.dumps writes a non-finite float as a bare NaN / Infinity, which JSON does not have: read as null
  // (what JSON.stringify writes for them on the TypeScript side).
  const line = r.stdout
    .trim()
    .split('\n')
    .pop()!
    .replace(/(?<=[:[,]\s*)(?:NaN|-?Infinity)(?=\s*[,\]}])/g, 'null');
  const out = JSON.parse(line) as Record<string, unknown>;
  // A side that trained into NaN/Inf measured no step worth reporting (the authors' script stops on one).
  if (out.allFinite === false) throw new Error(`${path.basename(args[0])}: its losses were not all finite (NaN or ±Inf): no speed is reported for it`);
  return out;
}

const WORKER: [string, string] = [process.execPath, path.join(__dirname, 'pretrain_worker.js')];
const SCRIPTS: Record<Side, [string, string]> = {
  ts: WORKER,
  tsOrderFp32: WORKER,
  tsFused: WORKER,
  tsGraphs: WORKER,
  tsFusedGraphs: WORKER,
  tsSdpa: WORKER,
  tsPhases: WORKER,
  pytorch: [PY, path.join(ROOT, 'bench', 'pretrain_torch.py')],
  authors: [PY, path.join(ROOT, 'bench', 'pretrain_authors.py')],
};

function run(side: Side, c: Config, extra: string[]): Result {
  const [cmd, script] = SCRIPTS[side];
  const args = LOGS_LOSSES.has(side) ? extra : extra.filter((a, i) => a !== '--log-losses' && extra[i - 1] !== '--log-losses');
  return spawnJSON(cmd, [script, ...workerArgs(c), ...args, ...(SIDE_FLAGS[side] ?? [])]) as unknown as Result;
}

/** Initial weights and images shared by every side (written by the authors' script, our parameter names). */
function sharedInit(c: Config): string {
  // In a new private folder: at a name made of the pid in the shared /tmp, a link another user put there
  // first had the Python side (root, on the GPU machines) write through it to wherever it pointed.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'semaim-bench-init-'));
  const file = path.join(dir, `${c.preset}-${c.img}-${c.batch}.safetensors`);
  try {
    spawnJSON(PY, [
      SCRIPTS.authors[1],
      ...workerArgs(c).filter((_, i, a) => a[i] !== '--device' && a[i - 1] !== '--device'),
      '--device',
      'cpu',
      '--steps',
      '0',
      '--data-seed',
      '0',
      '--save-init',
      file,
      '--noise-steps',
      String(Math.max(warmup + c.steps, logLosses)),
    ]);
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return file;
}

/** Pools the rounds of one side: step times together, phases as the median over rounds, the largest peak. */
function pool(rs: Result[], batch: number): Result {
  const steps = rs.flatMap((r) => r.stepsMs);
  const ms = median(steps);
  const phase = (k: keyof Phases): number => median(rs.map((r) => r.phasesMs?.[k] ?? NaN));
  return {
    ...rs[0],
    msPerStep: ms,
    minMs: Math.min(...steps),
    imgPerSec: (batch * 1000) / ms,
    stepsMs: steps,
    cpuMsPerStep: median(rs.map((r) => r.cpuMsPerStep)),
    minCpuMs: Math.min(...rs.map((r) => r.minCpuMs)),
    phasesMs: rs[0].phasesMs ? { order: phase('order'), forward: phase('forward'), backward: phase('backward'), optimizer: phase('optimizer') } : null,
    peakRssBytes: Math.max(...rs.map((r) => r.peakRssBytes)),
    peakGpuBytes: rs[0].peakGpuBytes === undefined ? undefined : Math.max(...rs.map((r) => r.peakGpuBytes ?? 0)),
  };
}

/** The GPU's name, compute capability and memory (and the driver, from nvidia-smi when it is there). */
function gpuName(): string {
  const p = torch.cuda.getDeviceProperties(0);
  const smi = spawnSync('nvidia-smi', ['--query-gpu=driver_version', '--format=csv,noheader'], { encoding: 'utf8' });
  const driver = smi.status === 0 ? `, driver ${smi.stdout.trim().split('\n')[0]}` : '';
  return `${p.name} (compute ${p.major}.${p.minor}, ${f0(p.totalMemory / 2 ** 30)} GiB${driver})`;
}

const gib = (b: number | undefined): string => (b === undefined || !Number.isFinite(b) ? '–' : `${(b / 2 ** 30).toFixed(2)} GiB`);
const f1 = (x: number): string => x.toFixed(1);
const f0 = (x: number): string => x.toFixed(0);

type Row = { c: Config; r: Partial<Record<Side, Result>>; failed?: Partial<Record<Side, string>> };

/** Largest relative difference between two loss curves over their common prefix. */
function curveDiff(a?: number[], b?: number[]): { n: number; max: number; meanAbs: number } | null {
  if (!a || !b) return null;
  const n = Math.min(a.length, b.length);
  if (n === 0) return null;
  let max = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    max = Math.max(max, Math.abs(a[i] - b[i]) / Math.abs(b[i]));
    sum += Math.abs(a[i] - b[i]);
  }
  return { n, max, meanAbs: sum / n };
}

function flopsOf(c: Config): number {
  const p = PRESETS[c.preset];
  return stepFlopsPerImage({ embedDim: p.embedDim, depth: p.depth, decoderDepth: c.decoderDepth, img: c.img, patch: c.patch }).total;
}

function report(results: Row[], started: Date, loads: number[][], peak: { flops: number; dtype: string; n: number }): string {
  const first = results[0]?.r;
  const args = process.argv.slice(2).filter((a) => a !== '--write-docs');
  const py = first?.pytorch ?? first?.authors;
  const lines = [
    `Date: ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC. ` +
      `Machine: ${cuda ? `${gpuName()}; ` : ''}${cpuModel()}, ${os.cpus().length} logical cores, ${f0(os.totalmem() / 2 ** 30)} GiB RAM; ` +
      `load average ${loads.map((l) => l[0].toFixed(1)).join(' → ')} (start → end; the cores are shared with other work).`,
    `Command: \`npm run bench:pretrain${args.length ? ' -- ' + args.join(' ') : ''}\`. ` +
      `TS: node ${process.version}, libtorch ${first?.ts?.libtorch ?? '?'}; PyTorch: python ${py?.python ?? '?'}, torch ${py?.torch ?? '?'} (${PY}). ` +
      `Device ${device}${cuda ? ` (ours: bf16 autocast, the similarity pass too${first?.pytorch ? `, PyTorch SDPA: ${String(first.pytorch.sdpa)}` : ''}; authors': fp16 autocast + GradScaler)` : ''}; ${threads} threads each side; ` +
      `${warmup} warm-up steps, then the measured steps; ${rounds} round(s), the sides alternating, each run in its own process` +
      `${first?.ts?.yieldEachStep ? ' (the TS loop yields to the event loop once per step, as a trainer awaiting its loader does)' : ''}.`,
    'Step: semantic order (no-grad unmasked similarity pass, 3×3 mean filter, λ 0.01), pixel targets with 9×9 σ 1 blur and per-patch norm, ' +
      'backward, clip 3, AdamW (0.9, 0.95; wd 0.05), zero grad. TS and ours in PyTorch: fast path (tokens in order, causal attention; ' +
      "on libtorch 1.13 the explicit math path). Authors'-style (bench/pretrain_authors.py): tokens in image order, explicit N+1 × N+1 -inf masks, " +
      "the authors' forward_encoder pass (last block twice), loss.item() every step.",
    '',
    `| config | batch | side | precision | ms/step (median; min) | img/s | MFU | peak RSS | ${cuda ? 'peak GPU | ' : ''}speed vs authors' | TS time / ours-PyTorch time |`,
    `|---|---:|---|---|---:|---:|---:|---:|${cuda ? '---:|' : ''}---:|---:|`,
  ];
  for (const { c, r } of results) {
    for (const side of sidesFor(c)) {
      const x = r[side];
      if (!x) continue;
      const vsAuthors = r.authors ? `${(x.imgPerSec / r.authors.imgPerSec).toFixed(2)}×` : '–';
      const vsOurs =
        side === 'ts' && r.pytorch
          ? `${(x.msPerStep / r.pytorch.msPerStep).toFixed(2)}; ${(x.minMs / r.pytorch.minMs).toFixed(2)}` +
            (cuda ? '' : ` (≤ 1.15: ${x.msPerStep / r.pytorch.msPerStep <= 1.15 ? 'met' : 'NOT met'})`)
          : '–';
      const mfu = (flopsOf(c) * x.imgPerSec) / peak.flops;
      lines.push(
        `| ${c.label} | ${c.batch} | ${SIDE_NAME[side]} | ${SIDE_PRECISION[side]} | ${f0(x.msPerStep)}; ${f0(x.minMs)} | ${f1(x.imgPerSec)} | ${(100 * mfu).toFixed(1)}% | ` +
          `${gib(x.peakRssBytes)} | ${cuda ? gib(x.peakGpuBytes) + ' | ' : ''}${vsAuthors} | ${vsOurs} |`,
      );
    }
  }
  lines.push(
    '',
    `MFU = model FLOPs per image per step × img/s ÷ the measured peak matmul rate of this device: ${(peak.flops / 1e12).toFixed(1)} TFLOP/s ` +
      `(${peak.dtype} ${peak.n}×${peak.n} matmuls through the addon, best of 3). FLOPs (bench/flops.ts): matmuls only, causal attention counted half, ` +
      `backward 2× forward, plus the no-grad similarity pass: ${[...new Map(results.map(({ c }) => [c.label, c])).values()].map((c) => `${c.label} ${(flopsOf(c) / 1e9).toFixed(1)} GFLOP`).join(', ')} per image per step.`,
  );
  lines.push(
    '',
    `Median phase times (ms) and CPU time per step (ms, user + system, all threads; median of the rounds):`,
    '',
    '| config | batch | side | order pass | forward | backward | clip + AdamW + zero grad | CPU time/step | steps (ms) |',
    '|---|---:|---|---:|---:|---:|---:|---:|---|',
  );
  for (const { c, r } of results) {
    for (const side of sidesFor(c)) {
      const x = r[side];
      if (!x) continue;
      const p = x.phasesMs;
      lines.push(
        `| ${c.label} | ${c.batch} | ${SIDE_NAME[side]} | ${p ? f0(p.order) : '–'} | ${p ? f0(p.forward) : '–'} | ${p ? f0(p.backward) : '–'} | ` +
          `${p ? f0(p.optimizer) : '–'} | ${f0(x.cpuMsPerStep)} | ${x.stepsMs.map(f0).join(', ')} |`,
      );
    }
  }
  lines.push(...phaseTimerTable(results));
  const extra: string[] = [];
  for (const { c, r, failed } of results) {
    for (const [side, why] of Object.entries(failed ?? {})) extra.push(`- **${c.label}, batch ${c.batch}, ${SIDE_NAME[side as Side]}: failed** — ${why}`);
    const sides = sidesFor(c).filter((s) => r[s]);
    if (!sides.length) continue;
    const params = sides.map((s) => r[s]!.params);
    if (new Set(params).size > 1)
      extra.push(`- **${c.label}, batch ${c.batch}: parameter counts differ (${sides.map((s, i) => `${s} ${params[i]}`).join(', ')}).**`);
    extra.push(
      `- ${c.label}, batch ${c.batch}: ${(params[0] / 1e6).toFixed(2)} M parameters; first-step loss ` +
        sides.map((s) => `${SIDE_NAME[s]} ${r[s]!.firstLoss.toPrecision(6)}`).join(', ') +
        (r.authors ? " (same weights and images from the authors' script's --save-init file; the same order noise per step)" : '') +
        '.',
    );
    if (logLosses > 0 && r.authors) {
      const pairs: Array<[string, Side, Side]> = [
        ["TS vs authors'", 'ts', 'authors'],
        ["ours-PyTorch vs authors'", 'pytorch', 'authors'],
        ['TS vs ours-PyTorch', 'ts', 'pytorch'],
        ["TS with the fp32 order pass (the authors' order precision) vs authors'", 'tsOrderFp32', 'authors'],
        ['TS fused vs TS', 'tsFused', 'ts'],
        ["TS fused vs authors'", 'tsFused', 'authors'],
        ['TS CUDA graphs vs TS', 'tsGraphs', 'ts'],
        ['TS fused + CUDA graphs vs TS', 'tsFusedGraphs', 'ts'],
      ];
      const parts = pairs
        .map(([name, a, b]) => {
          const d = curveDiff(r[a]?.losses, r[b]?.losses);
          return d ? `${name}: max rel ${d.max.toExponential(1)}, mean |Δ| ${d.meanAbs.toExponential(1)} over ${d.n} steps` : null;
        })
        .filter((x) => x !== null);
      const curves = sides.map(
        (s) =>
          `${s} ${(r[s]!.losses ?? [])
            .slice(0, 5)
            .map((l) => l.toFixed(4))
            .join(' ')} … ${(r[s]!.losses ?? [])
            .slice(-1)
            .map((l) => l.toFixed(4))
            .join('')}`,
      );
      extra.push(`  Loss curves (first ${logLosses} steps): ${parts.join('; ')}. (${curves.join(' | ')})`);
    }
    if (cuda && r.authors && r.ts && c.batch === 256 && c.key === 'base') {
      const x = r.ts.imgPerSec / r.authors.imgPerSec;
      extra.push(`  Target (issue #8): TS ≥ 1.6× the authors'-style reference at batch 256: ${x.toFixed(2)}× — ${x >= 1.6 ? 'met' : 'NOT met'}.`);
      if (r.tsOrderFp32)
        extra.push(
          `  The similarity pass in bf16 instead of fp32 (the only difference between the two TS rows): ${(r.ts.imgPerSec / r.tsOrderFp32.imgPerSec).toFixed(2)}× the img/s.`,
        );
    }
    extra.push(...leverLines(c, r));
    const a = r.ts?.cpuAllocator;
    if (a?.enabled) {
      extra.push(
        `- ${c.label}: the addon's caching CPU allocator (native/allocator.cc) was on: peak live ${gib(a.peakLiveBytes)}, ` +
          `${gib(a.mappedBytes)} mapped at the end (${gib(a.cachedBytes)} of it cached); SEMAIM_CPU_ALLOCATOR=system turns it off.`,
      );
    }
  }
  lines.push('', ...extra);
  return lines.join('\n');
}

/** The per-phase table of the sides run with --phase-timer (empty when none was). */
function phaseTimerTable(results: Row[]): string[] {
  const rows = results.flatMap(({ c, r }) =>
    sidesFor(c)
      .filter((s) => r[s]?.phaseTimer)
      .map((s) => ({ c, side: s, t: r[s]!.phaseTimer! })),
  );
  if (!rows.length) return [];
  const cols = PHASES.filter((p) => rows.some(({ t }) => t.hostMs[p] !== undefined));
  const cell = (gpu: number | undefined, host: number | undefined): string =>
    gpu !== undefined ? `${gpu.toFixed(1)} (${(host ?? NaN).toFixed(1)})` : host !== undefined ? host.toFixed(1) : '–';
  const out = [
    '',
    cuda
      ? "Per-phase time (ms per step, median; GPU time between CUDA events at the phase marks, no synchronisation between phases; in parentheses the host time to issue the phase — where it exceeds the GPU time the phase is launch-bound; input: the trainer's uint8 upload + normalisation of one batch):"
      : "Per-phase time (ms per step, median wall time; input: the trainer's uint8 upload + normalisation of one batch):",
    '',
    `| config | batch | side | ${cols.join(' | ')} | sum |`,
    `|---|---:|---|${cols.map(() => '---:').join('|')}|---:|`,
  ];
  for (const { c, side, t } of rows) {
    const src = t.gpuMs ?? t.hostMs;
    const sum = cols.reduce((a, p) => a + (src[p] ?? 0), 0);
    out.push(`| ${c.label} | ${c.batch} | ${SIDE_NAME[side]} | ${cols.map((p) => cell(t.gpuMs?.[p], t.hostMs[p])).join(' | ')} | ${sum.toFixed(1)} |`);
  }
  return out;
}

/** Per config: what each lever gives against the plain TypeScript side, the attention backends, the kernels used, and issue 19's target. */
function leverLines(c: Config, r: Partial<Record<Side, Result>>): string[] {
  const out: string[] = [];
  const ts = r.ts;
  const levers = (['tsFused', 'tsGraphs', 'tsFusedGraphs', 'tsSdpa'] as Side[]).filter((s) => r[s] && ts);
  if (levers.length) {
    out.push(
      `  Levers (img/s against the TypeScript row; peak GPU memory): ${levers
        .map(
          (s) => `${SIDE_NAME[s]} ${(r[s]!.imgPerSec / ts!.imgPerSec).toFixed(3)}×` + (r[s]!.peakGpuBytes !== undefined ? ` (${gib(r[s]!.peakGpuBytes)})` : ''),
        )
        .join('; ')}.`,
    );
  }
  const att = (['ts', 'tsSdpa'] as Side[])
    .filter((s) => r[s]?.attention)
    .map((s) => {
      const a = r[s]!.attention!;
      return `${SIDE_NAME[s]}: encoder ${a.encoder}, decoder ${a.decoder}${a.priority ? ` (priority ${a.priority})` : ''}`;
    });
  if (att.length) out.push(`  Attention backend libtorch picks: ${att.join('; ')}.`);
  const k = (['tsFused', 'tsFusedGraphs'] as Side[]).map((s) => r[s]?.fusedKernels).find((m) => m);
  if (k) out.push(`  Fused kernels: ${k}.`);
  if (cuda && c.key === 'base' && c.batch === 256 && r.authors) {
    const best = (['ts', 'tsFused', 'tsGraphs', 'tsFusedGraphs', 'tsSdpa'] as Side[]).filter((s) => r[s]).sort((a, b) => r[b]!.imgPerSec - r[a]!.imgPerSec)[0];
    if (best) {
      const x = r[best]!.imgPerSec / r.authors.imgPerSec;
      out.push(
        `  Target (issue 19): ≥ ${ISSUE19.ratio.toFixed(1)}× the authors'-style reference at batch 256 (milestone ${ISSUE19.milestone}×), ` +
          `peak GPU memory ≤ ${ISSUE19.peakGpuGiB} GiB: best side ${SIDE_NAME[best]} ` +
          `${x.toFixed(2)}× (${issue19Verdict(x, r[best]!.peakGpuBytes)}), peak ${gib(r[best]!.peakGpuBytes)}.`,
      );
    }
  }
  return out;
}

/** Replaces the generated part of this benchmark's section of docs/BENCHMARKS.md (notes below it are kept). */
function writeDocs(body: string): void {
  writeBenchmarksSection(`## Pre-training step (${cuda ? 'CUDA' : 'CPU'})`, body);
}

function main(): void {
  const started = new Date();
  const loads = [os.loadavg()];
  const results: Row[] = [];
  process.stderr.write('peak matmul rate of the device... ');
  const peak = peakMatmulFlops(device as 'cpu' | 'cuda');
  if (cuda) torch.cuda.emptyCache(); // the sides run in child processes: leave them the GPU memory
  process.stderr.write(`${(peak.flops / 1e12).toFixed(2)} TFLOP/s\n`);
  for (const c of CONFIGS) {
    const runs: Partial<Record<Side, Result[]>> = {};
    let init: string | null = null;
    const extra: string[] = [];
    const failed: Partial<Record<Side, string>> = {};
    try {
      if (SIDES.includes('authors')) {
        init = sharedInit(c);
        extra.push('--init-weights', init);
      }
    } catch (e) {
      // Without the shared initial weights no side can run this config: say so and go on to the next.
      process.stderr.write(`${c.label}, batch ${c.batch}: the shared init file failed: ${causeOf(e)}\n`);
      for (const side of sidesFor(c)) failed[side] = `shared init failed: ${causeOf(e)}`;
      results.push({ c, r: {}, failed });
      continue;
    }
    if (logLosses > 0) extra.push('--log-losses', String(logLosses));
    try {
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? sidesFor(c) : [...sidesFor(c)].reverse();
        for (const side of order) {
          if (failed[side]) continue;
          process.stderr.write(`${c.label}, batch ${c.batch}, round ${r + 1}/${rounds}: ${SIDE_NAME[side]}... `);
          try {
            const res = run(side, c, extra);
            process.stderr.write(
              `${f0(res.msPerStep)} ms/step (min ${f0(res.minMs)}), peak RSS ${gib(res.peakRssBytes)}` +
                `${res.peakGpuBytes !== undefined ? `, peak GPU ${gib(res.peakGpuBytes)}` : ''}\n`,
            );
            (runs[side] ??= []).push(res);
          } catch (e) {
            // One side failing (e.g. out of memory) must not cost the other sides' numbers.
            failed[side] = causeOf(e);
            process.stderr.write(`FAILED: ${(e as Error).message}\n`);
          }
        }
      }
    } finally {
      if (init) fs.rmSync(path.dirname(init), { recursive: true, force: true });
    }
    const r: Partial<Record<Side, Result>> = {};
    for (const side of sidesFor(c)) if (runs[side]?.length && !failed[side]) r[side] = pool(runs[side]!, c.batch);
    results.push({ c, r, failed });
    // After every config, so that a run cut short by a time limit still leaves what it measured.
    if (flag('write-docs') && results.length < CONFIGS.length) {
      writeDocs(`${report(results, started, [...loads, os.loadavg()], peak)}\n\n(Partial: ${results.length} of ${CONFIGS.length} configurations so far.)`);
    }
  }
  loads.push(os.loadavg());
  const out = report(results, started, loads, peak);
  console.log(out);
  if (flag('write-docs')) writeDocs(out);
}

main();
