// Mixed precision as the commands spell it: 'fp32' (off), 'bf16' or 'fp16' autocast on the device
// type of the tensors involved (master weights stay float32).
import * as torch from '../torch';

export type Precision = 'fp32' | 'bf16' | 'fp16';

/** What `--precision auto` means: bf16 autocast on a GPU (Ampere or newer; older GPUs: pass fp16), fp32 on the CPU. */
export function autoPrecision(o: { device?: unknown }): Precision {
  return String(o.device ?? 'cpu').startsWith('cuda') ? 'bf16' : 'fp32';
}

/** Runs fn under the autocast that `precision` names for `device` ('fp32': as it is). */
export function withPrecision<T>(precision: Precision | 'auto' | string, device: torch.Device, fn: () => T): T {
  if (precision === 'auto') precision = autoPrecision({ device });
  if (precision !== 'bf16' && precision !== 'fp16') return fn();
  return torch.autocast({ device: device.startsWith('cuda') ? 'cuda' : 'cpu', dtype: precision === 'fp16' ? 'float16' : 'bfloat16' }, fn);
}
