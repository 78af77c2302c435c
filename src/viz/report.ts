// `semaim report`: one self-contained HTML file for a run (no script, no external requests; a CSP
// forbids them): config tables, metric curves as inline SVG, evaluation tables, and the
// visualisation grid as a data: URI.
import { isNonFinite, type RunData, type EvalRow } from './run-data';
import { esc, fmt } from './html';
import { jsonBrief } from '../util/json-file';

import { lineChart, smooth, Series } from './svg';

/** Marks a page as written by `semaim report` (a later report may replace it without --overwrite). */
export const REPORT_GENERATOR = '<meta name="generator" content="semaim report">';
/** How a report written before REPORT_GENERATOR (until 2026-12-03) begins, up to its title (the demo's and --title's vary). */
export const UNTAGGED_REPORT_HEAD =
  '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n' +
  `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">\n` +
  '<meta name="viewport" content="width=device-width, initial-scale=1">\n<link rel="icon" href="data:,">\n<title>';

/** Options of {@link renderReport}. */
export interface ReportOptions {
  /** The page's title (default 'SemAIM run report: ' and the run folder). */
  title?: string;
  /** PNG bytes of the visualisation grid to embed. */
  grid?: Buffer | null;
  /** A line under the grid (where it came from) or why there is none. */
  gridNote?: string;
  /** The time the page says it was generated (default now). */
  generatedAt?: Date;
}

const KNOWN: Record<string, { title: string; y: string; colour: string; logY?: boolean }> = {
  loss: { title: 'Training loss', y: 'loss', colour: '#1f77b4' },
  lr: { title: 'Learning rate', y: 'lr', colour: '#2ca02c' },
  imgPerSec: { title: 'Throughput', y: 'images / s', colour: '#d62728' },
  gradNorm: { title: 'Gradient norm (before clipping)', y: 'norm', colour: '#9467bd' },
};
const NOT_CURVES = new Set(['step', 'epoch', 'time']);

/** Config keys below this depth are shown as one JSON value (a hostile config.json can nest deeper than the stack). */
const MAX_CONFIG_DEPTH = 32;

function flatten(o: unknown, prefix = '', out: [string, unknown][] = [], depth = 0): [string, unknown][] {
  if (o !== null && typeof o === 'object' && !Array.isArray(o) && depth < MAX_CONFIG_DEPTH) {
    for (const [k, v] of Object.entries(o as Record<string, unknown>)) flatten(v, prefix ? `${prefix}.${k}` : k, out, depth + 1);
  } else {
    out.push([prefix, o !== null && typeof o === 'object' ? jsonBrief(o, Infinity) : o]);
  }
  return out;
}

function table(head: string[], rows: unknown[][], cls = ''): string {
  return (
    `<table class="${cls}"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>` +
    rows.map((r) => `<tr>${r.map((c) => `<td>${esc(typeof c === 'number' ? fmt(c) : (c ?? ''))}</td>`).join('')}</tr>`).join('') +
    '</tbody></table>'
  );
}

function configSection(run: RunData): string {
  if (!run.config) return '<p class="muted">No config.json in the run folder.</p>';
  const c = run.config;
  const groups: [string, unknown][] =
    'model' in c || 'options' in c
      ? [['Model', c.model], ['Training options', c.options], ...Object.entries(c).filter(([k]) => k !== 'model' && k !== 'options')]
      : [['Config', c]];
  return groups
    .filter(([, v]) => v !== undefined)
    .map(([name, v]) => {
      const rows = flatten(v)
        .filter(([, x]) => x !== undefined)
        // numbers as config.json holds them: fmt's 4 significant digits showed an EMA decay of 0.99999 as 1
        .map(([k, x]) => [k || name, String(x)]);
      return `<details open><summary>${esc(name)} <span class="muted">(${rows.length})</span></summary>${table(['key', 'value'], rows, 'kv')}</details>`;
    })
    .join('');
}

