/** Blocks this thread for `ms` milliseconds (for short, rare waits inside synchronous file protocols). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Calls `ready` every 10 ms until it returns true (true) or `ms` milliseconds have passed (false). */
export function waitUntilSync(ms: number, ready: () => boolean): boolean {
  const until = Date.now() + ms;
  for (;;) {
    if (ready()) return true;
    if (Date.now() >= until) return false;
    sleepSync(10);
  }
}
