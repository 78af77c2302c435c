// Whether a --device value can be used on this machine, checked before any work starts (the jobs and
// the model loaders call it: a device the machine lacks is an option error, not a torch error midway).
import * as torch from './index';
import { OptionError } from '../util/options';

/** The device, checked: throws an OptionError for 'device' unless it is 'cpu', or 'cuda'/'cuda:N' with CUDA and device N present. */
export function checkDevice(device: string): torch.Device {
  const m = /^(cpu|cuda)(?::(\d+))?$/.exec(device);
  if (!m || (m[1] === 'cpu' && m[2] !== undefined)) throw new OptionError('device', `must be cpu, cuda or cuda:N, got '${device}'`);
  if (m[1] === 'cpu') return 'cpu';
  if (!torch.cuda.isAvailable()) {
    throw new OptionError(
      'device',
      `${device}: CUDA is not available (this libtorch has no CUDA or the machine no GPU; \`semaim info\` shows what there is)`,
      undefined,
      'ERR_DEVICE_UNAVAILABLE',
    );
  }
  const n = torch.cuda.deviceCount();
  if (m[2] !== undefined && Number(m[2]) >= n)
    throw new OptionError(
      'device',
      `${device}: there ${n === 1 ? 'is 1 CUDA device' : `are ${n} CUDA devices`} (cuda:0${n > 1 ? `…cuda:${n - 1}` : ''})`,
      undefined,
      'ERR_DEVICE_UNAVAILABLE',
    );
  return m[2] === undefined ? 'cuda' : `cuda:${Number(m[2])}`;
}
