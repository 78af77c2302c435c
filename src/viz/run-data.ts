// What a run folder holds, read defensively for the report: config.json, metrics.jsonl,
// evaluation results (any JSON with top1/top5 fields), checkpoints and an existing viz grid.
import { existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { isJsonObject } from '../util/json-file';
import { readMetricsSample, type MetricsTotals } from './metrics-sample';
import { readRegularFile } from '../util/regular-file';
import { occupied } from '../util/make-folder';
import { heldByAnother } from '../util/file-lock';
import { LOCK_FILE } from '../run/run-lock';
import { newestUsableCheckpoint } from '../semaim/pretrained';
import { listCheckpoints } from '../io/checkpoint';

/** One evaluation result found in a run folder, a row of the report's evaluation table: where it is, top-1/top-5 and what it evaluated. */
export interface EvalRow {
  /** File (relative to the run folder) and the JSON path of the object inside it. */
  source: string;
  top1: number;
  top5?: number;
  /** Whether top1/top5 are fractions (0..1, as semaim writes them), shown as percentages; else they are shown as written. */
  fraction?: boolean;
  /** Other scalar fields of the same object (k, epochs, feature, temperature...). */
  extra: Record<string, string | number | boolean>;
  /**
   * The weights a semaim result file says it evaluated (its `checkpoint` record); for fine-tuning, its own
   * checkpoint, with the encoder it started from as `startedFrom`.
   */
  evaluated?: EvaluatedWeights;
  /** Which of the run's checkpoints that was, for the table: "step 105 (older than the newest, step 200)". */
  checkpoint?: string;
}

/** What {@link readRun} returns: a run folder's config, metrics, evaluation results and checkpoints, and the problems met reading them. */
export interface RunData {
  dir: string;
  /** config.json (null when there is none, it cannot be read, or it is not a JSON object). */
  config: Record<string, unknown> | null;
  metrics: Record<string, unknown>[];
  evals: EvalRow[];
  /** Files that could not be read or parsed, and links that were not followed (named in the report, not fatal). */
  problems: string[];
  /** The checkpoint folders' names under checkpoints/ (step-NNNNNNNN), oldest first. */
  checkpoints: string[];
  /** The checkpoint that commands taking this run use (the newest that verifies), relative to the run folder; null when none does. */
  usableCheckpoint: string | null;
  /** The first step whose loss is NaN/Inf (metrics.jsonl holds it as null), or null. */
  nonFiniteLossStep: number | null;
  /** Figures over every record of metrics.jsonl (`metrics` may be a sample of a long one). */
  metricsTotals: MetricsTotals;
  /** Whether `metrics` is a sample that draws the same curves (viz/metrics-sample.ts), not every record. */
  metricsSampled: boolean;
}

const NOT_EVAL = new Set(['config.json', 'state.json', 'visualize.json', 'package.json']);

/** A run folder may come from someone else: a link in it (to a key, a config elsewhere) is named, never read. */
const LINK = 'a link: not read';

/** The largest result JSON file read: a larger one is named in the report's Problems, not read. */
const MAX_EVAL_JSON = 16 << 20;

/**
 * The result JSON files of `dir` and its sub-folders to `depth`; the links among them (files or folders) go to
 * `links`, the files larger than MAX_EVAL_JSON to `large`.
 */
function jsonFiles(dir: string, depth: number, links: string[], large: string[]): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const { name } = entry;
    const p = join(dir, name);
    const folder = depth > 0 && name !== 'checkpoints' && !name.startsWith('.');
    const json = name.endsWith('.json') && !NOT_EVAL.has(name);
    try {
      if (entry.isSymbolicLink()) {
        if (json || (folder && statSync(p).isDirectory())) links.push(p);
      } else if (entry.isDirectory()) {
        if (folder) for (const f of jsonFiles(p, depth - 1, links, large)) out.push(f); // (a spread of ~125,000 names overflows the stack)
      } else if (json) {
        // (a larger one, a predict.json of many images say, was left out of the table silently)
        if (lstatSync(p).size < MAX_EVAL_JSON) out.push(p);
        else large.push(p);
      }
    } catch {
      continue;
    }
  }
  return out;
}

/**
 * The JSON value of a run folder's file, not through a link. A parse error says where, never what is
 * there: the message of JSON.parse quotes the text, and the report must not show a file's bytes.
 */
function readJson(path: string): unknown {
  const text = readRegularFile(path, 'utf8', { followLinks: false });
  try {
    return JSON.parse(text);
  } catch (e) {
    const at = /at position (\d+)/.exec((e as Error).message);
    const where = at ? ` at line ${text.slice(0, Number(at[1])).split('\n').length}` : /end of JSON input/.test((e as Error).message) ? ': it ends early' : '';
    throw new Error(`not valid JSON${where}`, { cause: e });
  }
}

