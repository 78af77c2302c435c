// Whether a --device value can be used on this machine, checked before any work starts; and where a
// process of a data-parallel run computes (its GPU, its share of the CPU cores).
import { availableParallelism } from 'node:os';
import * as torch from '../torch';
import { OptionError } from '../util/options';
// (the model layer checks a device too, and may not import this layer)
import { checkDevice } from '../torch/check-device';
export { checkDevice };
import { readDistEnv, type ProcessGroup } from '../dist';

/** The CUDA device index of 'cuda' (0) or 'cuda:N'; null for the CPU. */
export function cudaIndex(device: string): number | null {
  if (!device.startsWith('cuda')) return null;
  const i = device.split(':')[1];
  return i === undefined ? 0 : Number(i);
}

/**
 * Refuses a CUDA --device that `processes` processes on one machine cannot share: under NCCL each takes
 * a GPU of its own, cuda:<local rank>, so 'cuda:N' (one GPU named for all) and more processes than
 * `gpus()` are refused before any starts (the workers would start and then fail in NCCL: "invalid device
 * ordinal" at group init, or "Duplicate GPU detected" at the first collective).
 */
export function checkGpuShare(device: string, processes: number, gpus: () => number = () => torch.cuda.deviceCount()): void {
  if (cudaIndex(device) === null || processes <= 1) return;
  if (device.includes(':')) {
    throw new OptionError(
      'device',
      `${device} names one GPU for all ${processes} processes on this machine: give --device cuda, and process i trains on cuda:i`,
    );
  }
  const n = gpus();
  if (processes > n) {
    throw new OptionError(
      'nprocPerNode',
      `${processes} processes on this machine's ${n === 1 ? '1 CUDA device' : `${n} CUDA devices`}: each process trains on a GPU of its own (NCCL), so start at most ${n}`,
    );
  }
}

/** The device this process computes on: its group's GPU under NCCL, else the one asked for (checked). */
export function processDevice(requested: string, group: ProcessGroup | null): torch.Device {
  return group?.backend === 'nccl' ? group.device : checkDevice(requested);
}

/** Sets libtorch's CPU threads: as asked, else this machine's cores shared among the processes on it. */
export function setProcessThreads(threads: number | undefined): void {
  torch.setNumThreads(threads ?? Math.max(1, Math.floor(availableParallelism() / (readDistEnv()?.localWorldSize ?? 1))));
}

// The thread counts of the jobs running now, in the order they started, and the caller's count from
// before the first of them: jobs may run at once in one process (and runFinetune runs finetune inside it).
const jobThreads: { count: number }[] = [];
let callerThreads = 0;

/**
 * Runs a job with setProcessThreads(threads), then gives libtorch back the thread count it had: the
 * setting is process-wide, and a library caller's own torch.setNumThreads must survive the job. With
 * jobs at once the caller's count comes back when the last ends; a job that ends before another leaves
 * the count of the latest started that still runs (not the count it found, which that job had set).
 */
export async function withProcessThreads<T>(threads: number | undefined, job: () => Promise<T>): Promise<T> {
  if (jobThreads.length === 0) callerThreads = torch.getNumThreads();
  setProcessThreads(threads);
  const mine = { count: torch.getNumThreads() };
  jobThreads.push(mine);
  try {
    return await job();
  } finally {
    jobThreads.splice(jobThreads.indexOf(mine), 1);
    torch.setNumThreads(jobThreads.length > 0 ? jobThreads[jobThreads.length - 1].count : callerThreads);
  }
}
