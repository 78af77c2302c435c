// A worker whose launcher is gone stops as on SIGTERM (a checkpoint, then exit 143). torchrun's agent
// killed with SIGKILL sets no parent-death signal: its workers were reparented and trained on for as
// long as the run lasted, holding the run folder's lock. semaim's own launcher marks its workers with
// SEMAIM_LAUNCHER_PID. A worker started by hand (RANK etc. set by a script, e.g. under nohup) is not
// watched: its parent may end on purpose.

import { stopAsOnSigterm, stopWhenOutputCloses } from '../util/closed-output';
import { stderrLine } from '../util/console-line';

/** How often a worker looks for its launcher. */
export const LAUNCHER_CHECK_MS = 1000;

/** The launcher's pid when a launcher (torchrun or semaim's) started this process, else null. */
export function launcherPid(env: NodeJS.ProcessEnv = process.env, ppid = process.ppid): number | null {
  const ours = env.SEMAIM_LAUNCHER_PID !== undefined && env.SEMAIM_LAUNCHER_PID === String(ppid);
  return ours || env.TORCHELASTIC_RUN_ID !== undefined ? ppid : null;
}

/**
 * Sends this process SIGTERM once its launcher is no longer its parent (the run's stop handlers then
 * write a checkpoint and exit 143; before they are installed, SIGTERM ends the process). Returns the
 * function that stops watching.
 */
export function stopWhenLauncherDies(o: { env?: NodeJS.ProcessEnv; intervalMs?: number; onGone?: () => void } = {}): () => void {
  const launcher = launcherPid(o.env);
  if (launcher === null) return () => {};
  stopWhenOutputCloses(); // semaim's launcher holds this worker's stdout and stderr: gone, they fail with EPIPE
  const timer = setInterval(() => {
    if (process.ppid === launcher) return;
    clearInterval(timer);
    stderrLine(`semaim: the launcher (pid ${launcher}) is gone: stopping this worker as on SIGTERM`);
    (o.onGone ?? stopAsOnSigterm)();
  }, o.intervalMs ?? LAUNCHER_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
