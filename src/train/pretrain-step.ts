// The forward and backward of one SemAIM pre-training micro-batch in the form a CUDA graph can capture
// (`semaim pretrain --cuda-graphs`, bench:pretrain's graph rows): it reads only tensors allocated before
// it (images, order noise), writes its loss into one (lossOut), and issues no host read or upload. The
// optimiser update follows outside.
import * as torch from '../torch';
import type { SemAIM, VisionTransformer } from '../semaim';
import { withPrecision, type Precision } from '../run/precision';
import { CudaGraphStep } from '../run/cuda-graph-step';

export interface StepTensors {
  images: torch.Tensor;
  /** U(0,1) order noise [B, N] (read only by orders that draw noise). */
  noise: torch.Tensor;
  /** A 0-d float32 tensor that receives the step's loss. */
  lossOut: torch.Tensor;
}

export interface StepSettings {
  precision: Precision;
  orderPrecision: Precision;
  device: torch.Device;
  /** The EMA encoder, for orders whose similarity map comes from it. */
  ema?: VisionTransformer;
}

export function forwardBackward(model: SemAIM, t: StepTensors, o: StepSettings): void {
  torch.scope(() => {
    const { order } = withPrecision(o.orderPrecision, o.device, () => model.makeOrder(t.images, { noise: t.noise, ema: o.ema }));
    const out = withPrecision(o.precision, o.device, () => model.forward(t.images, order));
    out.loss.backward();
    torch.noGrad(() => t.lossOut.copy_(out.loss.detach().float()));
  });
}

export interface GraphStepSettings extends StepSettings {
  /** Eager runs before the capture (cuBLAS/cuDNN workspaces and autotuning happen there). */
  warmup: number;
  /** Sets every gradient to none. */
  clearGrads: () => void;
  /** false: run every step eagerly through the same static tensors (CudaGraphStepOptions.capture). */
  capture: boolean;
}

/**
 * `pretrain --cuda-graphs`'s micro-batch: the static images, noise and loss tensors are made at the first
 * batch (the loader gives every batch that shape: it drops the last partial one), each batch is copied
 * into them, and the step is captured after `warmup` eager runs and replayed after that.
 */
export class StaticPretrainStep {
  private tensors: StepTensors | null = null;
  private graph: CudaGraphStep | null = null;

  constructor(
    private readonly model: SemAIM,
    private readonly o: GraphStepSettings,
  ) {}

  /** Whether the step runs as a captured graph now (its gradients then live in the graph's buffers). */
  get captured(): boolean {
    return this.graph?.captured ?? false;
  }

  /** Forward and backward of one batch; returns the static loss tensor (overwritten by the next run). */
  run(images: torch.Tensor, noise?: torch.Tensor): torch.Tensor {
    if (!this.tensors) {
      const device = this.o.device;
      const t: StepTensors = {
        images: torch.keep(torch.zeros(images.shape, { dtype: images.dtype, device })),
        noise: torch.keep(torch.zeros([images.shape[0], this.model.numPatches], { device })),
        lossOut: torch.keep(torch.zeros([], { device })),
      };
      this.tensors = t;
      this.graph = new CudaGraphStep(() => forwardBackward(this.model, t, this.o), {
        warmup: this.o.warmup,
        clearGrads: this.o.clearGrads,
        inputs: { images: t.images, noise: t.noise },
        capture: this.o.capture,
      });
    }
    this.graph!.setInputs(noise ? { images, noise } : { images });
    this.graph!.run();
    return this.tensors.lossOut;
  }

  dispose(): void {
    this.graph?.dispose();
    this.graph = null;
    for (const t of Object.values(this.tensors ?? {})) t.dispose();
    this.tensors = null;
  }
}
