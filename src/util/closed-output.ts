// A reader of this process's stdout or stderr that went away (a launcher killed with SIGKILL, `| head`
// done) makes every later write fail with EPIPE, which Node raises as an 'error' event that ends the
// process when nothing listens: the workers of a killed `--nproc-per-node` launcher died on their next
// progress line instead of stopping after a checkpoint. With this, such writes are dropped.

let installed = false;

/** Drops writes to a stdout or stderr whose reader is gone (EPIPE) instead of dying of them; other errors stay fatal. */
export function surviveClosedOutput(): void {
  if (installed) return;
  installed = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
    });
  }
}
