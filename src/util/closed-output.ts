// A reader of this process's stdout or stderr that went away (a launcher killed with SIGKILL, `| head`
// done) makes every later write fail with EPIPE, which Node raises as an 'error' event that ends the
// process when nothing listens: the workers of a killed `--nproc-per-node` launcher died on their next
// progress line instead of stopping after a checkpoint. With this, the first such write asks the process
// to stop as on SIGTERM (a run checkpoints, then exits 143); later ones are dropped. An output that
// can take no more (stdout or stderr on a full disk, /dev/full, an I/O error) is the same: a progress
// line that failed with ENOSPC ended the run at once, losing the steps since its last checkpoint.

let installed = false;
let stopAsked = false;

/** Asks this process to stop as on SIGTERM, once: a second SIGTERM a second later would exit at once, without the checkpoint. */
export function stopAsOnSigterm(): void {
  if (stopAsked) return;
  stopAsked = true;
  process.kill(process.pid, 'SIGTERM');
}

/** Errors of a write to stdout or stderr that mean it takes no more output: the reader is gone, or the file or disk is full or failing. */
const OUTPUT_GONE = new Set(['EPIPE', 'ENOSPC', 'EDQUOT', 'EFBIG', 'EIO']);

/** A stdout or stderr that takes no more output (EPIPE, ENOSPC, …) stops the process as SIGTERM would instead of killing it; other errors stay fatal. */
export function stopWhenOutputCloses(): void {
  if (installed) return;
  installed = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (!OUTPUT_GONE.has(e.code ?? '')) throw e;
      // a full stdout says why the process stops where it can (a reader gone, `| head`, needs no word)
      if (stream === process.stdout && e.code !== 'EPIPE' && !stopAsked) process.stderr.write(`semaim: cannot write to stdout (${e.message}): stopping\n`);
      stopAsOnSigterm();
    });
  }
}
