// Data-parallel training over a process group, as torch.nn.parallel.DistributedDataParallel does it:
// every rank starts from rank 0's parameters and buffers, and after each synchronised backward every
// rank holds the gradients averaged over all ranks, so the optimiser steps (and global-norm clipping)
// stay the same code and give the same parameters everywhere.
//
// Two ways to synchronise, same result:
//  - 'overlap' (default where the addon has it): c10d's Reducer, PyTorch DDP's own engine. Hooks on the
//    parameters' gradient accumulators copy each gradient into a flat ~25 MB bucket as soon as autograd
//    produces it, and a full bucket is all-reduced while backward goes on; backward returns once every
//    bucket is averaged and copied back. The waiting happens inside backward on the main thread (that
//    is where libtorch runs CPU autograd; the step is synchronous anyway).
//  - 'after-backward': once backward has returned, the gradients are all-reduced in buckets of ~25 MB
//    (one coalesced collective per bucket: flattened, reduced, copied back), all started before the
//    first is waited for.
// Either way the gradients may travel in half precision (`compress`, DDP's fp16/bf16 compress hooks):
// cast to fp16 or bf16, divided by the world size, summed, cast back. Half the bytes; each averaged
// gradient keeps the half type's precision (fp16: 11 significant bits, bf16: 8).
// Gradient accumulation: micro-steps inside noSync() (or backward(loss, { sync: false })) keep their
// gradients local; the last micro-step's backward synchronises the accumulated sum.
import type { DType, Tensor } from '../torch';
import * as torch from '../torch';
import { dtypeBytes } from '../torch';
import { distBuildInfo, distNative, NativeGradReducer } from './native-dist';
import type { Backend, ProcessGroup, Work } from './process-group';
import { distError, isCollectiveFailure, isDistError } from './errors';

/**
 * How {@link DistributedDataParallel} synchronises gradients: 'overlap' (c10d's Reducer all-reduces buckets while
 * backward runs) or 'after-backward' (bucketed all-reduces once backward has returned). Same result.
 */
export type GradSyncMode = 'overlap' | 'after-backward';
/** The dtype gradients are all-reduced in: 'none' (their own), 'fp16' or 'bf16' (half the bytes, as DDP's fp16/bf16 compress hooks). */
export type GradCompression = 'none' | 'fp16' | 'bf16';

type HalfDType = Extract<DType, 'float16' | 'bfloat16'>;
const HALF: Record<Exclude<GradCompression, 'none'>, HalfDType> = { fp16: 'float16', bf16: 'bfloat16' };

/** Options of the {@link DistributedDataParallel} constructor: bucket sizes, sync mode, unused parameters and gradient compression. */
export interface DdpOptions {
  /** Bucket size for the gradient all-reduce (PyTorch's default 25 MB). */
  bucketCapMb?: number;
  /** The first bucket ('overlap'), smaller so that communication starts early (PyTorch: 1 MB). */
  firstBucketCapMb?: number;
  /** 'auto' (default): 'overlap' when the addon has c10d's Reducer, else 'after-backward'. */
  mode?: GradSyncMode | 'auto';
  /**
   * Parameters that may get no gradient in some steps ('overlap' only; costs a graph traversal per
   * step). Without it, such a parameter stops the next step with c10d's "Expected to have finished
   * reduction in the prior iteration" error. 'after-backward' treats a missing gradient as zeros.
   */
  findUnusedParameters?: boolean;
  /** All-reduce the gradients in fp16 or bf16 (half the bytes). Default 'none' (their own dtype). */
  compress?: GradCompression;
}

/** What the data-parallel wrapper needs of a model. */
export interface ParameterOwner {
  namedParameters(): Iterable<[string, Tensor]>;
  namedBuffers(): Iterable<[string, Tensor]>;
}

const MB = 2 ** 20;

/**
 * Data-parallel training over a process group, like torch.nn.parallel.DistributedDataParallel: every rank starts
 * from rank 0's parameters and buffers, and after each synchronised `backward()` here every rank holds the
 * gradients averaged over all ranks. See docs/DISTRIBUTED.md.
 */
export class DistributedDataParallel {
  /** The synchronisation in use (DdpOptions.mode with 'auto' resolved). */
  readonly mode: GradSyncMode;
  /** Milliseconds the last synchronised backward spent in the all-reduce after autograd ('after-backward'). */
  lastSyncMs = 0;
  private readonly params: [string, Tensor][];
  private readonly reducer: NativeGradReducer | null = null;
  private readonly bucketsAfter: number[][] = [];
  private readonly findUnused: boolean;
  private readonly half: HalfDType | null;
  private noSyncDepth = 0;
  private disposed = false;

