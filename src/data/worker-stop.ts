// Ending a loader's worker threads. Terminating a busy worker can abort the whole process in Node 20
// ("Assertion failed: (data.first) != nullptr" in NodePlatform::ForIsolate: a V8 background compile job
// racing the disposal of the worker's isolate), and so can a program that exits while its workers are
// busy. So the loaders ask instead: a shared flag makes the worker skip the tasks still queued, a 'stop'
// message closes its port, and the thread ends by itself after the task in hand; terminate() only after
// a grace period. Pools a program leaves running are stopped this way when it is about to exit.
import type { MessagePort, Worker } from 'node:worker_threads';

/** The flag a worker reads before each task (shared memory: seen at once, ahead of queued messages). */
export function newStopFlag(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4));
}

export function stopRequested(flag: Int32Array): boolean {
  return Atomics.load(flag, 0) !== 0;
}

/** Worker side: whether `msg` is the stop request (then the port is closed and the thread will end). */
export function handleStop(port: MessagePort, msg: { type: string }): boolean {
  if (msg.type !== 'stop') return false;
  port.close();
  return true;
}

/** Asks a worker to end after its current task; terminates it if it has not within the grace period. */
export async function stopWorker(w: Worker, flag: Int32Array, graceMs = 5000): Promise<void> {
  // a worker that has exited (died, or stopped earlier) has threadId -1 and sends no 'exit' again: nothing to wait for
  if (w.threadId === -1) return;
  // ref: an unref'd worker would not keep the event loop alive until its exit
  w.ref();
  const exited = new Promise<'exited'>((resolve) => w.once('exit', () => resolve('exited')));
  Atomics.store(flag, 0, 1);
  try {
    w.postMessage({ type: 'stop' });
  } catch {
    // already gone
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
  const how = await Promise.race([exited, late]);
  clearTimeout(timer);
  if (how === 'late') await w.terminate().catch(() => undefined);
}

const running = new Set<() => Promise<void>>();
let hooked = false;

/** Registers a pool's stop function to run when the program has nothing left to do; returns the unregistration. */
export function stopBeforeExit(stop: () => Promise<void>): () => void {
  if (!hooked) {
    hooked = true;
    // once the workers have ended the loop is empty again, and the process exits with the set empty
    process.on('beforeExit', () => {
      for (const s of [...running]) void s();
    });
  }
  running.add(stop);
  return () => running.delete(stop);
}
