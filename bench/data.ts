// Data pipeline benchmark: images/s of the TypeScript DataLoader beside torchvision's ImageFolder +
// RandomResizedCrop + DataLoader on the same files with the same number of workers, and of the
// ShardLoader on the same images packed into tar shards (`semaim shards`, made once into the cache).
//
//   npm run bench:data                       (all settings)
//   node dist/bench/data.js --quick          (shorter runs)
//   node dist/bench/data.js --only=large     (one dataset: cifar | large)
//   node dist/bench/data.js --interp=bicubic (RandomResizedCrop interpolation, default bilinear)
//   node dist/bench/data.js --workers=1,8,15 (worker counts, default 1,2; e.g. a 16-core GPU machine)
//   node dist/bench/data.js --need=1470      (the img/s a training step consumes: says whether the
//                                             loader keeps up at the largest worker count)
//
// Datasets: CIFAR-10 JPEGs (extracted from ../shared/data/cifar10-jpeg.tar.gz into the data cache)
// → RandomResizedCrop 32; and 500×375 JPEGs made by this script → RandomResizedCrop 224.
// Each run: warm-up batches (worker start-up) excluded, then a fixed number of batches or seconds.
// Python is $SEMAIM_PYTHON or /usr/bin/python3 (Debian's torchvision); without torchvision its column is empty.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { cpus, availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { makeLargeJpegFiles } from './data_jpegs';
import {
  DataLoader,
  ShardLoader,
  shardDataset,
  packImageFolder,
  DEFAULT_SHUFFLE_BUFFER,
  imageFolder,
  ensureCifar10Jpeg,
  defaultDataCache,
  randomResizedCrop,
  horizontalFlip,
  normalize,
  type Interpolation,
} from '../src/data';
import { PY } from './python';

interface Setting {
  name: string;
  root: string;
  /** The same images packed into tar shards. */
  shards: string;
  shardSize: number;
  size: number;
  batch: number;
  warmup: number;
  maxBatches: number;
  maxSeconds: number;
}

