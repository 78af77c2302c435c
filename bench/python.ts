// The Python the benchmarks' PyTorch sides run with: $SEMAIM_PYTHON, else Debian's python3 with its torch
// (on a GPU host, the Python with the CUDA torch: scripts/find-torch-python.sh).
import type { SpawnSyncReturns } from 'node:child_process';

export const PY = process.env.SEMAIM_PYTHON || '/usr/bin/python3';

/**
 * Throws when a spawnSync'd side could not run at all (no such Python: ENOENT; more output than maxBuffer:
 * ENOBUFS): it has no status and no stderr to report, only this reason.
 */
export function throwIfNotRun(r: SpawnSyncReturns<string>, command: string[]): void {
  if (r.error) throw new Error(`${command.join(' ')} failed: ${r.error.message}${command[0] === PY ? ' (SEMAIM_PYTHON names the Python with torch)' : ''}`);
}
