// `semaim knn | linprobe | finetune | ablate`: option tables (file + flags, --help with every
// default), validation before any work, then the jobs in src/eval and src/experiments over the data
// factories they are given (the real datasets by default).
import { dirname, join } from 'node:path';
import { Command, defineCommand } from './command';
import { DATA_FACTORIES, DataFactories } from '../data';
import { LABELLED_DATASETS } from '../data/factories';
import { parseArgv, readConfigFile, refuseNoEffectOptions, resolveOptions, type OptionSpec, type OptionTable, type OptionValues } from '../util/options';
import { FINETUNE_OPTIONS, KNN_OPTIONS, LINPROBE_OPTIONS, validateEval, validateFinetune, validateLinprobe } from '../eval/options';
import { ABLATE_OPTIONS, validateAblate } from '../experiments/ablate-options';
import { runFinetune, runKnn, runLinprobe } from '../eval/run';
import { ablate, ablationExitCode, measureAblation } from '../experiments/ablate';
import { describePlan } from '../experiments/ablate-plan';
import { ChildRunner, measureInProcesses, runShardProcesses, withoutPlanOnly } from './ablate-jobs';
import { resolveEncoder } from '../semaim';
import { abortOnStopSignals, runExitCode } from '../run/signals';
import { checkDataPath } from '../data/options';
import { checkThreadsPerProcess, runDataParallel } from './data-parallel';
import { quotedPath, shellQuote } from '../util/printable';
import { stderrLine } from '../util/console-line';

/**
 * A job's option table as its command takes it: --dataset is one of the real datasets with labels
 * (checked with the other options: `option --dataset: must be one of ...`, exit 2; --help lists them).
 * The library's tables take any name, for a caller's own DataFactories.
 */
function overLabelledDatasets<T extends OptionTable & { dataset: OptionSpec }>(table: T): T {
  return { ...table, dataset: { ...table.dataset, choices: LABELLED_DATASETS } };
}

const KNN_COMMAND_OPTIONS = overLabelledDatasets(KNN_OPTIONS);
const LINPROBE_COMMAND_OPTIONS = overLabelledDatasets(LINPROBE_OPTIONS);
const FINETUNE_COMMAND_OPTIONS = overLabelledDatasets(FINETUNE_OPTIONS);
const ABLATE_COMMAND_OPTIONS = overLabelledDatasets(ABLATE_OPTIONS);

/** Whether the --config file of the ablate arguments `argv` sets plan-only (flags override it, as ever). */
function configPlansOnly(argv: string[]): boolean {
  const { options } = parseArgv(argv, ABLATE_COMMAND_OPTIONS);
  if (options.config === undefined) return false;
  const file = readConfigFile(String(options.config));
  return resolveOptions({ planOnly: ABLATE_OPTIONS.planOnly }, { planOnly: file.planOnly }).planOnly;
}

