// Seeded shuffle buffer for streamed samples (WebDataset's `shuffle(n)`): the first `size` inputs
// fill it; afterwards every input takes the slot of a uniformly drawn one, which is emitted; when
// the input ends, the rest leave in random order. Only the slot draws use the generator, never
// the items, so a run over item positions alone predicts exactly which items a run over the real
// samples emits: that is how a stream resumes mid-epoch (`replay`).

import type { Rng } from '../rng';

export class ShuffleBuffer<T> {
  private constructor(
    readonly size: number,
    private readonly rng: Rng,
    /** Buffered items in slot order. */
    readonly items: T[],
  ) {}

  static create<T>(size: number, rng: Rng): ShuffleBuffer<T> {
    return new ShuffleBuffer<T>(Math.max(1, Math.floor(size)), rng, []);
  }

  get length(): number {
    return this.items.length;
  }

  /** Adds an input; returns the item it displaces once the buffer is full (a size-1 buffer passes inputs through). */
  push(x: T): T | undefined {
    if (this.size <= 1) return x;
    if (this.items.length < this.size) {
      this.items.push(x);
      return undefined;
    }
    const k = this.rng.int(this.size);
    const out = this.items[k];
    this.items[k] = x;
    return out;
  }

  /** After the last input: removes and returns a random buffered item (undefined when empty). */
  pop(): T | undefined {
    const n = this.items.length;
    if (n === 0) return undefined;
    const k = n === 1 ? 0 : this.rng.int(n);
    const out = this.items[k];
    this.items[k] = this.items[n - 1];
    this.items.pop();
    return out;
  }

  /** The same buffer (slots and generator) holding other items. */
  map<U>(f: (x: T, slot: number) => U): ShuffleBuffer<U> {
    return new ShuffleBuffer<U>(this.size, this.rng, this.items.map(f));
  }
}

/**
 * Runs a buffer over input positions 0..length-1 until `emitted` items have come out. Returns the
 * buffer (holding positions) and the number of inputs consumed: a stream that resumes there reads
 * the buffered positions back and continues with input `consumed`, drawing the same slots.
 */
export function replay(size: number, rng: Rng, length: number, emitted: number): { buffer: ShuffleBuffer<number>; consumed: number } {
  const buffer = ShuffleBuffer.create<number>(size, rng);
  let consumed = 0;
  let out = 0;
  while (out < emitted) {
    if (consumed < length) {
      if (buffer.push(consumed++) !== undefined) out++;
    } else if (buffer.pop() !== undefined) out++;
    else throw new RangeError(`shuffle buffer: cannot skip ${emitted} of ${length} items`);
  }
  return { buffer, consumed };
}
