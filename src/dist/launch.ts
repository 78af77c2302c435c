// The built-in launcher: `semaim <command> --nproc-per-node N [--nnodes M --node-rank R --master-addr A
// --master-port P]` starts N workers of the same command on this machine with torchrun's environment
// (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT), forwards
// SIGINT/SIGTERM to them, and when one fails stops the others (SIGTERM, then SIGKILL after a grace
// period) and reports the failed rank with its last lines of output.
import { spawn, ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { OptionError, defineOptions } from '../util/options';
import { signalChild } from '../util/signal-child';
import { compressionRefusal, GradCompression } from './ddp';
import { backendFor } from './process-group';

/** Options of {@link launchWorkers}: how many workers, where the rendezvous is, and where their output goes. */
export interface LaunchOptions {
  /** Workers on this machine. */
  nprocPerNode: number;
  /** Machines taking part (each runs this launcher with its own nodeRank). */
  nnodes?: number;
  /** This machine's index among nnodes (default 0); its workers get the global ranks nodeRank × nprocPerNode + local rank. */
  nodeRank?: number;
  /** Where rank 0 hosts the rendezvous store (default 127.0.0.1: one machine). */
  masterAddr?: string;
  /** Default: a free port for one machine, 29500 (torchrun's) for several. */
  masterPort?: number;
  /** The script the workers run (default: this process's, process.argv[1]). */
  script?: string;
  /** Node's flags for the workers (default: this process's). */
  execArgv?: string[];
  /** The workers' environment before the distributed variables are added (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** How long the workers stopped after another failed get between SIGTERM and SIGKILL (default 15 s; a signal forwarded to them is not followed by SIGKILL). */
  killGraceMs?: number;
  /** Lines of a failed worker's output quoted in the failure message (default 20). */
  tailLines?: number;
  /** Where rank 0's output goes unchanged and the other ranks' with a `[rank N]` prefix (default this process's). */
  stdout?: NodeJS.WritableStream;
  /** As stdout, for the workers' stderr; the launcher's failure report goes here too (default this process's). */
  stderr?: NodeJS.WritableStream;
}

/** What {@link launchWorkers} resolves to: the exit code for the launcher to exit with and, after a failure, which rank failed. */
export interface LaunchResult {
  /**
   * 0 when every worker succeeded; else the failed worker's code (1 if it died by a signal), or 128 + signal when
   * stopped by one (the launcher's, or a worker's own: 130 / 143 from the workers, none failed).
   */
  exitCode: number;
  /** The global rank that failed first (null when none failed). */
  failedRank: number | null;
  /** The failure report printed on stderr (null on success). */
  message: string | null;
}

/** The launcher's flags, in the option-table form the training commands use (they may change when a run resumes). */
export const LAUNCH_OPTIONS = defineOptions({
  nprocPerNode: {
    mayChangeOnResume: true, type: 'int', default: 1, min: 1,
    help: 'worker processes on this machine (data-parallel; >1 starts them with the built-in launcher; each batch size says whether it is per process)',
  },
  nnodes: { mayChangeOnResume: true, type: 'int', default: 1, min: 1, help: 'machines taking part (each runs the same command with its own --node-rank)' },
  nodeRank: { mayChangeOnResume: true, type: 'int', default: 0, min: 0, help: 'this machine\'s index among --nnodes' },
  masterAddr: { mayChangeOnResume: true, type: 'string', default: '127.0.0.1', help: 'address of node 0, where rank 0 hosts the rendezvous' },
  masterPort: {
    mayChangeOnResume: true, type: 'int', default: 0, min: 0, max: 65535,
    help: 'rendezvous port on node 0 (0: a free port with one node, 29500 with several)',
  },
});

/** How data-parallel training commands (pretrain, finetune) synchronise gradients. */
export const GRAD_SYNC_OPTIONS = defineOptions({
  gradCompress: {
    mayChangeOnResume: true, type: 'string', default: 'none', choices: ['none', 'fp16', 'bf16'],
    help: "data-parallel: all-reduce the gradients in fp16 or bf16 (half the bytes on the wire, DDP's compress hooks; bf16 on the CPU needs libtorch >= 2.2)",
  },
});

/** Refuses, before any work, a --grad-compress that the backend the device implies cannot sum. */
export function checkGradSync(o: { gradCompress: string; device: string }): void {
  const why = compressionRefusal(o.gradCompress as GradCompression, backendFor(o.device));
  if (why) throw new OptionError('gradCompress', why);
}

/** The launcher's option values (LAUNCH_OPTIONS keys). */
export interface LaunchFlags {
  nprocPerNode?: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
}

const FLAGS = ['nproc-per-node', 'nnodes', 'node-rank', 'master-addr', 'master-port'];

/** The launcher's options from parsed option values (LAUNCH_OPTIONS keys). */
export function launchOptionsFrom(o: LaunchFlags): LaunchOptions {
  const port = Number(o.masterPort ?? 0);
  return {
    nprocPerNode: Number(o.nprocPerNode ?? 1),
    nnodes: Number(o.nnodes ?? 1),
    nodeRank: Number(o.nodeRank ?? 0),
    masterAddr: String(o.masterAddr ?? '127.0.0.1'),
    masterPort: port > 0 ? port : undefined,
  };
}

/** argv without the launcher's own flags (each with its value, as one argument joined by = or as two), as the workers get it. */
export function stripLaunchFlags(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const name = a.startsWith('--') ? a.slice(2).split('=')[0].replace(/_/g, '-') : '';
    if (FLAGS.includes(name)) {
      if (!a.includes('=')) i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

/** A TCP port free on addr right now. */
export function freePort(addr = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, addr, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

interface Worker {
  rank: number;
  localRank: number;
  /** Null when its spawn threw (no process was started). */
  child: ChildProcess | null;
  tail: string[];
  exited: boolean;
  closed: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  exitOrder: number;
  /** Found stopped (SIGSTOP, Ctrl-Z, a debugger) when another worker failed. */
  stalled: boolean;
  /** Sent SIGTERM (or SIGKILL) by the launcher because another worker failed: a death by it is not a cause. */
  stoppedByLauncher: boolean;
  /** Some line of its output said it failed because of another rank (REPEATS_ANOTHER): it only repeats that failure. */
  repeatsAnother: boolean;
}

/** Whether a process is stopped (state T or t in /proc/<pid>/stat; false where /proc is not). */
function isStopped(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]);
  } catch {
    return false;
  }
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGTERM: 15, SIGKILL: 9, SIGHUP: 1 };

/** The rendezvous port of several machines when --master-port is not given (torchrun's). */
export const MULTI_NODE_PORT = 29500;

/**
 * Starts the workers and resolves when all have exited. Prints (on stderr) which rank failed, with its
 * last lines, when one does. The caller sets its exit code from the result.
 */
export async function launchWorkers(argv: string[], o: LaunchOptions): Promise<LaunchResult> {
  const nproc = o.nprocPerNode;
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  if (!Number.isInteger(nproc) || nproc < 1) throw new RangeError(`launch: --nproc-per-node must be a positive integer, got ${nproc}`);
  if (!Number.isInteger(nnodes) || nnodes < 1) throw new RangeError(`launch: --nnodes must be a positive integer, got ${nnodes}`);
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) {
    throw new RangeError(`launch: --node-rank must be in [0, ${nnodes - 1}] (--nnodes ${nnodes}), got ${nodeRank}`);
  }
  if (o.masterPort !== undefined && !(Number.isInteger(o.masterPort) && o.masterPort >= 1 && o.masterPort <= 65535)) {
    throw new RangeError(`launch: --master-port must be an integer in [1, 65535] (leave it out for a free port), got ${o.masterPort}`);
  }
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (nnodes === 1 ? await freePort(masterAddr) : MULTI_NODE_PORT);
  const script = o.script ?? process.argv[1];
  const execArgv = o.execArgv ?? process.execArgv;
  const graceMs = o.killGraceMs ?? 15_000;
  const tailLines = o.tailLines ?? 20;
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const workerArgv = stripLaunchFlags(argv);
  const worldSize = nproc * nnodes;

  const workers: Worker[] = [];
  let exits = 0;
  let stopping: 'failure' | NodeJS.Signals | null = null;
  let killTimer: NodeJS.Timeout | null = null;

  const live = (): Worker[] => workers.filter((w) => !w.exited);
  const stopAll = (signal: NodeJS.Signals): void => {
    for (const w of live()) {
      if (stopping === 'failure') w.stoppedByLauncher = true;
      if (!w.child) continue;
      signalChild(w.child, signal);
      // a stopped worker (SIGSTOP, a debugger) would take the signal only when continued: at once, not at the SIGKILL
      // (after a failure), nor never (after a forwarded signal, which no SIGKILL follows)
      if (w.stalled || isStopped(w.child.pid)) signalChild(w.child, 'SIGCONT');
    }
    // SIGKILL after the grace period only after a failure: a signal forwarded to the workers asks each to stop
    // after its step and checkpoint, which may take longer (a second signal, forwarded too, makes them exit at once)
    if (stopping === 'failure' && !killTimer) {
      killTimer = setTimeout(() => { for (const w of live()) if (w.child) signalChild(w.child, 'SIGKILL'); }, graceMs);
      killTimer.unref();
    }
  };
  // A worker that failed only because another did (it names that rank, or saw it go away) leaves that
  // one a moment to exit by itself, so that the cause is the worker named, with its own exit code; a
  // SIGTERM sent at once to a worker already exiting with its error made it look stopped by us.
  let consequenceTimer: NodeJS.Timeout | null = null;
  const stopAfterFailure = (): void => {
    if (stopping !== null) return;
    stopping = 'failure';
    // a worker that stopped running leaves the others to time out in their collectives: name it
    for (const x of live()) x.stalled = isStopped(x.child?.pid);
    stopAll('SIGTERM');
  };
  const onFailure = (w: Worker): void => {
    if (stopping !== null) return;
    if (!w.repeatsAnother) stopAfterFailure();
    else consequenceTimer ??= setTimeout(stopAfterFailure, CONSEQUENCE_GRACE_MS);
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping === null) stopping = signal;
    stopAll(signal);
  };
  const onSigint = (): void => onSignal('SIGINT');
  const onSigterm = (): void => onSignal('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);

  const done = new Promise<void>((resolve) => {
    let allStarted = false;
    const resolveWhenClosed = (): void => {
      if (allStarted && workers.every((x) => x.closed)) resolve();
    };
    for (let localRank = 0; localRank < nproc; localRank++) {
      const rank = nodeRank * nproc + localRank;
      let child: ChildProcess;
      try {
        child = spawn(process.execPath, [...execArgv, script, ...workerArgv], {
          stdio: ['ignore', 'pipe', 'pipe'],
          // their own process group: a terminal's Ctrl-C (sent to the whole foreground group) reaches the
          // launcher alone, which forwards it once; twice would be "exit at once, without a checkpoint"
          detached: true,
          env: {
            ...(o.env ?? process.env),
            RANK: String(rank), LOCAL_RANK: String(localRank), WORLD_SIZE: String(worldSize),
            LOCAL_WORLD_SIZE: String(nproc), GROUP_RANK: String(nodeRank), GROUP_WORLD_SIZE: String(nnodes),
            ROLE_RANK: String(rank), ROLE_WORLD_SIZE: String(worldSize),
            MASTER_ADDR: masterAddr, MASTER_PORT: String(masterPort),
            SEMAIM_LAUNCHER_PID: String(process.pid), // a worker stops when its launcher is gone (orphan-watch.ts)
          },
        });
      } catch (e) {
        // spawn throws, with no process and no events, for errors other than EACCES, EAGAIN, EMFILE, ENFILE and ENOENT
        // (ENOMEM from fork on a machine short of memory while the first workers load): a failure as of a worker whose
        // spawn failed later, which stops the workers started before it; the ranks after it are not started
        const w: Worker = { rank, localRank, child: null, tail: [`launch: cannot start the worker: ${(e as Error).message}`], exited: true, closed: true, code: null, signal: null, exitOrder: ++exits, stalled: false, stoppedByLauncher: false, repeatsAnother: false };
        workers.push(w);
        onFailure(w);
        break;
      }
      const w: Worker = { rank, localRank, child, tail: [], exited: false, closed: false, code: null, signal: null, exitOrder: 0, stalled: false, stoppedByLauncher: false, repeatsAnother: false };
      workers.push(w);
      // every line is looked at, not only those kept for the report (tailLines may be few, or none)
      const judge = (line: string): void => {
        if (REPEATS_ANOTHER.test(line)) w.repeatsAnother = true;
      };
      forward(child.stdout, rank === 0 ? null : `[rank ${rank}] `, stdout, w.tail, tailLines, judge);
      forward(child.stderr, rank === 0 ? null : `[rank ${rank}] `, stderr, w.tail, tailLines, judge);
      child.on('error', (e) => {
        w.tail.push(`launch: cannot start the worker: ${e.message}`);
        // a worker that never started (spawn failed: EAGAIN, ENOENT) has no 'exit': it failed, judged at 'close'
        if (child.pid === undefined && !w.exited) {
          w.exited = true;
          w.exitOrder = ++exits;
        }
      });
      child.on('exit', (code, signal) => {
        w.exited = true;
        w.code = code;
        w.signal = signal;
        w.exitOrder = ++exits;
        // judged when its output is read to the end ('close'), or a second from now if that takes longer
        if (failedWorker(w)) setTimeout(() => onFailure(w), 1000).unref();
      });
      child.on('close', () => {
        w.closed = true;
        if (w.exited && failedWorker(w)) onFailure(w);
        resolveWhenClosed();
      });
    }
    allStarted = true;
    resolveWhenClosed();
  });
  try {
    await done;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    if (killTimer) clearTimeout(killTimer);
    if (consequenceTimer) clearTimeout(consequenceTimer);
  }

  const failed = workers.filter(failedWorker);
  const signalled = stopping !== null && stopping !== 'failure' ? stopping : null;
  // Stopped by the launcher's signal: a worker killed by it, or ending with 0, 130 or 143, stopped as asked. One that
  // exited with another code of its own accord failed while it stopped (its checkpoint could not be written), and so
  // did one killed by another signal (the OOM killer's SIGKILL: the launcher sends none after a signal): that is
  // reported as any failure, not hidden behind 128 + signal, which says that every rank stopped cleanly.
  const failedStopping = signalled ? failed.filter((w) => w.signal !== signalled && !w.repeatsAnother).sort((a, b) => a.exitOrder - b.exitOrder) : [];
  if (signalled && failedStopping.length === 0) {
    return { exitCode: 128 + (SIGNAL_NUMBERS[signalled] ?? 1), failedRank: null, message: null };
  }
  if (failed.length === 0) {
    // a worker's own signal stopped the run (every rank at the same step): the command's code, 130 / 143
    const stopped = workers.find((w) => w.code !== 0);
    return { exitCode: stopped?.code ?? 0, failedRank: null, message: null };
  }
  // (a worker stopped by its signal first may be the cause)
  const first = failedStopping[0] ?? rootCause(workers.filter((w) => w.code !== 0 || w.signal));
  const stalled = workers.find((w) => w.stalled);
  const culprit = stalled ?? first;
  const how = (w: Worker): string =>
    w.child?.pid === undefined ? 'could not be started' : w.signal ? `was killed by ${w.signal}` : `exited with code ${w.code}`;
  const which = (w: Worker): string => `rank ${w.rank} (node ${nodeRank}, local rank ${w.localRank}${w.child?.pid === undefined ? '' : `, pid ${w.child.pid}`})`;
  const others = workers.length - 1;
  const tail = (w: Worker): string =>
    `last ${Math.min(tailLines, w.tail.length)} lines of rank ${w.rank}:\n` + (w.tail.length ? w.tail.map((l) => `  | ${l}`).join('\n') : '  (no output)') + '\n';
  const message = stalled
    ? `launch: ${which(stalled)} had stopped running ` +
      `(process state T: SIGSTOP, Ctrl-Z or a debugger) when rank ${first.rank} ${how(first)}, most likely after waiting for it until the timeout; ` +
      `stopped the other ${others} worker${others > 1 ? 's' : ''} on this node.\n${tail(first)}`
    : `launch: ${which(culprit)} ${how(culprit)}` +
      (signalled ? ` while stopping on ${signalled}` : others > 0 ? `; stopped the other ${others} worker${others > 1 ? 's' : ''} on this node` : '') +
      `.\n${tail(culprit)}`;
  stderr.write(message);
  return { exitCode: !culprit.stalled && culprit.code && culprit.code > 0 ? culprit.code : 1, failedRank: culprit.rank, message };
}

