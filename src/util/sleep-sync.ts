/** Blocks this thread for `ms` milliseconds (for short, rare waits inside synchronous file protocols). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
