// The records of a metrics.jsonl the report draws. A long run logs millions of lines (a record object
// each took ~1 KB: 4 million lines needed more memory than Node's heap has), and a chart shows ~1,200
// points of a curve (svg.ts reduceSeries: each bucket's min and max). Above SAMPLE_ABOVE records the
// report keeps a sample that draws the same charts: per 1/SAMPLE_BUCKETS of the file, the records that
// hold each metric's min and max; and every record with a NaN/Inf, without a loss (evaluation records),
// the first and the last. The summary's figures are counted over every record as it is read.
import { countLines, scanMetrics, type MetricsLines } from '../run/metrics';

export const SAMPLE_ABOVE = 100_000;
export const SAMPLE_BUCKETS = 4000;

/** Figures over every record of the file, also when the report keeps a sample. */
export interface MetricsTotals {
  /** Records read (each a JSON object with a numeric or absent step). */
  records: number;
  /** Records with a loss: the logged steps (evaluation records carry none). */
  loggedSteps: number;
  minLoss: number | null;
  /** The first and the last finite loss with their step (the record's place among the records when it has none). */
  firstLoss: [number, number] | null;
  lastLoss: [number, number] | null;
  /** The median of every imgPerSec (the mean of the middle two for an even count). */
  medianImgPerSec: number | null;
}

export interface MetricsRead extends Pick<MetricsLines, 'unreadable' | 'cutShort'> {
  /** Every record, or a sample of them (`sampled`), in file order. */
  records: Record<string, unknown>[];
  /** The line (from 1) of each record that is not a metrics record (`isRecord` false). */
  odd: number[];
  totals: MetricsTotals;
  sampled: boolean;
}

/** Reads `path`'s metrics records (those `isRecord` accepts), keeping them all or a sample; `nonFinite` says which values are NaN/Inf. */
export function readMetricsSample(
  path: string,
  isRecord: (r: Record<string, unknown>) => boolean,
  nonFinite: (key: string, value: unknown) => boolean,
  o: { sampleAbove?: number; buckets?: number } = {},
): MetricsRead {
  const lines = countLines(path, { followLinks: false });
  const sampled = lines > (o.sampleAbove ?? SAMPLE_ABOVE);
  const width = Math.ceil(lines / (o.buckets ?? SAMPLE_BUCKETS));
  const records: Record<string, unknown>[] = [];
  const odd: number[] = [];
  const imgPerSec: number[] = [];
  const totals: MetricsTotals = { records: 0, loggedSteps: 0, minLoss: null, firstLoss: null, lastLoss: null, medianImgPerSec: null };
  // the bucket being read: for each metric, the records holding its min and its max so far
  let bucket = -1;
  let extremes = new Map<string, { min: Record<string, unknown>; max: Record<string, unknown> }>();
  let kept = new Set<Record<string, unknown>>();
  let last = null as Record<string, unknown> | null;
  const lineOf = new Map<Record<string, unknown>, number>();
  const flush = () => {
    for (const { min, max } of extremes.values()) kept.add(min).add(max);
    for (const r of [...kept].sort((a, b) => lineOf.get(a)! - lineOf.get(b)!)) records.push(r); // (a spread of ~125,000 overflows the stack)
    lineOf.clear(); // (the bucket's records: those not kept go with it)
    extremes = new Map();
    kept = new Set();
  };
  const bad = scanMetrics(path, { followLinks: false }, (r, line) => {
    if (!isRecord(r)) return void odd.push(line);
    totals.records++;
    if ('loss' in r) totals.loggedSteps++;
    if (typeof r.loss === 'number') {
      totals.minLoss = Math.min(totals.minLoss ?? Infinity, r.loss);
      totals.lastLoss = [typeof r.step === 'number' ? r.step : totals.records - 1, r.loss];
      totals.firstLoss ??= totals.lastLoss;
    }
    if (typeof r.imgPerSec === 'number') imgPerSec.push(r.imgPerSec);
    if (!sampled) return void records.push(r);
    const b = Math.floor(line / width);
    if (b !== bucket) {
      flush();
      bucket = b;
    }
    lineOf.set(r, line);
    last = r;
    const entries = Object.entries(r);
    if (totals.records === 1 || !('loss' in r) || entries.some(([k, v]) => nonFinite(k, v))) kept.add(r);
    for (const [k, v] of entries) {
      if (typeof v !== 'number' || k === 'step') continue;
      const e = extremes.get(k);
      if (!e) extremes.set(k, { min: r, max: r });
      else if (v < (e.min[k] as number)) e.min = r;
      else if (v > (e.max[k] as number)) e.max = r;
    }
  });
  if (sampled) {
    if (last) kept.add(last);
    flush();
  }
  if (imgPerSec.length) {
    const sorted = Float64Array.from(imgPerSec).sort();
    totals.medianImgPerSec = (sorted[(sorted.length - 1) >> 1] + sorted[sorted.length >> 1]) / 2;
  }
  return { records, odd, totals, sampled, ...bad };
}
