/**
 * Lets the event loop turn (a setImmediate): a signal's handler, a caller's timers and requests, and the
 * finalizers of collected tensor handles run there. A loop whose awaits all resolve at once (a loader on the
 * main thread, data in memory) would otherwise never give them a turn.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
