// A reader of this process's stdout or stderr that went away (a launcher killed with SIGKILL, `| head`
// done) makes every later write fail with EPIPE, which Node raises as an 'error' event that ends the
// process when nothing listens: the workers of a killed `--nproc-per-node` launcher died on their next
// progress line instead of stopping after a checkpoint. With this, the first such write asks the process
// to stop as on SIGTERM (a run checkpoints, then exits 143); later ones are dropped.

let installed = false;
let stopAsked = false;

/** Asks this process to stop as on SIGTERM, once: a second SIGTERM a second later would exit at once, without the checkpoint. */
export function stopAsOnSigterm(): void {
  if (stopAsked) return;
  stopAsked = true;
  process.kill(process.pid, 'SIGTERM');
}

/** A stdout or stderr whose reader is gone (EPIPE) stops the process as SIGTERM would instead of killing it; other errors stay fatal. */
export function stopWhenOutputCloses(): void {
  if (installed) return;
  installed = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
      stopAsOnSigterm();
    });
  }
}
