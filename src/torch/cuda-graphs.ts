// CUDA graphs and event timing (native/cuda.cc), for a training step captured once and replayed, and
// for per-phase GPU times without host synchronisation. CUDA builds only; elsewhere they throw.
import { native } from './native';

/** Events in numbered slots, recorded on the current stream. */
export const cudaEvents = {
  record(slot: number): void {
    native.cudaEventRecordSlot(slot);
  },
  /** Milliseconds from slot `start` to slot `end` (waits for `end`). */
  elapsed(start: number, end: number): number {
    return native.cudaEventElapsed(start, end);
  },
};

/** Makes a side stream current (ordered after the current one), and back (ordering the old one after it). */
export function sideStream(enter: boolean): void {
  native.cudaSideStream(enter);
}

/** Whether work issued now is being captured into a CUDA graph. */
export function isCapturing(): boolean {
  return native.cudaStreamCapturing();
}

/** One CUDA graph (at::cuda::CUDAGraph): captureBegin on a side stream, the work, captureEnd; then replay. */
export class CudaGraph {
  private id: number | null = native.cudaGraphCreate();

  private get handle(): number {
    if (this.id === null) throw new Error('CudaGraph: disposed');
    return this.id;
  }
  captureBegin(): void {
    native.cudaGraphCaptureBegin(this.handle);
  }
  captureEnd(): void {
    native.cudaGraphCaptureEnd(this.handle);
  }
  replay(): void {
    native.cudaGraphReplay(this.handle);
  }
  dispose(): void {
    if (this.id !== null) native.cudaGraphDestroy(this.id);
    this.id = null;
  }
}
