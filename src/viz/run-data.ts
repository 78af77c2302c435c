// What a run folder holds, read defensively for the report: config.json, metrics.jsonl,
// evaluation results (any JSON with top1/top5 fields), checkpoints and an existing viz grid.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { isJsonObject } from '../util/json-file';
import { readMetrics } from '../run/metrics';
import { readRegularFile } from '../util/regular-file';

export interface EvalRow {
  /** File (relative to the run folder) and the JSON path of the object inside it. */
  source: string;
  top1: number;
  top5?: number;
  /** Other scalar fields of the same object (k, epochs, feature, temperature...). */
  extra: Record<string, string | number | boolean>;
}

export interface RunData {
  dir: string;
  config: Record<string, unknown> | null;
  metrics: Record<string, unknown>[];
  evals: EvalRow[];
  /** JSON files that could not be parsed (named in the report, not fatal). */
  problems: string[];
  checkpoints: string[];
}

const NOT_EVAL = new Set(['config.json', 'state.json', 'visualize.json', 'package.json']);

function jsonFiles(dir: string, depth: number): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      if (depth > 0 && name !== 'checkpoints' && !name.startsWith('.')) out.push(...jsonFiles(p, depth - 1));
    } else if (name.endsWith('.json') && !NOT_EVAL.has(name) && st.size < 16 << 20) {
      out.push(p);
    }
  }
  return out;
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
      return [{ source: `${source} ${String(r.name)}`, top1: a.top1 as number, top5: typeof a.top5 === 'number' ? a.top5 : undefined, extra }];
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

export function readRun(dir: string): RunData {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`run folder not found: ${dir}`);
  const problems: string[] = [];
  let config: Record<string, unknown> | null = null;
  const cfgPath = join(dir, 'config.json');
  if (existsSync(cfgPath)) {
    try {
      const c: unknown = JSON.parse(readRegularFile(cfgPath, 'utf8'));
      if (isJsonObject(c)) config = c;
      else problems.push('config.json: not a JSON object');
    } catch (e) {
      problems.push(`config.json: ${(e as Error).message}`);
    }
  }
  const evals: EvalRow[] = [];
  for (const f of jsonFiles(dir, 2)) {
    try {
      evals.push(...findEvalRows(JSON.parse(readRegularFile(f, 'utf8')), relative(dir, f)));
    } catch (e) {
      problems.push(`${relative(dir, f)}: ${(e as Error).message}`);
    }
  }
  const ckDir = join(dir, 'checkpoints');
  const checkpoints = existsSync(ckDir)
    ? readdirSync(ckDir)
        .filter((n) => /^step-\d+$/.test(n))
        .sort()
    : [];
  return { dir, config, metrics: readMetrics(join(dir, 'metrics.jsonl')), evals, problems, checkpoints };
}
