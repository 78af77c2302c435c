// One process listener per event, shared by every registration: jobs at once in one process each listen
// for 'exit' (their run lock) and SIGINT/SIGTERM (their stop request), and more than 10 listeners of
// one event make Node warn of a leak (MaxListenersExceededWarning) where none leaks.

type Handler = (...args: never[]) => void;

const registered = new Map<string, { handlers: Set<{ handler: Handler }>; dispatch: (...args: unknown[]) => void }>();

/**
 * Calls `handler` on each `event` of the process, in the order of registration, until the returned
 * function is called (once is enough; again does nothing). The process has one listener for the event
 * while any handler is registered, none after the last is removed.
 */
export function onProcessEvent<A extends unknown[]>(event: 'exit' | NodeJS.Signals, handler: (...args: A) => void): () => void {
  let entry = registered.get(event);
  if (!entry) {
    const handlers = new Set<{ handler: Handler }>();
    const dispatch = (...args: unknown[]): void => {
      for (const h of [...handlers]) (h.handler as (...a: unknown[]) => void)(...args);
    };
    entry = { handlers, dispatch };
    registered.set(event, entry);
    process.on(event, dispatch);
  }
  const mine = { handler: handler as unknown as Handler };
  entry.handlers.add(mine);
  const { handlers, dispatch } = entry;
  return () => {
    if (!handlers.delete(mine) || handlers.size > 0) return;
    registered.delete(event);
    process.off(event, dispatch);
  };
}
