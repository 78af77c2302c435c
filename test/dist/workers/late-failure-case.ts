// A rank of test/dist/late-failure.test.ts: a data-parallel job run as the commands run theirs
// (runDataParallel), whose rank argv[2] fails after the start, in one of two places (argv[3]):
//  - 'barrier' (default): at its third barrier it throws an Error with code ENOSPC, as a checkpoint write
//    on a full disk does (argv[4] 'code-apart': a message without the code); the other ranks go on to their next barrier.
//  - 'backward': in its third DDP step, backward itself throws (a tensor saved for the gradient was changed
//    in place) after the Reducer has started the all-reduce of the last layer's buckets; the other ranks
//    then wait inside backward for buckets the failing rank never starts.
// Prints {rank, message, code} for the error the job ended with.
import { runDataParallel } from '../../../src/cli/data-parallel';
import * as dist from '../../../src/dist';
import * as torch from '../../../src/torch';
import { Linear, Module } from '../../../src/nn';
import { defineOptions } from '../../../src/util/options';

const failing = Number(process.argv[2]);
const where = process.argv[3] ?? 'barrier';

class TwoLayers extends Module {
  readonly fc1 = this.module('fc1', new Linear(8, 16));
  readonly fc2 = this.module('fc2', new Linear(16, 4));
}

async function barrierJob(group: dist.ProcessGroup, rank: number): Promise<number> {
  for (let step = 1; ; step++) {
    await group.barrier();
    if (rank === failing && step === 3) {
      // code-apart: a message that does not name its code (the others then add it)
      const why = process.argv[4] === 'code-apart' ? 'no space left on device' : 'ENOSPC: no space left on device';
      throw Object.assign(new Error(`cannot write checkpoints/step-${step}/model.safetensors: ${why}`), { code: 'ENOSPC' });
    }
  }
}

async function backwardJob(group: dist.ProcessGroup, rank: number): Promise<number> {
  torch.manualSeed(1);
  const net = new TwoLayers();
  // a bucket per parameter: fc2's all-reduces start before backward reaches fc1
  const ddp = new dist.DistributedDataParallel(net, group, { mode: 'overlap', bucketCapMb: 1e-6, firstBucketCapMb: 1e-6 });
  for (let step = 1; ; step++) {
    torch.scope(() => {
      const hidden = net.fc1.forward(torch.rand([4, 8])).exp(); // exp keeps its output for the gradient
      const out = net.fc2.forward(hidden.add(0));
      if (rank === failing && step === 3) hidden.mul_(2); // ... so backward fails when it reaches exp
      ddp.backward(out.square().mean());
    });
    await new Promise((r) => setImmediate(r));
  }
}

async function main(): Promise<void> {
  const rank = Number(process.env.RANK);
  try {
    await runDataParallel({ device: 'cpu' }, { command: 'late-failure-case', table: defineOptions({}) }, (group) =>
      where === 'backward' ? backwardJob(group!, rank) : barrierJob(group!, rank),
    );
  } catch (e) {
    const err = e as Error & { code?: string };
    process.stdout.write(`${JSON.stringify({ rank, message: err.message, code: err.code })}\n`);
    process.exitCode = 1;
  }
}

void main();
