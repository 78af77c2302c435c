// The folder a job writes its outputs into, made for it and taken back when the job fails (stopped by a
// signal, say) before writing there: a new folder is not left behind empty. Only the folders this call
// made are removed, deepest first, and only while empty (rmdir): never one that was there, nor one that
// holds anything.
import { rmdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { makeFolder } from './make-folder';

/** Makes `dir` and its missing parents, then runs `job`; if it fails, removes again those it made that are still empty. */
export async function inOutputFolder<T>(dir: string, job: () => Promise<T>): Promise<T> {
  const takeBack = makeOutputFolder(dir);
  try {
    return await job();
  } catch (e) {
    takeBack();
    throw e;
  }
}

/**
 * Makes `dir` and its missing parents, as inOutputFolder, for a job that cannot run inside it (one that
 * releases its lock beside the outputs in its own `finally`): call the returned function when the job
 * failed, after that release, to remove again those it made that are still empty.
 */
export function makeOutputFolder(dir: string): () => void {
  const first = makeFolder(dir);
  return () => {
    if (first !== undefined) removeEmpty(resolve(dir), resolve(first));
  };
}

/** Removes `dir`, then its parents up to `top`, stopping at the first that is not empty (or not there). */
function removeEmpty(dir: string, top: string): void {
  for (let d = dir; d.startsWith(top); d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return;
    }
    if (d === top) return;
  }
}
