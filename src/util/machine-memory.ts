// The memory this process may use: the machine's, or the container's (cgroup) limit when it is lower.
// A check against the machine's total inside a container with a smaller limit would pass, and the
// kernel's OOM killer would stop the run later without a word.
import { totalmem } from 'node:os';
import { formatBytes } from './disk-space';

export interface MachineMemory {
  bytes: number;
  /** "this machine's 31.3 GiB of memory" or "this container's limit of 8.0 GiB", for messages. */
  describe: string;
}

/** `limit`: the cgroup limit as process.constrainedMemory() gives it (0, or a huge number, when there is none). */
export function machineMemory(limit: number = process.constrainedMemory?.() ?? 0, total: number = totalmem()): MachineMemory {
  if (limit > 0 && limit < total) return { bytes: limit, describe: `this container's limit of ${formatBytes(limit)}` };
  return { bytes: total, describe: `this machine's ${formatBytes(total)} of memory` };
}
