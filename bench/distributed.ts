// `npm run bench:distributed`: the cost of data-parallel training on the CPU. One SemAIM pre-training
// step (ViT-Tiny/4 at 32², 12 decoder blocks; semantic order, forward, backward, clip 3, AdamW) with the
// same per-process batch in 1 process and in 2 processes (1 intra-op thread each, Gloo over 127.0.0.1),
// for the TypeScript side (bench/distributed_worker.ts: DistributedDataParallel with c10d's Reducer,
// 'overlap', and with the all-reduce after backward, 'after-backward') and for PyTorch
// (bench/distributed_torch.py: torch.nn.parallel.DistributedDataParallel, run with $SEMAIM_PYTHON or
// /usr/bin/python3). Every rank runs in its own process with torchrun's variables.
//
// Per side: ms/step at 1 and 2 processes; the per-step overhead of going data-parallel (2-process step
// − 1-process step); and the exposed all-reduce (2-process step − the same step under no_sync/noSync,
// which has no collective but the same CPU contention) with its share of the step.
// Target: our overhead per step no worse than PyTorch DDP's. Both sides also run with the gradients
// all-reduced in fp16 (--grad-compress fp16 / DDP's fp16_compress_hook): half the bytes, and the casts.
//
// Options: --batch N (per process, 8), --steps N (8), --nosync-steps N (8), --warmup N (2),
//          --threads N (1), --rounds N (1; the order of the runs flips each round), --quick (1 + 2 steps),
//          --write-docs (replace this benchmark's section of docs/BENCHMARKS.md).
import * as os from 'node:os';
import * as path from 'node:path';
import { causeOf, cpuModel, writeBenchmarksSection } from './docs-section';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../src/dist';
import { exitUnlessCount } from './count-arg';
import { signalChild } from '../src/util/signal-child';
import { PY } from './python';

const ROOT = path.join(__dirname, '..', '..');

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const quick = flag('quick');
const batch = Number(opt('batch', '8'));
const steps = Number(opt('steps', quick ? '2' : '8'));
const nosyncSteps = Number(opt('nosync-steps', quick ? '2' : '8'));
const warmup = Number(opt('warmup', quick ? '1' : '2'));
const threads = Number(opt('threads', '1'));
const rounds = Number(opt('rounds', '1'));
// A count out of range would measure nothing (--rounds 0: an empty table, exit 0, and with --write-docs the
// recorded section replaced by it) or leave the medians empty (--steps 0).
for (const [name, value, min] of [
  ['batch', batch, 1],
  ['steps', steps, 1],
  ['nosync-steps', nosyncSteps, 0],
  ['warmup', warmup, 0],
  ['threads', threads, 1],
  ['rounds', rounds, 1],
] as const)
  exitUnlessCount(`--${name}`, opt(name, ''), value, min);
const MODEL = { preset: 'vit_tiny', img: 32, patch: 4, decoderDepth: 12, label: 'ViT-Tiny/4, 32², 12 dec' };

type RunKey = 'ts-1' | 'torch-1' | 'ts-2-overlap' | 'ts-2-after' | 'torch-2' | 'ts-2-fp16' | 'torch-2-fp16';
interface Run {
  key: RunKey;
  side: 'ts' | 'pytorch';
  procs: number;
  mode: string;
  label: string;
  /** Gradients all-reduced in fp16 (ours: --grad-compress fp16; PyTorch: fp16_compress_hook). */
  fp16?: boolean;
}
const RUNS: Run[] = [
  { key: 'ts-1', side: 'ts', procs: 1, mode: 'none', label: 'TypeScript' },
  { key: 'torch-1', side: 'pytorch', procs: 1, mode: 'none', label: 'PyTorch' },
  { key: 'ts-2-overlap', side: 'ts', procs: 2, mode: 'overlap', label: 'TypeScript, DDP overlap (c10d Reducer, hooks)' },
  { key: 'torch-2', side: 'pytorch', procs: 2, mode: 'DistributedDataParallel', label: 'PyTorch DistributedDataParallel' },
  { key: 'ts-2-after', side: 'ts', procs: 2, mode: 'after-backward', label: 'TypeScript, DDP after-backward' },
  { key: 'ts-2-fp16', side: 'ts', procs: 2, mode: 'overlap', label: 'TypeScript, DDP overlap, fp16 gradients', fp16: true },
  { key: 'torch-2-fp16', side: 'pytorch', procs: 2, mode: 'DistributedDataParallel', label: 'PyTorch DDP, fp16_compress_hook', fp16: true },
];

