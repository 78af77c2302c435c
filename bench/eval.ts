// `npm run bench:eval`: the evaluations beside PyTorch on the same machine, thread count, model size and
// synthetic data (in memory on both sides):
//   feature extraction (the encoder in eval mode, no grad, [CLS] after the final norm) in img/s;
//   DINO's weighted k-NN (k = 20, T = 0.07) of test features against a bank, in queries/s;
//   one linear-probe epoch on cached features (SGD, as `semaim linprobe`) with its test evaluation, in rows/s;
//   one fine-tuning step (forward + backward + AdamW over the layer-decay groups, drop-path 0.1, mixup/cutmix,
//   label smoothing: finetune's defaults) in img/s.
// The semaim side runs the library's own functions (extractFeatures, knnClassify, linprobeOnFeatures,
// finetuneStep); the PyTorch side is bench/eval_torch.py, run with /usr/bin/python3 as a server: single
// measurements alternate between the two sides, so load from other processes hits both alike.
// Options: --preset vit_tiny|vit_small (default vit_tiny), --img N (default 112), --patch N (16),
//          --threads N (2), --rounds N (measurements per side and benchmark, default 5), --quick,
//          --only features,knn,linprobe,finetune (a subset),
//          --write-docs (replace the "## Evaluation" section of docs/BENCHMARKS.md with the table; notes below it are kept).
// EVAL_BENCH_VERBOSE=1 prints every single measurement (wall and CPU seconds of both sides) on stderr.
import * as os from 'node:os';
import * as path from 'node:path';
import { TorchServer } from './torch-server';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { PRESETS, VisionTransformer } from '../src/semaim';
import { LabelledBatch, LabelledData } from '../src/data';
import { FINETUNE_OPTIONS, FeatureSet, ViTClassifier, extractFeatures, finetuneStep, knnClassify, linprobeOnFeatures } from '../src/eval';
import { jobOptions } from '../src/util/options';
import { cpuModel, writeBenchmarksSection } from './docs-section';
import { exitUnlessCount } from './count-arg';
import { PY } from './python';

const ROOT = path.join(__dirname, '..', '..');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const quick = process.argv.includes('--quick');
const threads = Number(arg('--threads', '2'));
const preset = arg('--preset', 'vit_tiny');
const img = Number(arg('--img', '112'));
const patch = Number(arg('--patch', '16'));
const rounds = Number(arg('--rounds', quick ? '2' : '5'));
const S = {
  classes: 100,
  images: quick ? 128 : 256, // feature extraction: this many images per measurement
  featureBatch: 128,
  bank: quick ? 5000 : 20000, // k-NN bank and linear-probe training features
  queries: quick ? 500 : 2000, // k-NN queries and linear-probe test features
  k: 20,
  temperature: 0.07,
  chunk: 256,
  probeBatch: 256,
  finetuneBatch: quick ? 16 : 32,
};
const loadAtStart = os.loadavg()[0];
const now = (): number => Number(process.hrtime.bigint()) / 1e9;
/** Wall-clock and process CPU seconds (all threads) of one measurement. */
interface Timing {
  seconds: number;
  cpu: number;
}
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
async function timed(run: () => unknown): Promise<Timing> {
  const [t0, c0] = [now(), cpuNow()];
  await run();
  return { seconds: now() - t0, cpu: cpuNow() - c0 };
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// ---------------------------------------------------------------- the semaim side

/** Labelled images held in memory, served in batches as a dataset's loader gives them. */
function memoryData(images: Float32Array, labels: Int32Array, numClasses: number): LabelledData {
  const per = 3 * img * img;
  const size = labels.length;
  return {
    size,
    numClasses,
    imageShape: [3, img, img],
    async *batches(o): AsyncIterable<LabelledBatch> {
      for (let s = 0; s < size; s += o.batchSize) {
        const n = Math.min(o.batchSize, size - s);
        yield { images: images.subarray(s * per, (s + n) * per), shape: [n, 3, img, img], labels: labels.subarray(s, s + n) };
      }
    },
    close() {},
  };
}

function randomLabels(n: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(Math.random() * S.classes));
}

class SemaimBench {
  readonly encoder: VisionTransformer;
  readonly data: LabelledData;
  readonly bank: FeatureSet;
  readonly queries: FeatureSet;
  readonly classifier: ViTClassifier;
  readonly step: ReturnType<typeof finetuneStep>;
  readonly batch: LabelledBatch;

