// The global random generators as a library caller left them, kept across a job. The jobs seed them
// (torch.manualSeed from their `seed` option, for weights and probes that are the same in every run),
// build models whose constructors draw from them, and a resumed run sets them from its checkpoint; the
// program's own stream must go on after the job as if the job had not run.
import * as torch from '../torch';
import type { Tensor } from '../torch';

interface GlobalRng {
  cpu: Tensor;
  /** The default CUDA generator of each device (torch.manualSeed seeds them all). */
  cuda: Tensor[];
}

function saveGlobalRng(): GlobalRng {
  const gpus = torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0;
  return { cpu: torch.getRngState(), cuda: Array.from({ length: gpus }, (_, i) => torch.cuda.getRngState(i)) };
}

function restoreGlobalRng(saved: GlobalRng): void {
  torch.setRngState(saved.cpu);
  saved.cuda.forEach((state, i) => torch.cuda.setRngState(state, i));
  saved.cpu.dispose();
  for (const t of saved.cuda) t.dispose();
}

// Jobs may run at once in one process (and runFinetune runs finetune inside it): the first to start
// saves the caller's states and the last to end gives them back, not each job the states the one
// started before it had left.
let jobsRunning = 0;
let callerRng: GlobalRng | null = null;

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
