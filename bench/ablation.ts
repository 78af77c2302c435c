// `npm run bench:ablation`: what one run of `semaim ablate` costs on this machine and where the time
// goes, to choose how the CPU ablation runs. Four parts, each printed as a table:
//   1. the pre-training step of the ablation's small model (ViT 96×4, 4 decoder blocks, batch 64, no
//      blur) and of ViT-Tiny/4 (192×12, 12 decoder blocks) at 32² (64 patches), per order (raster and
//      stochastic run no similarity pass; semantic does), TypeScript beside the same step in PyTorch
//      (bench/pretrain_torch.py), with phase times (order pass, forward, backward, clip + AdamW);
//   2. threads: one process with 2 threads (OpenMP's default wait policy, and OMP_WAIT_POLICY=PASSIVE),
//      one process with 1 thread, and two 1-thread processes at once (their img/s summed);
//   3. batch size vs img/s (small model, 1 thread);
//   4. one run's evaluation at the small recipe's sizes on CIFAR-10 (5,000 train / 1,000 test, [CLS] and
//      mean, k-NN + a 30-epoch linear probe): the way it was (one encoder pass per pooling, images
//      decoded for every pass) and the way it is now (decoded once per ablation, one pass for both).
// Each step measurement runs in its own process (bench/pretrain_worker.js, bench/pretrain_torch.py).
//   node dist/bench/ablation.js [--steps N] [--warmup N] [--threads N] [--only step|threads|batch|eval] [--quick] [--write-docs]
import * as os from 'node:os';
import * as path from 'node:path';
import { cpuModel, writeBenchmarksSection } from './docs-section';
import { spawn, spawnSync } from 'node:child_process';
import * as torch from '../src/torch';
import { VisionTransformer } from '../src/semaim';
import { MemoryLabelledData, makeEvalData } from '../src/data';
import { extractFeatures, extractPooledFeatures, disposeFeatures, FeatureSet } from '../src/eval/features';
import { knnClassify } from '../src/eval/knn';
import { linprobeOnFeatures } from '../src/eval/linprobe';
import { PY, throwIfNotRun } from './python';

const ROOT = path.join(__dirname, '..', '..');
const WORKER = path.join(__dirname, 'pretrain_worker.js');
const TORCH = path.join(ROOT, 'bench', 'pretrain_torch.py');

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const quick = flag('quick');
const steps = Number(opt('steps', quick ? '2' : '5'));
const warmup = Number(opt('warmup', quick ? '1' : '2'));
const threads = Number(opt('threads', '1'));
const only = opt('only', '');
const part = (p: string): boolean => !only || only === p;
// An unknown part would otherwise run nothing, exit 0 and, with --write-docs, replace the recorded tables.
if (process.argv.includes('--only') && !['step', 'threads', 'batch', 'eval'].includes(only)) {
  process.stderr.write(`--only ${only}: not one of step, threads, batch, eval; nothing measured\n`);
  process.exit(2);
}

const SMALL = ['--preset', 'vit_tiny', '--embed-dim', '96', '--depth', '4', '--heads', '3', '--decoder-depth', '4', '--no-blur'];
const TINY = ['--preset', 'vit_tiny', '--decoder-depth', '12', '--no-blur'];
const common = (batch: number, th: number): string[] => [
  '--img',
  '32',
  '--patch',
  '4',
  '--batch',
  String(batch),
  '--warmup',
  String(warmup),
  '--steps',
  String(steps),
  '--threads',
  String(th),
];

interface StepResult {
  msPerStep: number;
  imgPerSec: number;
  cpuMsPerStep: number;
  phasesMs: { order: number; forward: number; backward: number; optimizer: number } | null;
}

function lastJson(out: string): StepResult {
  return JSON.parse(out.trim().split('\n').pop()!) as StepResult;
}

function runStep(side: 'ts' | 'pytorch', args: string[], env: NodeJS.ProcessEnv = {}): StepResult {
  const [cmd, script] = side === 'ts' ? [process.execPath, WORKER] : [PY, TORCH];
  const r = spawnSync(cmd, [script, ...args], { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, ...env } });
  throwIfNotRun(r, [cmd, script, ...args]);
  if (r.status !== 0) throw new Error(`${cmd} ${script} ${args.join(' ')} failed:\n${r.stderr}`);
  return lastJson(r.stdout);
}

function runStepAsync(args: string[]): Promise<StepResult> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [WORKER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    c.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    c.on('error', (e) => reject(new Error(`${process.execPath} ${WORKER}: cannot start: ${e.message}`)));
    c.on('close', (code) => (code === 0 ? resolve(lastJson(out)) : reject(new Error(err))));
  });
}