interface Result {
  rate: number;
  images: number;
  seconds: number;
  /** CPU time used during the measurement (all threads/processes) per wall second. */
  cores: number;
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args.find((a) => a.startsWith('--only='))?.slice(7);
const interp = (args.find((a) => a.startsWith('--interp='))?.slice(9) ?? 'bilinear') as Interpolation;
// The two filters the torchvision reference is given the same (bench/data_torchvision.py): another would be
// compared with torchvision's bilinear crops.
if (interp !== 'bilinear' && interp !== 'bicubic') {
  process.stderr.write(`--interp=${interp}: bilinear or bicubic (the filters both sides run); nothing measured\n`);
  process.exit(2);
}
const workerCounts = parseCounts(args.find((a) => a.startsWith('--workers='))?.slice(10) ?? '1,2');
const needArg = args.find((a) => a.startsWith('--need='))?.slice(7);
const need = Number(needArg ?? NaN);
// Either would otherwise be ignored in silence: no dataset measured, or no 'keeps up' verdict.
if (only !== undefined && only !== 'cifar' && only !== 'large') {
  process.stderr.write(`--only=${only}: cifar or large; nothing measured\n`);
  process.exit(2);
}
if (needArg !== undefined && !(needArg.trim() !== '' && need > 0)) {
  process.stderr.write(`--need=${needArg}: a number of images per second; nothing measured\n`);
  process.exit(2);
}

function parseCounts(text: string): number[] {
  const counts = [...new Set(text.split(',').map(Number))].sort((a, b) => a - b);
  if (!counts.length || counts.some((n) => !Number.isInteger(n) || n < 1)) throw new RangeError(`--workers takes positive integers, got '${text}'`);
  return counts;
}

/** 500×375 JPEGs of synthetic scenes with photo-like noise, made once into the data cache. */
async function makeLargeJpegs(dir: string, count: number): Promise<void> {
  const marker = join(dir, '.complete');
  if (existsSync(marker)) return;

  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  await makeLargeJpegFiles(tmp, count);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  writeFileSync(marker, 'made by bench/data.ts\n');
}

function averageFileKB(root: string): number {
  let total = 0;
  let n = 0;
  for (const cls of readdirSync(root)) {
    const d = join(root, cls);
    if (!statSync(d).isDirectory()) continue;
    for (const f of readdirSync(d).slice(0, 200)) {
      total += statSync(join(d, f)).size;
      n++;
    }
  }
  return total / n / 1024;
}

/** Packs the setting's folder into shards once (kept in the data cache; index.json marks completion). */
async function ensureShards(s: Setting): Promise<string> {
  const pattern = (n: number) => join(s.shards, n === 1 ? 'shard-000000.tar' : `shard-{000000..${String(n - 1).padStart(6, '0')}}.tar`);
  const index = join(s.shards, 'index.json');
  if (existsSync(index)) {
    const n = (JSON.parse(readFileSync(index, 'utf8')) as { shards: unknown[] }).shards.length;
    return pattern(n);
  }
  process.stderr.write(`packing ${s.root} into shards of ${s.shardSize} in ${s.shards} ...\n`);
  const r = await packImageFolder({ input: s.root, output: s.shards, shardSize: s.shardSize, shuffle: true, seed: 0, overwrite: true });
  return r.pattern;
}

async function runOurs(s: Setting, workers: number, shards: string | null = null): Promise<Result> {
  const opts = {
    batchSize: s.batch,
    dropLast: true,
    workers,
    seed: 0,
    transforms: [randomResizedCrop(s.size, { interpolation: interp }), horizontalFlip(), normalize()],
  };
  const loader = shards ? new ShardLoader(shardDataset(shards), opts) : new DataLoader(imageFolder(s.root), opts);
  let images = 0;
  let batches = 0;
  let seen = 0;
  let t0 = 0;
  let c0 = process.cpuUsage();
  let done = false;
  try {
    // continue into the next epoch when one ends (workers are kept)
    while (!done) {
      for await (const b of loader) {
        seen++;
        if (seen === s.warmup) {
          t0 = performance.now();
          c0 = process.cpuUsage();
        }
        if (seen <= s.warmup) continue;
        images += b.shape[0];
        batches++;
        if (batches >= s.maxBatches || performance.now() - t0 > s.maxSeconds * 1000) {
          done = true;
          break;
        }
      }
    }
  } finally {
    await loader.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { rate: images / seconds, images, seconds, cores: (c.user + c.system) / 1e6 / seconds };
}

function runTorchvision(s: Setting, workers: number): Result & { torch?: string; torchvision?: string } {
  const script = join(__dirname, '..', '..', 'bench', 'data_torchvision.py');
  const r = spawnSync(
    PY,
    [script, s.root, String(s.size), String(workers), String(s.batch), String(s.warmup), String(s.maxBatches), String(s.maxSeconds), interp],
    { encoding: 'utf8', timeout: 600_000 },
  );
  if (r.status !== 0) {
    // e.g. a GPU machine's Python without torchvision: ours is still measured
    if (!torchvisionMissing)
      process.stderr.write(`torchvision run failed (its column stays empty): ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}\n`);
    torchvisionMissing = true;
    return { rate: NaN, images: 0, seconds: 0, cores: NaN };
  }
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line);
}
let torchvisionMissing = false;

function fmt(n: number): string {
  return Number.isFinite(n) ? (n >= 100 ? n.toFixed(0) : n.toFixed(1)) : '–';
}
const cores = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '–');
const times = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '–');

