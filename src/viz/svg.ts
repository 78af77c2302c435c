// Line charts as inline SVG (no script, no external resources): axes with "nice" ticks, one or
// more series, long series reduced to per-bucket min/max so spikes stay visible.
import { esc, fmt } from './html';

/** One line of a {@link lineChart}: its name (in the legend when there are several), its [x, y] points and colour. */
export interface Series {
  name: string;
  /** A point with a non-finite y (NaN) is a gap: the line breaks there rather than joining its neighbours. */
  points: [number, number][];
  colour: string;
  /** Stroke width (default 1.5). */
  width?: number;
}

/** Options of {@link lineChart}. */
export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel?: string;
  /** Width of the SVG in pixels (default 560). */
  width?: number;
  /** Height of the SVG in pixels (default 260). */
  height?: number;
  /** A logarithmic y axis (points with y ≤ 0 are left out). */
  logY?: boolean;
  /** x of the records whose value was not finite (NaN/Inf): a red dashed line each. */
  marks?: number[];
  /** What the chart says when it has no finite point (default "no data"). */
  empty?: string;
}

/** The runs of consecutive drawable points (finite, and positive on a log axis), split at the gaps. */
function segments(points: [number, number][], logY?: boolean): [number, number][][] {
  const out: [number, number][][] = [[]];
  for (const [x, y] of points) {
    if (!Number.isFinite(x)) continue;
    if (Number.isFinite(y)) {
      if (!logY || y > 0) out[out.length - 1].push([x, y]);
    } else if (out[out.length - 1].length) out.push([]);
  }
  return out.filter((seg) => seg.length > 0);
}

/** Round tick values covering [lo, hi], about `count` (>= 1) of them. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(count >= 1 && Number.isFinite(count))) throw new RangeError(`niceTicks: count must be a finite number >= 1, got ${count}`);
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const first = Math.ceil(lo / step) * step;
  const n = Math.floor((hi + step * 1e-9 - first) / step);
  // Near 2^53 (a hostile metrics.jsonl's step) a step can be below the spacing of doubles: t + step === t
  // there, and adding it until past `hi` never ended (the report filled the heap). The two ends then.
  if (!(n >= 0 && n <= 1000) || first + step === first) return [lo, hi];
  const out: number[] = [];
  for (let i = 0; i <= n; i++) out.push(Number((first + i * step).toPrecision(12)));
  return out;
}

/**
 * Tick labels that differ from one another: fmt's 4 significant digits where they do, else as many
 * as the tick spacing needs (lr 2.4996e-5 … 2.5000e-5 all read `2.50e-5` with 4).
 */
export function tickLabels(ticks: number[]): string[] {
  const plain = ticks.map((t) => fmt(t));
  if (ticks.length < 2 || new Set(plain).size === plain.length) return plain;
  const step = Math.min(...ticks.slice(1).map((t, i) => t - ticks[i]));
  const big = Math.max(...ticks.map(Math.abs));
  if (!(step > 0) || !(big > 0)) return plain;
  const digits = Math.min(15, Math.max(1, Math.floor(Math.log10(big)) - Math.floor(Math.log10(step) + 1e-9) + 1));
  const exp = big < 1e-3 || big >= 1e6;
  return ticks.map((t) => (exp ? t.toExponential(digits - 1) : String(Number(t.toPrecision(digits)))));
}

/** Approximate width in px of chart text (11 px system-ui; digits are about 0.6 em). */
const CHAR_PX = 6.6;

/** The left padding: room for the widest y tick label, 5 px to the axis, and the rotated axis title left of it. */
export function leftPad(yLabels: string[], title: boolean): number {
  const widest = Math.max(0, ...yLabels.map((l) => l.length)) * CHAR_PX;
  return Math.max(title ? 62 : 44, Math.ceil(widest + 5 + (title ? 22 : 6)));
}

/** At most ~2·buckets points: the min and max of each x bucket, in x order; buckets is a positive integer. */
export function reduceSeries(points: [number, number][], buckets = 600): [number, number][] {
  // 0 buckets reduced every series to no points at all
  if (!(Number.isInteger(buckets) && buckets > 0)) throw new RangeError(`reduceSeries: buckets must be a positive integer, got ${buckets}`);
  if (points.length <= 2 * buckets) return points;
  const out: [number, number][] = [];
  const per = points.length / buckets;
  for (let b = 0; b < buckets; b++) {
    const chunk = points.slice(Math.floor(b * per), Math.floor((b + 1) * per));
    if (chunk.length === 0) continue;
    let lo = chunk[0];
    let hi = chunk[0];
    for (const p of chunk) {
      if (p[1] < lo[1]) lo = p;
      if (p[1] > hi[1]) hi = p;
    }
    out.push(...(lo[0] <= hi[0] ? [lo, hi] : [hi, lo]));
  }
  return out;
}

/** Bias-corrected exponential moving average of y (for a smoothed loss line); beta in [0, 1). */
export function smooth(points: [number, number][], beta = 0.9): [number, number][] {
  // beta 1 divided 0 by 0 (every point NaN), beta above 1 or below 0 is no average
  if (!(beta >= 0 && beta < 1)) throw new RangeError(`smooth: beta must be in [0, 1), got ${beta}`);
  let m = 0;
  return points.map(([x, y], i) => {
    m = beta * m + (1 - beta) * y;
    return [x, m / (1 - beta ** (i + 1))];
  });
}

/**
 * A line chart as an inline `<svg>` element (no script): axes with round ticks, one line per series (a legend when
 * several), long series reduced to per-bucket min/max, and red dashed marks at `marks`.
 */
