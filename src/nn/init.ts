// In-place initialisers (torch.nn.init / timm). All run without recording gradients.
import * as torch from '../torch';
import { Tensor } from '../torch';

/** fan_in, fan_out as PyTorch computes them (dims beyond the first two are the receptive field). */
export function fans(t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length < 2) throw new Error(`fan in/out need at least 2 dimensions, got shape [${s}]`);
  const receptive = s.slice(2).reduce((a, b) => a * b, 1);
  return [s[1] * receptive, s[0] * receptive];
}

/** Fills t in place from U(low, high) and returns it. Like torch.nn.init.uniform_, but low and high have no defaults. */
export function uniform_(t: Tensor, low: number, high: number, generator?: torch.Generator): Tensor {
  torch.noGrad(() => t.uniform_(low, high, generator));
  return t;
}

/** Fills t in place from N(mean, std²) (defaults 0 and 1) and returns it. Like torch.nn.init.normal_. */
export function normal_(t: Tensor, mean = 0, std = 1, generator?: torch.Generator): Tensor {
  torch.noGrad(() => t.normal_(mean, std, generator));
  return t;
}

/** Fills t in place with value and returns it. Like torch.nn.init.constant_. */
export function constant_(t: Tensor, value: number): Tensor {
  torch.noGrad(() => t.fill_(value));
  return t;
}

/** Fills t in place with 0 and returns it. Like torch.nn.init.zeros_. */
export function zeros_(t: Tensor): Tensor {
  return constant_(t, 0);
}

/** Fills t in place with 1 and returns it. Like torch.nn.init.ones_. */
export function ones_(t: Tensor): Tensor {
  return constant_(t, 1);
}

/** U(-a, a) with a = gain·sqrt(6 / (fan_in + fan_out)). */
export function xavierUniform_(t: Tensor, gain = 1, generator?: torch.Generator): Tensor {
  const [fanIn, fanOut] = fans(t);
  const a = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -a, a, generator);
}

/** PyTorch's default for Linear/Conv weights: kaiming_uniform(a=√5), i.e. U(±1/√fan_in); a no-op on an empty tensor, as PyTorch. */
export function defaultWeightInit_(t: Tensor, generator?: torch.Generator): Tensor {
  if (t.numel === 0) return t;
  const bound = 1 / Math.sqrt(fans(t)[0]);
  return uniform_(t, -bound, bound, generator);
}

/** PyTorch's default bias bound of Linear/Conv: 1/√fan_in, 0 when fan_in is 0. */
export function defaultBiasBound(fanIn: number): number {
  return fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
}

/**
 * PyTorch's default for Linear/Conv biases: U(±defaultBiasBound(fanIn)). With fan_in 0 PyTorch's bound is
 * the integer 0, so the draw is U(0, 0): +0 everywhere, where U(-0, 0) gives -0 on libtorch 2.14.
 */
export function defaultBiasInit_(t: Tensor, fanIn: number, generator?: torch.Generator): Tensor {
  const bound = defaultBiasBound(fanIn);
  return uniform_(t, bound === 0 ? 0 : -bound, bound, generator);
}

/**
 * Normal(mean, std) truncated to [a, b] (absolute bounds, as timm's trunc_normal_): values outside
 * are redrawn, up to 100 rounds, then clamped to [a, b]; bounds with b < a (or NaN) are a RangeError.
 * Note the order: std comes before mean (most callers give only a std), where timm's is
 * trunc_normal_(tensor, mean, std, a, b).
 */
export function truncNormal_(t: Tensor, std = 1, mean = 0, a = -2, b = 2, generator?: torch.Generator): Tensor {
  // (as timm's, whose uniform_ fails on them: b < a filled t with one bound, a NaN bound truncated nothing)
  if (!(a <= b)) throw new RangeError(`truncNormal_: the bounds [${a}, ${b}] are not an interval (a <= b)`);
  torch.noGrad(() =>
    torch.scope(() => {
      t.normal_(mean, std, generator);
      for (let i = 0; i < 100; i++) {
        const bad = t.lt(a).logicalOr(t.gt(b));
        if (!bad.any().item()) return;
        const fresh = torch.empty(t.shape, { dtype: t.dtype, device: t.device }).normal_(mean, std, generator);
        t.copy_(torch.where(bad, fresh, t));
      }
      t.clamp_(a, b);
    }),
  );
  return t;
}
