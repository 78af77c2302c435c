// Sub-commands: each declares its options once (src/cli/command.ts) and runs its job.
import * as torch from '../torch';
import { addonPath, loadedLibtorchFile } from '../torch/native';
import { MAX_THREADS, defineOptions } from '../util/options';
import { Command, defineCommand } from './command';
import { distBuildInfo } from '../dist/native-dist';
import { compressionRefusal } from '../dist/ddp';
import { evalCommands } from './eval-commands';
import { vizCommands } from './viz-commands';
import { lossChange } from './loss-change';
import { pretrainSummary } from './pretrain-summary';
import { demoCommand } from './demo';
import { shardsCommand } from './shards-command';
import { segprobeCommand } from './segprobe-command';
import { PRETRAIN_OPTIONS, refuseUnusedOptions, validatePretrain, modelConfigFrom, trainDataRequest } from '../train/pretrain-options';
import { pretrain } from '../train/pretrain';
import { makeTrainData } from '../data';
import { checkDataPath } from '../data/options';
import { runExitCode } from '../run/signals';
import { exportCommand } from './export-command';
import { runDataParallel } from './data-parallel';
import { prepareOnEveryRank } from '../dist/agree';
import { rankSlice } from '../dist';
import { embedCommand } from './embed-command';
import { predictCommand } from './predict-command';
import { objectStartCommand } from './object-start-command';

export { lossChange };

export { Command, defineCommand };

const coreCommands: Record<string, Command> = {
  pretrain: defineCommand({
    summary: 'pre-train a ViT with SemAIM (checkpoints, metrics, resume)',
    usage: 'semaim pretrain [options]',
    description:
      "Pre-trains a SemAIM model. Defaults follow the authors' ViT-B/16 ImageNet recipe (docs/METHOD.md §6.1);\n" +
      'a run killed at any moment continues from its last checkpoint when started again with the same --out-dir.',
    options: PRETRAIN_OPTIONS,
    validate: (o) => {
      validatePretrain(o);
      refuseUnusedOptions(o);
      if (o.target !== 'features') modelConfigFrom(o);
    },
    preflight: (o) => {
      checkDataPath(o);
      if (o.target === 'features') modelConfigFrom(o); // reads the teacher's config file
    },
    run: (o) =>
      runDataParallel(o, { command: 'pretrain', table: PRETRAIN_OPTIONS }, async (group) => {
        const data = await prepareOnEveryRank(
          group,
          () => makeTrainData(trainDataRequest(o), rankSlice(group)),
          (d) => d.close(),
        );
        const r = await pretrain(o, data, { group });
        if (!group || group.rank === 0) {
          process.stdout.write(pretrainSummary(r));
        }
        return runExitCode(r);
      }),
  }),
  export: exportCommand,
  info: defineCommand({
    summary: 'show the libtorch build, threads and devices',
    usage: 'semaim info',
    description: 'The libtorch version and build settings, CPU threads and CUDA devices.',
    options: defineOptions({}),
    async run() {
      const v = torch.version();
      const gpus = torch.cuda.isAvailable()
        ? Array.from({ length: torch.cuda.deviceCount() }, (_, i) => {
            const p = torch.cuda.getDeviceProperties(i);
            return `\n  cuda:${i} ${p.name}, compute ${p.major}.${p.minor}, ${(p.totalMemory / 2 ** 30).toFixed(0)} GiB`;
          }).join('')
        : '';
      const d = distBuildInfo();
      const distLine = d.c10d
        ? `c10d with ${[d.gloo && 'gloo (cpu)', d.nccl && 'nccl (cuda)'].filter(Boolean).join(', ') || 'no backend'}` +
          `${d.reducer ? ', gradient reducer' : ''}; --grad-compress ` +
          (['fp16', 'bf16'] as const).map((c) => `${c} ${d.gloo && compressionRefusal(c, 'gloo') ? 'on nccl only' : 'on every backend'}`).join(', ')
        : 'not built (single process only)';
      process.stdout.write(
        `libtorch ${v.torch}\nthreads ${MAX_THREADS} (--threads' default: every core; libtorch's own default here: ${torch.getNumThreads()})\ncuda ${torch.cuda.isAvailable() ? `${torch.cuda.deviceCount()} device(s)` : 'not available'}${gpus}\n` +
          `distributed ${distLine}\n` +
          `loaded ${loadedLibtorchFile() ?? 'unknown (no /proc/self/maps)'} (through the addon ${addonPath})\n` +
          `${v.config
            .split('\n')
            .filter((l) => /BLAS|CPU capability|CUDA/.test(l))
            .join('\n')}\n`,
      );
      return 0;
    },
  }),
};

export const commands: Record<string, Command> = {
  demo: demoCommand,
  ...coreCommands,
  ...evalCommands,
  segprobe: segprobeCommand,
  embed: embedCommand,
  predict: predictCommand,
  ...vizCommands,
  shards: shardsCommand,
  'object-start': objectStartCommand,
};
