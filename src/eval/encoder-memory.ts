// On the CPU, attention holds each block's batch × heads × T × T map (float32, T = patches + [CLS]): an
// encoder imported at 448² in 14² patches (ViT-L, 16 heads) with the evaluations' batch of 256 asks for
// 16 GiB per map, and the OOM killer ended the command without a word once its data was open. The
// evaluations refuse, before any work, a batch whose maps with the weights exceed memory, as pretrain does
// (src/train/pretrain-options.ts; a GPU's attention kernels hold no such map).
import { OptionError, kebab } from '../util/options';
import { formatBytes } from '../util/disk-space';
import { machineMemory, type MachineMemory } from '../util/machine-memory';
import { encoderParameterCount, type EncoderConfig } from '../semaim';

/** A batch the encoder runs: the option that sets it, its value, and whether it trains (keeps every block's map for the backward). */
export interface EncoderBatch {
  key: string;
  batch: number;
  training?: boolean;
}

/** The numbers a ViT encoder holds: its parameters and the position embedding (a buffer in pre-training). */
export function encoderHeldCount(c: EncoderConfig): number {
  return encoderParameterCount(c) + ((c.imgSize / c.patchSize) ** 2 + 1) * c.embedDim;
}

/** Refuses, on the CPU, the first batch whose attention maps with the weights (and, training, their gradients and AdamW state) exceed memory. */
export function checkEncoderFitsOnCpu(config: EncoderConfig, device: string, batches: EncoderBatch[], memory: MachineMemory = machineMemory()): void {
  if (device !== 'cpu') return;
  const patches = (config.imgSize / config.patchSize) ** 2;
  const tokens = patches + 1;
  const perImage = config.numHeads * tokens * tokens * 4;
  for (const { key, batch, training } of batches) {
    const maps = training ? config.depth : 1;
    const weights = encoderHeldCount(config) * (training ? 16 : 4);
    const need = batch * maps * perImage + weights;
    if (need <= memory.bytes) continue;
    const fits = Math.floor((memory.bytes - weights) / (maps * perImage));
    const held = training ? `each of its ${maps} blocks keeps one for the backward, ` : '';
    throw new OptionError(
      key,
      `${batch} is too large for this encoder on the CPU: one attention map of ${batch} images × ${config.numHeads} heads × ${tokens}² tokens ` +
        `(${patches} patches of ${config.imgSize}² images in ${config.patchSize}² patches, and [CLS]) takes ${formatBytes(batch * perImage)}; ` +
        `${held}with the weights that is ${formatBytes(need)}, more than ${memory.describe}: ` +
        (fits >= 1 ? `a --${kebab(key)} of at most ${fits}` : 'the encoder does not fit with one image; use a GPU (--device cuda)'),
    );
  }
}