export function lineChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 560;
  const H = o.height ?? 260;
  const data = series.map((s) => {
    const segs = segments(s.points, o.logY);
    const total = segs.reduce((n, seg) => n + seg.length, 0);
    return { ...s, segs: segs.map((seg) => reduceSeries(seg, Math.max(1, Math.round((600 * seg.length) / total)))) };
  });
  const all = data.flatMap((s) => s.segs.flat());
  const marks = (o.marks ?? []).filter(Number.isFinite);
  const head =
    `<svg class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.title)}">` +
    `<text x="${W / 2}" y="17" text-anchor="middle" class="ct">${esc(o.title)}</text>`;
  if (all.length === 0) return `${head}<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="muted">${esc(o.empty ?? 'no data')}</text></svg>`;
  const fy = (y: number) => (o.logY ? Math.log10(y) : y);
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of all) [x0, x1, y0, y1] = [Math.min(x0, x), Math.max(x1, x), Math.min(y0, fy(y)), Math.max(y1, fy(y))];
  for (const x of marks) [x0, x1] = [Math.min(x0, x), Math.max(x1, x)];
  const span = Math.abs(y1 - y0) / Math.max(Math.abs(y0), Math.abs(y1));
  if (x1 === x0) {
    x0 -= 1;
    x1 += 1;
  }
  if (y1 === y0) {
    const d = Math.abs(y0) * 0.1 || 1;
    y0 -= d;
    y1 += d;
  }
  const yPad = (y1 - y0) * 0.05;
  y0 -= yPad;
  y1 += yPad;
  // a range wider than the largest double (1e308 and -1e308 in a hostile metrics.jsonl) placed every point at NaN
  if (!Number.isFinite(x1 - x0) || !Number.isFinite(y1 - y0))
    return `${head}<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="muted">${esc(`values too large to draw (${o.xLabel} and value must span less than 1e308)`)}</text></svg>`;
  const decades = o.logY ? niceTicks(Math.floor(y0), Math.ceil(y1), Math.max(1, Math.ceil(y1) - Math.floor(y0))).filter((t) => t >= y0 && t <= y1) : [];
  // (log10 of the values; within one decade no power of ten lies in the range: round values then, as a linear axis has)
  const yt = o.logY
    ? decades.length >= 2
      ? decades
      : niceTicks(10 ** y0, 10 ** y1, 5)
          .filter((t) => t > 0)
          .map(Math.log10)
    : niceTicks(y0, y1, 5);
  const yLabels = tickLabels(yt.map((t) => (o.logY ? 10 ** t : t)));
  const pad = { l: leftPad(yLabels, !!o.yLabel), r: 14, t: 28, b: 40 };
  const px = (x: number) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const py = (y: number) => H - pad.b - ((fy(y) - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  const parts: string[] = [head];
  parts.push(`<rect x="${pad.l}" y="${pad.t}" width="${W - pad.l - pad.r}" height="${H - pad.t - pad.b}" class="plot"/>`);
  const xt = niceTicks(x0, x1, 6);
  tickLabels(xt).forEach((label, i) => {
    const x = px(xt[i]).toFixed(1);
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${pad.t}" y2="${H - pad.b}" class="grid"/><text x="${x}" y="${H - pad.b + 14}" text-anchor="middle">${esc(label)}</text>`,
    );
  });
  yLabels.forEach((label, i) => {
    const y = py(o.logY ? 10 ** yt[i] : yt[i]).toFixed(1);
    parts.push(
      `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y}" y2="${y}" class="grid"/><text x="${pad.l - 5}" y="${y}" dy="4" text-anchor="end">${esc(label)}</text>`,
    );
  });
  parts.push(`<text x="${(pad.l + W - pad.r) / 2}" y="${H - 6}" text-anchor="middle" class="muted">${esc(o.xLabel)}</text>`);
  // a flat-looking series drawn full height: say how little it varies
  if (!o.logY && span > 0 && span < 0.01)
    parts.push(`<text x="${W - pad.r}" y="${H - 6}" text-anchor="end" class="muted">y varies by only ${Number((100 * span).toPrecision(2))} %</text>`);
  if (o.yLabel)
    parts.push(
      `<text x="13" y="${(pad.t + H - pad.b) / 2}" text-anchor="middle" transform="rotate(-90 13 ${(pad.t + H - pad.b) / 2})" class="muted">${esc(o.yLabel)}</text>`,
    );
  for (const m of marks) {
    const x = px(m).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${pad.t}" y2="${H - pad.b}" stroke="#d62728" stroke-dasharray="3 3"/>`);
  }
  if (marks.length) parts.push(`<text x="${pad.l}" y="${H - 6}" class="nf" fill="#d62728">red dashes: not finite</text>`);
  data.forEach((s, i) => {
    for (const seg of s.segs) {
      const d = seg.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
      parts.push(
        seg.length === 1
          ? `<circle cx="${px(seg[0][0]).toFixed(1)}" cy="${py(seg[0][1]).toFixed(1)}" r="3" fill="${s.colour}"/>`
          : `<polyline points="${d}" fill="none" stroke="${s.colour}" stroke-width="${s.width ?? 1.5}" stroke-linejoin="round"/>`,
      );
    }
    if (series.length > 1) {
      const lx = W - pad.r - 120;
      const ly = pad.t + 12 + i * 14;
      parts.push(
        `<line x1="${lx}" x2="${lx + 16}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.colour}" stroke-width="2"/><text x="${lx + 20}" y="${ly}">${esc(s.name)}</text>`,
      );
    }
  });
  parts.push('</svg>');
  return parts.join('');
}