interface Result {
  rank: number;
  worldSize: number;
  mode: string;
  threads: number;
  batch: number;
  params: number;
  buckets?: number;
  msPerStep: number;
  backwardMs: number;
  syncAfterBackwardMs: number;
  nosyncMsPerStep: number;
  nosyncBackwardMs: number;
  cpuMsPerStep: number;
  nosyncCpuMsPerStep: number | null;
  stepsMs: number[];
  nosyncStepsMs: number[];
  firstLoss: number;
  libtorch?: string;
  torch?: string;
  python?: string;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');

function commandOf(r: Run): [string, string[]] {
  const common = [
    '--preset',
    MODEL.preset,
    '--img',
    String(MODEL.img),
    '--patch',
    String(MODEL.patch),
    '--decoder-depth',
    String(MODEL.decoderDepth),
    '--batch',
    String(batch),
    '--warmup',
    String(warmup),
    '--steps',
    String(steps),
    '--nosync-steps',
    String(r.procs > 1 ? nosyncSteps : 0),
    '--threads',
    String(threads),
  ];
  if (r.fp16) common.push('--compress', 'fp16');
  return r.side === 'ts'
    ? [process.execPath, [path.join(__dirname, 'distributed_worker.js'), ...common, '--mode', r.mode === 'none' ? 'overlap' : r.mode]]
    : [PY, [path.join(ROOT, 'bench', 'distributed_torch.py'), ...common]];
}

/** Starts a process with its stdout and stderr piped. */
function spawnPiped(cmd: string, args: string[], env: NodeJS.ProcessEnv) {
  return spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
}

/** Runs one configuration: every rank in its own process with torchrun's variables; rank 0's result. */
async function runOnce(r: Run): Promise<Result[]> {
  const [cmd, args] = commandOf(r);
  const port = await freePort();
  const env = { ...process.env, OMP_NUM_THREADS: String(threads) };
  const children: ChildProcess[] = [];
  let failed = false;
  const outs = await Promise.all(
    Array.from(
      { length: r.procs },
      (_, rank) =>
        new Promise<Result>((resolve, reject) => {
          // a rank that failed leaves the others waiting in a collective until Gloo's timeout: stop them
          const fail = (e: Error) => {
            failed = true;
            for (const c of children) signalChild(c, 'SIGKILL');
            reject(e);
          };
          if (failed) return reject(new Error(`${r.label}, rank ${rank}: not started, an earlier rank failed`));
          const rankEnv =
            r.procs > 1
              ? {
                  ...env,
                  RANK: String(rank),
                  LOCAL_RANK: String(rank),
                  WORLD_SIZE: String(r.procs),
                  LOCAL_WORLD_SIZE: String(r.procs),
                  MASTER_ADDR: '127.0.0.1',
                  MASTER_PORT: String(port),
                }
              : env;
          let child: ReturnType<typeof spawnPiped>;
          try {
            child = spawnPiped(cmd, args, rankEnv);
          } catch (e) {
            // spawn throws (no process, no events) for errors other than ENOENT, EACCES, EAGAIN, EMFILE, ENFILE
            return fail(new Error(`${r.label}, rank ${rank}: ${cmd}: ${(e as Error).message}`));
          }
          children.push(child);
          child.on('error', (e) => fail(new Error(`${r.label}, rank ${rank}: ${cmd}: ${e.message}`)));
          let out = '';
          let err = '';
          child.stdout.setEncoding('utf8').on('data', (c: string) => {
            out += c;
          });
          child.stderr.setEncoding('utf8').on('data', (c: string) => {
            err += c;
          });
          child.on('close', (code) => {
            if (code !== 0) fail(new Error(`${r.label}, rank ${rank}: exit ${code}\n${err}`));
            else resolve(JSON.parse(out.trim().split('\n').pop() as string) as Result);
          });
        }),
    ),
  );
  return outs;
}

interface Summary {
  ms: number;
  backward: number;
  nosync: number;
  afterSync: number;
  cpu: number;
  nosyncCpu: number;
  steps: number[];
  nosyncSteps: number[];
  res: Result;
}

function summarise(rs: Result[][]): Summary {
  // The median over rounds of rank 0's medians; the step lists of every round.
  const r0 = rs.map((x) => x[0]);
  return {
    ms: median(r0.map((r) => r.msPerStep)),
    backward: median(r0.map((r) => r.backwardMs)),
    nosync: median(r0.map((r) => r.nosyncMsPerStep)),
    afterSync: median(r0.map((r) => r.syncAfterBackwardMs)),
    cpu: median(r0.map((r) => r.cpuMsPerStep)),
    nosyncCpu: median(r0.map((r) => r.nosyncCpuMsPerStep ?? NaN)),
    steps: r0.flatMap((r) => r.stepsMs),
    nosyncSteps: r0.flatMap((r) => r.nosyncStepsMs),
    res: r0[0],
  };
}

function report(s: Partial<Record<RunKey, Summary>>, started: Date, loads: number[][], failed: Partial<Record<RunKey, string>>): string {
  const args = process.argv.slice(2).filter((a) => a !== '--write-docs');
  const ts = s['ts-1']?.res;
  const py = s['torch-1']?.res;
  const lines = [
    `Date: ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC. Machine: ${cpuModel()}, ${os.cpus().length} logical cores, ` +
      `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM; load average ${loads.map((l) => l[0].toFixed(1)).join(' → ')} (start → end; the cores are shared with other work).`,
    `Command: \`npm run bench:distributed${args.length ? ' -- ' + args.join(' ') : ''}\`. TS: node ${process.version}, libtorch ${ts?.libtorch ?? '?'}; ` +
      `PyTorch: python ${py?.python ?? '?'}, torch ${py?.torch ?? '?'} (${PY}). ${MODEL.label}, batch ${batch} per process, fp32, ` +
      `${threads} intra-op thread per process, Gloo on 127.0.0.1 (2 Gloo threads per process on both sides); ${warmup} warm-up steps, ${steps} synchronised ` +
      `steps and ${nosyncSteps} steps without synchronisation (no_sync / noSync), alternating; ${rounds} round(s); rank 0's medians.`,
    'Step: semantic order (no-grad similarity pass), forward, backward (with the gradient all-reduce), clip 3, AdamW, zero grad. ' +
      'Overhead = 2-process step − 1-process step (same per-process batch). Exposed all-reduce = 2-process step − the 2-process step without ' +
      'synchronisation (same CPU contention, no collective; the two kinds alternate, so both see the same load). CPU cost of the sync = ' +
      'CPU time per step (user + system, every thread of the process: ATen, Gloo, autograd) with synchronisation − without: what the ' +
      'all-reduce costs in work, which other jobs on a shared machine disturb far less than wall time.',
    '',
    '| side | processes | gradient sync | ms/step (median) | img/s (all processes) | backward ms | no-sync ms/step | exposed all-reduce ms (share of step) | overhead vs 1 process ms (%) | CPU ms/step, sync; no sync (all threads) | CPU cost of the sync ms |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const base = (r: Run): Summary | undefined => s[r.side === 'ts' ? 'ts-1' : 'torch-1'];
  for (const r of RUNS) {
    const x = s[r.key];
    if (!x) continue;
    const b = base(r);
    const exposed = r.procs > 1 ? x.ms - x.nosync : NaN;
    const over = r.procs > 1 && b ? x.ms - b.ms : NaN;
    const how =
      (r.procs === 1 ? '–' : r.key === 'ts-2-after' ? `after backward (all-reduce wait ${f0(x.afterSync)} ms)` : 'during backward (gradient hooks)') +
      (r.fp16 ? ', in fp16' : '');
    lines.push(
      `| ${r.label} | ${r.procs} | ${how} | ` +
        `${f0(x.ms)} | ${((batch * r.procs * 1000) / x.ms).toFixed(1)} | ${f0(x.backward)} | ${r.procs > 1 ? f0(x.nosync) : '–'} | ` +
        `${r.procs > 1 ? `${f0(exposed)} (${((100 * exposed) / x.ms).toFixed(1)}%)` : '–'} | ${r.procs > 1 && b ? `${f0(over)} (${((100 * over) / b.ms).toFixed(1)}%)` : '–'} | ` +
        `${f0(x.cpu)}${r.procs > 1 ? `; ${f0(x.nosyncCpu)}` : ''} | ${r.procs > 1 ? f0(x.cpu - x.nosyncCpu) : '–'} |`,
    );
  }
  const overhead = (k: RunKey, b: RunKey): number => (s[k] && s[b] ? (s[k] as Summary).ms - (s[b] as Summary).ms : NaN);
  const rel = (k: RunKey, b: RunKey): number => overhead(k, b) / (s[b]?.ms ?? NaN);
  const torchOver = overhead('torch-2', 'torch-1');
  const notes: string[] = [''];
  for (const r of RUNS) if (failed[r.key]) notes.push(`- **${r.label}, ${r.procs} process${r.procs > 1 ? 'es' : ''}: failed** — ${failed[r.key]}`);
  for (const k of ['ts-2-overlap', 'ts-2-after'] as const) {
    if (!s[k] || !s['torch-2']) continue;
    const o = overhead(k, 'ts-1');
    const label = RUNS.find((r) => r.key === k)?.label;
    const cpuCost = (s[k] as Summary).cpu - (s[k] as Summary).nosyncCpu;
    const torchCpuCost = (s['torch-2'] as Summary).cpu - (s['torch-2'] as Summary).nosyncCpu;
    notes.push(
      `- ${label}: wall-time overhead ${f0(o)} ms/step vs PyTorch DDP's ${f0(torchOver)} ms (${(100 * rel(k, 'ts-1')).toFixed(1)}% vs ` +
        `${(100 * rel('torch-2', 'torch-1')).toFixed(1)}% of the 1-process step): ${o <= torchOver ? 'no worse' : 'worse'}; ` +
        `CPU cost of the sync ${f0(cpuCost)} vs ${f0(torchCpuCost)} ms/step: ${cpuCost <= torchCpuCost ? 'no worse' : 'worse'}.`,
    );
  }
  for (const [k, full] of [
    ['ts-2-fp16', 'ts-2-overlap'],
    ['torch-2-fp16', 'torch-2'],
  ] as const) {
    const [x, y] = [s[k], s[full]];
    if (x && y)
      notes.push(
        `- ${RUNS.find((r) => r.key === k)?.label}: ${f0(x.ms)} vs ${f0(y.ms)} ms/step in fp32 (${(x.ms / y.ms).toFixed(2)}×); ` +
          `exposed all-reduce ${f0(x.ms - x.nosync)} vs ${f0(y.ms - y.nosync)} ms.`,
      );
  }
  if (s['ts-1'] && s['torch-1']) notes.push(`- 1 process: TS/PyTorch step time ${(s['ts-1'].ms / s['torch-1'].ms).toFixed(2)}.`);
  if (s['ts-2-overlap']?.res.buckets)
    notes.push(
      `- ${(s['ts-2-overlap'].res.params / 1e6).toFixed(2)} M parameters, ${s['ts-2-overlap'].res.buckets} gradient buckets at start (25 MB, the first 1 MB; c10d's Reducer rebuilds them in backward order after the first step).`,
    );
  notes.push('', 'Steps (ms, rank 0, synchronised | without synchronisation):', '');
  for (const r of RUNS) {
    const x = s[r.key];
    if (x)
      notes.push(
        `- ${r.label}, ${r.procs} process${r.procs > 1 ? 'es' : ''}: ${x.steps.map(f0).join(', ')}${r.procs > 1 ? ` | ${x.nosyncSteps.map(f0).join(', ')}` : ''}`,
      );
  }
  return [...lines, ...notes].join('\n');
}

const TITLE = '## Data-parallel step (CPU, 2 processes)';

async function main(): Promise<void> {
  const started = new Date();
  const loads = [os.loadavg()];
  const results: Partial<Record<RunKey, Result[][]>> = {};
  const failed: Partial<Record<RunKey, string>> = {};
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? RUNS : [...RUNS].reverse();
    for (const r of order) {
      if (failed[r.key]) continue;
      const [cmd, args] = commandOf(r);
      process.stderr.write(
        `round ${round + 1}/${rounds}: ${r.label}, ${r.procs} process(es): ${path.basename(cmd)} ${args.map((a) => path.basename(a)).join(' ')}\n`,
      );
      let res: Result[];
      try {
        res = await runOnce(r);
      } catch (e) {
        // one side failing (no PyTorch, a crash) must not cost the other sides' numbers: listed as failed
        failed[r.key] = causeOf(e);
        delete results[r.key];
        process.stderr.write(`  FAILED: ${(e as Error).message.trim()}\n`);
        continue;
      }
      (results[r.key] ??= []).push(res);
      process.stderr.write(`  ${f0(res[0].msPerStep)} ms/step${r.procs > 1 ? `, no sync ${f0(res[0].nosyncMsPerStep)} ms/step` : ''}\n`);
    }
  }
  loads.push(os.loadavg());
  const summaries = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, summarise(v as Result[][])])) as Partial<Record<RunKey, Summary>>;
  const out = report(summaries, started, loads, failed);
  console.log(`\n${out}`);
  if (flag('write-docs')) writeBenchmarksSection(TITLE, out);
  if (Object.keys(failed).length) process.exitCode = 1; // (the table holds what the others measured)
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(1);
});
