// Result files of the evaluation commands: one JSON per command in --out-dir (accuracies, the
// resolved configuration, the encoder's path and SHA-256), written atomically, plus a short
// Markdown table for the terminal.
import { join } from 'node:path';
import { OptionError, OptionValues } from '../util/options';
import { Accuracy } from './accuracy';
import { EncoderSource } from '../semaim';
import { printable, quotedPath } from '../util/printable';
import { commitStaged, jsonText, stageFile, writeJsonAtomic, type StagedFile } from '../util/safe-write';
import { makeFolder } from '../util/make-folder';
import { inOutputFolder } from '../util/output-folder';
import { protectedFolder } from '../io/outputs';

/** One measurement of an evaluation's result (EvalResult.rows): what was measured and its accuracy. */
export interface ResultRow {
  /** What was measured, e.g. 'k-NN k=20', 'linear probe', 'fine-tune (EMA)'. */
  name: string;
  accuracy: Accuracy;
}

/**
 * The result file of `semaim knn | linprobe | finetune` (<out-dir>/<command>.json, format 'semaim.eval/1'), made
 * by {@link makeResult}: the headline accuracy, every row, the encoder, the data sizes and the resolved options.
 */
export interface EvalResult {
  format: 'semaim.eval/1';
  command: 'knn' | 'linprobe' | 'finetune';
  createdAt: string;
  /** The headline accuracy (the first row). */
  top1: number;
  top5: number;
  perClass: (number | null)[];
  classNames?: string[];
  rows: ResultRow[];
  checkpoint: { path: string; weights: string; sha256: string; kind: string };
  encoder: EncoderSource['config'];
  data: { train: number; test: number; numClasses: number };
  /** The options the run resolved. */
  config: OptionValues;
  seconds: number;
  /** Command-specific extras (k-NN per k, probe history, fine-tuning run). */
  details?: Record<string, unknown>;
}

/**
 * Builds an {@link EvalResult} stamped with the current time; the first row gives
 * its headline top-1, top-5 and per-class top-1. Throws when `rows` is empty.
 */
export function makeResult(
  command: EvalResult['command'],
  rows: ResultRow[],
  o: {
    source: EncoderSource;
    config: OptionValues;
    data: EvalResult['data'];
    classNames?: string[];
    seconds: number;
    details?: Record<string, unknown>;
  },
): EvalResult {
  if (!rows.length) throw new Error('makeResult: no result rows');
  const head = rows[0].accuracy;
  return {
    format: 'semaim.eval/1',
    command,
    createdAt: new Date().toISOString(),
    top1: head.top1,
    top5: head.top5,
    perClass: head.perClass,
    classNames: o.classNames,
    rows,
    checkpoint: { path: o.source.path, weights: o.source.weights, sha256: o.source.sha256, kind: o.source.kind },
    encoder: o.source.config,
    data: o.data,
    config: o.config,
    seconds: o.seconds,
    details: o.details,
  };
}

/** Writes `<outDir>/<command>.json` atomically (any evaluator's result file); returns its path. */
export function writeResult(outDir: string, result: { command: string }): string {
  makeFolder(outDir);
  const path = join(outDir, `${result.command}.json`);
  writeJsonAtomic(path, result);
  return path;
}

/**
 * writeResult with the other files of the same result (a probe's weights, a figure; `stagers` stage them
 * beside it): all renamed into place under one journal (`<command>.json.commit`), so a kill between the
 * renames is completed by the next writer, and a result never describes another run's probe. Returns its path.
 */
export function commitResult(outDir: string, result: { command: string }, stagers: (() => StagedFile)[]): string {
  const path = join(outDir, `${result.command}.json`);
  makeFolder(outDir);
  commitStaged([() => stageFile(path, jsonText(result)), ...stagers]);
  return path;
}

/**
 * Runs an evaluation job once its output folder is known to be writable. `job` writes `<outDir>/<command>.json` (and files beside it) at its end; it runs once `outDir` is made
 * and a file staged beside that one could be written there (and removed again): an --out-dir on a read-only
 * file system, under a file or without permission fails before hours of extraction and training, with the
 * error the final write would give. The folders made for it are removed again, if still empty, when the job
 * fails. `writes` false (data-parallel ranks other than 0, which write nothing): the job alone.
 */
export async function inResultFolder<T>(outDir: string, command: string, writes: boolean, job: () => Promise<T>): Promise<T> {
  // (every rank: they stop together)
  const why = protectedFolder(outDir);
  if (why)
    throw new OptionError('outDir', `${quotedPath(outDir)} cannot hold the ${command} results: ${why}, which a run prunes or moves; choose another folder`);
  if (!writes) return job();
  return inOutputFolder(outDir, () => {
    stageFile(join(outDir, `${command}.json`), '').abort();
    return job();
  });
}

/** A fraction as a percentage with `digits` decimals (default 2): 0.7531 → '75.31'; '–' for null, undefined or a non-finite value. */
export const pct = (v: number | null | undefined, digits = 2): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : (100 * v).toFixed(digits);

/** A Markdown table: header row, alignment row, body. */
export function markdownTable(header: string[], rows: string[][], align: ('l' | 'r')[] = []): string {
  const sep = header.map((_, i) => (align[i] === 'r' ? '---:' : '---'));
  // cells come from data too (class names): a line break or a '|' would split the table, and so would a
  // '\|' whose backslash escaped the escape (GFM reads '\\' as one escaped backslash, then the '|' as a column);
  // a backslash before punctuation is escaped (it would escape it), others are literal as they stand ('\x1b')
  const cell = (c: string) =>
    printable(c.replace(/\r?\n/g, ' '))
      .replace(/\\(?=[!-/:-@[-`{-~])/g, '\\\\')
      .replace(/\|/g, '\\|');
  return [header.map(cell), sep, ...rows.map((r) => r.map(cell))].map((r) => `| ${r.join(' | ')} |`).join('\n') + '\n';
}

/** The short table the commands print: one row per measurement, then per-class top-1 of the first. */
export function formatResult(r: EvalResult): string {
  const main = markdownTable(
    ['evaluation', 'top-1 %', 'top-5 %', 'images'],
    r.rows.map((row) => [row.name, pct(row.accuracy.top1), pct(row.accuracy.top5), String(row.accuracy.n)]),
    ['l', 'r', 'r', 'r'],
  );
  const names = r.classNames ?? r.perClass.map((_, i) => String(i));
  const perClass = markdownTable(['class', ...names.slice(0, r.perClass.length)], [[`top-1 % (${r.rows[0].name})`, ...r.perClass.map((v) => pct(v, 1))]]);
  return `${main}\n${perClass}\nencoder ${quotedPath(r.checkpoint.weights)} (sha256 ${r.checkpoint.sha256.slice(0, 16)}…)\n`;
}
