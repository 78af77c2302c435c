// A rank that fails after the start (a full disk at a checkpoint write, an exception in the middle of
// training) tells the others why: they see only that its connection closed, and its output is on its
// own machine. It posts its error at the rendezvous store before it closes its backend; the others,
// whose collective then fails, read it there and stop with `rank R of N failed: <its message>`.
import type { ProcessGroup, RankFailure } from './process-group';
import { DistError, isDistError } from './errors';

/**
 * How long rank 0's process, which serves the store, keeps it up after a failure until every other rank
 * has left (read the reason, or ended otherwise). A rank killed with SIGKILL never says it left: this
 * bounds the wait for it.
 */
export const LATE_FAILURE_WAIT_MS = 30_000;

/**
 * The failure a rank posts for the others: its own error, or null for one that only repeats another
 * rank's (a DistError: a closed connection, a timeout, ranks that disagree, another that could not
 * start) and for a stop that every rank makes together (a signal, an abort).
 */
export function ownFailure(e: unknown, describe: (e: unknown) => string): { message: string; code?: string } | null {
  if (!isOwnError(e) || told.has(e as object)) return null;
  const code = (e as { code?: unknown }).code;
  return { message: describe(e), ...(typeof code === 'string' && { code }) };
}

/** Whether `e` is this rank's own error: not a DistError (one that repeats another rank's), not a stop (a signal, an abort). */
export function isOwnError(e: unknown): boolean {
  if (e === null || e === undefined || isDistError(e)) return false;
  const name = (e as { name?: unknown }).name;
  return name !== 'AbortError' && name !== 'StoppedBySignal';
}

/** Errors the other ranks have already (prepareOnEveryRank gave them this rank's reason): not posted again. */
const told = new WeakSet<object>();

/** Marks `e`, this rank's own error, as one every other rank has already been given. */
export function markToldOtherRanks(e: unknown): void {
  if (typeof e === 'object' && e !== null) told.add(e);
}

/**
 * `e`, or, when it is a collective that failed because another rank went away (ERR_DIST_PEER, ERR_DIST)
 * and that rank posted why, an ERR_DIST_PEER DistError `rank R of N failed: <its message>` (the
 * collective's error as its cause).
 */
export async function withFailedRanksReason(group: ProcessGroup, e: unknown): Promise<unknown> {
  if (!isDistError(e) || (e.code !== 'ERR_DIST_PEER' && e.code !== 'ERR_DIST')) return e;
  const late = await group.lateFailure().catch(() => null);
  return late ? failedRankError(group, late, e) : e;
}

function failedRankError(group: ProcessGroup, late: RankFailure, cause: DistError): DistError {
  const code = late.code && !late.message.includes(late.code) ? ` (${late.code})` : '';
  const err = new Error(`rank ${late.rank} of ${group.worldSize} failed: ${late.message}${code}`, { cause }) as DistError;
  err.code = 'ERR_DIST_PEER';
  err.op = cause.op;
  err.rank = group.rank;
  err.worldSize = group.worldSize;
  return err;
}
