// Worker-thread entry of the ShardLoader: streams its piece of each epoch and builds the batches
// the main thread asks for, one message at a time, in arrival order (buffers transferred).

import { parentPort, workerData } from 'node:worker_threads';
import type { RawBatch } from '../batch';
import { ShardBatchBuilder, type EpochTask, type ShardBuilderConfig } from './builder';
import { handleStop, stopRequested } from '../worker-stop';
import { DataError } from '../../util/errors';

export type ToShardWorker = { type: 'epoch'; gen: number; task: EpochTask } | { type: 'batch'; gen: number; batch: number; size: number } | { type: 'stop' };

export type FromShardWorker =
  { type: 'batch'; gen: number; batch: RawBatch } | { type: 'error'; gen: number; batch?: number; message: string; stack?: string; code?: string };

if (parentPort) {
  const port = parentPort;
  const { cfg, stopFlag } = workerData as { cfg: ShardBuilderConfig; stopFlag: Int32Array };
  const builder = new ShardBatchBuilder(cfg);
  let gen = -1;
  let startError: Error | null = null;
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (msg: ToShardWorker) => {
    // the loader asks the thread to end rather than terminating it (src/data/worker-stop.ts)
    if (!handleStop(port, msg)) chain = chain.then(() => handle(msg as Exclude<ToShardWorker, { type: 'stop' }>)).catch(() => undefined);
  });

  const handle = async (msg: Exclude<ToShardWorker, { type: 'stop' }>): Promise<void> => {
    if (stopRequested(stopFlag)) return; // queued before the stop request
    try {
      if (msg.type === 'epoch') {
        gen = msg.gen;
        startError = null;
        await builder.start(msg.task).catch((e: Error) => {
          startError = e;
        });
        return;
      }
      if (msg.gen !== gen) return; // a request of an abandoned epoch
      if (startError) throw startError;
      const b = await builder.build(msg.batch, msg.size);
      const transfer: ArrayBuffer[] = [b.images.buffer as ArrayBuffer, b.labels.buffer as ArrayBuffer, b.indices.buffer as ArrayBuffer];
      if (b.targets) transfer.push(b.targets.buffer as ArrayBuffer);
      port.postMessage({ type: 'batch', gen: msg.gen, batch: b } satisfies FromShardWorker, transfer);
    } catch (e) {
      const err = e as Error;
      port.postMessage({
        type: 'error',
        gen: msg.gen,
        batch: msg.type === 'batch' ? msg.batch : undefined,
        message: err.message,
        stack: err.stack,
        code: err instanceof DataError ? err.code : undefined, // the loader rethrows it as a DataError
      } satisfies FromShardWorker);
    }
  };
}
