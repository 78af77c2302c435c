// The global random generators as a library caller left them, kept across a job. The jobs seed them
// (torch.manualSeed from their `seed` option, for weights and probes that are the same in every run),
// build models whose constructors draw from them, and a resumed run sets them from its checkpoint; the
// program's own stream must go on after the job as if the job had not run.
import { restoreGlobalRng, saveGlobalRng, type GlobalRngStates } from '../torch/global-rng';

// Jobs may run at once in one process (and runFinetune runs finetune inside it): the first to start
// saves the caller's states and the last to end gives them back, not each job the states the one
// started before it had left.
let jobsRunning = 0;
let callerRng: GlobalRngStates | null = null;

/** Runs `job`, then gives the global CPU and CUDA generators back the states they had when it (or the first of the jobs running at once) began. */
export async function keepCallerRng<T>(job: () => Promise<T>): Promise<T> {
  if (jobsRunning === 0) callerRng = saveGlobalRng();
  jobsRunning++;
  try {
    return await job();
  } finally {
    if (--jobsRunning === 0) {
      const saved = callerRng!;
      callerRng = null;
      restoreGlobalRng(saved);
    }
  }
}
