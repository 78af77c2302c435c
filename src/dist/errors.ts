// Errors of distributed work: the codes the addon gives them (native/dist.cc), and the same
// classification for failures that surface elsewhere (a gradient all-reduce failing inside backward).

/**
 * The `code` of a distributed failure: ERR_DIST_PEER (another rank exited or closed its connection),
 * ERR_DIST_TIMEOUT (not every rank joined in time), ERR_DIST_START (another rank could not start) or ERR_DIST.
 */
export type DistErrorCode = 'ERR_DIST' | 'ERR_DIST_PEER' | 'ERR_DIST_TIMEOUT' | 'ERR_DIST_START';

/** An Error from a collective or the process group, with its code, the operation and this rank's place; test with {@link isDistError}. */
export interface DistError extends Error {
  code: DistErrorCode;
  /** The operation that failed, e.g. 'allReduce' or 'backward (gradient all-reduce)'. */
  op: string;
  rank: number;
  worldSize: number;
}

/** Whether `e` is a distributed failure: an Error whose `code` starts with ERR_DIST (the addon's, or one that distError() made). */
export function isDistError(e: unknown): e is DistError {
  const code = e instanceof Error ? (e as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('ERR_DIST');
}

/** The code a libtorch / Gloo / NCCL message deserves (the same rules as the addon's). */
export function classifyDistMessage(message: string): DistErrorCode {
  if (/imed out|timeout/i.test(message)) return 'ERR_DIST_TIMEOUT';
  if (/closed by peer|reset by peer|Broken pipe|Connection refused|Connection closed|EOF/.test(message)) return 'ERR_DIST_PEER';
  return 'ERR_DIST';
}

/**
 * Whether an error of work that waits for collectives inside it (backward, with the Reducer's gradient
 * all-reduce) is a collective's failure: another rank gone, a timeout, or the backend's own error (Gloo's
 * and NCCL's name them). Anything else (autograd's, an allocation) is this rank's own error.
 */
export function isCollectiveFailure(message: string): boolean {
  return classifyDistMessage(message) !== 'ERR_DIST' || /gloo|nccl/i.test(message);
}

/** A DistError for a failure of `op` on this rank, keeping the original message. */
export function distError(op: string, rank: number, worldSize: number, backend: string, cause: unknown): DistError {
  const message = cause instanceof Error ? cause.message : String(cause);
  const code = classifyDistMessage(message);
  const hint = code === 'ERR_DIST_PEER' ? ' [another rank exited, was killed or closed the process group: see that rank\'s output]'
    : code === 'ERR_DIST_TIMEOUT' ? ' [not every rank joined in time: a rank is stuck, much slower, dead, or calls collectives in a different order]' : '';
  const err = new Error(`dist.${op} failed on rank ${rank} of ${worldSize} (${backend}): ${message}${hint}`, { cause }) as DistError;
  err.code = code;
  err.op = op;
  err.rank = rank;
  err.worldSize = worldSize;
  return err;
}
