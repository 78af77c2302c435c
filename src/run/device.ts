// Whether a --device value can be used on this machine, checked before any work starts; and where a
// process of a data-parallel run computes (its GPU, its share of the CPU cores).
import { availableParallelism } from 'node:os';
import * as torch from '../torch';
import { OptionError } from '../util/options';
// (the model layer checks a device too, and may not import this layer)
import { checkDevice } from '../torch/check-device';
export { checkDevice };
import { readDistEnv, type ProcessGroup } from '../dist';
import { JobSetting } from '../util/job-setting';

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

/** libtorch's CPU threads for a job: as asked, else this machine's cores shared among the processes on it. */
export function processThreads(threads: number | undefined): number {
  return threads ?? Math.max(1, Math.floor(availableParallelism() / (readDistEnv()?.localWorldSize ?? 1)));
}

const threadCount = new JobSetting(
  () => torch.getNumThreads(),
  (n) => torch.setNumThreads(n),
);

/**
 * Runs a job with libtorch's CPU threads at processThreads(threads), then gives back the count it had:
 * the setting is process-wide, and a library caller's own torch.setNumThreads must survive the job
 * (with jobs at once, the last to end gives it back; see JobSetting).
 */
export async function withProcessThreads<T>(threads: number | undefined, job: () => Promise<T>): Promise<T> {
  return threadCount.during(processThreads(threads), job);
}
