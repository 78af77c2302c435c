// A rank of test/dist/late-failure.test.ts: a data-parallel job run as the commands run theirs
// (runDataParallel), whose rank argv[2] fails after the start: at its third barrier it throws an Error
// with code ENOSPC, as a checkpoint write on a full disk does; the other ranks go on to their next barrier.
// Prints {rank, message, code} for the error the job ended with.
import { runDataParallel } from '../../../src/cli/data-parallel';
import { defineOptions } from '../../../src/util/options';

const failing = Number(process.argv[2]);

async function main(): Promise<void> {
  const rank = Number(process.env.RANK);
  try {
    await runDataParallel({ device: 'cpu' }, { command: 'late-failure-case', table: defineOptions({}) }, async (group) => {
      for (let step = 1; ; step++) {
        await group!.barrier();
        if (rank === failing && step === 3) {
          throw Object.assign(new Error(`cannot write checkpoints/step-${step}/model.safetensors: ENOSPC: no space left on device`), { code: 'ENOSPC' });
        }
      }
    });
  } catch (e) {
    const err = e as Error & { code?: string };
    process.stdout.write(`${JSON.stringify({ rank, message: err.message, code: err.code })}\n`);
    process.exitCode = 1;
  }
}

void main();
