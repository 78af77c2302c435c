// Decoded in-memory cache for small file datasets: the loader has its workers decode every image
// once (in chunks, in parallel), then this module assembles the chunks into one shared store that
// all workers read from without copying. JPEGs are kept as decoded Y/Cb/Cr planes with chroma
// still subsampled (1.5 bytes per pixel for 4:2:0), or as RGB bytes (3 per pixel) for a PIL-exact
// (exactDecode) loader.

import { sharedBytes, sharedFloat64, sharedInt32, markFailed, type FilesSpec, type MemoryImages, type MemorySpec } from './dataset';
import { SKIP_REASONS } from './codecs/errors';
import type { PackedChunk } from './batch';

/** Settings of the decoded in-memory cache, given as `LoaderOptions.cache` (`cache: true` takes the defaults). */
export interface CacheOptions {
  /** Give up caching (with a warning) when the decoded data would exceed this (default 4 GiB). */
  maxBytes?: number;
}

export const DEFAULT_CACHE_BYTES = 4 * 1024 ** 3;

/** Splits [0, n) into chunk ranges. */
export function cacheRanges(n: number, chunk = 256): Array<[number, number]> {
  const r: Array<[number, number]> = [];
  for (let s = 0; s < n; s += chunk) r.push([s, Math.min(n, s + chunk)]);
  return r;
}

/** Assembles decoded chunks covering [0, n) into a shared in-memory dataset spec. */
export function assembleCache(chunks: PackedChunk[], n: number, files: FilesSpec): MemorySpec {
  let total = 0;
  for (const c of chunks) total += c.data.byteLength;
  const mem: MemoryImages = {
    data: sharedBytes(total),
    offsets: sharedFloat64(n),
    widths: sharedInt32(n),
    heights: sharedInt32(n),
    layout: sharedBytes(n),
    csx: sharedBytes(n),
    csy: sharedBytes(n),
  };
  const sorted = [...chunks].sort((a, b) => a.start - b.start);
  let o = 0;
  for (const c of sorted) {
    const bytes = new Uint8Array(c.data);
    let co = 0;
    for (let k = 0; k < c.sizes.length; k++) {
      const i = c.start + k;
      if (c.failed[k] >= 0) {
        markFailed(mem, i, SKIP_REASONS[c.failed[k]]);
        continue;
      }
      mem.offsets[i] = o;
      mem.widths[i] = c.widths[k];
      mem.heights[i] = c.heights[k];
      mem.layout[i] = c.layout[k];
      mem.csx[i] = c.csx[k];
      mem.csy[i] = c.csy[k];
      mem.data.set(bytes.subarray(co, co + c.sizes[k]), o);
      co += c.sizes[k];
      o += c.sizes[k];
    }
  }
  return { kind: 'memory', name: files.root, images: mem, labels: files.labels, files };
}
