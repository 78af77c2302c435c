// `npm run bench:engine`: the engine beside PyTorch on the same machine and thread count.
//   fp32 matmul GFLOP/s (1024², 2048²), per-op dispatch overhead (a.add(b) on 4×4 tensors incl.
//   dispose, mean of 100k calls), forward+backward of a 4-block pre-norm ViT (B=32, 64 tokens,
//   D=192, 6 heads, MLP ratio 4) in ms per step.
// The PyTorch numbers come from bench/engine_torch.py, run with /usr/bin/python3 (Debian's torch)
// as a server: single measurements alternate between the two sides, so load from other processes
// on the machine hits both alike; each side times itself in-process.
// Options: --threads N (default 2), --quick (smaller run),
//          --write-docs (replace the "## Engine" section of docs/BENCHMARKS.md with the table).
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TorchServer } from './torch-server';
import * as torch from '../src/torch';
import { Tensor, F } from '../src/torch';
import { PY } from './python';

const ROOT = path.join(__dirname, '..', '..');

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const quick = process.argv.includes('--quick');
const threads = arg('--threads', 2);
const sizes = quick ? [512, 1024] : [1024, 2048];
const calls = quick ? 20000 : 100000;
const dispatchRounds = quick ? 2 : 5;
const vitWarmup = quick ? 2 : 3;
const vitSteps = quick ? 4 : 15;
const loadAtStart = os.loadavg()[0];

const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const min = (xs: number[]): number => Math.min(...xs);

// ---------------------------------------------------------------- the engine side

class EngineBench {
  private mats = new Map<number, [Tensor, Tensor]>();
  private a = torch.keep(torch.ones([4, 4]));
  private b = torch.keep(torch.ones([4, 4]));
  vit?: { model: ViT; params: Tensor[]; x: Tensor; y: Tensor };

  matmul(n: number): number {
    let m = this.mats.get(n);
    if (!m) {
      m = torch.keep([torch.randn([n, n]), torch.randn([n, n])]) as [Tensor, Tensor];
      this.mats.set(n, m);
      for (let i = 0; i < 2; i++) m[0].matmul(m[1]).dispose();
    }
    const t0 = now();
    const c = m[0].matmul(m[1]);
    const dt = now() - t0;
    c.dispose();
    return dt;
  }

  dispatch(n: number): number {
    const { a, b } = this;
    const t0 = now();
    for (let i = 0; i < n; i++) {
      const c = a.add(b);
      c.dispose();
    }
    return ((now() - t0) / n) * 1e6;
  }

  vitInit(): number {
    torch.manualSeed(0);
    const model = new ViT(4, 192, 6, 4, 100);
    const params = model.parameters();
    this.vit = { model, params, x: torch.keep(torch.randn([32, 64, 192])), y: torch.keep(torch.randint(0, 100, [32])) };
    return params.reduce((s, p) => s + p.numel, 0);
  }

  vitStep(): number {
    const { model, params, x, y } = this.vit!;
    const t0 = now();
    torch.scope(() => {
      for (const p of params) p.grad = null;
      F.crossEntropy(model.forward(x), y).backward();
    });
    return (now() - t0) * 1e3;
  }
}

interface Block {
  ln1: Tensor[];
  qkv: Tensor[];
  proj: Tensor[];
  ln2: Tensor[];
  fc1: Tensor[];
  fc2: Tensor[];
}

