// Free functions over several tensors (joining, selection) and runtime controls.
import { native } from './native';
import { Tensor, TensorOrScalar, wrap } from './tensor';

/** Joins tensors along an existing dimension (default 0); all other sizes must match. Like torch.cat. */
export function cat(tensors: Tensor[], dim = 0): Tensor {
  return wrap(
    native.cat(
      tensors.map((t) => t.h),
      dim,
    ),
  );
}
/** Joins same-shaped tensors along a new dimension `dim` (default 0). Like torch.stack. */
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return wrap(
    native.stack(
      tensors.map((t) => t.h),
      dim,
    ),
  );
}
/** cond ? a : b, elementwise with broadcasting. */
export function where(cond: Tensor, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  return wrap(native.where(cond.h, a instanceof Tensor ? a.h : a, b instanceof Tensor ? b.h : b));
}
/** The matrix product of a and b, with batch broadcasting (same as `a.matmul(b)`). Like torch.matmul. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return a.matmul(b);
}
/** The outer product of 1-D tensors a [n] and b [m], shape [n, m]. Like torch.outer. */
export function outer(a: Tensor, b: Tensor): Tensor {
  return wrap(native.outer(a.h, b.h));
}

/** Intra-op threads used by libtorch on CPU. */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: expected a positive integer, got ${n}`);
  native.setNumThreads(n);
}
/** The number of intra-op threads libtorch uses on CPU (see {@link setNumThreads}). Like torch.get_num_threads. */
export function getNumThreads(): number {
  return native.getNumThreads();
}

/**
 * Native counters for leak tests: live tensor handles, the host bytes they own, and how many
 * wrappers have a GC backstop (tensors that outlived their scope; see scope.ts) not yet collected.
 */
export function memoryStats(): { liveTensors: number; liveBytes: number; gcTracked: number } {
  return { liveTensors: native.liveHandles(), liveBytes: native.liveBytes(), gcTracked: native.gcTracked() };
}

/**
 * The caching CPU allocator (native/allocator.cc): bytes in live large blocks, their peak, bytes
 * held in its free lists, and hit/miss counts. `SEMAIM_CPU_ALLOCATOR=system` turns it off;
 * `SEMAIM_CPU_CACHE_MB` caps the cache: a whole number of MiB, 0 for none (default 4096); another value
 * fails the addon's load.
 */
export const cpuAllocator = {
  stats(): { enabled: boolean; liveBytes?: number; peakLiveBytes?: number; cachedBytes?: number; mappedBytes?: number; hits?: number; misses?: number } {
    return native.cpuAllocatorStats();
  },
  /** Returns cached free blocks to the OS. */
  emptyCache(): void {
    native.cpuEmptyCache();
  },
};

/**
 * CUDA runtime queries, like torch.cuda: availability, device count, synchronize, caching-allocator
 * memory in bytes (`memory`, `resetPeakMemory`, `emptyCache`), device properties and per-device RNG
 * state. Without CUDA the memory figures are 0 and synchronize/emptyCache do nothing.
 */
export const cuda = {
  isAvailable(): boolean {
    return native.cudaAvailable();
  },
  deviceCount(): number {
    return native.cudaDeviceCount();
  },
  synchronize(): void {
    native.cudaSynchronize();
  },
  memory(device = 0): { allocated: number; peakAllocated: number; reserved: number } {
    return native.cudaMemory(device);
  },
  resetPeakMemory(device = 0): void {
    native.cudaResetPeak(device);
  },
  emptyCache(): void {
    native.cudaEmptyCache();
  },
  /** Name, compute capability and memory of a device. */
  getDeviceProperties(device = 0): { name: string; major: number; minor: number; totalMemory: number } {
    return native.cudaDeviceProperties(device);
  },
  /** The global CUDA generator's state of a device (a uint8 CPU tensor), for checkpoints. */
  getRngState(device = 0): Tensor {
    return wrap(native.cudaGetRngState(device));
  },
  setRngState(state: Tensor, device = 0): void {
    native.cudaSetRngState(state.h, device);
  },
};

/** Backend switches, as torch.backends. */
export const backends = {
  cudnn: {
    /** cuDNN autotuning of convolutions per input shape (PyTorch's default: off; the authors' scripts turn it on). */
    get benchmark(): boolean {
      return native.cudnnBenchmark();
    },
    set benchmark(on: boolean) {
      native.cudnnBenchmark(on);
    },
    /** TF32 tensor-core math in float32 convolutions (PyTorch's default: on). */
    get allowTF32(): boolean {
      return native.cudnnAllowTF32();
    },
    set allowTF32(on: boolean) {
      native.cudnnAllowTF32(on);
    },
  },
  cuda: {
    matmul: {
      /** TF32 tensor-core math in float32 matrix products (PyTorch's default: off). */
      get allowTF32(): boolean {
        return native.matmulAllowTF32();
      },
      set allowTF32(on: boolean) {
        native.matmulAllowTF32(on);
      },
    },
  },
};

/**
 * The libtorch the addon was built against: version string and major/minor numbers, its build
 * configuration (`config`, at::show_config) and thread-pool settings (`parallel`, at::get_parallel_info).
 */
export function version(): { torch: string; major: number; minor: number; config: string; parallel: string } {
  return native.version();
}
