// Datasets held decoded in (shared) memory: CIFAR binary batches, IDX files, and decoded caches.

import { checkSampleIndex } from '../sample-index';
import { sharedBytes, sharedFloat64, sharedInt32, LAYOUT_GRAY, LAYOUT_RGB, type Dataset, type MemoryImages, type MemorySpec } from '../dataset';

/**
 * A dataset of images held decoded in shared memory ({@link MemoryImages}), as cifarBinary and the IDX
 * readers build it; workers read the store without copying. Sample names are `root#index`.
 */
export class MemoryDataset implements Dataset {
  readonly spec: MemorySpec;
  readonly length: number;
  readonly hasMasks: boolean;

  constructor(
    readonly root: string,
    images: MemoryImages,
    labels: Int32Array | null,
    readonly classes: readonly string[],
    readonly fixedSize: readonly [number, number] | null,
  ) {
    this.spec = { kind: 'memory', name: root, images, labels };
    this.length = images.widths.length;
    this.hasMasks = !!images.masks;
  }

  label(i: number): number {
    checkSampleIndex(i, this);
    return this.spec.labels ? this.spec.labels[i] : -1;
  }

  name(i: number): string {
    checkSampleIndex(i, this);
    return `${this.root}#${i}`;
  }
}

/** A store of n same-sized images (gray or planar RGB) in one shared buffer; fill `data` after. */
export function uniformImages(n: number, height: number, width: number, channels: 1 | 3): MemoryImages {
  const per = width * height * channels;
  const offsets = sharedFloat64(n);
  const widths = sharedInt32(n);
  const heights = sharedInt32(n);
  const layout = sharedBytes(n);
  const csx = sharedBytes(n);
  const csy = sharedBytes(n);
  for (let i = 0; i < n; i++) {
    offsets[i] = i * per;
    widths[i] = width;
    heights[i] = height;
    layout[i] = channels === 1 ? LAYOUT_GRAY : LAYOUT_RGB;
    csx[i] = 1;
    csy[i] = 1;
  }
  return { data: sharedBytes(n * per), offsets, widths, heights, layout, csx, csy };
}