/**
 * Whether a worker that exited failed. Exit codes 130 and 143 are a command stopped by SIGINT / SIGTERM
 * after its checkpoint (src/run/signals.ts): a signal that reached one worker alone (a `kill` of its pid,
 * a scheduler) stops every rank of a training run at the same step, and the others end by themselves
 * moments later, so they are let be rather than stopped as after a failure (which killed rank 0 while it
 * reported the stop). A worker killed by a signal (no handler) is a failure.
 */
function failedWorker(w: Worker): boolean {
  return w.signal !== null || (w.code !== 0 && w.code !== 130 && w.code !== 143);
}

/**
 * The worker whose failure caused the others': the first to exit, passing over workers whose output
 * says they only saw a peer go away (they fail right after it, sometimes in the same instant).
 */
function rootCause(failed: Worker[]): Worker {
  const byTime = [...failed].sort((a, b) => a.exitOrder - b.exitOrder);
  // a worker that died of the launcher's own SIGTERM / SIGKILL, or ended with 130 / 143 on it (a training
  // worker's checkpoint and exit), was stopped because of another's failure
  return byTime.find((w) => (w.signal || !failedWorker(w) ? !w.stoppedByLauncher : !w.repeatsAnother)) ?? byTime[0];
}

/** How long the launcher waits, after a worker failed because of another, for that other to exit by itself. */
const CONSEQUENCE_GRACE_MS = 3000;

