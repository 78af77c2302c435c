// The training run that test/dist/ddp.test.ts compares between 1 process × batch 2b (the reference,
// run inside the test) and 2 processes × batch b (test/dist/workers/ddp.ts): a seeded model in float64,
// a seeded global batch per step of which each rank takes its rows, micro-batches for gradient
// accumulation, global-norm clipping and AdamW.
import * as torch from '../../../src/torch';
import type { Tensor } from '../../../src/torch';
import { Module, Linear, LayerNorm } from '../../../src/nn';
import { AdamW, clipGradNorm } from '../../../src/optim';
import { SemAIM, makeConfig } from '../../../src/semaim';
import { mulberry32 } from '../../../src/util/prng';

export type CaseModel = 'mlp' | 'semaim';

/** A small MLP with a LayerNorm and a buffer used in forward (so that the buffer broadcast matters). */
class SmallNet extends Module {
  readonly fc1 = this.module('fc1', new Linear(8, 16));
  readonly norm = this.module('norm', new LayerNorm(16));
  readonly fc2 = this.module('fc2', new Linear(16, 4));
  readonly scale: Tensor;
  constructor() {
    super();
    this.scale = this.buffer('scale', torch.rand([16]).add(0.5));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.fc2.forward(this.norm.forward(this.fc1.forward(x)).mul(this.scale).tanh()));
  }
}

export interface Model {
  module: Module;
  /** Mean loss over rows [from, to) of step `step`'s global batch. */
  loss(step: number, from: number, to: number): Tensor;
}

function seeded(shape: number[], seed: number): Tensor {
  const r = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return torch.tensor(Float64Array.from({ length: n }, () => r() * 2 - 1), { dtype: 'float64', shape });
}

/** The model with the global RNG seeded by `seed` (ranks pass different seeds: DDP must make them equal). */
export function buildModel(kind: CaseModel, seed: number, globalBatch: number): Model {
  torch.manualSeed(seed);
  if (kind === 'mlp') {
    const net = new SmallNet();
    net.to({ dtype: 'float64' });
    return {
      module: net,
      loss: (step, from, to) => torch.scope(() => {
        const x = seeded([globalBatch, 8], 1000 + step).narrow(0, from, to - from);
        const y = seeded([globalBatch, 4], 2000 + step).narrow(0, from, to - from);
        return net.forward(x).sub(y).square().mean();
      }),
    };
  }
  const cfg = makeConfig('vit_tiny', { embedDim: 32, depth: 2, numHeads: 2, decoderDepth: 2, imgSize: 16, patchSize: 4 });
  const model = new SemAIM(cfg).initWeights();
  model.to({ dtype: 'float64' });
  const N = (16 / 4) ** 2;
  return {
    module: model,
    loss: (step, from, to) => torch.scope(() => {
      const images = seeded([globalBatch, 3, 16, 16], 3000 + step).narrow(0, from, to - from);
      const noise = seeded([globalBatch, N], 4000 + step).add(1).div(2).narrow(0, from, to - from);
      const { order } = model.makeOrder(images, { noise });
      return model.forward(images, order).loss;
    }),
  };
}

export interface CaseResult {
  /** Each step's loss over this process's rows (the mean of its micro-batch losses). */
  losses: number[];
  /** Gradients of step 1 before clipping, by parameter name. */
  grads: Record<string, number[]>;
  /** Parameters and buffers after the last step. */
  params: Record<string, number[]>;
}

/**
 * `steps` optimiser steps on rows [from, to) of each global batch, split into `accum` micro-batches;
 * backward(loss, last) runs each micro-batch's backward (last: the final micro-batch of the step).
 */
export function train(m: Model, o: { steps: number; from: number; to: number; accum: number; backward: (loss: Tensor, last: boolean) => void }): CaseResult {
  const named = [...m.module.namedParameters()];
  const opt = new AdamW(named, { lr: 0.01, betas: [0.9, 0.95], weightDecay: 0.05 });
  const losses: number[] = [];
  let grads: Record<string, number[]> = {};
  const micro = (o.to - o.from) / o.accum;
  for (let s = 0; s < o.steps; s++) {
    let sum = 0;
    for (let k = 0; k < o.accum; k++) {
      const loss = m.loss(s, o.from + k * micro, o.from + (k + 1) * micro);
      sum += loss.item();
      const scaled = loss.div(o.accum);
      o.backward(scaled, k === o.accum - 1);
      scaled.dispose();
      loss.dispose();
    }
    losses.push(sum / o.accum);
    if (s === 0) {
      grads = Object.fromEntries(named.map(([n, p]) => {
        const g = p.grad as Tensor;
        try { return [n, Array.from(g.toFloat64Array())]; } finally { g.dispose(); }
      }));
    }
    clipGradNorm(named, 0.5).dispose();
    opt.step();
    opt.zeroGrad();
  }
  opt.dispose();
  const params = Object.fromEntries([...m.module.namedParameters(), ...m.module.namedBuffers()].map(([n, t]) => [n, Array.from(t.toFloat64Array())]));
  return { losses, grads, params };
}