  /**
   * Broadcasts rank 0's parameters (frozen ones too, as torch's DDP) and buffers to every rank (blocking) and prepares the gradient
   * synchronisation. Every rank must construct it with the same model (checked), after moving the model
   * to its device and before the optimiser's first step.
   */
  constructor(model: ParameterOwner, readonly group: ProcessGroup, o: DdpOptions = {}) {
    const cap = Math.round((o.bucketCapMb ?? 25) * MB);
    const first = Math.round((o.firstBucketCapMb ?? 1) * MB);
    if (!(cap > 0) || !(first > 0)) throw new RangeError('DistributedDataParallel: bucket sizes must be positive');
    this.params = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
    if (this.params.length === 0) throw new Error('DistributedDataParallel: the model has no parameter that requires grad');
    // what every rank takes from rank 0: every parameter, frozen ones too (as torch's DDP), and every buffer
    const synced = [...model.namedParameters(), ...model.namedBuffers()];
    const wrongDevice = synced.find(([, t]) => torch.deviceType(t.device) !== torch.deviceType(group.device));
    if (wrongDevice) {
      throw new Error(`DistributedDataParallel: ${wrongDevice[0]} is on ${wrongDevice[1].device} but the ${group.backend} group ` +
        `works on ${group.device}: move the model to its device first`);
    }
    this.findUnused = !!o.findUnusedParameters;
    this.half = checkCompression(o.compress ?? 'none', group);
    const mode = o.mode === undefined || o.mode === 'auto' ? (distNative.GradReducer ? 'overlap' : 'after-backward') : o.mode;
    if (mode === 'overlap' && !distNative.GradReducer) {
      throw new Error("DistributedDataParallel: mode 'overlap' needs c10d's Reducer, which this build of the addon lacks; use 'after-backward'");
    }
    this.mode = mode;
    const tensors = this.params.map(([, p]) => p);
    this.checkSameTensors(synced.map(([, t]) => t)); // (the Reducer's own check compares shapes alone)
    if (mode === 'overlap') {
      const Reducer = distNative.GradReducer as NonNullable<typeof distNative.GradReducer>;
      this.reducer = new Reducer(group.native, tensors.map((p) => p.h), cap, first, this.findUnused);
      if (this.half) this.reducer.compress(this.half);
    } else {
      this.bucketsAfter = bucketsBySize(tensors, cap);
    }
    torch.noGrad(() => group.broadcastCoalesced(synced.map(([, t]) => t), 0));
  }

  /** Parameter indices (into the parameters that require grad, in model order) per bucket, in all-reduce order. */
  get buckets(): number[][] {
    return this.reducer ? this.reducer.buckets() : this.bucketsAfter.map((b) => [...b]);
  }

  /** Whether the next backward synchronises (false inside noSync()). */
  get syncing(): boolean {
    return this.noSyncDepth === 0;
  }

  /** Runs fn with gradient synchronisation off: backward() inside only accumulates locally. */
  noSync<T>(fn: () => T): T {
    this.noSyncDepth++;
    try {
      return fn();
    } finally {
      this.noSyncDepth--;
    }
  }

  /**
   * loss.backward() with the gradients averaged over all ranks afterwards (unless opts.sync is false
   * or inside noSync()). Call it instead of loss.backward() for every backward of the model.
   */
  backward(loss: Tensor, opts: { sync?: boolean; retainGraph?: boolean } = {}): void {
    this.checkLive();
    const sync = (opts.sync ?? true) && this.syncing;
    try {
      if (this.reducer) {
        this.reducer.prepareForward(sync);
        if (sync) this.reducer.prepareBackward(this.findUnused ? [loss.h] : undefined);
      }
      loss.backward(undefined, { retainGraph: opts.retainGraph });
    } catch (e) {
      if (!sync) throw e;
      this.group.markFailed(); // the Reducer may have all-reduces in flight
      // this rank's own error (autograd's) stays its own, to be posted for the other ranks; it is no
      // failure of the gradient all-reduce
      if (isDistError(e) || !isCollectiveFailure(e instanceof Error ? e.message : String(e))) throw e;
      throw distError('backward (gradient all-reduce)', this.group.rank, this.group.worldSize, this.group.backend, e);
    }
    if (sync && !this.reducer) this.allReduceGradients();
  }