/** A line of a worker that failed because of another rank (that one could not start, or went away). */
const REPEATS_ANOTHER = /ERR_DIST_PEER|ERR_DIST_START|another rank exited|could not start:|rank \d+ of \d+ failed:/;

/** Copies a worker's stream to ours (prefixing each line, except for rank 0), keeps its last lines and shows each line to onLine. */
function forward(
  src: NodeJS.ReadableStream | null,
  prefix: string | null,
  dst: NodeJS.WritableStream,
  tail: string[],
  keep: number,
  onLine: (line: string) => void,
): void {
  if (!src) return;
  let partial = '';
  const remember = (line: string): void => {
    const l = line.replace(/\s+$/, '');
    if (!l) return;
    onLine(l);
    tail.push(l);
    if (tail.length > keep) tail.shift();
  };
  src.setEncoding('utf8');
  src.on('data', (chunk: string) => {
    const text = partial + chunk;
    const lines = text.split(/\r?\n|\r/);
    partial = lines.pop() ?? '';
    for (const l of lines) remember(l);
    if (prefix === null) {
      dst.write(chunk);
    } else {
      const complete = text.slice(0, text.length - partial.length);
      if (complete) dst.write(complete.replace(/^(?=.)/gm, prefix));
    }
  });
  src.on('end', () => {
    remember(partial);
    if (prefix !== null && partial) dst.write(`${prefix}${partial}\n`);
    partial = '';
  });
}
