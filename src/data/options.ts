// Options shared by every command that reads image files (pretrain, knn/linprobe/finetune/ablate,
// visualize/report): the decompression-bomb limit and the EXIF-orientation policy, one table and
// one typed reader; and the check that a given --data-path exists, made before any work.
import { existsSync, statSync } from 'node:fs';
import { quotedPath } from '../util/printable';
import { OptionError, defineOptions } from '../util/options';
import { DEFAULT_MAX_IMAGE_PIXELS } from './codecs/limits';
import { EXIF_ORIENTATION_POLICIES, type ExifOrientationPolicy } from './codecs/orientation';
import { resolveShardPaths } from './shards/paths';

/**
 * The option table shared by every command that reads image files: --max-image-pixels (default
 * DEFAULT_MAX_IMAGE_PIXELS; 0 = no limit) and --exif-orientation (default 'ignore').
 */
export const IMAGE_INPUT_OPTIONS = defineOptions({
  maxImagePixels: {
    type: 'int',
    default: DEFAULT_MAX_IMAGE_PIXELS,
    min: 0,
    help: "refuse images whose header declares more pixels than this, before decoding (PIL's decompression-bomb limit; 0 = no limit); datasets skip and count them",
  },
  exifOrientation: {
    type: 'string',
    default: 'ignore',
    choices: EXIF_ORIENTATION_POLICIES,
    help: "EXIF orientation of image files: 'ignore' it as torchvision does, or 'apply' it as PIL's exif_transpose (data and figures alike)",
  },
});

/**
 * The image-input settings read from {@link IMAGE_INPUT_OPTIONS}: pixel limit and EXIF policy, as the data
 * requests carry them to the loaders (`imageInput`).
 */
export interface ImageInputOptions {
  /** Pixel limit; 0 = none. */
  maxImagePixels: number;
  exifOrientation: ExifOrientationPolicy;
}

/** The image-input options of resolved command options. */
export function imageInputOptions(o: ImageInputOptions): ImageInputOptions {
  return { maxImagePixels: o.maxImagePixels, exifOrientation: o.exifOrientation };
}

/** Why a --data-path changes nothing (synthetic images are generated), or undefined (an OptionSpec's noEffect). */
export const syntheticIgnoresDataPath = (o: { dataset?: unknown }): string | undefined =>
  o.dataset === 'synthetic' ? 'with --dataset synthetic (its images are generated)' : undefined;

/** A --data-path with --dataset synthetic was ignored silently (the command used generated images): refused. */
export function checkSyntheticDataPath(o: { dataset?: string; dataPath?: string }): void {
  const why = syntheticIgnoresDataPath(o);
  if (why && o.dataPath !== undefined) throw new OptionError('dataPath', `has no effect ${why}`);
}

/**
 * A --data-path that was given must exist (else the command would quietly use something else, e.g. a
 * cache); for --dataset shards, its pattern must name existing shards for every split the command reads.
 */
export function checkDataPath(o: { dataPath?: string; dataset?: string }, splits: readonly ('train' | 'test')[] = ['train']): void {
  if (o.dataPath === undefined || o.dataPath === '') return;
  if (o.dataset === 'shards') {
    const named = splits.map((split) => {
      try {
        return resolveShardPaths(o.dataPath!, split).join('\n');
      } catch (e) {
        throw new OptionError('dataPath', (e as Error).message);
      }
    });
    if (named.length > 1 && named.every((n) => n === named[0])) {
      throw new OptionError(
        'dataPath',
        `${quotedPath(o.dataPath)} names the same shards for the ${splits.join(' and ')} splits, so evaluation would test on its training data: give each split its own, e.g. 'shards/{split}' for shards/train and shards/test`,
      );
    }
    return;
  }
  if (!existsSync(o.dataPath)) throw new OptionError('dataPath', `${quotedPath(o.dataPath)} does not exist`);
  // folder and flat read a folder; cifar10 a folder or its .tar.gz
  const isArchive = o.dataset === 'cifar10' && /\.(tar\.gz|tgz)$/.test(o.dataPath);
  if (!isArchive && !statSync(o.dataPath).isDirectory())
    throw new OptionError('dataPath', `${quotedPath(o.dataPath)} is not a folder${o.dataset === 'cifar10' ? ' (nor a .tar.gz)' : ''}`);
}
