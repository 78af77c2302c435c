// The worker threads of a loader (DataLoader: data/worker.ts; ShardLoader: shards/worker.ts) and the
// replies it awaits, each under the key its reply carries. A worker that fails or exits unexpectedly
// rejects every awaited reply and every later request (the loader then stops the pool); a reply of an
// earlier generation (an epoch abandoned midway) is dropped; the threads keep the process alive only while
// the loader awaits one of them, so an iterator abandoned without finishing does not hang the program.
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { DataError } from '../util/errors';
import { newStopFlag, stopBeforeExit, stopWorker } from './worker-stop';

/** What a worker posts: a result, or a failure of the task under that key. */
export type WorkerReply = { gen: number } & ({ type: 'error'; message: string; stack?: string; code?: string } | { type: string });

export interface PoolSlot {
  readonly worker: Worker;
  readonly stopFlag: Int32Array;
  /** Requests sent to this worker whose replies the loader has not taken yet. */
  outstanding: number;
}

export interface PoolOptions<M extends WorkerReply, K> {
  /** The compiled worker script. */
  script: string;
  /** The loader's name and what its workers are called, for messages: 'DataLoader', 'data worker'. */
  owner: string;
  what: string;
  count: number;
  /** What each worker starts with (its stop flag is added). */
  workerData: object;
  /** The loader's current generation: replies of another are dropped. */
  generation: () => number;
  /** The key a reply answers (undefined: none) and, for a result, its value. */
  keyOf: (m: M) => K | undefined;
  valueOf: (m: M) => unknown;
}

interface Waiter {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export class WorkerPool<M extends WorkerReply, K> {
  readonly slots: PoolSlot[] = [];
  private readonly waiters = new Map<K, Waiter>();
  private failure: Error | null = null;
  private stopped = false;
  private readonly unregisterExit: () => void;

  constructor(private readonly o: PoolOptions<M, K>) {
    if (!existsSync(o.script)) throw new Error(`${o.owner}: worker script ${o.script} not found (run the compiled JavaScript, or use workers: 0)`);
    for (let i = 0; i < o.count; i++) {
      const stopFlag = newStopFlag();
      const worker = new Worker(o.script, { workerData: { ...o.workerData, stopFlag } });
      worker.on('message', (m: M) => this.onMessage(m));
      worker.on('error', (e: Error) => this.fail(new Error(`${o.what} ${i} failed: ${e.message}`)));
      worker.on('exit', (code) => {
        if (!this.stopped) this.fail(new Error(`${o.what} ${i} exited unexpectedly (code ${code})`));
      });
      worker.unref();
      this.slots.push({ worker, stopFlag, outstanding: 0 });
    }
    this.unregisterExit = stopBeforeExit(() => this.stop());
  }

  /** Whether a worker failed: the pool is of no further use. */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Posts `msg` to the worker of `slot`; resolves with the value of the reply under `key`. */
  request<T>(slot: PoolSlot, key: K, msg: unknown): Promise<T> {
    const p = this.failure
      ? Promise.reject<T>(this.failure)
      : new Promise<T>((resolve, reject) => {
          this.waiters.set(key, { resolve: resolve as (v: unknown) => void, reject });
        });
    // a prefetched batch nobody awaits must not raise an unhandled rejection, also one requested
    // after a worker died (the loader stops at the first failed batch and drops the later ones)
    p.catch(() => undefined);
    if (!this.failure) slot.worker.postMessage(msg);
    return p;
  }

  /** Awaits a reply with the workers keeping the process alive meanwhile. */
  async wait<T>(reply: Promise<T>): Promise<T> {
    for (const s of this.slots) s.worker.ref();
    try {
      return await reply;
    } finally {
      if (!this.stopped) for (const s of this.slots) s.worker.unref();
    }
  }

  /**
   * Requests items first..end-1, each from the worker `slotOf` gives, with at most `prefetch` replies
   * awaited per worker, and yields the replies in that order.
   */
  async *inOrder<T>(
    first: number,
    end: number,
    prefetch: number,
    slotOf: (j: number) => PoolSlot,
    request: (slot: PoolSlot, j: number) => Promise<T>,
  ): AsyncGenerator<T> {
    const replies = new Map<number, Promise<T>>();
    let next = first;
    for (let j = first; j < end; j++) {
      for (; next < end && slotOf(next).outstanding < prefetch; next++) {
        const s = slotOf(next);
        s.outstanding++;
        replies.set(next, request(s, next));
      }
      const reply = await this.wait(replies.get(j)!);
      replies.delete(j);
      slotOf(j).outstanding--;
      yield reply;
    }
  }

  postAll(msg: unknown): void {
    for (const s of this.slots) s.worker.postMessage(msg);
  }

  /** Forgets the replies still awaited (an epoch ended, or was abandoned). */
  forgetRequests(): void {
    this.waiters.clear();
    for (const s of this.slots) s.outstanding = 0;
  }

  /** Ends the threads (each after its task in hand); the pool cannot be used afterwards. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unregisterExit();
    await Promise.all(this.slots.map((s) => stopWorker(s.worker, s.stopFlag)));
  }

  /** Rejects every awaited reply, and (until the pool is stopped) every later request, with `e`. */
  fail(e: Error): void {
    if (!this.stopped) this.failure = e;
    const ws = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of ws) w.reject(e);
  }

  private onMessage(m: M): void {
    if (m.gen !== this.o.generation()) return;
    const key = this.o.keyOf(m);
    if (key === undefined) return;
    const w = this.waiters.get(key);
    if (!w) return;
    this.waiters.delete(key);
    if (isError(m)) {
      const err = m.code === 'ERR_DATA' ? new DataError(m.message) : new Error(m.message);
      if (m.stack) err.stack = `${m.message}\n    (in ${this.o.what})\n${m.stack.split('\n').slice(1).join('\n')}`;
      w.reject(err);
    } else w.resolve(this.o.valueOf(m));
  }
}

function isError(m: WorkerReply): m is Extract<WorkerReply, { type: 'error' }> {
  return m.type === 'error';
}

/** {@link WorkerPool.inOrder}'s counterpart without workers: builds items first..end-1 one after another. */
export async function* builtInOrder<T>(first: number, end: number, build: (j: number) => T | Promise<T>): AsyncGenerator<T> {
  for (let j = first; j < end; j++) yield await build(j);
}
