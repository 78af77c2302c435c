// Random seeding: the global generator (also seeds CUDA) and independent CPU generators.
import { native, NativeGenerator } from './native';
import { Tensor, wrap } from './tensor';

/** Seeds the global generators of every device. */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** The global CPU generator's state, as a uint8 tensor (store it in checkpoints). */
export function getRngState(): Tensor {
  return wrap(native.getRngState());
}

/** Restores the global CPU generator from a state saved by {@link getRngState}. Like torch.set_rng_state. */
export function setRngState(state: Tensor): void {
  native.setRngState(state.h);
}

/** An independent random stream; pass it to rand/randn/randperm/uniform_/normal_. */
export class Generator {
  readonly native: NativeGenerator;
  /** Seeded with `seed` (an integer in the int64 range, checked as manualSeed checks it), or libtorch's default seed. */
  constructor(seed?: number) {
    this.native = new native.Generator();
    if (seed !== undefined) this.manualSeed(seed);
  }
  manualSeed(seed: number): this {
    this.native.seed(seed);
    return this;
  }
  getState(): Tensor {
    return wrap(this.native.getState());
  }
  setState(state: Tensor): void {
    this.native.setState(state.h);
  }
}
