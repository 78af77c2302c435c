// Reusable scratch buffers for per-sample temporaries (one set per thread), so that decoding and
// resampling do not allocate, zero and garbage-collect several hundred KB per image. A view
// handed out under a key is valid until the next request for the same key; contents are NOT
// zeroed.

const pool = new Map<string, ArrayBuffer>();

/**
 * Larger requests get a buffer of their own, left to the garbage collector: one huge image (the decode
 * limit allows ~179 megapixels, ~0.5 GB a plane set) must not keep its buffers for the rest of the run.
 */
export const MAX_POOLED_BYTES = 64 << 20;

function buffer(key: string, bytes: number): ArrayBuffer {
  if (bytes > MAX_POOLED_BYTES) return new ArrayBuffer(bytes);
  let b = pool.get(key);
  if (!b || b.byteLength < bytes) {
    b = new ArrayBuffer(Math.min(Math.max(bytes, b ? Math.ceil(b.byteLength * 1.5) : 0, 1024), MAX_POOLED_BYTES));
    pool.set(key, b);
  }
  return b;
}

export function scratchF32(key: string, n: number): Float32Array {
  return new Float32Array(buffer(key, n * 4), 0, n);
}

export function scratchU8(key: string, n: number): Uint8Array {
  return new Uint8Array(buffer(key, n), 0, n);
}

export function scratchI16(key: string, n: number): Int16Array {
  return new Int16Array(buffer(key, n * 2), 0, n);
}
