// Fused elementwise kernels (native/kernels/fused.cu, compiled at run time by NVRTC) behind a switch
// that is off by default. When a kind is on and its input is a CUDA tensor, one kernel replaces the
// unfused libtorch ops; everywhere else (CPU, the switch off) the unfused composition runs, the same ops
// as before. The kinds:
//   layernorm  LayerNorm, and residual add + LayerNorm, written in the autocast dtype when the result
//              only feeds Linear layers (which would cast it anyway), reading a narrowed sequence
//              without a copy
//   layernorm-backward
//              the backward of those (with `layernorm` on): the input's and the residual's gradients and
//              the weights' in one kernel instead of libtorch's LayerNorm backward, casts and add. Not in
//              --fused auto until measured on a GPU
//   gelu       GELU's backward after fc1 of the MLPs, which also gives fc1's bias its gradient (fc1 adds the
//              bias inside its matmul as before, with the bias detached); the forward is unchanged
//   qkv        the encoder attention's q, k, v split from qkv: their backward stacks the three gradients into
//              qkv's and gives qkv's bias its gradient in the same kernel (qkv adds its bias inside its
//              matmul as before, with the bias detached)
//   targets    the pixel targets: blur, patchify and per-patch normalisation in one kernel
//   patch-embed
//              the patch embedding (a convolution of stride = kernel = patch size) as one matmul over the
//              patchified images (cuDNN's strided convolution took ~2 ms per call on an H200; the matmul's
//              FLOPs need ~0.1 ms; not measured yet). No kernel of ours, the same arithmetic. Not in
//              --fused auto until measured
import { native } from './native';
import { Tensor, wrap } from './tensor';
import { autocastState } from './autograd';
import { deviceType, type DType } from './dtype';

/** A group of fused kernels that {@link setFused} switches on or off (each kind is described at the top of fused.ts). */
export type FusedKind = 'layernorm' | 'layernorm-backward' | 'gelu' | 'qkv' | 'targets' | 'patch-embed';
/** Every {@link FusedKind}: what setFused('all') turns on and what {@link parseFusedKinds} accepts. */
export const FUSED_KINDS: readonly FusedKind[] = ['layernorm', 'layernorm-backward', 'gelu', 'qkv', 'targets', 'patch-embed'];

const enabled = new Set<FusedKind>();
let onCpu = false;

/**
 * Turns the fused kernels of these kinds on (and the others off): a list, 'all' or 'none'. `onCpu`
 * (tests): also take the fused paths for CPU tensors, where the fused functions run the kernels'
 * arithmetic with libtorch ops, so that the model's fused wiring and backward are checked without a GPU.
 */
export function setFused(kinds: readonly FusedKind[] | 'all' | 'none', o: { onCpu?: boolean } = {}): void {
  // From JavaScript, setFused('layernorm') took the string's letters as kinds and a misspelt kind was kept:
  // either way nothing was switched on, without a word.
  const list = kinds === 'all' ? FUSED_KINDS : kinds === 'none' ? [] : kinds;
  if (!Array.isArray(list))
    throw new RangeError(`setFused: kinds must be 'all', 'none' or an array of ${FUSED_KINDS.join(', ')}, got ${JSON.stringify(kinds)}`);
  const bad = list.filter((k) => !FUSED_KINDS.includes(k));
  if (bad.length)
    throw new RangeError(`setFused: unknown fused kernel kind(s) ${bad.map((k) => JSON.stringify(k)).join(', ')}: expected ${FUSED_KINDS.join(', ')}`);
  enabled.clear();
  for (const k of list) enabled.add(k);
  onCpu = !!o.onCpu;
}

/** The kinds now on. */
export function fusedKinds(): FusedKind[] {
  return FUSED_KINDS.filter((k) => enabled.has(k));
}

/** Whether the fused paths are taken for CPU tensors too (setFused's `onCpu`). */
export function fusedOnCpu(): boolean {
  return onCpu;
}

/** Whether a kind runs kernels of ours (compiled by NVRTC): all but patch-embed, which is libtorch's matmul. */
export function needsKernels(kind: FusedKind): boolean {
  return kind !== 'patch-embed';
}