/** Why a run folder's file could not be read, as the report's Problems section names it. */
function whyNotRead(e: unknown): string {
  return (e as NodeJS.ErrnoException).code === 'ELOOP' ? LINK : (e as Error).message;
}

interface EvaluatedWeights {
  weights: string;
  sha256?: string;
  startedFrom?: { weights: string; sha256?: string };
}

/** The weights a semaim.eval/1 result scored: the `checkpoint` record, or for fine-tuning its own checkpoint. */
function evaluatedWeights(data: Record<string, unknown>): EvaluatedWeights | undefined {
  const c = data.checkpoint;
  const source =
    isJsonObject(c) && typeof c.weights === 'string' ? { weights: c.weights, sha256: typeof c.sha256 === 'string' ? c.sha256 : undefined } : undefined;
  if (data.command !== 'finetune') return source;
  const d = isJsonObject(data.details) ? data.details : {};
  const own = typeof d.finetuneCheckpoint === 'string' ? join(d.finetuneCheckpoint, 'model.safetensors') : '(not kept)';
  return { weights: own, sha256: typeof d.finetuneSha256 === 'string' ? d.finetuneSha256 : undefined, startedFrom: source };
}

const isScalar = (v: unknown): v is string | number | boolean => typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean';

/**
 * The results of an evaluation file: semaim's own (format semaim.eval/1) one per named result row;
 * any other JSON every object with a numeric `top1` (any depth), with its scalar siblings.
 */
export function findEvalRows(data: unknown, source: string, path = ''): EvalRow[] {
  if (!path && isJsonObject(data) && data.format === 'semaim.eval/1' && Array.isArray(data.rows)) {
    // its headline and details repeat these rows
    return data.rows.flatMap((r) => {
      if (!isJsonObject(r) || !isJsonObject(r.accuracy) || typeof r.accuracy.top1 !== 'number') return [];
      const a = r.accuracy;
      const extra: Record<string, string | number | boolean> = typeof a.n === 'number' ? { n: a.n } : {};
      const evaluated = evaluatedWeights(data);
      return [{ source: `${source} ${String(r.name)}`, top1: a.top1 as number, top5: typeof a.top5 === 'number' ? a.top5 : undefined, extra, evaluated }];
    });
  }
  if (data === null || typeof data !== 'object') return [];
  if (Array.isArray(data)) return data.flatMap((v, i) => findEvalRows(v, source, `${path}[${i}]`));
  const o = data as Record<string, unknown>;
  const rows: EvalRow[] = [];
  if (typeof o.top1 === 'number') {
    const extra: Record<string, string | number | boolean> = {};
    for (const [k, v] of Object.entries(o)) if (k !== 'top1' && k !== 'top5' && isScalar(v)) extra[k] = v;
    rows.push({ source: path ? `${source} ${path}` : source, top1: o.top1, top5: typeof o.top5 === 'number' ? o.top5 : undefined, extra });
  }
  for (const [k, v] of Object.entries(o)) {
    if (v !== null && typeof v === 'object') rows.push(...findEvalRows(v, source, path ? `${path}.${k}` : k));
  }
  return rows;
}

/** A metrics line as semaim writes it: a `step` (when there is one) that is a number, and no number out of range (1e400 reads as Infinity). */
function isMetricRecord(r: Record<string, unknown>): boolean {
  return (!('step' in r) || typeof r.step === 'number') && Object.values(r).every((v) => typeof v !== 'number' || Number.isFinite(v));
}

/**
 * Reads what a run folder holds for the report: config.json, metrics.jsonl (sampled when long), evaluation JSON
 * files (to two sub-folders deep) and checkpoints. Files it cannot read and links go to `problems`, not thrown;
 * throws when `dir` is not a folder.
 */
