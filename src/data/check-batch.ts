// The batches a data source gives, checked where a job takes them: a caller's own data (a LabelledData
// or TrainData of its making, a DataFactories of its own) whose batch has the wrong type, shape or labels
// is refused with a DataError naming what is wrong, not a libtorch error from deep inside, nor (labels
// out of range, too few labels) a wrong accuracy.
import { DataError } from '../util/errors';
import type { LabelledBatch, TrainBatch } from './streams';
import { IGNORE_INDEX, type SegBatch } from './seg-streams';

/** The model's input, [C, H, W], the batches must match. */
export interface ImageInput {
  chans: number;
  size: number;
}

function refuse(problem: string): never {
  throw new DataError(`the data gave a batch that cannot be used: ${problem}`);
}

function typeName(v: unknown): string {
  return v === null || v === undefined ? String(v) : ((v as object).constructor?.name ?? typeof v);
}

function checkImages(b: { images: unknown; shape: unknown }, input: ImageInput, uint8: boolean): number {
  const want = uint8 ? 'a Float32Array (normalised) or a Uint8Array (0..255, with the data’s normalize)' : 'a Float32Array (NCHW, normalised)';
  if (!(b.images instanceof Float32Array || (uint8 && b.images instanceof Uint8Array))) refuse(`its images are ${typeName(b.images)}, expected ${want}`);
  const shape = b.shape as number[];
  const dims = `[batch, ${input.chans}, ${input.size}, ${input.size}]`;
  if (!Array.isArray(shape) || shape.length !== 4 || !shape.every((d) => Number.isSafeInteger(d) && d > 0))
    refuse(`its shape is ${JSON.stringify(shape)}, expected ${dims}`);
  if (shape[1] !== input.chans || shape[2] !== input.size || shape[3] !== input.size)
    refuse(`its shape is [${shape.join(', ')}], expected ${dims} (the model's channels and image size)`);
  const values = shape.reduce((n, d) => n * d, 1);
  if (b.images.length !== values) refuse(`its shape [${shape.join(', ')}] needs ${values} values, its images hold ${b.images.length}`);
  return shape[0];
}

/** Refuses (DataError) a labelled batch that is not NCHW float32 of the model's input with one label in 0..numClasses-1 per image. */
export function checkLabelledBatch(b: LabelledBatch, input: ImageInput, numClasses: number): void {
  const n = checkImages(b, input, false);
  if (!(b.labels instanceof Int32Array)) refuse(`its labels are ${typeName(b.labels)}, expected an Int32Array`);
  if (b.labels.length !== n) refuse(`it has ${n} images and ${b.labels.length} label${b.labels.length === 1 ? '' : 's'}`);
  const bad = b.labels.findIndex((l) => l < 0 || l >= numClasses);
  if (bad >= 0) refuse(`label ${b.labels[bad]} (row ${bad}) is outside 0..${numClasses - 1}: the data says it has ${numClasses} classes`);
}

/** Refuses (DataError) a pre-training batch that is not NCHW of the model's input (float32, or uint8 when the data gives `normalize`). */
export function checkTrainBatch(b: TrainBatch, input: ImageInput, uint8: boolean): void {
  checkImages(b, input, uint8);
}

/**
 * Refuses (DataError) a segmentation batch that is not NCHW float32 of the data's image shape with one
 * H×W mask per image (values 0..numClasses-1 or the ignore index, which must be 255) and one index per
 * image: a caller's SegData. A mask value beyond the classes would otherwise fail deep in the probe's loss or be scored
 * as a class that is not there.
 */
export function checkSegBatch(b: SegBatch, imageShape: number[], numClasses: number, ignoreIndex: number): number {
  const [C, H, W] = imageShape;
  // the probe's loss, its mIoU and its baseline ignore 255 alone: a pixel marked with another index
  // was trained on as a class that is not there (a libtorch error in the loss) or refused when scored
  if (ignoreIndex !== IGNORE_INDEX)
    throw new DataError(
      `the data's ignore index ${ignoreIndex} is not ${IGNORE_INDEX}: the segmentation probe ignores mask value ${IGNORE_INDEX} (mark unlabelled pixels ${IGNORE_INDEX})`,
    );
  if (H !== W) refuse(`the data's images are ${H}×${W}; square images expected`);
  const n = checkImages(b, { chans: C, size: H }, false);
  if (!(b.masks instanceof Uint8Array)) refuse(`its masks are ${typeName(b.masks)}, expected a Uint8Array`);
  if (b.masks.length < n * H * W) refuse(`it has ${n} images of ${H}×${W} and ${b.masks.length} mask values (${n * H * W} needed)`);
  if (!(b.indices instanceof Int32Array) || b.indices.length < n) refuse(`it has ${n} images and ${b.indices?.length ?? 0} indices (an Int32Array)`);
  const masks = b.masks.subarray(0, n * H * W);
  const bad = masks.findIndex((v) => v >= numClasses && v !== ignoreIndex);
  if (bad >= 0) {
    const pixel = bad % (H * W);
    refuse(
      `mask value ${masks[bad]} (sample ${b.indices[Math.floor(bad / (H * W))]}, pixel ${Math.floor(pixel / W)},${pixel % W}) is outside 0..${numClasses - 1} and not the ignore index ${ignoreIndex}`,
    );
  }
  return n;
}
