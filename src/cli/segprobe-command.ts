// `semaim segprobe`: the segmentation probe on a frozen encoder (src/eval/segprobe-run.ts).
import { dirname, join } from 'node:path';
import { Command, defineCommand } from './command';
import { makeSegData } from '../data/seg-loader';
import { checkDataPath } from '../data/options';
import { resolveEncoder } from '../semaim';
import { SEGPROBE_OPTIONS, readSegprobeConfig } from '../eval/segprobe-options';
import { runSegprobe, SegDataFactory } from '../eval/segprobe-run';
import { abortOnStopSignals } from '../run/signals';
import { quotedPath } from '../util/printable';
import { runDataParallel } from './data-parallel';

export function makeSegprobeCommand(factory: SegDataFactory = makeSegData): Command {
  return defineCommand({
    summary: 'segmentation probe: BatchNorm + linear head on frozen patch tokens, mIoU on data with masks',
    usage: 'semaim segprobe --checkpoint RUN_DIR|ENCODER.safetensors|ENCODER.pth [options]',
    description:
      'The linear segmentation protocol (DINOv2 / mmseg BNHead): patch tokens of the frozen encoder (after its final norm)\n' +
      '→ BatchNorm → per-patch Linear → bilinear upsampling to the image; per-pixel cross-entropy (255 = ignore).\n' +
      'Datasets: the built-in synthetic objects (--seg-classes shapes|object) or --dataset seg-folder --data-path ROOT\n' +
      'with ROOT/{train,test}/images/NAME.jpg|png, ROOT/{train,test}/masks/NAME.png (val/ for a missing test/) and ROOT/classes.txt.\n' +
      'Writes <out-dir>/segprobe.json (mIoU as a fraction), segprobe.png and seg-head.safetensors.\n' +
      'With --nproc-per-node N each process encodes its share of the images and the probe trains as in one process.',
    options: SEGPROBE_OPTIONS,
    validate: (o) => {
      readSegprobeConfig(o);
    },
    preflight: (o) => {
      checkDataPath(o);
      resolveEncoder(o.checkpoint, o); // a missing encoder is reported before any data is opened
    },
    run: (o) =>
      runDataParallel(o, { command: 'segprobe', table: SEGPROBE_OPTIONS }, async (group) => {
        const r = await abortOnStopSignals((signal) => runSegprobe(readSegprobeConfig(o), o, factory, { group, signal }));
        if (r)
          process.stdout.write(
            `${r.table}wrote ${quotedPath(r.path)}${r.figure ? `, ${quotedPath(r.figure)}` : ''} and ${quotedPath(join(dirname(r.path), 'seg-head.safetensors'))}\n`,
          );
        return 0;
      }),
  });
}

export const segprobeCommand: Command = makeSegprobeCommand();
