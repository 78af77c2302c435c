// A rank of test/dist/training.test.ts's `--cuda-graphs` data-parallel check where no GPU is: `semaim
// pretrain` as the CLI runs it (arguments as on the command line), through the captured step's code path
// with every step run eagerly (staticStepWithoutCapture), the gradients averaged after each step.
import * as dist from '../../../src/dist';
import { pretrain } from '../../../src/train/pretrain';
import { PRETRAIN_OPTIONS, trainDataRequest, validatePretrain } from '../../../src/train/pretrain-options';
import { makeTrainData } from '../../../src/data';
import { parseArgv, resolveOptions } from '../../../src/util/options';

async function main(): Promise<void> {
  const o = resolveOptions(PRETRAIN_OPTIONS, parseArgv(process.argv.slice(2), PRETRAIN_OPTIONS).options);
  validatePretrain(o);
  const group = await dist.initProcessGroup({ device: 'cpu', timeoutMs: 120_000 });
  const r = await pretrain(o, makeTrainData(trainDataRequest(o), dist.rankSlice(group)), { group, staticStepWithoutCapture: true, log: () => {} });
  process.stdout.write(`${JSON.stringify({ rank: group.rank, steps: r.steps, stoppedBy: r.stoppedBy })}\n`);
  dist.destroyProcessGroup();
}

main().catch((e) => {
  process.stderr.write(`worker failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