const f0 = (x: number): string => x.toFixed(0);
const f1 = (x: number): string => x.toFixed(1);
const load = (): string => os.loadavg()[0].toFixed(1);
const phases = (r: StepResult): string =>
  r.phasesMs ? [r.phasesMs.order, r.phasesMs.forward, r.phasesMs.backward, r.phasesMs.optimizer].map(f0).join(' / ') : '–';

function stepTable(lines: string[]): void {
  lines.push(
    '### The pre-training step per order (TypeScript vs PyTorch, same config and threads)',
    '',
    `${threads} thread(s), batch 64, ${warmup} warm-up + ${steps} timed steps, median.`,
    '',
    '| model | order | side | ms/step | img/s | order pass / forward / backward / clip+AdamW (ms) | CPU ms/step | TS time / PyTorch time | load |',
    '|---|---|---|---:|---:|---|---:|---:|---:|',
  );
  for (const [label, model] of [
    ['small: ViT 96×4, dec 4', SMALL],
    ['ViT-Tiny/4: 192×12, dec 12', TINY],
  ] as const) {
    for (const order of quick || model === TINY ? ['raster', 'semantic'] : ['raster', 'stochastic', 'semantic']) {
      const args = [...model, ...common(64, threads), '--order', order];
      const ts = runStep('ts', args);
      const py = runStep('pytorch', args);
      for (const [side, r] of [
        ['TypeScript', ts],
        ['PyTorch', py],
      ] as const) {
        lines.push(
          `| ${label} | ${order} | ${side} | ${f0(r.msPerStep)} | ${f1(r.imgPerSec)} | ${phases(r)} | ${f0(r.cpuMsPerStep)} | ` +
            `${side === 'TypeScript' ? (ts.msPerStep / py.msPerStep).toFixed(2) : '–'} | ${load()} |`,
        );
        process.stderr.write(`${label} ${order} ${side}: ${f0(r.msPerStep)} ms/step\n`);
      }
    }
  }
  lines.push('');
}

async function threadTable(lines: string[]): Promise<void> {
  lines.push(
    '### Threads and processes (small model, semantic order, TypeScript)',
    '',
    '| setting | ms/step (per process) | img/s (all processes) | CPU ms/step | load |',
    '|---|---:|---:|---:|---:|',
  );
  const args = (th: number) => [...SMALL, ...common(64, th), '--order', 'semantic'];
  const rows: [string, () => Promise<StepResult[]>][] = [
    ['1 process × 2 threads (OpenMP default wait policy)', async () => [runStep('ts', args(2))]],
    ['1 process × 2 threads, OMP_WAIT_POLICY=PASSIVE', async () => [runStep('ts', args(2), { OMP_WAIT_POLICY: 'PASSIVE' })]],
    ['1 process × 1 thread', async () => [runStep('ts', args(1))]],
    ['2 processes × 1 thread at once', () => Promise.all([runStepAsync(args(1)), runStepAsync(args(1))])],
  ];
  for (const [name, run] of rows) {
    const rs = await run();
    lines.push(
      `| ${name} | ${rs.map((r) => f0(r.msPerStep)).join(', ')} | ${f1(rs.reduce((s, r) => s + r.imgPerSec, 0))} | ` +
        `${rs.map((r) => f0(r.cpuMsPerStep)).join(', ')} | ${load()} |`,
    );
    process.stderr.write(`${name}: done\n`);
  }
  lines.push('');
}

function batchTable(lines: string[]): void {
  lines.push('### Batch size (small model, raster, TypeScript, 1 thread)', '', '| batch | ms/step | img/s | load |', '|---:|---:|---:|---:|');
  for (const b of quick ? [32, 64] : [32, 64, 128, 256]) {
    const r = runStep('ts', [...SMALL, ...common(b, 1), '--order', 'raster']);
    lines.push(`| ${b} | ${f0(r.msPerStep)} | ${f1(r.imgPerSec)} | ${load()} |`);
  }
  lines.push('');
}

