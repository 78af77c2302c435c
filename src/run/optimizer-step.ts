// One optimiser update once a step's gradients are accumulated, as pretrain and finetune both do it:
// unscale (fp16 loss scaling), clip, step, scaler update, clear the gradients, update the EMA copy.
import type { Tensor } from '../torch';
import { GradScaler, ParamsLike, ScalableOptimizer, clipGradNorm, gradNorm } from '../optim';

export interface OptimizerStepOptions {
  optimizer: ScalableOptimizer & { zeroGrad(): void };
  scaler: GradScaler | null;
  params: ParamsLike;
  /** Global-norm clipping threshold; 0 = no clipping. */
  clipGrad: number;
  ema?: { update(): void } | null;
  /** Also measure the gradient norm when not clipping (clipping always measures it). */
  measureNorm?: boolean;
  /** Clear the gradients after the update (default); false leaves them for a replayed CUDA graph to overwrite. */
  clearGrads?: boolean;
}

/** Returns the gradient norm before clipping (a 0-d tensor, not read back), or null when not measured. */
export function optimizerStep(o: OptimizerStepOptions): Tensor | null {
  if (o.scaler) o.scaler.unscale_(o.optimizer);
  const norm = o.clipGrad > 0 ? clipGradNorm(o.params, o.clipGrad) : o.measureNorm ? gradNorm(o.params) : null;
  if (o.scaler) o.scaler.step(o.optimizer);
  else o.optimizer.step();
  o.scaler?.update();
  if (o.clearGrads !== false) o.optimizer.zeroGrad();
  o.ema?.update();
  return norm;
}
