// Training runs at a fixed input size, so on a GPU cuDNN may time its convolution algorithms once per
// shape and keep the fastest (torch.backends.cudnn.benchmark; the authors' scripts turn it on).
import * as torch from '../torch';
import { JobSetting } from '../util/job-setting';

const autotuning = new JobSetting(
  () => torch.backends.cudnn.benchmark,
  (on) => {
    torch.backends.cudnn.benchmark = on;
  },
);

/** Turns cuDNN autotuning on for a CUDA device; returns a function that restores the previous setting (see JobSetting). */
export function cudnnAutotune(device: torch.Device): () => void {
  if (!device.startsWith('cuda')) return () => {};
  return autotuning.enter(true);
}
