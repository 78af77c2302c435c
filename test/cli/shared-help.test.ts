// An option that several commands take means the same everywhere, and --help says so in the same words:
// object-start's --precision left out when fp16 is chosen and its --num-workers what 0 does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commands } from '../../src/cli/commands';

const SAID: [key: string, phrase: string][] = [
  ['precision', 'auto = fp32 on the CPU, bf16 on a GPU (fp16 before compute capability 8.0)'],
  ['numWorkers', 'one per core but one, at most 8; 0 = on the main thread'],
];

test("every command's --precision and --num-workers help states what auto and 0 do", () => {
  for (const [key, phrase] of SAID) {
    const taking = Object.entries(commands).filter(([, c]) => key in c.options);
    assert.ok(
      taking.some(([name]) => name === 'object-start'),
      `object-start takes ${key}`,
    );
    for (const [name, c] of taking) assert.ok(c.options[key].help.includes(phrase), `${name} --${key}: '${c.options[key].help}' lacks '${phrase}'`);
  }
});

// Which batches data-parallel processes each take and which they share: --nproc-per-node's help said "batch sizes are
// per process" on every command, but linprobe's and segprobe's --batch-size is the probe's whole step, split over them.
const PER_PROCESS: Record<string, { batchSize?: boolean; evalBatchSize?: boolean }> = {
  pretrain: { batchSize: true },
  finetune: { batchSize: true, evalBatchSize: true },
  knn: { evalBatchSize: true },
  linprobe: { batchSize: false, evalBatchSize: true },
  segprobe: { batchSize: false, evalBatchSize: true },
  embed: { batchSize: true },
};

test('the data-parallel commands’ --help says of each batch size whether it is per process or of all processes together', () => {
  const parallel = Object.entries(commands).filter(([, c]) => 'nprocPerNode' in c.options);
  assert.deepEqual(parallel.map(([name]) => name).sort(), Object.keys(PER_PROCESS).sort());
  for (const [name, c] of parallel) {
    assert.doesNotMatch(c.options.nprocPerNode.help, /batch sizes are per process/, `${name} --nproc-per-node`);
    for (const key of ['batchSize', 'evalBatchSize'] as const) {
      const perProcess = PER_PROCESS[name][key];
      if (perProcess === undefined) continue;
      const help = c.options[key].help;
      assert.match(help, perProcess ? /\band process\b/ : /\ball processes together\b/, `${name} --${key}: '${help}'`);
    }
  }
});
