// Worker-thread entry of the DataLoader: builds batches (or decodes cache chunks) on request and
// sends them back with their buffers transferred, one task at a time, in arrival order.

import { parentPort, workerData } from 'node:worker_threads';
import { DataError } from '../util/errors';
import { BatchBuilder, type BuilderConfig, type BatchTask } from './batch';
import type { DatasetSpec } from './dataset';
import { handleStop, stopRequested } from './worker-stop';

export type ToWorker =
  | { type: 'batch'; gen: number; task: BatchTask }
  | { type: 'decode'; gen: number; id: number; start: number; end: number }
  | { type: 'spec'; spec: DatasetSpec }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'batch'; gen: number; batch: import('./batch').RawBatch }
  | { type: 'decoded'; gen: number; id: number; chunk: import('./batch').PackedChunk }
  | { type: 'error'; gen: number; batch?: number; id?: number; message: string; stack?: string; code?: string };

if (parentPort) {
  const port = parentPort;
  const { cfg, stopFlag } = workerData as { cfg: BuilderConfig; stopFlag: Int32Array };
  const builder = new BatchBuilder(cfg);
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (msg: ToWorker) => {
    // the loader asks the thread to end rather than terminating it (src/data/worker-stop.ts)
    if (!handleStop(port, msg)) chain = chain.then(() => handle(msg as Exclude<ToWorker, { type: 'stop' }>)).catch(() => undefined);
  });

  const handle = async (msg: Exclude<ToWorker, { type: 'stop' }>): Promise<void> => {
    if (stopRequested(stopFlag)) return; // queued before the stop request
    if (msg.type === 'spec') {
      builder.setSpec(msg.spec);
      return;
    }
    try {
      if (msg.type === 'batch') {
        const b = await builder.build(msg.task);
        const transfer: ArrayBuffer[] = [b.images.buffer as ArrayBuffer, b.labels.buffer as ArrayBuffer, b.indices.buffer as ArrayBuffer];
        if (b.masks) transfer.push(b.masks.buffer as ArrayBuffer);
        if (b.targets) transfer.push(b.targets.buffer as ArrayBuffer);
        port.postMessage({ type: 'batch', gen: msg.gen, batch: b } satisfies FromWorker, transfer);
      } else {
        const chunk = await builder.decodeRange(msg.start, msg.end);
        port.postMessage({ type: 'decoded', gen: msg.gen, id: msg.id, chunk } satisfies FromWorker, [chunk.data]);
      }
    } catch (e) {
      const err = e as Error;
      port.postMessage({
        type: 'error',
        gen: msg.gen,
        batch: msg.type === 'batch' ? msg.task.batch : undefined,
        id: msg.type === 'decode' ? msg.id : undefined,
        message: err.message,
        stack: err.stack,
        code: err instanceof DataError ? err.code : undefined, // the loader rethrows it as a DataError
      } satisfies FromWorker);
    }
  };
}