/** The ViT of bench/engine_torch.py, with the same ops. */
class ViT {
  blocks: Block[] = [];
  norm: Tensor[];
  head: Tensor[];
  constructor(
    depth: number,
    readonly dim: number,
    readonly heads: number,
    mlpRatio: number,
    classes: number,
  ) {
    const lin = (o: number, i: number): Tensor[] => [torch.randn([o, i]).mul_(0.02), torch.zeros([o])];
    const ln = (): Tensor[] => [torch.ones([dim]), torch.zeros([dim])];
    const hidden = dim * mlpRatio;
    for (let d = 0; d < depth; d++) {
      this.blocks.push({ ln1: ln(), qkv: lin(3 * dim, dim), proj: lin(dim, dim), ln2: ln(), fc1: lin(hidden, dim), fc2: lin(dim, hidden) });
    }
    this.norm = ln();
    this.head = lin(classes, dim);
    for (const p of this.parameters()) torch.keep(p).requiresGrad = true;
  }
  parameters(): Tensor[] {
    const ps: Tensor[] = [];
    for (const b of this.blocks) ps.push(...b.ln1, ...b.qkv, ...b.proj, ...b.ln2, ...b.fc1, ...b.fc2);
    return [...ps, ...this.norm, ...this.head];
  }
  forward(x: Tensor): Tensor {
    const [B, N, D] = x.shape;
    const H = this.heads;
    const hd = D / H;
    for (const b of this.blocks) {
      const h = F.layerNorm(x, [D], b.ln1[0], b.ln1[1]);
      const qkv = F.linear(h, b.qkv[0], b.qkv[1]).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4);
      const a = F.scaledDotProductAttention(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2)).transpose(1, 2).reshape(B, N, D);
      x = x.add(F.linear(a, b.proj[0], b.proj[1]));
      const h2 = F.layerNorm(x, [D], b.ln2[0], b.ln2[1]);
      x = x.add(F.linear(F.gelu(F.linear(h2, b.fc1[0], b.fc1[1])), b.fc2[0], b.fc2[1]));
    }
    const pooled = F.layerNorm(x, [D], this.norm[0], this.norm[1]).mean(1);
    return F.linear(pooled, this.head[0], this.head[1]);
  }
}

// ---------------------------------------------------------------- alternating measurements

export interface Results {
  matmul: { n: number; ts: number[]; py: number[] }[];
  dispatch: { ts: number[]; py: number[] };
  vit: { ts: number[]; py: number[]; tsRss: number[]; pyRss: number[]; tsParams: number; pyParams: number };
}

async function measure(py: TorchServer): Promise<Results> {
  const eng = new EngineBench();
  const log = (s: string): boolean => process.stderr.write(s);
  const res: Results = {
    matmul: [],
    dispatch: { ts: [], py: [] },
    vit: { ts: [], py: [], tsRss: [], pyRss: [], tsParams: 0, pyParams: 0 },
  };
  for (const n of sizes) {
    log(`matmul ${n}... `);
    const m = { n, ts: [] as number[], py: [] as number[] };
    for (let r = 0; r < (n <= 1024 ? 10 : 5); r++) {
      m.ts.push(eng.matmul(n));
      m.py.push((await py.ask<{ seconds: number }>({ op: 'matmul', n })).seconds);
    }
    res.matmul.push(m);
  }
  log('dispatch... ');
  eng.dispatch(10000);
  await py.ask({ op: 'dispatch', calls: 10000 });
  for (let r = 0; r < dispatchRounds; r++) {
    res.dispatch.ts.push(eng.dispatch(calls));
    res.dispatch.py.push((await py.ask<{ us: number }>({ op: 'dispatch', calls })).us);
  }
  log('ViT... ');
  res.vit.tsParams = eng.vitInit();
  res.vit.pyParams = (await py.ask<{ params: number }>({ op: 'vit_init' })).params;
  for (let i = 0; i < vitWarmup; i++) {
    eng.vitStep();
    await py.ask({ op: 'vit_step' });
  }
  for (let i = 0; i < vitSteps; i++) {
    res.vit.ts.push(eng.vitStep());
    res.vit.tsRss.push(process.memoryUsage().rss / 2 ** 20);
    const p = await py.ask<{ ms: number; rssMB: number }>({ op: 'vit_step' });
    res.vit.py.push(p.ms);
    res.vit.pyRss.push(p.rssMB);
  }
  log('done\n');
  return res;
}

// ---------------------------------------------------------------- report

