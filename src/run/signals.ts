// SIGINT/SIGTERM during a run: the first asks the loop to stop at the next step boundary, after a
// checkpoint, and the command then exits with the signal's code (130 / 143, as a shell reports a
// process killed by it); a second one exits at once.

import { AbortedOnAnotherRank } from '../util/errors';
import type { NativeAddon } from '../torch/native';
import { stderrLine } from '../util/console-line';
import { onProcessEvent } from '../util/process-events';

/** The signals that stop a run at its next step boundary: SIGINT (exit code 130) and SIGTERM (143). */
export type StopSignal = 'SIGINT' | 'SIGTERM';

/** A stop flag a training run checks at every step boundary (LoopHooks.stop; catchStopSignals sets it on SIGINT/SIGTERM). */
export interface StopRequest {
  requested: boolean;
  /** The signal that asked (absent when a caller set `requested` itself). */
  signal?: StopSignal;
}

/** The exit code of a process stopped by `signal`: 128 + its number. */
export function signalExitCode(signal: StopSignal | undefined): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

/** A repeat of the first signal within this time is the same request, delivered twice. */
export const SAME_SIGNAL_MS = 1000;

type StopSignalExit = Pick<NativeAddon, 'armStopSignalExit' | 'disarmStopSignalExit'>;
let stopSignalExit: StopSignalExit | null | undefined;

/**
 * The addon's C handler that exits on a second signal when it arrives: JS listeners run only when the
 * event loop turns, so two signals seconds apart during a step reach them back to back, as one signal
 * delivered twice. Null where the addon cannot be loaded or predates it (the JS listener alone then).
 */
function nativeStopSignalExit(): StopSignalExit | null {
  if (stopSignalExit === undefined) {
    try {
      const { native } = require('../torch/native') as { native: Partial<StopSignalExit> };
      const { armStopSignalExit: arm, disarmStopSignalExit: disarm } = native;
      stopSignalExit = typeof arm === 'function' && typeof disarm === 'function' ? { armStopSignalExit: arm, disarmStopSignalExit: disarm } : null;
    } catch {
      stopSignalExit = null;
    }
  }
  return stopSignalExit;
}

/**
 * Sets `stop.requested` on SIGINT/SIGTERM until the returned function is called (once is enough; again
 * does nothing); a second signal exits, at once even while a step blocks the event loop (the addon's
 * handler). The same signal again within SAME_SIGNAL_MS of its arrival counts as one: a terminal's
 * Ctrl-C reaches every process of its group, and a launcher (torchrun) forwards it to its workers as well.
 */
export function catchStopSignals(
  stop: StopRequest,
  log: (line: string) => void = stderrLine,
  o: { stopping?: string; onStop?: (signal: StopSignal) => void } = {},
): () => void {
  let first = 0;
  const onSignal = (signal: StopSignal): void => {
    if (stop.requested && stop.signal === signal && Date.now() - first < SAME_SIGNAL_MS) return;
    if (stop.requested && stop.signal) {
      log(`${signal} again: exiting now, without a checkpoint of this step`);
      process.exit(signalExitCode(signal));
    }
    stop.requested = true;
    stop.signal = signal;
    first = Date.now();
    log(`${signal}: ${o.stopping ?? 'stopping after this step and its checkpoint'} (send it again to exit at once)`);
    o.onStop?.(signal);
  };
  const stopListening = [onProcessEvent('SIGINT', onSignal), onProcessEvent('SIGTERM', onSignal)];
  // After process.on, so that the C handler chains to libuv's; released before process.off, so that
  // libuv's handler is back in place when libuv removes it. The addon counts nested catchers.
  const exitNow = nativeStopSignalExit();
  exitNow?.armStopSignalExit(SAME_SIGNAL_MS);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    exitNow?.disarmStopSignalExit();
    for (const off of stopListening) off();
  };
}

/** The exit code of a training command: 0 when it finished or reached --max-steps, 1 after a NaN/Inf loss, 130/143 after a signal. */
export function runExitCode(r: { stoppedBy: string; signal?: StopSignal }): number {
  if (r.stoppedBy === 'signal') return signalExitCode(r.signal);
  return r.stoppedBy === 'nonfinite' ? 1 : 0;
}

/** A job stopped by a signal; the command exits with `exitCode` (130 / 143). */
export class StoppedBySignal extends Error {
  readonly exitCode: number;
  constructor(
    message: string,
    readonly signal?: StopSignal,
  ) {
    super(message);
    this.name = 'StoppedBySignal';
    this.exitCode = signalExitCode(signal);
  }
}

/**
 * Runs a job with nothing to checkpoint (an evaluation, an embedding) with SIGINT/SIGTERM turned into an
 * abort of the signal it is given: the job stops at its next check and writes no result, and it rejects
 * with StoppedBySignal, so that the command exits with 130 / 143 rather than dying by the signal, which a
 * launcher reports as a failed worker. A rank that stops because another rank was stopped (AbortedOnAnotherRank)
 * rejects the same way. A second signal exits at once.
 */
export async function abortOnStopSignals<T>(
  job: (signal: AbortSignal) => Promise<T>,
  log?: (line: string) => void,
  stopping = 'stopping at the next batch; this job writes no result',
): Promise<T> {
  const controller = new AbortController();
  const release = catchStopSignals({ requested: false }, log, {
    stopping,
    onStop: (signal) => controller.abort(new StoppedBySignal(`stopped by ${signal}; no result was written: run the same command again`, signal)),
  });
  try {
    return await job(controller.signal);
  } catch (e) {
    if (controller.signal.aborted && (e as Error)?.name === 'AbortError') throw controller.signal.reason;
    if (e instanceof AbortedOnAnotherRank) throw new StoppedBySignal(`${e.message}; no result was written: run the same command again`, e.signal);
    throw e;
  } finally {
    release();
  }
}