async function evalTable(lines: string[]): Promise<void> {
  torch.setNumThreads(threads);
  const sizes = quick ? { train: 1000, test: 200 } : { train: 5000, test: 1000 };
  const req = (split: 'train' | 'test', limit: number) => ({ split, dataset: 'cifar10', imgSize: 32, limit, seed: 0, numWorkers: 1 });
  torch.manualSeed(0);
  const enc = new VisionTransformer({ imgSize: 32, patchSize: 4, inChans: 3, embedDim: 96, depth: 4, numHeads: 3, mlpRatio: 4 }).initWeights().eval();
  const lp = {
    epochs: 30,
    batchSize: 256,
    blr: 0.1,
    warmupEpochs: 0,
    minLr: 0,
    weightDecay: 0,
    momentum: 0.9,
    optimizer: 'sgd' as const,
    seed: 0,
    label: null,
  };
  const probe = async (tr: FeatureSet, te: FeatureSet): Promise<number> => {
    const t = performance.now();
    knnClassify(tr, te, { ks: [10, 20, 30], numClasses: 10, label: null });
    const r = await linprobeOnFeatures(tr, te, 10, lp);
    r.probe.dispose();
    return (performance.now() - t) / 1000;
  };
  // Warm-up (first calls into the encoder's ops), so that neither path pays it.
  const warm = new MemoryLabelledData(new Float32Array(512 * 3 * 32 * 32), [512, 3, 32, 32], new Int32Array(512), 10);
  disposeFeatures(await extractFeatures(enc, warm, { batchSize: 256, pooling: 'cls', label: null }));
  // Before: per pooling, features of train and test from the decoded files (one pass each).
  const tb = performance.now();
  const train = await makeEvalData(req('train', sizes.train));
  const test = await makeEvalData(req('test', sizes.test));
  let featBefore = 0;
  let probeBefore = 0;
  for (const pooling of ['cls', 'mean'] as const) {
    const t = performance.now();
    const tr = await extractFeatures(enc, train, { batchSize: 256, pooling, label: null });
    const te = await extractFeatures(enc, test, { batchSize: 256, pooling, label: null });
    featBefore += (performance.now() - t) / 1000;
    probeBefore += await probe(tr, te);
    disposeFeatures(tr, te);
  }
  await train.close();
  await test.close();
  const before = (performance.now() - tb) / 1000;
  // Now: decoded once (a one-time cost per ablation call), one pass for both poolings.
  const tc = performance.now();
  const tr0 = await makeEvalData(req('train', sizes.train));
  const te0 = await makeEvalData(req('test', sizes.test));
  const mtr = await MemoryLabelledData.load(tr0, 256);
  const mte = await MemoryLabelledData.load(te0, 256);
  await tr0.close();
  await te0.close();
  const decodeOnce = (performance.now() - tc) / 1000;
  const ta = performance.now();
  const trs = await extractPooledFeatures(enc, mtr, ['cls', 'mean'], { batchSize: 256, label: null });
  const tes = await extractPooledFeatures(enc, mte, ['cls', 'mean'], { batchSize: 256, label: null });
  const featAfter = (performance.now() - ta) / 1000;
  let probeAfter = 0;
  for (const p of ['cls', 'mean'] as const) probeAfter += await probe(trs.get(p)!, tes.get(p)!);
  disposeFeatures(...trs.values(), ...tes.values());
  const after = (performance.now() - ta) / 1000;
  enc.dispose();
  lines.push(
    `### One run's evaluation (${sizes.train} train / ${sizes.test} test CIFAR-10 images, ViT 96×4, [CLS] and mean, ${threads} thread(s))`,
    '',
    '| path | features (s) | k-NN + linear probe (s) | per run (s) | once per ablation call (s) | load |',
    '|---|---:|---:|---:|---:|---:|',
    `| before: one encoder pass per pooling, images decoded for each pass | ${f1(featBefore)} | ${f1(probeBefore)} | ${f1(before)} | – | ${load()} |`,
    `| now: decoded once into memory, one pass for both poolings | ${f1(featAfter)} | ${f1(probeAfter)} | ${f1(after)} | ${f1(decodeOnce)} | ${load()} |`,
    '',
  );
}

const ABLATION_END_MARK = '<!-- end of the generated tables: notes below are kept by --write-docs -->';

const INTRO = '`npm run bench:ablation` (= `npm run build && node dist/bench/ablation.js`; `--only step|threads|batch|eval`, `--quick`).';

function writeDocs(generated: string): void {
  writeBenchmarksSection('## Order ablation on the CPU (step profile, threads, evaluation)', `${INTRO}\n\n${generated}`, ABLATION_END_MARK);
}

async function main(): Promise<void> {
  const lines = [
    `Date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. Machine: ${cpuModel()}, ${os.cpus().length} logical cores; ` +
      `load average at the start ${load()} (the "load" columns: at each row's end; the cores are shared with other work). ` +
      `Command: \`node dist/bench/ablation.js ${process.argv
        .slice(2)
        .filter((a) => a !== '--write-docs')
        .join(' ')}\`. ` +
      `TypeScript: node ${process.version}, libtorch ${torch.version().torch}; PyTorch: ${PY}.`,
    '',
  ];
  if (part('step')) stepTable(lines);
  if (part('threads')) await threadTable(lines);
  if (part('batch')) batchTable(lines);
  if (part('eval')) await evalTable(lines);
  const body = lines.join('\n');
  console.log(body);
  if (flag('write-docs')) writeDocs(body);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
