// Data-parallel training: where this process's batch sits in the global batch. Per-sample random
// draws inside the model (drop-path masks) are made for the whole global batch and each rank keeps
// its rows, so N processes × batch b draw exactly what 1 process × batch N·b would. The training loop
// sets it for the run (src/run/loop.ts); outside data-parallel training it is rank 0 of 1.
import { JobSetting } from '../util/job-setting';

/** This process's place in data-parallel training: its rank among worldSize processes, each holding an equal share of the global batch. */
export interface BatchSlice {
  rank: number;
  worldSize: number;
}

let current: BatchSlice = { rank: 0, worldSize: 1 };
const runsSlice = new JobSetting<BatchSlice>(
  () => current,
  (s) => {
    current = s;
  },
);

/** The current {@link BatchSlice} (rank 0 of 1 unless {@link setBatchSlice} set one); DropPath reads it. */
export function batchSlice(): BatchSlice {
  return current;
}

/**
 * Sets the slice for a run that begins now; returns the function to call when it ends. Runs of one process may
 * end in any order: the slice then is that of the latest started still running, or the caller's once none is.
 */
export function setBatchSlice(s: BatchSlice): () => void {
  if (!(Number.isInteger(s.worldSize) && s.worldSize >= 1 && Number.isInteger(s.rank) && s.rank >= 0 && s.rank < s.worldSize)) {
    throw new RangeError(`setBatchSlice: rank ${s.rank} of ${s.worldSize} is not a place in a world`);
  }
  return runsSlice.enter({ ...s });
}
