// A training step captured once as a CUDA graph and replayed (libtorch's at::cuda::CUDAGraph), which
// removes the per-kernel launch and dispatch cost of the host: thousands of kernels per step become one
// graph launch. It applies only where the step is static:
//   - a CUDA device (the graph is a CUDA object);
//   - static shapes and addresses: the step reads its inputs from tensors allocated once (setInputs
//     copies each batch into them and refuses another shape) and writes its results into tensors
//     allocated once;
//   - no host synchronisation inside the step (no .item(), no host reads or uploads): fp16 loss scaling
//     reads its found-inf flag on the host every step, so fp16 is refused;
//   - the optimiser runs outside the graph (its step count and learning rate are host numbers), and the
//     gradients are not cleared between steps: the captured backward writes them anew each replay.
// The first `warmup` calls run the step eagerly on a side stream (cuBLAS/cuDNN workspaces, autotuning,
// kernel compilation happen there), the next captures it and replays it, every later call replays it.
import * as torch from '../torch';
import type { Tensor } from '../torch';

export interface CudaGraphStepOptions {
  /** Eager runs before the capture. */
  warmup: number;
  /** Sets every gradient to none: before each eager run and before the capture (never after). */
  clearGrads: () => void;
  /** The static inputs the step reads (e.g. images and order noise). */
  inputs: Record<string, Tensor>;
  /**
   * false: never capture; every call runs the step eagerly with the gradients cleared first, through
   * the same static inputs. It checks the code around a graph step where no GPU is (tests on the CPU).
   */
  capture?: boolean;
}

/** Why a CUDA-graph step cannot run here, or null when it can. */
export function cudaGraphRefusal(o: { device: string; precision: string; cudaBuild: boolean; phaseTimer?: boolean }): string | null {
  if (!o.device.startsWith('cuda')) return `CUDA graphs need a CUDA device (got ${o.device})`;
  if (!o.cudaBuild) return 'CUDA graphs need an addon built against a CUDA libtorch';
  if (o.precision === 'fp16') return 'CUDA graphs cannot capture fp16 loss scaling: the scaler reads its found-inf flag on the host every step (use bf16)';
  if (o.phaseTimer) return 'the per-phase timer cannot time inside a CUDA graph (run them separately)';
  return null;
}

export class CudaGraphStep {
  private graph: torch.CudaGraph | null = null;
  private runs = 0;

  constructor(
    private readonly body: () => void,
    private readonly o: CudaGraphStepOptions,
  ) {
    if (!Number.isInteger(o.warmup) || o.warmup < 1)
      throw new RangeError('CudaGraphStep: warmup must be a positive integer (the capture needs warmed-up libraries)');
  }

  get captured(): boolean {
    return this.graph !== null;
  }

  /** Copies a batch into the static inputs; a different shape or dtype is refused (graphs need static shapes). */
  setInputs(values: Record<string, Tensor>): void {
    for (const [name, v] of Object.entries(values)) {
      const dst = this.o.inputs[name];
      if (!dst) throw new Error(`CudaGraphStep: no static input '${name}'`);
      if (v.shape.length !== dst.shape.length || v.shape.some((s, i) => s !== dst.shape[i]) || v.dtype !== dst.dtype) {
        throw new Error(
          `CUDA graphs need static shapes: input '${name}' was [${dst.shape.join(', ')}] ${dst.dtype} at capture, now [${v.shape.join(', ')}] ${v.dtype}`,
        );
      }
      torch.noGrad(() => dst.copy_(v));
    }
  }

  /** One step: eager (warm-up), capture + replay, or replay. */
  run(): void {
    if (this.graph) {
      this.graph.replay();
      return;
    }
    this.o.clearGrads();
    if (this.o.capture === false) {
      this.body();
      return;
    }
    if (this.runs < this.o.warmup) {
      this.runs++;
      torch.sideStream(true);
      try {
        this.body();
      } finally {
        torch.sideStream(false);
      }
      return;
    }
    torch.cuda.synchronize();
    const graph = new torch.CudaGraph();
    torch.sideStream(true);
    try {
      graph.captureBegin();
      try {
        this.body();
      } catch (e) {
        try {
          graph.captureEnd();
        } catch {
          /* the capture is invalid anyway */
        }
        throw new Error(
          `CUDA graph capture failed: ${(e as Error).message.split('\n')[0]} (the step must not synchronise with the host, upload host data or change shapes)`,
          { cause: e },
        );
      }
      graph.captureEnd();
    } catch (e) {
      graph.dispose();
      throw e;
    } finally {
      torch.sideStream(false);
    }
    this.graph = graph;
    graph.replay(); // the capture recorded the step without running it
  }

  dispose(): void {
    this.graph?.dispose();
    this.graph = null;
  }
}