/** "layernorm,targets", "all" or "none" → the kinds; throws naming the unknown ones. */
export function parseFusedKinds(spec: string): FusedKind[] {
  const s = spec.trim();
  if (s === 'all') return [...FUSED_KINDS];
  if (s === 'none' || s === '') return [];
  const parts = s.split(',').map((p) => p.trim());
  if (parts.includes('')) throw new RangeError(`fused kernel kinds '${spec}' have an empty entry: expected all, none or a list of ${FUSED_KINDS.join(', ')}`);
  const bad = parts.filter((p) => !(FUSED_KINDS as readonly string[]).includes(p));
  if (bad.length) throw new RangeError(`unknown fused kernel kind(s) ${bad.join(', ')}: expected all, none or a list of ${FUSED_KINDS.join(', ')}`);
  return [...new Set(parts as FusedKind[])];
}

/** Whether the kernel of `kind` runs for a tensor: the kind is on and the tensor is on a CUDA device. */
export function useFused(kind: FusedKind, t: Tensor): boolean {
  return enabled.has(kind) && (onCpu || deviceType(t.device) === 'cuda');
}

/**
 * Whether this addon has the kernels and (with load) whether NVRTC compiles them for the current
 * device, with what it used or why not.
 */
export function kernelStatus(load = false): { cudaBuild: boolean; loaded: boolean; message: string } {
  return native.fusedKernels(load);
}

/** Per-call options of the fused {@link layerNorm} and {@link addLayerNorm}; each overrides the global switch. */
export interface FusedOptions {
  /** Run the fused function (default: useFused for the input); on the CPU it runs the kernel's arithmetic with libtorch ops. */
  fused?: boolean;
  /** The result only feeds Linear layers: under autocast it is written in the autocast dtype. */
  forLinear?: boolean;
  /**
   * LayerNorm: the fused function's backward runs the backward kernel (default: useFused('layernorm-backward')
   * for the input); on the CPU the kernel's arithmetic with libtorch ops. Only with `fused`.
   */
  fusedBackward?: boolean;
  /**
   * LayerNorm of a [B, T, D] input: only its first `tokens` positions, read in place (the result is
   * [B, tokens, D]); the backward gives the whole input its gradient (zero at the other positions).
   */
  tokens?: number;
}

/** Whether a fused LayerNorm's backward runs the backward kernel. */
function fusedBackward(x: Tensor, o: FusedOptions, fused: boolean): boolean {
  return fused && (o.fusedBackward ?? useFused('layernorm-backward', x));
}

/** The dtype a fused LayerNorm writes: the autocast dtype when it feeds a Linear under autocast, else its input's. */
function outDtype(x: Tensor, o: FusedOptions, fused: boolean): DType | null {
  if (!fused || !o.forLinear) return null;
  const ac = autocastState(deviceType(x.device));
  return ac.enabled ? (ac.dtype as DType) : null;
}

/**
 * Throws unless every tensor of `others` is on `x`'s device. On a GPU the kernels take each tensor's data
 * pointer as memory of x's device: a CPU weight's would be a host address (an illegal access, or host
 * memory read silently), and a gradient of the input's device returned for a bias elsewhere failed only in
 * the backward pass, as an autograd error.
 */
function checkDevices(fn: string, xName: string, x: Tensor, others: Record<string, Tensor | null>): void {
  for (const [name, t] of Object.entries(others)) {
    if (t && t.device !== x.device) throw new Error(`${fn}: ${name} is on ${t.device}, ${xName} on ${x.device}: every tensor must be on ${xName}'s device`);
  }
}

