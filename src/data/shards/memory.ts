// The memory of the shuffle buffers (stream.ts): each loader worker holds up to --shuffle-buffer
// encoded images, so shards of large images × a large buffer × many workers could exhaust the
// machine, and the OS would kill the run without a word. The buffers of a loader share a budget:
// half of this machine's memory (or of the container's limit) per process on it, or
// SEMAIM_SHUFFLE_MEMORY. A loader whose buffers would hold more at the shards' mean sample size is
// refused before its first batch; a buffer that holds more than its share while running (shards of
// images larger than the mean) stops the epoch with a DataError naming the sample.

import { formatBytes } from '../../util/disk-space';
import { machineMemory } from '../../util/machine-memory';

export const SHUFFLE_MEMORY_ENV = 'SEMAIM_SHUFFLE_MEMORY';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

export interface MemoryBudget {
  bytes: number;
  /** Where the figure comes from, for messages. */
  source: string;
}

/** The budget of a loader's shuffle buffers: $SEMAIM_SHUFFLE_MEMORY (bytes, or with K/M/G/T), else half of the memory per local process. */
export function shuffleMemoryBudget(env: NodeJS.ProcessEnv = process.env): MemoryBudget {
  const v = env[SHUFFLE_MEMORY_ENV]?.trim();
  if (v) {
    const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(v);
    if (!m) throw new Error(`${SHUFFLE_MEMORY_ENV}=${v}: give a number of bytes, e.g. 8G or 512M`);
    return { bytes: Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]), source: SHUFFLE_MEMORY_ENV };
  }
  const mem = machineMemory();
  const local = Number(env.LOCAL_WORLD_SIZE);
  const procs = Number.isInteger(local) && local > 1 ? local : 1;
  return {
    bytes: Math.floor(mem.bytes / 2 / procs),
    source: `half of ${mem.describe}${procs > 1 ? `, shared by its ${procs} processes` : ''}`,
  };
}

export interface ShuffleEstimate {
  /** Buffers alive at once (one per worker; 1 on the main thread). */
  buffers: number;
  /** Samples a buffer holds at most. */
  held: number;
  /** Mean bytes per sample of the shards (their file sizes over their samples). */
  mean: number;
  bytes: number;
}

/** What the buffers of a loader hold at most, at the shards' mean sample size (capped by the image member cap). */
export function estimateShuffleMemory(
  entries: readonly { bytes: number; samples: number }[],
  held: number,
  buffers: number,
  maxImageBytes: number,
): ShuffleEstimate {
  let bytes = 0;
  let samples = 0;
  for (const e of entries) {
    if (e.samples <= 0) continue;
    bytes += e.bytes;
    samples += e.samples;
  }
  const mean = samples > 0 ? Math.min(bytes / samples, maxImageBytes) : 0;
  return { buffers, held, mean, bytes: mean * held * buffers };
}

/** Why an estimate does not fit a budget, and what does (null when it fits); `shuffleBuffer` undefined: the command has no --shuffle-buffer. */
export function shuffleMemoryProblem(e: ShuffleEstimate, budget: MemoryBudget, shuffleBuffer: number | undefined): string | null {
  if (e.bytes <= budget.bytes) return null;
  const fitBuffer = Math.max(1, Math.floor(budget.bytes / e.buffers / e.mean));
  const fitWorkers = Math.floor(budget.bytes / (e.mean * e.held));
  const remedies = [
    ...(shuffleBuffer !== undefined ? [`--shuffle-buffer ${fitBuffer} or less (${shuffleBuffer} now)`] : []),
    ...(e.buffers > 1 && fitWorkers >= 1 ? [`--num-workers ${fitWorkers} (${e.buffers} now)`] : []),
    `a larger ${SHUFFLE_MEMORY_ENV} if the machine has the memory`,
  ];
  return (
    `the shuffle buffers would hold about ${formatBytes(e.bytes)} of encoded images (${e.buffers} worker${e.buffers === 1 ? '' : 's'} × ` +
    `${e.held} samples × ${formatBytes(e.mean)}, the shards' mean sample size), more than their budget of ${formatBytes(budget.bytes)} ` +
    `(${budget.source}). Use ${remedies.join(', or ')}`
  );
}