/**
 * For each of `keys`, the (x, y) of the records holding it: a finite number, or anything else as [x, NaN] (a break
 * in the line); and the x of the records where it was not finite (metrics.jsonl: a null loss, a gradNorm
 * "Infinity"/"NaN"). One pass over the records (a pass per metric was quadratic in a file whose lines each hold
 * a metric of their own).
 */
function seriesOf(metrics: Record<string, unknown>[], keys: readonly string[]): Map<string, { pts: [number, number][]; marks: number[] }> {
  const out = new Map(keys.map((k) => [k, { pts: [] as [number, number][], marks: [] as number[] }]));
  metrics.forEach((m, i) => {
    const x = typeof m.step === 'number' ? m.step : i;
    for (const [k, y] of Object.entries(m)) {
      const s = out.get(k);
      if (!s) continue;
      s.pts.push([x, typeof y === 'number' && Number.isFinite(y) ? y : NaN]);
      if (isNonFinite(k, y)) s.marks.push(x);
    }
  });
  return out;
}

function summarySection(run: RunData): string {
  // (counted over every record: `metrics` may be a sample of a long file)
  const totals = run.metricsTotals;
  const last = run.metrics[run.metrics.length - 1] ?? {};
  const lastLoss = totals.lastLoss;
  const diverged = run.nonFiniteLossStep;
  const cells: [string, unknown][] = [
    ['logged steps', totals.loggedSteps], // the step records (evaluation records carry no loss)
    ['last step', last.step],
    ['last epoch', last.epoch],
    ['loss became NaN/Inf', diverged === null ? undefined : `at step ${diverged}`],
    ['first loss', totals.firstLoss?.[1]],
    diverged === null ? ['last loss', lastLoss?.[1]] : [`last finite loss (step ${lastLoss?.[0]})`, lastLoss?.[1]],
    ['min loss', totals.minLoss ?? undefined],
    ['median img/s', totals.medianImgPerSec ?? undefined],
    ['checkpoints', run.checkpoints.length ? `${run.checkpoints.length} (newest usable: ${run.usableCheckpoint ?? 'none'})` : 'none'],
  ];
  return `<div class="cards">${cells
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `<div class="card"><div class="k">${esc(k)}</div><div class="v">${esc(fmt(v))}</div></div>`)
    .join('')}</div>`;
}

function curvesSection(run: RunData): string {
  if (run.metrics.length === 0) return '<p class="muted">No metrics.jsonl (or it is empty).</p>';
  const keys = new Set<string>();
  // a metric that was only ever NaN/Inf (a run whose first loss was NaN) gets its chart too, saying so
  for (const m of run.metrics) for (const [k, v] of Object.entries(m)) if ((typeof v === 'number' || isNonFinite(k, v)) && !NOT_CURVES.has(k)) keys.add(k);
  const known = (k: string) => Object.hasOwn(KNOWN, k); // not 'constructor' or 'toString', which a metric may be named
  const ordered = [...Object.keys(KNOWN).filter((k) => keys.has(k)), ...[...keys].filter((k) => !known(k)).sort()];
  const xLabel = run.metrics.some((m) => typeof m.step === 'number') ? 'step' : 'record';
  const byKey = seriesOf(run.metrics, ordered);
  const charts = ordered.map((k) => {
    const info = known(k) ? KNOWN[k] : { title: k, y: k, colour: '#444' };
    const { pts, marks } = byKey.get(k)!;
    const finite = pts.filter((p) => Number.isFinite(p[1]));
    const series: Series[] = [{ name: k, points: pts, colour: info.colour, width: k === 'loss' && finite.length > 20 ? 1 : 1.5 }];
    if (k === 'loss' && finite.length > 20) {
      series[0].colour = '#9ecae1';
      series.push({ name: 'loss (EMA 0.9)', points: smooth(finite), colour: info.colour, width: 2 });
    }
    const empty = marks.length ? `no finite ${k}: NaN/Inf from ${xLabel} ${fmt(marks[0])}` : undefined;
    return `<figure>${lineChart(series, { title: info.title, xLabel, yLabel: info.y, logY: info.logY, marks, empty })}</figure>`;
  });
  const sample = run.metricsSampled
    ? `<p class="muted">${fmt(run.metricsTotals.records)} records: the curves are drawn from ${fmt(run.metrics.length)} of them, ` +
      "each metric's lowest and highest in every 1/4000 of the run (the charts show per-bucket extremes anyway), every NaN/Inf and evaluation record; " +
      "the loss's moving average is taken over those.</p>"
    : '';
  return `${sample}<div class="charts">${charts.join('')}</div>`;
}