export function table(r: Results, pyInfo: { torch: string; threads: number; python: string }): string {
  const cpu = os.cpus();
  const v = torch.version();
  const f = (x: number, d = 1): string => x.toFixed(d);
  const args = process.argv.slice(2).filter((a) => a !== '--write-docs'); // the options that shaped the table
  const lines = [
    `- Machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} logical cores, ${f(os.totalmem() / 2 ** 30, 0)} GiB RAM; ` +
      `${os.platform()} ${os.release()}`,
    `- Engine: node ${process.version}, libtorch ${v.torch}; PyTorch: python ${pyInfo.python}, torch ${pyInfo.torch} (${PY})`,
    `- Threads: ${torch.getNumThreads()} (engine) / ${pyInfo.threads} (PyTorch). Measurements alternate between the two sides; ` +
      `1-min load average ${f(loadAtStart, 2)} at start, ${f(os.loadavg()[0], 2)} at the end.`,
    `- Date: ${new Date().toISOString().slice(0, 10)}`,
    `- Command: \`npm run bench:engine${args.length ? ` -- ${args.join(' ')}` : ''}\` (this table: the same with \`--write-docs\`)`,
    '',
    '| Benchmark | semaim (TS) | PyTorch (Python) | time ratio TS/PyTorch | target |',
    '|---|---:|---:|---:|---|',
  ];
  for (const m of r.matmul) {
    const gf = (s: number): number => (2 * m.n ** 3) / s / 1e9;
    lines.push(
      `| fp32 matmul ${m.n}×${m.n} (GFLOP/s, best of ${m.ts.length}) | ${f(gf(min(m.ts)))} | ${f(gf(min(m.py)))} | ` + `${f(min(m.ts) / min(m.py), 2)} | — |`,
    );
  }
  const dts = min(r.dispatch.ts);
  const dpy = min(r.dispatch.py);
  lines.push(
    `| dispatch: add of two 4×4 tensors incl. dispose (µs/op; mean of ${calls / 1000}k calls, best of ${r.dispatch.ts.length} rounds) | ` +
      `${f(dts, 2)} | ${f(dpy, 2)} | ${f(dts / dpy, 2)} | ≤ 1.00: ${dts <= dpy ? 'met' : 'NOT met'} |`,
  );
  const vts = min(r.vit.ts);
  const vpy = min(r.vit.py);
  lines.push(
    `| ViT fwd+bwd, 4 blocks, B=32, 64 tokens, D=192, 6 heads (ms/step: fastest of ${r.vit.ts.length} (median)) | ` +
      `${f(vts)} (${f(median(r.vit.ts))}) | ${f(vpy)} (${f(median(r.vit.py))}) | ${f(vts / vpy, 2)} (${f(median(r.vit.ts) / median(r.vit.py), 2)}) | ` +
      `≤ 1.10: ${vts / vpy <= 1.1 ? 'met' : 'NOT met'} |`,
  );
  const growth = (xs: number[]): number => xs[xs.length - 1] - xs[0];
  lines.push(
    `| ViT: process RSS growth over the measured steps (MB; every step frees all it allocates) | ${f(growth(r.vit.tsRss), 0)} | ` +
      `${f(growth(r.vit.pyRss), 0)} | — | flat |`,
  );
  lines.push(
    '',
    `ViT parameters: ${r.vit.tsParams} (engine) / ${r.vit.pyParams} (PyTorch). Ratios compare the fastest ` +
      'measurements (load from other processes only ever adds time); medians in parentheses.',
  );
  return lines.join('\n');
}

const BEGIN = '<!-- bench:engine:begin (generated by `npm run bench:engine -- --write-docs`) -->';
const END = '<!-- bench:engine:end -->';

/** Replaces the generated block of the "## Engine" section (notes after it are kept), or adds the section. */
function writeDocs(body: string): void {
  const file = path.join(ROOT, 'docs', 'BENCHMARKS.md');
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const block = `${BEGIN}\n${body}\n${END}`;
  const b = text.indexOf(BEGIN);
  const e = text.indexOf(END);
  if (b >= 0 && e > b) {
    fs.writeFileSync(file, text.slice(0, b) + block + text.slice(e + END.length));
    console.log(`\nupdated the Engine table in ${path.relative(process.cwd(), file)}`);
    return;
  }
  const section = `## Engine\n\n${block}\n`;
  const start = text.search(/^## Engine\s*$/m);
  if (start < 0) {
    text = `${text.replace(/\n*$/, '\n')}\n${section}`;
  } else {
    const rest = text.slice(start + 1);
    const next = rest.search(/^## /m);
    const end = next < 0 ? text.length : start + 1 + next;
    text = `${text.slice(0, start)}${section}${next < 0 ? '' : '\n'}${text.slice(end)}`;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  console.log(`\nwrote the Engine section of ${path.relative(process.cwd(), file)}`);
}

async function main(): Promise<void> {
  torch.setNumThreads(threads);
  const py = new TorchServer(PY, path.join(ROOT, 'bench', 'engine_torch.py'), ['--serve', '--threads', String(threads)]);
  try {
    const info = await py.ask<{ torch: string; threads: number; python: string }>({ op: 'info' });
    const r = await measure(py);
    if (r.vit.tsParams !== r.vit.pyParams) throw new Error(`the two ViTs differ: ${r.vit.tsParams} vs ${r.vit.pyParams} parameters`);
    const out = table(r, info);
    console.log(out);
    if (process.argv.includes('--write-docs')) writeDocs(out);
  } finally {
    py.close();
  }
}

if (require.main === module)
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
