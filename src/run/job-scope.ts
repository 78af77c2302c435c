// What every job (pretrain, the evaluations, embed, predict) does around its work in a caller's process:
// libtorch's CPU threads as asked, and afterwards the caller's thread count and global random streams
// as they were (the job seeds the generators and builds models that draw from them).
import { withProcessThreads } from './device';
import { keepCallerRng } from './caller-rng';

/** Runs `job` with processThreads(threads), then gives back the caller's thread count and random generators' states. */
export function inJobScope<T>(threads: number | undefined, job: () => Promise<T>): Promise<T> {
  return withProcessThreads(threads, () => keepCallerRng(job));
}