function evalSection(rows: EvalRow[]): string {
  if (rows.length === 0) {
    return '<p class="muted">No evaluation results yet: k-NN or linear-probe JSON files with <code>top1</code> / <code>top5</code> fields in the run folder (or a sub-folder) appear here.</p>';
  }
  const extraKeys = [...new Set(rows.flatMap((r) => Object.keys(r.extra)))].slice(0, 8);
  // percentages with two decimals, as the commands print them (eval's pct); a file already in percent is shown as written
  // (as a number, the table's 4 significant digits showed a top-1 of 99.996 as 100)
  const percent = (r: EvalRow, v: number | undefined) => (v === undefined ? '' : r.fraction ? (100 * v).toFixed(2) : String(v));
  // which checkpoint each evaluated (semaim's files record its weights and their SHA-256)
  const ck = rows.some((r) => r.checkpoint !== undefined);
  // the other fields as the file holds them, as the configuration table shows config.json's (4 digits showed 0.99996 as 1)
  return table(
    ['source', 'top-1 %', 'top-5 %', ...(ck ? ['checkpoint'] : []), ...extraKeys],
    rows.map((r) => [
      r.source,
      percent(r, r.top1),
      percent(r, r.top5),
      ...(ck ? [r.checkpoint ?? ''] : []),
      ...extraKeys.map((k) => (Object.hasOwn(r.extra, k) ? String(r.extra[k]) : '')),
    ]),
    'eval',
  );
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h1,p,li{overflow-wrap:anywhere}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#777}code{background:#f3f3f3;padding:0 3px;border-radius:3px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}table.kv td:first-child{font-family:ui-monospace,monospace;color:#444}table.eval td:nth-child(2),table.eval td:nth-child(3){font-weight:600}
details{margin:4px 0}summary{cursor:pointer;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:110px}.card .k{font-size:12px;color:#777}.card .v{font-size:17px;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}
svg.chart{background:#fff;font-size:11px;font-family:inherit}svg.chart text{fill:#333}svg.chart .ct{font-size:13px;font-weight:600}svg.chart .muted{fill:#777}svg.chart .nf{fill:#d62728}
svg.chart .plot{fill:#fcfcfc;stroke:#bbb}svg.chart .grid{stroke:#e6e6e6}
img.viz{max-width:100%;height:auto;border:1px solid #ddd}`;

/**
 * The HTML of `semaim report` for a run: one self-contained page (no script, no external requests) with a summary,
 * the metric curves as SVG, the evaluation results, the visualisation grid, the configuration and the problems found.
 */
export function renderReport(run: RunData, o: ReportOptions = {}): string {
  const title = o.title ?? `SemAIM run report: ${run.dir}`;
  const viz = o.grid ? `<img class="viz" alt="visualisation grid" src="data:image/png;base64,${o.grid.toString('base64')}">` : '';
  const problems = run.problems.length ? `<h2>Problems</h2><ul>${run.problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul>` : '';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
${REPORT_GENERATOR}
<link rel="icon" href="data:,">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body>
<h1>${esc(title)}</h1>
<p class="muted">run folder <code>${esc(run.dir)}</code> · generated ${esc((o.generatedAt ?? new Date()).toISOString())}</p>
${summarySection(run)}
<h2>Curves</h2>
${curvesSection(run)}
<h2>Evaluation</h2>
${evalSection(run.evals)}
<h2>Visualisation</h2>
${viz}${o.gridNote ? `<p class="muted">${esc(o.gridNote)}</p>` : ''}
<h2>Configuration</h2>
${configSection(run)}
${problems}
</body></html>
`;
}