export function readRun(dir: string): RunData {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`run folder not found: ${dir}`);
  const problems: string[] = [];
  let config: Record<string, unknown> | null = null;
  const cfgPath = join(dir, 'config.json');
  if (occupied(cfgPath)) {
    try {
      const c = readJson(cfgPath);
      if (isJsonObject(c)) config = c;
      else problems.push('config.json: not a JSON object');
    } catch (e) {
      problems.push(`config.json: ${whyNotRead(e)}`);
    }
  }
  const evals: EvalRow[] = [];
  const links: string[] = [];
  const large: string[] = [];
  for (const f of jsonFiles(dir, 2, links, large)) {
    try {
      const data = readJson(f);
      const rows = findEvalRows(data, relative(dir, f));
      // semaim's files hold fractions; another tool's, percentages unless every value lies in 0..1
      const ours = isJsonObject(data) && typeof data.format === 'string' && data.format.startsWith('semaim.');
      const fraction = ours || rows.every((r) => r.top1 <= 1 && (r.top5 ?? 0) <= 1);
      evals.push(...rows.map((r) => ({ ...r, fraction })));
    } catch (e) {
      problems.push(`${relative(dir, f)}: ${whyNotRead(e)}`);
    }
  }
  problems.push(...large.map((f) => `${relative(dir, f)}: larger than ${MAX_EVAL_JSON >> 20} MiB: not read for evaluation results`));
  problems.push(...links.map((f) => `${relative(dir, f)}: ${LINK}`));
  let metrics: Record<string, unknown>[] = [];
  let metricsTotals: MetricsTotals = { records: 0, loggedSteps: 0, minLoss: null, firstLoss: null, lastLoss: null, medianImgPerSec: null };
  let metricsSampled = false;
  const metricsPath = join(dir, 'metrics.jsonl');
  if (occupied(metricsPath)) {
    try {
      const m = readMetricsSample(metricsPath, isMetricRecord, isNonFinite);
      ({ records: metrics, totals: metricsTotals, sampled: metricsSampled } = m);
      const bad = [...m.unreadable, ...m.odd].sort((a, b) => a - b);
      if (bad.length) {
        const list = bad.slice(0, 10).join(', ') + (bad.length > 10 ? ', …' : '');
        const are = bad.length === 1 ? 'line is not a metrics record' : 'lines are not metrics records';
        problems.push(`metrics.jsonl: ${bad.length} ${are} (left out of the curves): line ${list}`);
      }
      if (m.cutShort !== null) {
        // a run still writing to the folder may be in the middle of that line: nothing is wrong with it
        const why = heldByAnother(join(dir, LOCK_FILE)) ? 'the live run writing to this folder is writing it' : 'as a run killed while writing it leaves it';
        problems.push(`metrics.jsonl: the last line (line ${m.cutShort}) is cut short, ${why}; left out`);
      }
    } catch (e) {
      problems.push(`metrics.jsonl: ${whyNotRead(e)}`);
    }
  }
  const nonFiniteLossStep = firstNonFiniteLoss(metrics);
  if (nonFiniteLossStep !== null)
    problems.push(`the loss became NaN/Inf at step ${nonFiniteLossStep} (metrics.jsonl: loss null)${stopNote(metrics, nonFiniteLossStep)}`);
  // the records with a NaN/Inf, by metric, in one pass (a filter of every record for each metric took minutes
  // for a file whose lines each hold a metric of their own: quadratic in the lines)
  const badByKey = new Map<string, Record<string, unknown>[]>();
  for (const m of metrics) {
    if (typeof m.step !== 'number') continue;
    for (const [k, v] of Object.entries(m)) {
      if (k === 'loss' || !isNonFinite(k, v)) continue;
      const list = badByKey.get(k);
      if (list) list.push(m);
      else badByKey.set(k, [m]);
    }
  }
  for (const k of [...badByKey.keys()].sort()) {
    const bad = badByKey.get(k)!;
    const values = [...new Set(bad.map((m) => `"${m[k] as string}"`))].join(' or ');
    // fp16's loss scaling overflows on purpose while it finds its scale: such steps are skipped, not applied
    const fp16 = k === 'gradNorm' && isJsonObject(config?.options) && config.options.precision === 'fp16';
    problems.push(
      `${k === 'gradNorm' ? 'the gradient norm' : k} was not finite at ${stepList(bad.map((m) => m.step as number))} (metrics.jsonl: ${k} ${values})` +
        (fp16 ? '; with fp16 loss scaling such steps are skipped and the scale lowered, so a few, early in the run, are expected' : ''),
    );
  }
  const ckDir = join(dir, 'checkpoints');
  // a file of that name is a problem of the folder, not of the report: listing it threw ENOTDIR
  const ckFolder = existsSync(ckDir) && statSync(ckDir).isDirectory();
  if (existsSync(ckDir) && !ckFolder) problems.push('checkpoints: not a folder; no checkpoint of the run is read');
  // oldest first, by step (by name, step-100000000 came before step-99999999)
  const stepFolders = ckFolder ? listCheckpoints(ckDir).reverse() : [];
  const checkpoints = stepFolders.map((c) => basename(c.dir));
  const usable = ckFolder ? newestUsableCheckpoint(dir) : { dir: null, skipped: [] };
  for (const s of usable.skipped) problems.push(`${relative(dir, s.dir)}: not usable (${s.problem}); commands taking this run use an older checkpoint`);
  const usableCheckpoint = usable.dir === null ? null : relative(dir, usable.dir);
  if (evals.some((r) => r.evaluated)) {
    // the step of each checkpoint's weights, by the SHA-256 its state.json records (no file is hashed here)
    const bySha = new Map<string, RunWeights>();
    for (const { step, dir: ck } of stepFolders) {
      try {
        const st = readJson(join(ck, 'state.json'));
        const sha = isJsonObject(st) && isJsonObject(st.files) ? st.files['model.safetensors'] : undefined;
        if (typeof sha === 'string') bySha.set(sha, { step, best: false });
      } catch {
        continue; // named under Problems by the check above when it is the newest
      }
    }
    // best/ keeps the weights of a step the run may have pruned since (an evaluation of best/, say)
    try {
      const st = ckFolder ? readJson(join(ckDir, 'best', 'state.json')) : null;
      if (isJsonObject(st) && isJsonObject(st.files)) {
        const sha = st.files['model.safetensors'];
        if (typeof sha === 'string' && Number.isSafeInteger(st.step) && !bySha.has(sha)) bySha.set(sha, { step: st.step as number, best: true });
      }
    } catch {
      /* no best/, or not readable: its weights are not named */
    }
    const newest = stepFolders.length ? stepFolders[stepFolders.length - 1].step : null;
    for (const r of evals) if (r.evaluated) r.checkpoint = evaluatedCheckpoint(r.evaluated, bySha, newest);
  }
  return { dir, config, metrics, evals, problems, checkpoints, usableCheckpoint, nonFiniteLossStep, metricsTotals, metricsSampled };
}

