// SIGINT/SIGTERM during a run: the first asks the loop to stop at the next step boundary, after a
// checkpoint, and the command then exits with the signal's code (130 / 143, as a shell reports a
// process killed by it); a second one exits at once.

import { afterProgress } from './progress';

export type StopSignal = 'SIGINT' | 'SIGTERM';

export interface StopRequest {
  requested: boolean;
  /** The signal that asked (absent when a caller set `requested` itself). */
  signal?: StopSignal;
}

/** The exit code of a process stopped by `signal`: 128 + its number. */
export function signalExitCode(signal: StopSignal | undefined): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

/** Sets `stop.requested` on SIGINT/SIGTERM until the returned function is called; a second signal exits. */
export function catchStopSignals(stop: StopRequest, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): () => void {
  const onSignal = (signal: StopSignal): void => {
    if (stop.requested && stop.signal) {
      log(`${afterProgress()}${signal} again: exiting now, without a checkpoint of this step`);
      process.exit(signalExitCode(signal));
    }
    stop.requested = true;
    stop.signal = signal;
    log(`${afterProgress()}${signal}: stopping after this step and its checkpoint (send it again to exit at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
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
