// Mixed precision as the commands spell it: 'fp32' (off), 'bf16' or 'fp16' autocast on the device
// type of the tensors involved (master weights stay float32).
import * as torch from '../torch';
import { cudaIndex } from './device';
import { OptionError } from '../util/options';

/** Mixed precision as the commands spell it: 'fp32' (no autocast), 'bf16' or 'fp16' autocast (fp16 needs CUDA); master weights stay float32. */
export type Precision = 'fp32' | 'bf16' | 'fp16';

/**
 * What `--precision auto` means: fp32 on the CPU; on a GPU bf16 autocast where it has bf16 tensor
 * cores (compute capability 8.0 on: A100, H100, RTX 30xx…), else fp16 with loss scaling (V100, T4).
 */
export function autoPrecision(o: { device?: unknown }, capability: (index: number) => number | null = cudaMajor): Precision {
  const index = cudaIndex(String(o.device ?? 'cpu'));
  if (index === null) return 'fp32';
  const major = capability(index);
  return major !== null && major < 8 ? 'fp16' : 'bf16';
}

/** A command's --precision option: `help` says what runs in that precision; 'auto' is resolved by autoPrecision from --device. */
export function precisionOption<const H extends string>(help: H) {
  return { type: 'string', default: 'auto', choices: ['auto', 'fp32', 'bf16', 'fp16'], auto: autoPrecision, help } as const;
}

/** The compute capability's major version of a CUDA device, or null when it cannot be read (no CUDA here). */
function cudaMajor(index: number): number | null {
  try {
    return torch.cuda.isAvailable() ? torch.cuda.getDeviceProperties(index).major : null;
  } catch {
    return null;
  }
}

/** Throws an OptionError for 'precision' when it cannot run on `device`: fp16 (with loss scaling) is CUDA-only. */
export function checkPrecision(precision: unknown, device: unknown): void {
  if (precision === 'fp16' && !String(device).startsWith('cuda')) throw new OptionError('precision', 'fp16 needs a CUDA device (use bf16 or fp32 on CPU)');
}

/** Runs fn under the autocast that `precision` names for `device` ('fp32': as it is). */
export function withPrecision<T>(precision: Precision | string, device: torch.Device, fn: () => T): T {
  if (precision !== 'bf16' && precision !== 'fp16') return fn();
  return torch.autocast({ device: torch.deviceType(device), dtype: precision === 'fp16' ? 'float16' : 'bfloat16' }, fn);
}
