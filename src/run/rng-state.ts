// The global random generators a resumed run must continue: the CPU one always, and on a GPU the
// default CUDA generator of the training device (draws without an explicit generator there, e.g.
// a Dropout, come from it). Stored in checkpoints as 'rng.global' and 'rng.cuda'.
import * as torch from '../torch';
import type { Tensor } from '../torch';
import { cudaIndex } from './device';

/** New tensors with the generator states (the caller disposes them after writing the checkpoint). */
export function globalRngStates(device: torch.Device): Map<string, Tensor> {
  const states = new Map<string, Tensor>([['rng.global', torch.getRngState()]]);
  const cuda = cudaIndex(device);
  if (cuda !== null) states.set('rng.cuda', torch.cuda.getRngState(cuda));
  return states;
}

/** Restores what globalRngStates saved (a checkpoint from a CPU run has no CUDA state: that one stays as it is). */
export function restoreGlobalRngStates(extra: Map<string, Tensor>, device: torch.Device): void {
  const cpu = extra.get('rng.global');
  if (cpu) torch.setRngState(cpu);
  const cuda = cudaIndex(device);
  const cudaState = extra.get('rng.cuda');
  if (cuda !== null && cudaState) torch.cuda.setRngState(cudaState, cuda);
}
