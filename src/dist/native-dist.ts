// The typed surface of the addon's distributed part (native/dist.cc). Classes are absent from a build
// whose libtorch has no c10d; distInfo() is always there.
import { native, TensorHandle } from '../torch/native';

/** Which of libtorch's distributed pieces this build of the addon has. */
export interface DistBuildInfo {
  /** c10d (TCPStore, process groups) at all. */
  c10d: boolean;
  /** The Gloo backend (CPU tensors). */
  gloo: boolean;
  /** The NCCL backend (CUDA tensors). */
  nccl: boolean;
  /** c10d's gradient Reducer (gradients all-reduced from hooks while backward runs). */
  reducer: boolean;
  /** Gloo sums float16 tensors (not where libtorch's Gloo was built without torch's dtypes, as Debian's 2.14). */
  glooFloat16: boolean;
  /** Gloo sums bfloat16 tensors (libtorch ≥ 2.2, with the same exception). */
  glooBFloat16: boolean;
}

export interface NativeInitOptions {
  backend: 'gloo' | 'nccl';
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  storeHost: boolean;
  storePrefix?: string;
  glooInterface?: string;
  glooHost?: string;
  glooThreads?: number;
  device?: number;
  /** This rank cannot start: post why at the store for the others, create no backend. */
  failure?: string;
}

export type NativeReduceOp = 'sum' | 'avg' | 'max' | 'min' | 'product';

export interface NativeProcessGroup {
  init(o: NativeInitOptions): Promise<void>;
  allReduce(tensors: TensorHandle[], op: NativeReduceOp, timeoutMs?: number, coalesced?: boolean): number;
  broadcast(tensors: TensorHandle[], root: number, timeoutMs?: number): number;
  allGather(tensor: TensorHandle, timeoutMs?: number): number;
  gather(tensor: TensorHandle, root: number, timeoutMs?: number): number;
  barrier(timeoutMs?: number): number;
  wait(id: number): TensorHandle[];
  waitAsync(id: number): Promise<TensorHandle[]>;
  pending(): number;
  broadcastCoalesced(tensors: TensorHandle[], root: number, bufferBytes: number): void;
  /** The error another rank posted when it failed later in the run: JSON {rank, error}, or '' (none, or the store is gone). */
  lateFailure(): Promise<string>;
  /**
   * Posts this rank's failure (JSON, '' for none) and that it left, closes the backend (abandons it: abandon, or a
   * collective of it failed or is in flight); the store host then waits for the others (waitMs).
   */
  leave(failure: string, waitMs: number, abandon: boolean): Promise<string>;
  shutdown(abandon?: boolean): void;
}

export interface NativeGradReducer {
  prepareForward(countIteration: boolean): void;
  prepareBackward(outputs?: TensorHandle[]): void;
  buckets(): number[][];
  /** All-reduce every bucket in a half type (DDP's fp16/bf16 compress hook); before the first backward. */
  compress(dtype: 'float16' | 'bfloat16'): void;
  dispose(): void;
}

interface DistAddon {
  ProcessGroup?: new () => NativeProcessGroup;
  GradReducer?: new (group: NativeProcessGroup, params: TensorHandle[], bucketCapBytes: number, firstBucketCapBytes: number,
    findUnused: boolean) => NativeGradReducer;
}

export const distNative = native as unknown as DistAddon;

/** The distributed backends built into the addon (for `semaim info`). */
export function distBuildInfo(): DistBuildInfo {
  return native.distInfo();
}