  /**
   * 'after-backward': averages the gradients now (missing ones count as zeros). For a backward that ran
   * without backward() here, e.g. inside a replayed CUDA graph, whose buffers are averaged in place.
   */
  allReduceGradients(): void {
    this.checkLive();
    if (this.reducer) throw new Error("DistributedDataParallel: allReduceGradients() is for mode 'after-backward' (the 'overlap' Reducer syncs inside backward())");
    const t0 = performance.now();
    const works: Work[] = [];
    const grads: Tensor[] = [];
    const compressed: { grads: Tensor[]; halves: Tensor[] }[] = [];
    try {
      for (const bucket of this.bucketsAfter) {
        const gs = bucket.map((i) => {
          const p = this.params[i][1];
          let g = p.grad;
          if (g === null) {
            const z = torch.zerosLike(p);
            p.grad = z;
            z.dispose();
            g = p.grad as Tensor;
          }
          grads.push(g);
          return g;
        });
        if (!this.half) {
          works.push(this.group.startAllReduce(gs, 'avg', { coalesced: true }));
          continue;
        }
        // as the Reducer's compress hook: cast, divide before the sum, sum, cast back
        const half = this.half;
        const halves = torch.noGrad(() => gs.map((g) => torch.keep(g.to({ dtype: half }).div_(this.group.worldSize))));
        compressed.push({ grads: gs, halves });
        works.push(this.group.startAllReduce(halves, 'sum', { coalesced: true }));
      }
      for (const w of works) w.wait();
      for (const c of compressed) torch.noGrad(() => c.grads.forEach((g, k) => g.copy_(c.halves[k])));
    } finally {
      for (const g of grads) g.dispose();
      for (const c of compressed) for (const h of c.halves) h.dispose();
    }
    this.lastSyncMs = performance.now() - t0;
  }

  /**
   * One allGather of (count, elements, a checksum of the dtypes and shapes in order) of the tensors that take rank 0's
   * values, so that different models fail clearly, not in a collective or with another rank's bytes read as another
   * dtype.
   */
  private checkSameTensors(tensors: Tensor[]): void {
    let sum = 0;
    for (const p of tensors) for (const c of `${p.dtype}[${p.shape.join(',')}]`) sum = (sum * 31 + c.charCodeAt(0)) % 1_000_000_007;
    const mine = [tensors.length, tensors.reduce((s, p) => s + p.numel, 0), sum];
    const t = torch.tensor(Float64Array.from(mine), { device: this.group.device });
    let all: Tensor[] = [];
    try {
      all = this.group.allGatherSync(t);
      for (const [r, x] of all.entries()) {
        const theirs = Array.from(x.toFloat64Array());
        if (theirs.some((v, i) => v !== mine[i])) {
          throw new Error(`DistributedDataParallel: rank ${r} has different parameters or buffers (${theirs[0]} tensors, ${theirs[1]} elements) ` +
            `from rank ${this.group.rank} (${mine[0]} tensors, ${mine[1]} elements): every rank must build the same model (the same shapes and dtypes, in the same order)`);
        }
      }
    } finally {
      t.dispose();
      for (const x of all) x.dispose();
    }
  }

  private checkLive(): void {
    if (this.disposed) throw new Error('DistributedDataParallel: disposed');
  }

  /** Removes the gradient hooks. Idempotent; the model and the group stay usable. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.reducer?.dispose();
  }
}

/** The half dtype gradients travel in (null: their own), refused where the backend cannot sum it. */
function checkCompression(compress: GradCompression, group: ProcessGroup): HalfDType | null {
  if (compress === 'none') return null;
  if (!Object.hasOwn(HALF, compress)) throw new RangeError(`DistributedDataParallel: compress must be 'none', 'fp16' or 'bf16', got '${compress}'`);
  const why = compressionRefusal(compress, group.backend);
  if (why) throw new Error(`DistributedDataParallel: ${why}`);
  return HALF[compress];
}

/** Why a backend cannot all-reduce gradients compressed this way, or null. */
export function compressionRefusal(compress: GradCompression, backend: Backend): string | null {
  // NCCL sums both half types in every libtorch this runs on; what Gloo sums depends on how libtorch built it
  if (compress === 'none' || backend !== 'gloo') return null;
  const d = distBuildInfo();
  if (!d.gloo || (compress === 'fp16' ? d.glooFloat16 : d.glooBFloat16)) return null;
  const v = torch.version();
  if (compress === 'bf16' && d.glooFloat16) {
    return `the gloo backend of libtorch ${v.torch} cannot sum bfloat16: compress the gradients with 'fp16', or use libtorch ≥ 2.2`;
  }
  return (
    `the gloo backend of libtorch ${v.torch} cannot sum ${HALF[compress]} (its Gloo was built without torch's dtypes, as Debian builds it): ` +
    `leave the gradients uncompressed on the CPU, or use a libtorch from PyTorch's own builds`
  );
}

/**
 * Buckets of consecutive parameters (in reverse order, as backward produces their gradients) of at
 * most capBytes each (a larger parameter gets a bucket of its own), one dtype and device per bucket.
 */
export function bucketsBySize(params: Tensor[], capBytes: number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  let bytes = 0;
  let key = '';
  for (let i = params.length - 1; i >= 0; i--) {
    const p = params[i];
    const k = `${p.dtype}/${p.device}`;
    const size = p.numel * dtypeBytes(p.dtype);
    if (cur.length && (k !== key || bytes + size > capBytes)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(i);
    bytes += size;
    key = k;
  }
  if (cur.length) out.push(cur);
  return out;
}
