// The global random generators' states (the CPU one and each GPU's default one, all of which
// torch.manualSeed seeds), saved and given back: how the weight loaders and the jobs leave a program's
// own random stream as they found it.
import { cuda } from './ops';
import { getRngState, setRngState } from './random';
import type { Tensor } from './tensor';

/** The saved states; {@link restoreGlobalRng} sets them back and frees them. */
export interface GlobalRngStates {
  cpu: Tensor;
  cuda: Tensor[];
}

/** The global generators' states now. */
export function saveGlobalRng(): GlobalRngStates {
  const gpus = cuda.isAvailable() ? cuda.deviceCount() : 0;
  return { cpu: getRngState(), cuda: Array.from({ length: gpus }, (_, i) => cuda.getRngState(i)) };
}

/** Sets the global generators back to `saved`, and frees it. */
export function restoreGlobalRng(saved: GlobalRngStates): void {
  try {
    setRngState(saved.cpu);
    saved.cuda.forEach((state, i) => cuda.setRngState(state, i));
  } finally {
    saved.cpu.dispose();
    for (const t of saved.cuda) t.dispose();
  }
}

/**
 * Runs `build` (synchronous) and gives the global generators back the states they had: for a module
 * built only to take loaded weights, whose constructors' random init would otherwise use up draws of
 * the program's stream.
 */
export function sparingGlobalRng<T>(build: () => T): T {
  const saved = saveGlobalRng();
  try {
    return build();
  } finally {
    restoreGlobalRng(saved);
  }
}
