// Errors a library caller can switch on by `code` (README "Errors"): a cancelled job.

/** A job stopped by its AbortSignal. `cause` is the signal's reason (what `controller.abort(reason)` was given). */
export class AbortError extends Error {
  readonly code = 'ERR_ABORTED';
  constructor(reason?: unknown) {
    super(reason instanceof Error && reason.name !== 'AbortError' ? reason.message : 'the job was aborted', { cause: reason });
    this.name = 'AbortError';
  }
}

/** Throws an AbortError when `signal` has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined | null): void {
  if (signal?.aborted) throw new AbortError(signal.reason);
}
