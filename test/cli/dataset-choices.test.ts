// Every command's --dataset is a choice from the data factories' list (src/data/factories.ts DATASETS):
// a name the command cannot read is an option error naming --dataset (exit 2), and --help lists the names.
// knn/linprobe/finetune/ablate took any string and failed later with a DataError (exit 1) that named no option.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands';
import { DATASETS, openDataset } from '../../src/data';
import { OptionError, resolveOptions } from '../../src/util/options';
import { KNN_OPTIONS } from '../../src/eval/options';

const EVALUATORS = ['knn', 'linprobe', 'finetune', 'ablate'];
const MAIN = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

test("each command's --dataset choices are the factories' datasets it can read", () => {
  const labelled = DATASETS.filter((d) => d !== 'flat');
  for (const name of EVALUATORS) assert.deepEqual(commands[name].options.dataset.choices, labelled, name);
  assert.deepEqual(commands.pretrain.options.dataset.choices, DATASETS);
  // embed and predict open a dataset by index; tar shards are streamed, and --help says so
  assert.throws(() => openDataset('shards', { split: 'test', dataPath: '/tmp', imgSize: 16 }), /streamed, not indexed/);
  for (const name of ['embed', 'predict']) {
    assert.deepEqual(
      commands[name].options.dataset.choices,
      DATASETS.filter((d) => d !== 'shards'),
      name,
    );
    assert.match(commands[name].options.dataset.help, /not shards/, name);
  }
  // every command that takes shards for evaluation says how its --data-path names the two splits
  for (const name of EVALUATORS) assert.match(commands[name].options.dataPath.help, /shards: .*\{split\}/, name);
});

test('an unknown or unlabelled --dataset is an option error naming it, before any work (exit 2)', async () => {
  for (const name of EVALUATORS) {
    for (const dataset of ['bogus', 'flat']) {
      const argv = name === 'ablate' ? ['--dataset', dataset] : ['--checkpoint', '/nonexistent/run', '--dataset', dataset];
      await assert.rejects(
        commands[name].run(argv),
        (e: unknown) => e instanceof OptionError && e.flagMessage === `option --dataset: must be one of synthetic, cifar10, folder, shards, got '${dataset}'`,
        `${name} --dataset ${dataset}`,
      );
    }
  }
  const r = spawnSync(process.execPath, [MAIN, 'knn', '--checkpoint', '/nonexistent/run', '--dataset', 'bogus'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr, "semaim: option --dataset: must be one of synthetic, cifar10, folder, shards, got 'bogus'\n");
  const help = spawnSync(process.execPath, [MAIN, 'knn', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /--dataset <synthetic\|cifar10\|folder\|shards>/);
});

test("the library's option tables still take a caller's own dataset name (its DataFactories open it)", () => {
  assert.equal(resolveOptions(KNN_OPTIONS, { checkpoint: 'x', dataset: 'mine' }).dataset, 'mine');
});