  constructor() {
    torch.manualSeed(0);
    const size = PRESETS[preset];
    const cfg = { imgSize: img, patchSize: patch, ...size };
    this.encoder = new VisionTransformer(cfg).initWeights();
    const images = torch.scope(() => torch.randn([S.images, 3, img, img]).toFloat32Array());
    const labels = randomLabels(S.images);
    this.data = memoryData(images, labels, S.classes);
    this.bank = { features: torch.keep(torch.randn([S.bank, size.embedDim])), labels: randomLabels(S.bank) };
    this.queries = { features: torch.keep(torch.randn([S.queries, size.embedDim])), labels: randomLabels(S.queries) };
    const o = jobOptions(FINETUNE_OPTIONS, { checkpoint: 'none', batchSize: S.finetuneBatch, init: 'random', verify: false });
    this.classifier = new ViTClassifier({ ...cfg, dropPath: o.dropPath, numClasses: S.classes, pool: o.pool }).initWeights();
    this.step = finetuneStep(this.classifier, o, (o.blr * S.finetuneBatch) / 256, 'cpu');
    const n = S.finetuneBatch;
    this.batch = { images: images.subarray(0, n * 3 * img * img), shape: [n, 3, img, img], labels: labels.subarray(0, n) };
  }

  params(m: { parameters(): Tensor[] }): number {
    return m.parameters().reduce((s, p) => s + p.numel, 0);
  }

  features(): Promise<Timing> {
    let set: FeatureSet | null = null;
    return timed(async () => {
      set = await extractFeatures(this.encoder, this.data, { batchSize: S.featureBatch, pooling: 'cls', label: null });
    }).finally(() => set?.features.dispose());
  }

  knn(): Promise<Timing> {
    return timed(() => knnClassify(this.bank, this.queries, { ks: [S.k], temperature: S.temperature, numClasses: S.classes, chunkSize: S.chunk, label: null }));
  }

  linprobe(): Promise<Timing> {
    let probe: { dispose(): void } | null = null;
    return timed(async () => {
      ({ probe } = await linprobeOnFeatures(this.bank, this.queries, S.classes, { epochs: 1, batchSize: S.probeBatch, blr: 0.1, label: null }));
    }).finally(() => probe?.dispose());
  }

  finetune(): Promise<Timing> {
    const { optimizer, loss } = this.step;
    this.classifier.train();
    return timed(() =>
      torch.scope(() => {
        const l = loss(this.batch);
        l.backward();
        optimizer.step();
        optimizer.zeroGrad();
        l.item();
      }),
    );
  }
}

// ---------------------------------------------------------------- alternating measurements

type Name = 'features' | 'knn' | 'linprobe' | 'finetune';
const BENCHMARKS: Name[] = ['features', 'knn', 'linprobe', 'finetune'];
interface Row {
  name: Name;
  what: string;
  unit: string;
  /** Items (images, queries, rows) one measurement processes. */
  items: number;
  ts: Timing[];
  py: Timing[];
}

async function measure(py: TorchServer, sm: SemaimBench, only: Set<string> | null): Promise<Row[]> {
  const log = (s: string): boolean => process.stderr.write(s);
  const probeSteps = Math.floor(S.bank / S.probeBatch);
  const rows: Row[] = [
    {
      name: 'features',
      what: `feature extraction, eval mode, no grad, batch ${S.featureBatch}, ${S.images} images`,
      unit: 'img/s',
      items: S.images,
      ts: [],
      py: [],
    },
    {
      name: 'knn',
      what: `weighted k-NN, k = ${S.k}, T = ${S.temperature}: ${S.queries} queries against ${S.bank} features, ${S.classes} classes, blocks of ${S.chunk}`,
      unit: 'queries/s',
      items: S.queries,
      ts: [],
      py: [],
    },
    {
      name: 'linprobe',
      what: `linear-probe epoch on cached features (SGD, batch ${S.probeBatch}, ${probeSteps} steps) + test evaluation`,
      unit: 'rows/s',
      items: probeSteps * S.probeBatch,
      ts: [],
      py: [],
    },
    {
      name: 'finetune',
      what: `fine-tuning step, batch ${S.finetuneBatch}: mixup/cutmix, drop-path 0.1, forward + backward + AdamW (layer decay)`,
      unit: 'img/s',
      items: S.finetuneBatch,
      ts: [],
      py: [],
    },
  ];
  const cmd = (name: Name): Record<string, unknown> =>
    name === 'features'
      ? { op: name, batch: S.featureBatch }
      : name === 'knn'
        ? { op: name, k: S.k, temperature: S.temperature, chunk: S.chunk }
        : name === 'linprobe'
          ? { op: name, batch: S.probeBatch }
          : { op: name, batch: S.finetuneBatch };
  const ours = (name: Name): Promise<Timing> => sm[name]();
  for (const row of rows) {
    if (only && !only.has(row.name)) continue;
    log(`${row.name}... `);
    // one warm-up each (allocator, first-call dispatch), then alternating single measurements
    for (let r = -1; r < rounds; r++) {
      const t = await ours(row.name);
      const p = await py.ask<Timing>(cmd(row.name));
      if (process.env.EVAL_BENCH_VERBOSE)
        log(
          `\n  ${row.name} ${r}: semaim ${t.seconds.toFixed(3)} s (CPU ${t.cpu.toFixed(3)} s), PyTorch ${p.seconds.toFixed(3)} s (CPU ${p.cpu.toFixed(3)} s)`,
        );
      if (r >= 0) {
        row.ts.push(t);
        row.py.push(p);
      }
    }
  }
  log('done\n');
  return rows.filter((r) => r.ts.length);
}

