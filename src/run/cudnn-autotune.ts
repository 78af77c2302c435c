// Training runs at a fixed input size, so on a GPU cuDNN may time its convolution algorithms once per
// shape and keep the fastest (torch.backends.cudnn.benchmark; the authors' scripts turn it on).
import * as torch from '../torch';

/** Turns cuDNN autotuning on for a CUDA device; returns a function that restores the previous setting. */
export function cudnnAutotune(device: torch.Device): () => void {
  if (!device.startsWith('cuda')) return () => {};
  const was = torch.backends.cudnn.benchmark;
  torch.backends.cudnn.benchmark = true;
  return () => {
    torch.backends.cudnn.benchmark = was;
  };
}
