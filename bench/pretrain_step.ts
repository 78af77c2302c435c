// The forward and backward of one SemAIM pre-training step as bench/pretrain_worker.ts runs it, in the
// form a CUDA graph can capture: it reads only tensors allocated before it (images, order noise), writes
// its loss into one (lossOut), and issues no host read or upload. The optimiser update follows outside.
import * as torch from '../src/torch';
import type { SemAIM } from '../src/semaim';
import { withPrecision, type Precision } from '../src/run/precision';

export interface StepTensors {
  images: torch.Tensor;
  /** U(0,1) order noise [B, N]. */
  noise: torch.Tensor;
  /** A 0-d float32 tensor that receives the step's loss. */
  lossOut: torch.Tensor;
}

export function forwardBackward(model: SemAIM, t: StepTensors, o: { precision: Precision; orderPrecision: Precision; device: torch.Device }): void {
  torch.scope(() => {
    const { order } = withPrecision(o.orderPrecision, o.device, () => model.makeOrder(t.images, { noise: t.noise }));
    const out = withPrecision(o.precision, o.device, () => model.forward(t.images, order));
    out.loss.backward();
    torch.noGrad(() => t.lossOut.copy_(out.loss.detach().float()));
  });
}