// ---------------------------------------------------------------- report

function table(rows: Row[], info: { torch: string; threads: number; python: string }, params: string): string {
  const f = (x: number, d = 1): string => x.toFixed(d);
  const v = torch.version();
  const lines = [
    `- Machine: ${cpuModel()}, ${os.cpus().length} logical cores, ${f(os.totalmem() / 2 ** 30, 0)} GiB RAM; ${os.platform()} ${os.release()}; ` +
      'shared with other jobs while it ran (load from them only ever adds time; the two sides alternate, so it hits both alike)',
    `- semaim: node ${process.version}, libtorch ${v.torch}; PyTorch: python ${info.python}, torch ${info.torch} (${PY})`,
    `- Model: ${preset} at ${img}² with ${patch}×${patch} patches (${params}); synthetic data in memory on both sides`,
    `- Threads: ${torch.getNumThreads()} (semaim) / ${info.threads} (PyTorch); 1-min load average ${f(loadAtStart, 2)} at start, ${f(os.loadavg()[0], 2)} at the end`,
    `- Date: ${new Date().toISOString().slice(0, 10)}`,
    `- Command: \`npm run bench:eval${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\``,
    '',
    `| Benchmark (${rounds} alternating measurements per side) | unit | semaim (TS): fastest (median) | PyTorch (Python): fastest (median) | ` +
      'speed ratio semaim/PyTorch: fastest (median) | CPU-time ratio PyTorch/semaim (median) |',
    '|---|---|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const wall = (xs: Timing[]): number[] => xs.map((x) => x.seconds);
    const cpu = (xs: Timing[]): number[] => xs.map((x) => x.cpu);
    const rate = (s: number): number => r.items / s;
    const [tb, pb, tm, pm] = [Math.min(...wall(r.ts)), Math.min(...wall(r.py)), median(wall(r.ts)), median(wall(r.py))];
    lines.push(
      `| ${r.what} | ${r.unit} | ${f(rate(tb))} (${f(rate(tm))}) | ${f(rate(pb))} (${f(rate(pm))}) | ${f(pb / tb, 2)} (${f(pm / tm, 2)}) | ` +
        `${f(median(cpu(r.py)) / median(cpu(r.ts)), 2)} |`,
    );
  }
  lines.push(
    '',
    'Ratios above 1: semaim is faster. The CPU-time ratio compares the CPU seconds each process spent (all its threads), ' +
      'which waiting for a core shared with other jobs does not inflate as it does wall-clock time.',
  );
  return lines.join('\n');
}

async function main(): Promise<void> {
  // --rounds 0 would keep no measurement (an empty table, exit 0, and with --write-docs the recorded one
  // replaced by it); --threads two would reach both sides as NaN.
  for (const [name, value] of [
    ['--rounds', rounds],
    ['--threads', threads],
  ] as const)
    exitUnlessCount(name, arg(name, ''), value, 1);
  torch.setNumThreads(threads);
  const onlyArg = arg('--only', '');
  const only = onlyArg ? new Set(onlyArg.split(',')) : null;
  // An unknown name would otherwise be skipped in silence (all of them: empty tables, exit 0, and with
  // --write-docs the recorded section replaced by them).
  const unknown = [...(only ?? [])].filter((n) => !BENCHMARKS.includes(n as Name));
  if (unknown.length || only?.size === 0) {
    process.stderr.write(
      `--only ${onlyArg}: ${unknown.map((n) => `'${n}'`).join(', ') || 'nothing'} is not one of ${BENCHMARKS.join(', ')}; nothing measured\n`,
    );
    process.exit(2);
  }
  const py = new TorchServer(PY, path.join(ROOT, 'bench', 'eval_torch.py'), ['--threads', String(threads)]);
  try {
    const info = await py.ask<{ torch: string; threads: number; python: string }>({ op: 'info' });
    const sm = new SemaimBench();
    const pp = await py.ask<{ encoderParams: number; classifierParams: number }>({
      op: 'setup',
      preset,
      img,
      patch,
      classes: S.classes,
      images: S.images,
      bank: S.bank,
      queries: S.queries,
      finetuneBatch: S.finetuneBatch,
    });
    const [enc, cls] = [sm.params(sm.encoder), sm.params(sm.classifier)];
    if (enc !== pp.encoderParams || cls !== pp.classifierParams)
      throw new Error(`the models differ: encoder ${enc} vs ${pp.encoderParams}, classifier ${cls} vs ${pp.classifierParams} parameters`);
    const rows = await measure(py, sm, only);
    const out = table(rows, info, `encoder ${(enc / 1e6).toFixed(2)}M parameters, classifier ${(cls / 1e6).toFixed(2)}M`);
    console.log(out);
    if (process.argv.includes('--write-docs')) writeBenchmarksSection('## Evaluation', out);
  } finally {
    py.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
