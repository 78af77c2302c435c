// `semaim knn | linprobe | finetune | ablate`: option tables (file + flags, --help with every
// default), validation before any work, then the jobs in src/eval. The labelled datasets come from
// the adapters registered with registerEvalData (src/eval/data.ts).
import { Command, parseCommand } from './command';
import { EvalDataFactories, registeredEvalData } from '../eval/data';
import { ABLATE_OPTIONS, FINETUNE_OPTIONS, KNN_OPTIONS, LINPROBE_OPTIONS, validateEval } from '../eval/options';
import { runFinetune, runKnn, runLinprobe } from '../eval/run';
import { ablate } from '../eval/ablate';
import { resolveEncoder } from '../eval/encoder';
import { checkDataPath } from '../data/options';

/** The commands over given data factories (default: the registered adapters, looked up when a command runs). */
export function makeEvalCommands(factories: () => EvalDataFactories = registeredEvalData): Record<string, Command> {
  return {
    knn: {
      summary: 'weighted k-NN accuracy (DINO) of a pre-trained encoder\'s features',
      options: KNN_OPTIONS,
      async run(argv) {
        const p = parseCommand(argv, 'semaim knn --checkpoint RUN_DIR|ENCODER.safetensors [options]',
          'DINO\'s weighted k-NN: L2-normalised [CLS] (or mean) features, cosine similarity to every training feature,\n' +
          'the k nearest vote with weight exp(cos / T). Writes <out-dir>/knn.json and prints a table.', KNN_OPTIONS);
        if (!p) return 0;
        validateEval(p.o);
        checkDataPath(p.o);
        resolveEncoder(String(p.o.checkpoint)); // a missing encoder is reported before any data is opened
        const r = await runKnn(p.o, factories());
        process.stdout.write(`${r.table}wrote ${r.path}\n`);
        return 0;
      },
    },
    linprobe: {
      summary: 'linear probe (BatchNorm + Linear on frozen features, SGD or LARS)',
      options: LINPROBE_OPTIONS,
      async run(argv) {
        const p = parseCommand(argv, 'semaim linprobe --checkpoint RUN_DIR|ENCODER.safetensors [options]',
          'MAE\'s linear probe: frozen encoder → BatchNorm1d (no affine) → Linear; SGD momentum 0.9 (or LARS),\n' +
          'lr = blr × batch / 256, cosine schedule. Writes <out-dir>/linprobe.json and probe.safetensors.', LINPROBE_OPTIONS);
        if (!p) return 0;
        validateEval(p.o);
        checkDataPath(p.o);
        resolveEncoder(String(p.o.checkpoint)); // a missing encoder is reported before any data is opened
        const r = await runLinprobe(p.o, factories());
        process.stdout.write(`${r.table}wrote ${r.path}\n`);
        return 0;
      },
    },
    finetune: {
      summary: 'full fine-tuning (layer-wise lr decay, mixup/cutmix, drop-path; checkpoints and resume)',
      options: FINETUNE_OPTIONS,
      async run(argv) {
        const p = parseCommand(argv, 'semaim finetune --checkpoint RUN_DIR|ENCODER.safetensors [options]',
          'Fine-tunes the encoder with global average pooling + fc_norm + head, as MAE (SPEC §5 defaults).\n' +
          'A run killed at any moment continues from its last checkpoint when started again with the same --out-dir.\n' +
          'Writes <out-dir>/finetune.json at the end.', FINETUNE_OPTIONS);
        if (!p) return 0;
        validateEval(p.o);
        checkDataPath(p.o);
        resolveEncoder(String(p.o.checkpoint)); // a missing encoder is reported before any data is opened
        const r = await runFinetune(p.o, factories());
        process.stdout.write(r.path ? `${r.table}wrote ${r.path}\n` : r.table);
        return r.stoppedBy === 'nonfinite' ? 1 : 0;
      },
    },
    ablate: {
      summary: 'order ablation: matched pre-trains per order, k-NN + linear probe, mean ± std over seeds',
      options: ABLATE_OPTIONS,
      async run(argv) {
        const p = parseCommand(argv, 'semaim ablate [options]',
          'Pre-trains one encoder per order (raster, stochastic, similarity, semantic, multicenter) with the same\n' +
          'recipe and seeds, evaluates each with k-NN and a linear probe, and writes <out-dir>/ablation.md and\n' +
          'ablation.json. Run again with the same --out-dir to continue an interrupted ablation.', ABLATE_OPTIONS);
        if (!p) return 0;
        validateEval(p.o);
        checkDataPath(p.o);
        const r = await ablate(p.o, factories(), { command: `semaim ablate ${argv.join(' ')}`.trim() });
        process.stdout.write(`${r.markdown}\nwrote ${p.o.outDir}/ablation.md and ablation.json\n`);
        return 0;
      },
    },
  };
}

export const evalCommands: Record<string, Command> = makeEvalCommands();
