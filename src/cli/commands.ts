// Sub-commands: each parses its options (file + flags, validated before work) and runs its job.
import * as torch from '../torch';
import { distBuildInfo } from '../dist/native-dist';
import { OptionTable } from '../util/options';
import { Command, parseCommand } from './command';
import { evalCommands } from './eval-commands';
import { vizCommands } from './viz-commands';
import { demoCommand } from './demo';
import { registerEvalData } from '../eval/data';
import { PRETRAIN_OPTIONS, validatePretrain, modelConfigFrom } from '../train/pretrain-config';
import { pretrain } from '../train/pretrain';
import { exportEncoder } from '../train/export';
import { makeTrainData, makeEvalData } from '../train/data';

export { Command, parseCommand };

registerEvalData({ makeEvalData, makeTrainData });

const EXPORT_OPTIONS: OptionTable = {
  checkpoint: { type: 'string', required: true, help: 'run folder (newest valid checkpoint) or a checkpoint folder' },
  out: { type: 'string', required: true, help: 'output path without extension: writes <out>.safetensors and <out>.json' },
  encoderOnly: { type: 'boolean', default: true, help: 'timm-compatible encoder only (the only export format)' },
};

const coreCommands: Record<string, Command> = {
  pretrain: {
    summary: 'pre-train a ViT with SemAIM (checkpoints, metrics, resume)',
    async run(argv) {
      const p = parseCommand(argv, 'semaim pretrain [options]',
        'Pre-trains a SemAIM model. Defaults follow the authors\' ViT-B/16 ImageNet recipe (SPEC §5);\n' +
        'a run killed at any moment continues from its last checkpoint when started again with the same --out-dir.',
        PRETRAIN_OPTIONS);
      if (!p) return 0;
      validatePretrain(p.o);
      modelConfigFrom(p.o);
      const data = await makeTrainData(p.o);
      const r = await pretrain(p.o, data);
      process.stdout.write(`pretrain ${r.stoppedBy} after ${r.steps} steps; loss ${r.firstLoss.toFixed(4)} → ${r.lastLoss.toFixed(4)}\n` +
        `  checkpoint: ${r.checkpoint}\n  metrics:    ${r.outDir}/metrics.jsonl\n`);
      return r.stoppedBy === 'nonfinite' ? 1 : 0;
    },
  },
  export: {
    summary: 'export the encoder of a checkpoint as timm-compatible safetensors + config JSON',
    async run(argv) {
      const p = parseCommand(argv, 'semaim export --checkpoint RUN_DIR --out FILE', 'Writes the encoder (timm names) of a checkpoint.', EXPORT_OPTIONS);
      if (!p) return 0;
      const r = exportEncoder(String(p.o.checkpoint), String(p.o.out));
      process.stdout.write(`wrote ${r.weights} (${r.tensors} tensors) and ${r.config}\n`);
      return 0;
    },
  },
  info: {
    summary: 'show the libtorch build, threads and devices',
    async run() {
      const v = torch.version();
      const gpus = torch.cuda.isAvailable() ? Array.from({ length: torch.cuda.deviceCount() }, (_, i) => {
        const p = torch.cuda.getDeviceProperties(i);
        return `\n  cuda:${i} ${p.name}, compute ${p.major}.${p.minor}, ${(p.totalMemory / 2 ** 30).toFixed(0)} GiB`;
      }).join('') : '';
      const d = distBuildInfo();
      const distLine = d.c10d ? `c10d with ${[d.gloo && 'gloo (cpu)', d.nccl && 'nccl (cuda)'].filter(Boolean).join(', ') || 'no backend'}` +
        `${d.reducer ? ', gradient reducer' : ''}` : 'not built (single process only)';
      process.stdout.write(`libtorch ${v.torch}\nthreads ${torch.getNumThreads()}\ncuda ${torch.cuda.isAvailable() ? `${torch.cuda.deviceCount()} device(s)` : 'not available'}${gpus}\n` +
        `distributed ${distLine}\n` +
        `${v.config.split('\n').filter((l) => /BLAS|CPU capability|CUDA/.test(l)).join('\n')}\n`);
      return 0;
    },
  },
};

export const commands: Record<string, Command> = { demo: demoCommand, ...coreCommands, ...evalCommands, ...vizCommands };
