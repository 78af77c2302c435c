// `semaim ablate --jobs N`: the child processes. The same command line runs once per shard
// (`--shard i/N`) and, for a plan, once per process with `--plan-measure` (all N at once, as the
// shards will run). Each child's output goes to <out-dir>/logs/; run headers and results are echoed.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Measurement } from '../experiments/ablate-plan';
import { openAppendNoFollow, writeError } from '../util/safe-write';
import { StoppedBySignal } from '../run/signals';
import { makeFolder } from '../util/make-folder';
import { kebab } from '../util/options';
import { signalChild } from '../util/signal-child';

/**
 * Options the parent sets for its children (they are removed from the parent's command line). A --config
 * file goes to the children as it is: each child gets --jobs 1, which overrides a `jobs` there (the shards
 * get the parent's --stop-after-minutes, when it has one, likewise; a `plan-only` there ends the parent
 * before any shard starts, and a measuring child does not read it).
 */
const PARENT_ONLY = new Set(['jobs', 'shard', 'plan-only', 'plan-measure', 'stop-after-minutes']);
const FLAGS = new Set(['plan-only', 'plan-measure']);

/** The parent's `ablate` arguments without the options it sets for its children. */
export function childArgs(argv: string[]): string[] {
  return withoutOptions(argv, PARENT_ONLY);
}

/** The `ablate` arguments that run the ablation a `--plan-only` call planned: the same, without --plan-only. */
export function withoutPlanOnly(argv: string[]): string[] {
  return withoutOptions(argv, new Set(['plan-only']));
}

/**
 * `argv` without the options `names` (of PARENT_ONLY) in every spelling the parser takes (--plan_only,
 * --planOnly, --no-plan-only, --plan-only=true), each with its value: an on/off flag's explicit
 * true/false after it too ('--plan-only true', '--no-plan-only false', as parseArgv reads them), which
 * left alone became a stray argument.
 */
