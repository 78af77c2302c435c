// `npm run bench:pretrain`: one SemAIM pre-training step (semantic order with its no-grad similarity
// pass, fast-path forward, backward, clip 3, AdamW, zeroGrad) in TypeScript beside the same model and
// step in PyTorch (bench/pretrain_torch.py, run with /usr/bin/python3), same thread count, same
// warm-up and measured steps. Each side runs in its own child process, so the peak RSS (VmHWM) it
// reports is that run's alone.
//
// Configs: ViT-Tiny/4 at 32² (batch 64) and ViT-B/16 at 224² (batch 8), 12 decoder blocks each.
// Options:
//   --device cpu|cuda   passed to both sides (CUDA: bf16 autocast; PyTorch ≥ 2 uses SDPA)   [cpu]
//   --threads N         intra-op threads on both sides                                       [2]
//   --rounds N          alternating TS/PyTorch rounds per config (the order flips each round) [1]
//   --only tiny|base    run one config
//   --batch-tiny N, --batch-base N, --steps-tiny N, --steps-base N, --warmup N   override the sizes
//   --quick             2 + 3 steps (smoke test)
//   --write-docs        replace this benchmark's section of docs/BENCHMARKS.md
//                       ("## Pre-training step (CPU)" or "(CUDA)"); other sections are left alone
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const ROOT = path.join(__dirname, '..', '..');
const PY = '/usr/bin/python3';

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

interface Config {
  key: 'tiny' | 'base';
  label: string;
  preset: string;
  img: number;
  patch: number;
  decoderDepth: number;
  batch: number;
  steps: number;
}

const CONFIGS: Config[] = [
  { key: 'tiny', label: 'ViT-Tiny/4, 32², 12 dec', preset: 'vit_tiny', img: 32, patch: 4, decoderDepth: 12,
    batch: Number(opt('batch-tiny', '64')), steps: Number(opt('steps-tiny', quick ? '3' : '10')) },
  { key: 'base', label: 'ViT-B/16, 224², 12 dec', preset: 'vit_base', img: 224, patch: 16, decoderDepth: 12,
    batch: Number(opt('batch-base', '8')), steps: Number(opt('steps-base', quick ? '3' : '5')) },
].filter((c) => !process.argv.includes('--only') || opt('only', '') === c.key) as Config[];

interface Phases { order: number; forward: number; backward: number; optimizer: number }
interface Result {
  side: 'ts' | 'pytorch';
  params: number;
  msPerStep: number;
  minMs: number;
  imgPerSec: number;
  stepsMs: number[];
  cpuMsPerStep: number;
  minCpuMs: number;
  phasesMs: Phases | null;
  firstLoss: number;
  lastLoss: number;
  peakRssBytes: number;
  peakGpuBytes?: number;
  libtorch?: string;
  torch?: string;
  python?: string;
  sdpa?: boolean;
  yieldEachStep?: boolean;
  cpuAllocator?: { enabled: boolean; peakLiveBytes?: number; mappedBytes?: number; cachedBytes?: number };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function workerArgs(c: Config): string[] {
  return ['--preset', c.preset, '--img', String(c.img), '--patch', String(c.patch), '--decoder-depth', String(c.decoderDepth),
    '--batch', String(c.batch), '--warmup', String(warmup), '--steps', String(c.steps), '--threads', String(threads),
    '--device', device];
}

function run(side: 'ts' | 'pytorch', c: Config): Result {
  const [cmd, script] = side === 'ts'
    ? [process.execPath, path.join(__dirname, 'pretrain_worker.js')]
    : [PY, path.join(ROOT, 'bench', 'pretrain_torch.py')];
  const r = spawnSync(cmd, [script, ...workerArgs(c)], { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env } });
  if (r.status !== 0) throw new Error(`${cmd} ${script} failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Result;
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

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1].trim();
  } catch { /* not Linux */ }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

const gib = (b: number | undefined): string => (b === undefined || !Number.isFinite(b) ? '–' : `${(b / 2 ** 30).toFixed(2)} GiB`);
const f1 = (x: number): string => x.toFixed(1);
const f0 = (x: number): string => x.toFixed(0);

function report(results: Array<{ c: Config; ts: Result; py: Result }>, started: Date, loads: number[][]): string {
  const first = results[0];
  const args = process.argv.slice(2).filter((a) => a !== '--write-docs');
  const lines = [
    `Date: ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC. ` +
      `Machine: ${cpuModel()}, ${os.cpus().length} logical cores, ${f0(os.totalmem() / 2 ** 30)} GiB RAM; ` +
      `load average ${loads.map((l) => l[0].toFixed(1)).join(' → ')} (start → end; the cores are shared with other work).`,
    `Command: \`npm run bench:pretrain${args.length ? ' -- ' + args.join(' ') : ''}\`. ` +
      `TS: node ${process.version}, libtorch ${first?.ts.libtorch ?? '?'}; PyTorch: python ${first?.py.python ?? '?'}, torch ${first?.py.torch ?? '?'} (/usr/bin/python3). ` +
      `Device ${device}${cuda ? ' (bf16 autocast; PyTorch SDPA: ' + String(first?.py.sdpa) + ')' : ''}; ${threads} threads each side; ` +
      `${warmup} warm-up steps, then the measured steps; ${rounds} round(s), TS and PyTorch alternating, each run in its own process` +
      `${first?.ts.yieldEachStep ? ' (the TS loop yields to the event loop once per step, as a trainer awaiting its loader does)' : ''}.`,
    'Step: semantic order (no-grad unmasked similarity pass, 3×3 mean filter, λ 0.01), fast path (tokens in order, causal attention; ' +
      'on libtorch 1.13 the explicit math path), pixel targets with 9×9 σ 1 blur and per-patch norm, backward, clip 3, AdamW (0.9, 0.95; wd 0.05), zeroGrad.',
    '',
    `| config | batch | TS ms/step (median; min) | TS img/s | TS peak RSS | PyTorch ms/step (median; min) | PyTorch img/s | PyTorch peak RSS | TS/PyTorch time (median; min) | target ≤ 1.15 |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const { c, ts, py } of results) {
    const ratio = ts.msPerStep / py.msPerStep;
    const ratioMin = ts.minMs / py.minMs;
    lines.push(`| ${c.label} | ${c.batch} | ${f0(ts.msPerStep)}; ${f0(ts.minMs)} | ${f1(ts.imgPerSec)} | ${gib(ts.peakRssBytes)} | ` +
      `${f0(py.msPerStep)}; ${f0(py.minMs)} | ${f1(py.imgPerSec)} | ${gib(py.peakRssBytes)} | ${ratio.toFixed(2)}; ${ratioMin.toFixed(2)} | ` +
      `${ratio <= 1.15 ? 'met' : 'NOT met'} |`);
  }
  lines.push('', `Median phase times (ms) and CPU time per step (ms, user + system, all threads; median of the rounds):`, '',
    '| config | side | order pass | forward | backward | clip + AdamW + zeroGrad | CPU time/step | steps (ms) |', '|---|---|---:|---:|---:|---:|---:|---|');
  for (const { c, ts, py } of results) {
    for (const [name, r] of [['TS', ts], ['PyTorch', py]] as const) {
      const p = r.phasesMs;
      lines.push(`| ${c.label} | ${name} | ${p ? f0(p.order) : '–'} | ${p ? f0(p.forward) : '–'} | ${p ? f0(p.backward) : '–'} | ` +
        `${p ? f0(p.optimizer) : '–'} | ${f0(r.cpuMsPerStep)} | ${r.stepsMs.map(f0).join(', ')} |`);
    }
  }
  const extra: string[] = [];
  for (const { c, ts, py } of results) {
    if (ts.params !== py.params) extra.push(`- **${c.label}: parameter counts differ (${ts.params} vs ${py.params}).**`);
    const same = Math.abs(ts.firstLoss - py.firstLoss) <= 1e-4 * Math.abs(py.firstLoss);
    extra.push(`- ${c.label}: ${(ts.params / 1e6).toFixed(2)} M parameters both sides; first-step loss TS ${ts.firstLoss.toPrecision(6)}, ` +
      `PyTorch ${py.firstLoss.toPrecision(6)} (${same ? 'same' : 'different'} weights, images and order noise)` +
      (cuda ? `; peak GPU memory TS ${gib(ts.peakGpuBytes)}, PyTorch ${gib(py.peakGpuBytes)}` : '') + '.');
    const a = ts.cpuAllocator;
    if (a?.enabled) {
      extra.push(`- ${c.label}: the addon's caching CPU allocator (native/allocator.cc) was on: peak live ${gib(a.peakLiveBytes)}, ` +
        `${gib(a.mappedBytes)} mapped at the end (${gib(a.cachedBytes)} of it cached); SEMAIM_CPU_ALLOCATOR=system turns it off.`);
    }
  }
  lines.push('', ...extra);
  return lines.join('\n');
}