/** The step whose weights a checkpoint of the run holds, and whether only best/ holds them now. */
interface RunWeights {
  step: number;
  best: boolean;
}

/**
 * Which checkpoint of the run an evaluation used: found by the SHA-256 of its weights; "older" when the
 * run has a newer one since; when no checkpoint of the run has those weights now, the step its path names.
 */
function evaluatedCheckpoint(e: EvaluatedWeights, bySha: Map<string, RunWeights>, newest: number | null): string {
  const found = e.sha256 === undefined ? undefined : bySha.get(e.sha256);
  if (found !== undefined) {
    const notes = [...(found.best ? ['kept as best/'] : []), ...(newest !== null && found.step < newest ? [`older than the newest, step ${newest}`] : [])];
    return notes.length ? `step ${found.step} (${notes.join('; ')})` : `step ${found.step}`;
  }
  if (e.startedFrom) {
    // a fine-tuning kept elsewhere: its accuracy is of its own weights, started from one of this run's checkpoints or not
    const from = e.startedFrom.sha256 === undefined ? undefined : bySha.get(e.startedFrom.sha256);
    return from === undefined ? 'fine-tuned (its own run folder)' : `fine-tuned from step ${from.step}`;
  }
  const folder = basename(dirname(e.weights));
  const named = /^step-(\d+)$/.exec(folder);
  const what = named ? `step ${Number(named[1])}` : e.weights.split(/[\\/]/).pop()!;
  return `${what} (${e.sha256 === undefined ? 'no SHA-256 recorded' : 'no checkpoint of this run has these weights now'})`;
}

/**
 * Whether a metrics value stands for a NaN/Inf (JSON has neither): the trainer writes such a loss as
 * null, a gradient norm as the string "Infinity" or "NaN" (its null means "not measured").
 */
export function isNonFinite(key: string, v: unknown): boolean {
  return key === 'loss' ? v === null : v === 'Infinity' || v === '-Infinity' || v === 'NaN';
}

/** "step 6, 8": up to 10 steps. */
function stepList(steps: number[]): string {
  return `step${steps.length > 1 ? 's' : ''} ${steps.slice(0, 10).join(', ')}${steps.length > 10 ? ', …' : ''}`;
}

/**
 * The step of the first record whose loss is not a number: the trainer writes a NaN/Inf loss as null
 * (JSON has no NaN), and every step record it writes has a loss.
 */
function firstNonFiniteLoss(metrics: Record<string, unknown>[]): number | null {
  const r = metrics.find((m) => typeof m.step === 'number' && 'loss' in m && typeof m.loss !== 'number');
  return r ? (r.step as number) : null;
}

/** How the report words what came after a NaN/Inf loss: a trainer stops there, so its loss records end. */
function stopNote(metrics: Record<string, unknown>[], step: number): string {
  const later = metrics.some((m) => typeof m.step === 'number' && m.step > step && typeof m.loss === 'number');
  if (later) return '';
  const earlier = metrics.some((m) => typeof m.step === 'number' && m.step < step && typeof m.loss === 'number');
  return earlier
    ? '; training stopped there, and the curves end at the last finite loss'
    : '; training stopped there, at its first logged step, so no finite loss was ever logged';
}
