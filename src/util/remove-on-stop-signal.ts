// Files a process is writing that a Ctrl-C / SIGTERM must not leave behind where the process does not handle
// these signals itself (a library caller's program): the signal's default action ends it and no exit handler
// runs. One handler for every registration: each of several writers at once (embeds, packs in one process)
// had its own, and all but the last saw the others' and left their files.

const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
const removals = new Set<() => void>();

function onStopSignal(signal: NodeJS.Signals): void {
  // the process handles the signal itself: its stop reaches each writer, which finishes or aborts on its own path
  if (process.listenerCount(signal) > 1) return;
  // each removal is attempted, and one that fails must not turn the signal's exit into a crash
  for (const remove of [...removals]) {
    try {
      remove();
    } catch (e) {
      process.stderr.write(`could not remove a partial file on ${signal}: ${e instanceof Error ? e.message : String(e)}\n`);
    }
  }
  removals.clear();
  for (const s of STOP_SIGNALS) process.off(s, onStopSignal);
  process.kill(process.pid, signal); // the default course, now that nothing listens
}

/**
 * Calls `remove` (deleting what a writer has staged) if SIGINT or SIGTERM arrives while it is registered and the
 * process has no handler of its own for it, then lets the signal end the process. Returns the unregistration
 * (once is enough; again does nothing).
 */
export function removeOnStopSignal(remove: () => void): () => void {
  if (removals.size === 0) for (const s of STOP_SIGNALS) process.on(s, onStopSignal);
  removals.add(remove);
  return () => {
    if (!removals.delete(remove) || removals.size > 0) return;
    for (const s of STOP_SIGNALS) process.off(s, onStopSignal);
  };
}
