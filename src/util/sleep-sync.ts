/** Blocks this thread for `ms` milliseconds (for short, rare waits inside synchronous file protocols). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Calls `ready` every 10 ms until it returns true (true) or `ms` milliseconds have passed (false), by the
 * monotonic clock: with Date.now(), a wall clock stepped back an hour (NTP) during the wait made it an hour
 * long, and one stepped forward ended it at once.
 */
export function waitUntilSync(ms: number, ready: () => boolean): boolean {
  const until = performance.now() + ms;
  for (;;) {
    if (ready()) return true;
    if (performance.now() >= until) return false;
    sleepSync(10);
  }
}