function withoutOptions(argv: string[], names: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([a-zA-Z0-9_-]+)(=.*)?$/.exec(a);
    const written = m ? kebab(m[1].replace(/_/g, '-')) : '';
    const negated = written.startsWith('no-') && names.has(written.slice(3));
    const name = negated ? written.slice(3) : written;
    if (m && names.has(name)) {
      const explicit = argv[i + 1] === 'true' || argv[i + 1] === 'false';
      // --x=v holds all of it; an on/off flag (either form) takes only an explicit true/false after it
      if (m[2] === undefined && (FLAGS.has(name) || negated ? explicit : true)) i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

export interface ChildRunner {
  /** node and the CLI script. */
  command: [string, string];
  /** The parent's arguments after `ablate`. */
  argv: string[];
  outDir: string;
  jobs: number;
  threads?: number;
  log: (line: string) => void;
}

const ECHO = /^\[\d+\/\d+\]|seed \d+: |already done|--stop-after-minutes|stopping|measured|error|Error|warning/;
/** A child's progress line (its stderr is a pipe: a plain line every 5 s), and its position. */
const PROGRESS = /^\S.* \[[#.]+\] (\d+)\/(\d+) \|/;
/** How often a child's progress is passed on: the log has every line, the console one per child this often. */
const PROGRESS_ECHO_MS = 30_000;

/**
 * While children run, SIGINT / SIGTERM sent to this process (a scheduler's SIGTERM, `kill`) are passed on
 * to them, and this process waits for them: each stops at a checkpoint as a lone `semaim pretrain`
 * does. Without this the parent died at once and its children ran on unattended, until a write to the
 * parent's closed pipes killed them without a checkpoint. (A terminal's Ctrl-C reaches the children
 * too; the same signal twice within a second counts as one there, src/run/signals.ts.)
 */
class SignalForwarder {
  readonly children = new Set<ChildProcess>();
  signal: NodeJS.Signals | null = null;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.signal ??= signal;
    for (const c of this.children) signalChild(c, signal);
  };

  constructor() {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  release(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

/** Runs the children of `start` with signals forwarded; after a signal, a StoppedBySignal once all have ended. */
async function withForwardedSignals<T>(what: string, start: (children: Set<ChildProcess>) => Promise<T>): Promise<T> {
  const f = new SignalForwarder();
  try {
    const r = await start(f.children);
    if (f.signal) throw new StoppedBySignal(`${what} stopped by ${f.signal}; run the same command again to continue`, f.signal as 'SIGINT' | 'SIGTERM');
    return r;
  } catch (e) {
    if (f.signal && !(e instanceof StoppedBySignal))
      throw new StoppedBySignal(
        `${what} stopped by ${f.signal} (${(e as Error).message}); run the same command again to continue`,
        f.signal as 'SIGINT' | 'SIGTERM',
      );
    throw e;
  } finally {
    f.release();
  }
}

function startChild(r: ChildRunner, name: string, extra: string[], capture: boolean, children: Set<ChildProcess>): Promise<string> {
  const logs = join(r.outDir, 'logs');
  const logPath = join(logs, `${name}.log`);
  makeFolder(logs);
  // appended across calls; never through a symlink planted in the run folder
  const file = createWriteStream(logPath, { fd: openAppendNoFollow(logPath) });
  // A log that cannot be written (a full disk) is not the child's failure: this process goes on (an
  // 'error' event without a listener killed it, leaving its children unattended), keeps the child's last
  // lines, and says where its log stopped.
  let logError: Error | null = null;
  const last: string[] = [];
  file.on('error', (e) => (logError ??= writeError(logPath, e)));
  const threads = r.threads ?? Math.max(1, Math.floor(availableParallelism() / r.jobs));
  const args = [r.command[1], 'ablate', ...childArgs(r.argv), '--jobs', '1', '--threads', String(threads), ...extra];
  file.write(`== ${new Date().toISOString()} ${args.join(' ')}\n`);
  let child: ChildProcess & { stdout: Readable; stderr: Readable };
  try {
    child = spawn(r.command[0], args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    // spawn throws (no process, no events) for errors other than EACCES, EAGAIN, EMFILE, ENFILE and ENOENT (ENOMEM
    // from fork): this child's failure, as an 'error' is, while the others started run on with signals forwarded
    file.end();
    return Promise.reject(new Error(`cannot start ${name}: ${(e as Error).message}`));
  }
  children.add(child);
  let stdout = '';
  let pending = '';
  // by the monotonic clock: with Date.now(), a wall clock stepped back an hour (NTP) hid the progress for that hour
  let progressEchoed = -Infinity;
  const echoes = (line: string): boolean => {
    const p = PROGRESS.exec(line);
    if (!p) return ECHO.test(line);
    // pre-training and evaluation inside a child show on the console too (its first line, then one per
    // PROGRESS_ECHO_MS, and the end of each phase), or a 60-minute budget ran without a sign of life
    if (performance.now() - progressEchoed < PROGRESS_ECHO_MS && p[1] !== p[2]) return false;
    progressEchoed = performance.now();
    return true;
  };
  child.stdout.on('data', (b: Buffer) => {
    if (capture) stdout += b.toString();
    file.write(b);
  });
  child.stderr.on('data', (b: Buffer) => {
    file.write(b);
    pending += b.toString();
    const lines = pending.split(/\r?\n|\r/);
    pending = lines.pop() ?? '';
    for (const l of lines) if (echoes(l)) r.log(`[${name}] ${l.trim()}`);
    last.push(...lines.filter((l) => l.trim()));
    last.splice(0, last.length - 3);
  });
  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`cannot start ${name}: ${e.message}`)));
    child.on('close', (code, signal) => {
      children.delete(child);
      file.end();
      // 75: a shard stopped early by --stop-after-minutes (the parent reports what is left).
      if (pending.trim()) last.push(pending.trim());
      const see = logError ? `${(logError as Error).message}; its last lines: ${last.join(' | ')}` : `see ${logPath}`;
      if (code === 0 || (code === 75 && name.startsWith('shard'))) resolve(stdout);
      else reject(new Error(`${name} ${signal ? `was stopped by ${signal}` : `exited with code ${code}`}; ${see}`));
    });
  });
}

/** Runs shards 'i/N' at once; rejects with the first failure after all have ended. */
export async function runShardProcesses(r: ChildRunner, shards: string[], o: { stopAfterMinutes?: number }): Promise<void> {
  const stop = o.stopAfterMinutes !== undefined ? ['--stop-after-minutes', String(o.stopAfterMinutes)] : [];
  await withForwardedSignals(`the ${shards.length} shard processes`, async (children) => {
    const results = await Promise.allSettled(shards.map((s) => startChild(r, `shard-${s.replace('/', '-of-')}`, ['--shard', s, ...stop], false, children)));
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
  });
}

/** N processes measure at once (`--plan-measure`), each printing its Measurement as the last line of stdout. */
export async function measureInProcesses(r: ChildRunner, count: number): Promise<Measurement[]> {
  const outs = await withForwardedSignals(`the ${count} measuring processes`, async (children) => {
    const all = await Promise.allSettled(Array.from({ length: count }, (_, i) => startChild(r, `measure-${i}`, ['--plan-measure'], true, children)));
    const failed = all.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
    return all.map((x) => (x as PromiseFulfilledResult<string>).value);
  });
  return outs.map((s, i) => {
    const last = s.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(last) as Measurement;
    } catch {
      throw new Error(`measure-${i} printed no measurement (last line: ${last.slice(0, 200)})`);
    }
  });
}