/** The addon's LayerNorm of x (+ residual): [sum or null, normed]; `tokens` is refused there with a residual. */
function fusedLayerNormCall(x: Tensor, residual: Tensor | null, weight: Tensor | null, bias: Tensor | null, eps: number, o: FusedOptions) {
  checkDevices('fusedLayerNorm', 'x', x, { residual, weight, bias });
  // (the addon takes -1 for "no tokens": a negative count normalised every position, unasked)
  if (o.tokens !== undefined && !(Number.isInteger(o.tokens) && o.tokens >= 0))
    throw new RangeError(`fusedLayerNorm: tokens must be a non-negative integer, got ${o.tokens}`);
  const fused = o.fused ?? useFused('layernorm', x);
  return native.fusedLayerNorm(
    x.h,
    residual?.h ?? null,
    weight?.h ?? null,
    bias?.h ?? null,
    eps,
    outDtype(x, o, fused),
    fused,
    fusedBackward(x, o, fused),
    o.tokens ?? -1,
  );
}

/** LayerNorm over the last dimension. */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number, o: FusedOptions = {}): Tensor {
  return wrap(fusedLayerNormCall(x, null, weight, bias, eps, o)[1]);
}

/** sum = x + residual (in x's dtype) and normed = LayerNorm(sum). */
export function addLayerNorm(
  x: Tensor,
  residual: Tensor,
  weight: Tensor | null,
  bias: Tensor | null,
  eps: number,
  o: FusedOptions = {},
): { sum: Tensor; normed: Tensor } {
  const [h, y] = fusedLayerNormCall(x, residual, weight, bias, eps, o);
  return { sum: wrap(h!), normed: wrap(y) };
}

/**
 * gelu(pre) (exact GELU) for pre = x·Wᵀ + bias from a Linear given `bias.detach()`: the backward gives
 * `bias` its gradient (d(pre) summed over rows) in the same pass as d(pre), one kernel on a GPU (with
 * `fused`), instead of the Linear's backward reading d(pre) again.
 */
export function geluAfterBias(pre: Tensor, bias: Tensor, o: { fused?: boolean } = {}): Tensor {
  checkDevices('fusedGeluAfterBias', 'pre', pre, { bias });
  return wrap(native.fusedGeluAfterBias(pre.h, bias.h, o.fused ?? useFused('gelu', pre)));
}

/**
 * q, k, v [B, H, T, hd]: views of qkv [B, T, 3·D] (from a Linear given `bias.detach()`) in its packed
 * [B, T, 3, H, hd] layout. The backward stacks their gradients into qkv's and gives `bias` its gradient
 * (summed over rows) in the same pass, one kernel on a GPU (with `fused`).
 */
export function qkvHeads(qkv: Tensor, bias: Tensor, heads: number, o: { fused?: boolean } = {}): [Tensor, Tensor, Tensor] {
  checkDevices('fusedQkvHeads', 'qkv', qkv, { bias });
  const [q, k, v] = native.fusedQkvHeads(qkv.h, bias.h, heads, o.fused ?? useFused('qkv', qkv));
  return [wrap(q), wrap(k), wrap(v)];
}

/**
 * What {@link pixelTargets} computes: the patch size in pixels, an optional Gaussian blur (odd kernel
 * size, sigma > 0) and whether each patch is normalised to zero mean and unit variance (MAE's norm_pix_loss).
 */
export interface PixelTargetSpec {
  patchSize: number;
  /** 0: no blur. */
  blurKernel: number;
  blurSigma: number;
  normPix: boolean;
}

/** Pixel targets [B, N, P²·C] of float32 images: blur (zero padding), patchify, per-patch normalisation. */
export function pixelTargets(images: Tensor, s: PixelTargetSpec, o: { fused?: boolean } = {}): Tensor {
  // A σ whose off-centre taps are all exp(−1/(2σ²)) = 0 in double precision blurs as the identity: the blur is
  // skipped, the same result, where the addon's d²/(2σ²) made 0/0 (NaN) of it once 2σ² underflowed (σ < ~1.6e-162).
  const blurKernel = s.blurKernel % 2 === 1 && s.blurSigma > 0 && Math.exp(-0.5 / (s.blurSigma * s.blurSigma)) === 0 ? 0 : s.blurKernel;
  return wrap(native.fusedPixelTargets(images.h, s.patchSize, blurKernel, s.blurSigma, s.normPix, o.fused ?? useFused('targets', images)));
}