const END_MARK = '<!-- end of the generated table: notes below are kept by --write-docs -->';

/**
 * Replaces the generated part of this benchmark's section of docs/BENCHMARKS.md (appending the section
 * when absent); hand-written notes after END_MARK and every other section are kept.
 */
function writeDocs(body: string): void {
  const file = path.join(ROOT, 'docs', 'BENCHMARKS.md');
  const title = `## Pre-training step (${cuda ? 'CUDA' : 'CPU'})`;
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === title);
  let out: string;
  if (start < 0) {
    out = `${text.replace(/\n*$/, '\n')}\n${title}\n\n${body}\n\n${END_MARK}\n`;
  } else {
    let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
    if (end < 0) end = lines.length;
    const mark = lines.findIndex((l, i) => i > start && i < end && l.trim() === END_MARK);
    const notes = mark < 0 ? [] : lines.slice(mark + 1, end);
    const section = [title, '', body, '', END_MARK, ...notes];
    out = [...lines.slice(0, start), ...section, ...lines.slice(end)].join('\n');
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, out);
  console.log(`\nwrote the "${title}" section of ${path.relative(process.cwd(), file)}`);
}

function main(): void {
  const started = new Date();
  const loads = [os.loadavg()];
  const results: Array<{ c: Config; ts: Result; py: Result }> = [];
  for (const c of CONFIGS) {
    const tsRuns: Result[] = [];
    const pyRuns: Result[] = [];
    for (let r = 0; r < rounds; r++) {
      const order: Array<'ts' | 'pytorch'> = r % 2 === 0 ? ['ts', 'pytorch'] : ['pytorch', 'ts'];
      for (const side of order) {
        process.stderr.write(`${c.label}, batch ${c.batch}, round ${r + 1}/${rounds}: ${side === 'ts' ? 'TypeScript' : 'PyTorch'}... `);
        const res = run(side, c);
        process.stderr.write(`${f0(res.msPerStep)} ms/step (min ${f0(res.minMs)}), peak RSS ${gib(res.peakRssBytes)}\n`);
        (side === 'ts' ? tsRuns : pyRuns).push(res);
      }
    }
    results.push({ c, ts: pool(tsRuns, c.batch), py: pool(pyRuns, c.batch) });
  }
  loads.push(os.loadavg());
  const out = report(results, started, loads);
  console.log(out);
  if (flag('write-docs')) writeDocs(out);
}

main();
