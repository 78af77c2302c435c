// Basic layers, following torch.nn's names, shapes and default initialisation.
import * as torch from '../torch';
import { F, Tensor, fused } from '../torch';
import { Module } from './module';
import { batchSlice } from './batch-slice';
import { defaultBiasInit_, defaultWeightInit_, fans } from './init';

/** The dtype (default float32) and device (default: torch's default device) of a layer's new parameters and buffers. */
export interface LayerOptions {
  dtype?: torch.DType;
  device?: torch.Device;
}

function empty(shape: number[], o: LayerOptions): Tensor {
  return torch.empty(shape, { dtype: o.dtype ?? 'float32', device: o.device });
}

/** A layer whose forward returns its input itself (the same Tensor). Like torch.nn.Identity. */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/**
 * y = x · weightᵀ + bias, weight [outFeatures, inFeatures], initialised as PyTorch does. Like
 * torch.nn.Linear, with bias (default true), dtype and device in an options object.
 */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LayerOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.param('weight', defaultWeightInit_(empty([outFeatures, inFeatures], opts)));
    if (opts.bias ?? true) {
      this.bias = this.param('bias', defaultBiasInit_(empty([outFeatures], opts), inFeatures));
    } else {
      this.bias = null;
    }
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

/**
 * Layer normalization over the last dimension, of size dim, with weight 1 and bias 0 unless affine
 * is false. Like torch.nn.LayerNorm, but the normalized shape is one number and elementwise_affine is `affine` in the options.
 */
export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    opts: LayerOptions & { affine?: boolean } = {},
  ) {
    super();
    const affine = opts.affine ?? true;
    this.weight = affine ? this.param('weight', empty([dim], opts).fill_(1)) : null;
    this.bias = affine ? this.param('bias', empty([dim], opts).fill_(0)) : null;
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, [this.dim], this.weight, this.bias, this.eps);
  }
}

/**
 * 2-D convolution with a square kernelSize×kernelSize kernel, initialised as PyTorch does. Like
 * torch.nn.Conv2d, with stride (default 1), padding (0), groups (1) and bias (true) as single numbers
 * in an options object; no dilation or padding_mode.
 */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly opts: LayerOptions & { stride?: number; padding?: number; groups?: number; bias?: boolean } = {},
  ) {
    super();
    if (!Number.isInteger(kernelSize) || kernelSize < 1) throw new RangeError(`Conv2d: kernelSize must be a positive integer, got ${kernelSize}`);
    const groups = opts.groups ?? 1;
    if (!Number.isInteger(groups) || groups < 1) throw new RangeError(`Conv2d: groups must be a positive integer, got ${groups}`);
    if (inChannels % groups !== 0) throw new RangeError(`Conv2d: in_channels must be divisible by groups (${inChannels} channels, ${groups} groups)`);
    if (outChannels % groups !== 0) throw new RangeError(`Conv2d: out_channels must be divisible by groups (${outChannels} channels, ${groups} groups)`);
    this.weight = this.param('weight', defaultWeightInit_(empty([outChannels, inChannels / groups, kernelSize, kernelSize], opts)));
    if (opts.bias ?? true) {
      this.bias = this.param('bias', defaultBiasInit_(empty([outChannels], opts), fans(this.weight)[0]));
    } else {
      this.bias = null;
    }
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, { stride: this.opts.stride ?? 1, padding: this.opts.padding ?? 0, groups: this.opts.groups ?? 1 });
  }
}

/**
 * BatchNorm over [N, C] (or [N, C, L]; other ranks are refused, as PyTorch refuses them); affine=false gives the linear probe's parameter-free norm.
 * In training, one value per channel ([1, C], [1, C, 1]) is refused, as PyTorch refuses it. momentum (default 0.1) null keeps a cumulative
 * average of the batch statistics (factor 1/num_batches_tracked), as PyTorch's momentum=None.
 */
export class BatchNorm1d extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  readonly numBatchesTracked: Tensor;
  constructor(
    readonly numFeatures: number,
    readonly opts: LayerOptions & { eps?: number; momentum?: number | null; affine?: boolean } = {},
  ) {
    super();
    const affine = opts.affine ?? true;
    this.weight = affine ? this.param('weight', empty([numFeatures], opts).fill_(1)) : null;
    this.bias = affine ? this.param('bias', empty([numFeatures], opts).fill_(0)) : null;
    this.runningMean = this.buffer('running_mean', empty([numFeatures], opts).fill_(0));
    this.runningVar = this.buffer('running_var', empty([numFeatures], opts).fill_(1));
    this.numBatchesTracked = this.buffer('num_batches_tracked', torch.zeros([], { dtype: 'int64', device: opts.device }));
  }
  forward(x: Tensor): Tensor {
    // as PyTorch's _check_input_dim: [N, C, H, W] would be normalised per channel as BatchNorm2d
    if (x.ndim !== 2 && x.ndim !== 3) throw new RangeError(`BatchNorm1d: expected 2D or 3D input (got ${x.ndim}D input)`);
    let momentum = this.opts.momentum ?? 0.1;
    if (this.training) {
      // before the count: a refused batch is no batch tracked
      F.checkBatchNormSize(x, 'BatchNorm1d');
      torch.noGrad(() => this.numBatchesTracked.add_(1));
      // PyTorch's momentum=None: the cumulative average (null was taken as the default 0.1)
      if (this.opts.momentum === null) momentum = 1 / Number(this.numBatchesTracked.item());
    }
    return F.batchNorm(x, this.runningMean, this.runningVar, {
      weight: this.weight,
      bias: this.bias,
      training: this.training,
      momentum,
      eps: this.opts.eps ?? 1e-5,
    });
  }
}