async function main(): Promise<void> {
  const cache = defaultDataCache();
  const settings: Setting[] = [];
  if (!only || only === 'cifar') {
    const cifar = join(ensureCifar10Jpeg(), 'train');
    settings.push({
      name: 'CIFAR-10 JPEG 32×32 → RandomResizedCrop 32',
      root: cifar,
      shards: join(cache, 'bench-shards', 'cifar10-train'),
      shardSize: 1000,
      size: 32,
      batch: 256,
      warmup: 3,
      maxBatches: quick ? 40 : 120,
      maxSeconds: quick ? 4 : 10,
    });
  }
  if (!only || only === 'large') {
    const large = join(cache, 'bench-jpeg-500x375');
    if (!existsSync(join(large, '.complete'))) process.stderr.write(`making 800 JPEGs of 500×375 in ${large} ...\n`);
    await makeLargeJpegs(large, 800);
    settings.push({
      name: 'JPEG 500×375 → RandomResizedCrop 224',
      root: large,
      shards: join(cache, 'bench-shards', 'jpeg-500x375'),
      shardSize: 100,
      size: 224,
      batch: 32,
      warmup: 3,
      maxBatches: quick ? 20 : 60,
      maxSeconds: quick ? 5 : 12,
    });
  }

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const loadStart = loadavg()
    .map((v) => v.toFixed(2))
    .join(' ');
  const lines: string[] = [];
  const out = (l: string): void => {
    lines.push(l);
    process.stdout.write(l + '\n');
  };
  let versions = '';
  const rows: string[] = [];
  const keepUp: [string, number][] = [];
  for (const s of settings) {
    const res: Record<string, { ours: Result; tv: Result; shards: Result }> = {};
    const shardPath = await ensureShards(s);
    for (const w of workerCounts) {
      // interleave the implementations so all see the same machine conditions
      const ours = await runOurs(s, w);
      const tv = runTorchvision(s, w);
      const shards = await runOurs(s, w, shardPath);
      if ((tv as { torchvision?: string }).torchvision)
        versions = `torch ${(tv as { torch?: string }).torch}, torchvision ${(tv as { torchvision?: string }).torchvision}`;
      res[w] = { ours, tv, shards };
      process.stderr.write(
        `${s.name}, ${w} worker(s): ours ${fmt(ours.rate)} img/s (${ours.cores.toFixed(2)} cores), torchvision ${fmt(tv.rate)} img/s (${cores(tv.cores)} cores), ours from shards ${fmt(shards.rate)} img/s (${shards.cores.toFixed(2)} cores)\n`,
      );
    }
    const base = workerCounts[0];
    const per = `${base} worker${base > 1 ? 's' : ''}`;
    for (const w of workerCounts) {
      const { ours, tv } = res[w];
      const scaleOurs = w > base ? ` (${(ours.rate / res[base].ours.rate).toFixed(2)}× ${per})` : '';
      const scaleTv = w > base && Number.isFinite(tv.rate / res[base].tv.rate) ? ` (${(tv.rate / res[base].tv.rate).toFixed(2)}×)` : ''; // (not when either torchvision run failed)
      rows.push(
        `| ${s.name} | ${w} | ${fmt(ours.rate)}${scaleOurs} | ${fmt(tv.rate)}${scaleTv} | ${times(ours.rate, tv.rate)} | ${ours.cores.toFixed(2)} / ${cores(tv.cores)} | ${fmt(ours.rate / ours.cores)} / ${fmt(tv.rate / tv.cores)} |`,
      );
    }
    const most = res[workerCounts[workerCounts.length - 1]];
    keepUp.push([`${s.name}, folder`, most.ours.rate], [`${s.name}, tar shards`, most.shards.rate]);
    for (const w of workerCounts) {
      const { ours, tv, shards } = res[w];
      const scale = w > base ? ` (${(shards.rate / res[base].shards.rate).toFixed(2)}× ${per})` : '';
      rows.push(
        `| ${s.name}, tar shards of ${s.shardSize} | ${w} | ${fmt(shards.rate)}${scale}, ${(shards.rate / ours.rate).toFixed(2)}× folder | (folder) ${fmt(tv.rate)} | ${times(shards.rate, tv.rate)} | ${shards.cores.toFixed(2)} / ${cores(tv.cores)} | ${fmt(shards.rate / shards.cores)} / ${fmt(tv.rate / tv.cores)} |`,
      );
    }
  }
  if (Number.isFinite(need)) {
    for (const [name, rate] of keepUp) {
      out(
        `keeps up with ${fmt(need)} img/s (${name}, ${workerCounts[workerCounts.length - 1]} workers): ${rate >= need ? 'yes' : 'no'}, ${fmt(rate)} img/s (${(rate / need).toFixed(2)}×)`,
      );
    }
  }
  out('');
  out(`machine: ${cpu}, ${availableParallelism()} cores; node ${process.version}; ${versions}`);
  out(`command: node dist/bench/data.js ${args.join(' ')}`.trimEnd());
  out(`RandomResizedCrop interpolation: ${interp}; batch sizes 256 (CIFAR) / 32 (224²); warm-up batches excluded`);
  out(
    `tar shards: the same images packed in a shuffled order by \`semaim shards\`, read by the ShardLoader (shard order permuted per epoch, shuffle buffer ${DEFAULT_SHUFFLE_BUFFER} per worker)`,
  );
  if (settings.some((s) => s.size === 224)) {
    out(`500×375 JPEGs: quality 90, 4:2:0, average ${averageFileKB(settings.find((s) => s.size === 224)!.root).toFixed(0)} KB`);
  }
  out('');
  out(
    `load average at start / end: ${loadStart} / ${loadavg()
      .map((v) => v.toFixed(2))
      .join(' ')}`,
  );
  out('');
  out('| setting | workers | ours (img/s) | torchvision (img/s) | ours / torchvision | CPU cores used (ours / tv) | img per CPU-second (ours / tv) |');
  out('|---|---|---|---|---|---|---|');
  for (const r of rows) out(r);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
