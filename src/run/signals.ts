// SIGINT/SIGTERM during a run: the first asks the loop to stop at the next step boundary (after a
// checkpoint); the process then exits with the signal's code.

/** Sets `stop.requested` on SIGINT/SIGTERM until the returned function is called. */
export function catchStopSignals(stop: { requested: boolean }): () => void {
  const onSignal = (): void => {
    stop.requested = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
