// Errors a library caller can switch on by `code` (README "Errors"): a cancelled job, a checkpoint or
// encoder file that cannot be used, data that cannot be opened, an optional package that is missing. The messages stay those the
// command line prints; the code says what kind of problem it is.

import { yieldToEventLoop } from './event-loop';

/** A job stopped by its AbortSignal. `cause` is the signal's reason (what `controller.abort(reason)` was given). */
export class AbortError extends Error {
  readonly code = 'ERR_ABORTED';
  constructor(reason?: unknown) {
    super(reason instanceof Error && reason.name !== 'AbortError' ? reason.message : 'the job was aborted', { cause: reason });
    this.name = 'AbortError';
  }
}

/** The AbortError of a data-parallel rank whose own signal was not aborted: another rank's was. */
export class AbortedOnAnotherRank extends AbortError {
  /** The signal that stopped the other rank, when one did (this rank then exits with its code). */
  signal?: 'SIGINT' | 'SIGTERM';
}

/** Throws an AbortError when `signal` has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined | null): void {
  if (signal?.aborted) throw new AbortError(signal.reason);
}

/**
 * throwIfAborted between the steps of synchronous work: the event loop turns first, so that a SIGINT
 * that came during the last step has reached its handler (which aborts `signal`).
 */
export async function yieldThenThrowIfAborted(signal: AbortSignal | undefined | null): Promise<void> {
  if (!signal) return;
  await yieldToEventLoop();
  throwIfAborted(signal);
}

/**
 * A checkpoint, encoder or weights file that cannot be used: 'ERR_CHECKPOINT' when it is missing,
 * unreadable, corrupt or of the wrong kind; 'ERR_CHECKPOINT_MISMATCH' when its tensors do not fit the
 * model its config describes (shapes, blocks, names); 'ERR_CHECKPOINT_CHANGED' when it was removed or
 * replaced after it was checked (a run writing to the folder rotated it): running again takes what is there then.
 */
export class CheckpointError extends Error {
  constructor(
    message: string,
    readonly code: 'ERR_CHECKPOINT' | 'ERR_CHECKPOINT_MISMATCH' | 'ERR_CHECKPOINT_CHANGED' = 'ERR_CHECKPOINT',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CheckpointError';
  }
}

/** Data that cannot be opened: a missing or unreadable folder or archive, no images in it, splits whose classes differ. */
export class DataError extends Error {
  readonly code = 'ERR_DATA';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DataError';
  }
}

/**
 * An optional npm package that a function needs is not installed, or is incomplete (`packageName`):
 * code 'ERR_MISSING_PACKAGE'. Installing it is the remedy; nothing else is wrong.
 */
export class MissingPackageError extends Error {
  readonly code = 'ERR_MISSING_PACKAGE';
  constructor(
    readonly packageName: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'MissingPackageError';
  }
}

/** Whether `e` already carries one of the library's codes (it is passed on as it is). */
function hasLibraryCode(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_');
}

/**
 * Whether `e` says what is wrong with a file or folder: a plain Error (the readers' own messages), a
 * SyntaxError (JSON) or a system error (ENOENT, EACCES, ...). A TypeError or RangeError from deep
 * inside is a bug, and is passed on as it is.
 */
function describesInput(e: unknown): e is Error {
  if (!(e instanceof Error) || hasLibraryCode(e)) return false;
  if (e.constructor === Error || e.constructor === SyntaxError) return true;
  return typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

/**
 * Runs `fn`, turning an error that describes its input (a missing file's ENOENT, a corrupt header's
 * plain Error) into `wrap(message, error)`: the same message, the error itself as `cause`.
 */
export function withErrorKind<T>(fn: () => T, wrap: (message: string, cause: unknown) => Error): T {
  try {
    return fn();
  } catch (e) {
    if (!describesInput(e)) throw e;
    throw wrap(e.message, e);
  }
}

/** The CheckpointError ('ERR_CHECKPOINT') for an error of reading a checkpoint or weights file. */
export const checkpointError = (message: string, cause: unknown): CheckpointError => new CheckpointError(message, 'ERR_CHECKPOINT', { cause });

/** The DataError for an error of opening data. */
export const dataError = (message: string, cause: unknown): DataError => new DataError(message, { cause });