/** Zeroes elements with probability p (default 0.5) while training, scaling the rest by 1/(1-p); in eval mode returns x. Like torch.nn.Dropout. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    checkProbability('Dropout', p);
  }
  forward(x: Tensor): Tensor {
    return this.p > 0 && this.training ? F.dropout(x, this.p, true) : x;
  }
}

/** A drop probability is refused when built, as PyTorch's: a negative one turned dropout off, and p > 1 failed only at the first training step. */
function checkProbability(layer: string, p: number): void {
  if (!(typeof p === 'number' && p >= 0 && p <= 1)) throw new RangeError(`${layer}: p must be a probability in [0, 1], got ${String(p)}`);
}

/**
 * Stochastic depth per sample (timm's DropPath): drops the whole residual branch of a sample. The masks
 * come from `generator` when set (a job's own stream, see {@link useDropPathGenerator}), else from the global generator.
 */
export class DropPath extends Module {
  /** The stream the masks are drawn from; null: the global generator. */
  generator: torch.Generator | null = null;
  constructor(readonly p = 0) {
    super();
    checkProbability('DropPath', p);
  }
  forward(x: Tensor): Tensor {
    if (this.p === 0 || !this.training) return x;
    const keep = 1 - this.p;
    return torch.scope(() => {
      // the masks of the global batch, this rank's rows (see batch-slice.ts)
      const { rank, worldSize } = batchSlice();
      const B = x.shape[0];
      const shape = [B * worldSize, ...x.shape.slice(1).map(() => 1)];
      // drawn as float32 (a generator draws on the host, which has no float16 bernoulli), then the exact 0s and 1s in x's dtype
      const like = torch.empty(shape, { dtype: 'float32', device: x.device });
      const mask = torch
        .bernoulli(like, keep, { generator: this.generator ?? undefined })
        .to(x.dtype)
        .narrow(0, rank * B, B);
      // p = 1 keeps nothing: the zero mask as it is (0/0 would make every value NaN), as timm's drop_path
      return x.mul(keep > 0 ? mask.div(keep) : mask);
    });
  }
}

/**
 * Makes every DropPath under `root` draw its masks from `generator` (null: from the global generator again),
 * so a job's masks do not depend on what else the process draws from the global one meanwhile.
 */
export function useDropPathGenerator(root: Module, generator: torch.Generator | null): void {
  for (const [, m] of root.namedModules()) if (m instanceof DropPath) m.generator = generator;
}

/**
 * A job's own drop-path stream: a generator seeded at `seed` + 1299709 (an offset that keeps it apart from
 * the job's other streams), which every DropPath under `root` then draws from (see {@link useDropPathGenerator}).
 * Pre-training and fine-tuning both seed theirs here: the offset is part of every stored run's stream.
 */
export function dropPathStream(root: Module, seed: number): torch.Generator {
  const generator = new torch.Generator(seed + 1299709);
  useDropPathGenerator(root, generator);
  return generator;
}

/** The GELU activation, exact (erf) by default or approximate: 'tanh'. Like torch.nn.GELU. */
export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
    if (approximate !== 'none' && approximate !== 'tanh')
      throw new RangeError(`GELU: approximate must be 'none' or 'tanh', got ${JSON.stringify(approximate)}`);
  }
  forward(x: Tensor): Tensor {
    return F.gelu(x, this.approximate);
  }
}

/** fc1 → GELU → drop → fc2 → drop (timm's Mlp). */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly act: GELU;
  readonly fc2: Linear;
  readonly drop: Dropout;
  constructor(inFeatures: number, hiddenFeatures?: number, outFeatures?: number, opts: LayerOptions & { drop?: number } = {}) {
    super();
    const hidden = hiddenFeatures ?? inFeatures;
    this.fc1 = this.module('fc1', new Linear(inFeatures, hidden, opts));
    this.act = this.module('act', new GELU());
    this.fc2 = this.module('fc2', new Linear(hidden, outFeatures ?? inFeatures, opts));
    this.drop = this.module('drop', new Dropout(opts.drop ?? 0));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      // With the GELU kernel (torch/fused.ts), fc1's bias takes its gradient from GELU's backward pass (so
      // only where there is a backward).
      const hidden =
        fused.useFused('gelu', x) && torch.isGradEnabled() && this.fc1.bias && this.act.approximate === 'none'
          ? fused.geluAfterBias(F.linear(x, this.fc1.weight, this.fc1.bias.detach()), this.fc1.bias)
          : this.act.forward(this.fc1.forward(x));
      return this.drop.forward(this.fc2.forward(this.drop.forward(hidden)));
    });
  }
}