/** The commands over the given data factories (looked up only when a command runs). */
export function makeEvalCommands(factories: () => DataFactories = () => DATA_FACTORIES): Record<string, Command> {
  return {
    knn: defineCommand({
      summary: "weighted k-NN accuracy (DINO) of a pre-trained encoder's features",
      usage: 'semaim knn --checkpoint RUN_DIR|ENCODER.safetensors|ENCODER.pth [options]',
      description:
        "DINO's weighted k-NN: L2-normalised [CLS] (or mean) features, cosine similarity to every training feature,\n" +
        'the k nearest vote with weight exp(cos / T). Writes <out-dir>/knn.json and prints a table.',
      options: KNN_COMMAND_OPTIONS,
      validate: validateEval,
      preflight: (o) => {
        checkDataPath(o, ['train', 'test']);
        resolveEncoder(o.checkpoint, o); // a missing encoder is reported before any data is opened
      },
      run: (o) =>
        runDataParallel(o, { command: 'knn', table: KNN_OPTIONS }, async (group) => {
          const r = await abortOnStopSignals((signal) => runKnn(o, factories(), { group, signal }));
          if (r) process.stdout.write(`${r.table}wrote ${quotedPath(r.path)}\n`);
          return 0;
        }),
    }),
    linprobe: defineCommand({
      summary: 'linear probe (BatchNorm + Linear on frozen features, SGD or LARS)',
      usage: 'semaim linprobe --checkpoint RUN_DIR|ENCODER.safetensors|ENCODER.pth [options]',
      description:
        "MAE's linear probe: frozen encoder → BatchNorm1d (no affine) → Linear; SGD momentum 0.9 (or LARS),\n" +
        'lr = blr × batch / 256, cosine schedule. Writes <out-dir>/linprobe.json and probe.safetensors.',
      options: LINPROBE_COMMAND_OPTIONS,
      validate: validateLinprobe,
      preflight: (o) => {
        checkDataPath(o, ['train', 'test']);
        resolveEncoder(o.checkpoint, o);
      },
      run: (o) =>
        runDataParallel(o, { command: 'linprobe', table: LINPROBE_OPTIONS }, async (group) => {
          const r = await abortOnStopSignals((signal) => runLinprobe(o, factories(), { group, signal }));
          if (r) process.stdout.write(`${r.table}wrote ${quotedPath(r.path)} and ${quotedPath(join(dirname(r.path), 'probe.safetensors'))}\n`);
          return 0;
        }),
    }),
    finetune: defineCommand({
      summary: 'full fine-tuning (layer-wise lr decay, mixup/cutmix, drop-path; checkpoints and resume)',
      usage: 'semaim finetune --checkpoint RUN_DIR|ENCODER.safetensors|ENCODER.pth [options]',
      description:
        'Fine-tunes the encoder with global average pooling + fc_norm + head, as MAE (docs/METHOD.md §6.2 defaults).\n' +
        'A run killed at any moment continues from its last checkpoint when started again with the same --out-dir.\n' +
        'Writes <out-dir>/finetune.json at the end.',
      options: FINETUNE_COMMAND_OPTIONS,
      validate: (o) => {
        validateFinetune(o);
        // --ema-decay without --ema, the mixing probabilities with the mixing off (a value given as the default cannot be told apart, and changes nothing)
        refuseNoEffectOptions(FINETUNE_OPTIONS, o as unknown as OptionValues);
      },
      preflight: (o) => {
        checkDataPath(o, ['train', 'test']);
        resolveEncoder(o.checkpoint, o);
      },
      run: (o) =>
        runDataParallel(o, { command: 'finetune', table: FINETUNE_OPTIONS }, async (group) => {
          const r = await runFinetune(o, factories(), { group });
          // (its checkpoints are what predict and export read)
          process.stdout.write(r.path ? `${r.table}wrote ${quotedPath(r.path)} and ${quotedPath(`${join(dirname(r.path), 'checkpoints')}/`)}\n` : r.table);
          return runExitCode(r);
        }),
    }),
    ablate: defineCommand({
      summary: 'order ablation: matched pre-trains per order, k-NN + linear probe, mean ± std over seeds',
      usage: 'semaim ablate [options]',
      description:
        'Pre-trains one encoder per order (raster, stochastic, similarity, semantic, multicenter) with the same\n' +
        'recipe and seeds, evaluates each with k-NN and a linear probe, and writes <out-dir>/ablation.md and\n' +
        'ablation.json. Run again with the same --out-dir to continue an interrupted ablation.\n' +
        '--budget-minutes M plans the length from timed steps (plan.json); --jobs N runs N processes at once;\n' +
        '--stop-after-minutes stops at a checkpoint and exits with code 75 until every run is done.',
      options: ABLATE_COMMAND_OPTIONS,
      validate: (o) => {
        validateAblate(o);
        checkThreadsPerProcess(o.threads, o.jobs, '--jobs');
      },
      preflight: (o) => checkDataPath(o, ['train', 'test']),
      async run(o) {
        if (o.planMeasure) {
          process.stdout.write(JSON.stringify(await measureAblation(o, factories(), stderrLine)) + '\n');
          return 0;
        }
        const argv = process.argv.slice(3);
        const runner: ChildRunner = {
          command: [process.execPath, process.argv[1]],
          argv,
          outDir: o.outDir,
          jobs: o.jobs,
          threads: o.threads,
          log: stderrLine,
        };
        const r = await ablate(o, factories(), {
          command: `semaim ablate ${argv.map(shellQuote).join(' ')}`.trim(),
          runShards: (shards, so) => runShardProcesses(runner, shards, so),
          measureInProcesses: (n) => measureInProcesses(runner, n),
        });
        if (o.planOnly) {
          const again = withoutPlanOnly(argv);
          if (configPlansOnly(again)) again.push('--no-plan-only'); // or the printed command would only plan again
          process.stdout.write(
            `wrote ${quotedPath(`${o.outDir}/plan.json`)} (${describePlan(r.plan!).split('\n')[0]}); run:\n  semaim ablate ${again.map(shellQuote).join(' ')}\n`,
          );
          return 0;
        }
        if (o.shard !== undefined) {
          process.stdout.write(`shard ${o.shard}: ${r.complete ? 'done' : 'stopped early'}\n`);
          return r.complete ? 0 : 75;
        }
        process.stdout.write(`${r.markdown}\nwrote ${quotedPath(`${o.outDir}/ablation.md`)} and ablation.json\n`);
        if (r.diverged.length) process.stderr.write(`semaim: ${r.diverged.length} pre-training(s) diverged; the table leaves them out\n`);
        return ablationExitCode(r);
      },
    }),
  };
}

export const evalCommands: Record<string, Command> = makeEvalCommands();
