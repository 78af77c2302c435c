// `semaim shards`: packs an ImageFolder into WebDataset-style tar shards plus index.json, for
// `--dataset shards --data-path 'DIR/shard-{000000..NNNNNN}.tar'`.
import { OptionError, defineOptions, SEED_RANGE } from '../util/options';
import { Progress, perSecond } from '../run/progress';
import { packImageFolder, DEFAULT_SHARD_SIZE } from '../data';
import { checkFolderOption, defineCommand } from './command';
import { IMAGE_INPUT_OPTIONS } from '../data/options';
import { formatBytes } from '../util/disk-space';
import { printable, quotedPath, shellQuote } from '../util/printable';
import { abortOnStopSignals } from '../run/signals';

const SHARDS_OPTIONS = defineOptions({
  input: { type: 'string', required: true, help: 'ImageFolder to pack: one sub-folder per class (e.g. data/train/cat/001.jpg)' },
  output: { type: 'string', required: true, help: 'folder for shard-NNNNNN.tar and index.json' },
  shardSize: { type: 'int', default: DEFAULT_SHARD_SIZE, min: 1, help: 'images per shard' },
  shuffle: { type: 'boolean', default: false, help: 'pack the images in a seeded random order (without it: class by class, in name order)' },
  seed: { type: 'int', ...SEED_RANGE, default: 0, help: 'seed of --shuffle' },
  json: { type: 'boolean', default: false, help: 'also write KEY.json per image: label, class name and source path (one more tar member per image to read)' },
  overwrite: {
    type: 'boolean',
    default: false,
    help: 'replace the shard set (shard-NNNNNN.tar, index.json) already in --output; other files there are left alone',
  },
  maxImagePixels: {
    ...IMAGE_INPUT_OPTIONS.maxImagePixels,
    help: 'leave out files larger than an image within this many pixels can be (8 bytes per pixel + 1 MiB), which the loaders under the same --max-image-pixels would skip unread (0 = no limit)',
  },
});

export const shardsCommand = defineCommand({
  summary: 'pack an ImageFolder into WebDataset-style tar shards (for --dataset shards)',
  usage: 'semaim shards --input IMAGEFOLDER --output DIR [options]',
  description:
    'Packs the images of an ImageFolder, unchanged, into tar shards of KEY.<ext> + KEY.cls (+ KEY.json)\n' +
    '(WebDataset layout) and writes index.json (class names, samples per shard). Every shard is written\n' +
    'to a temporary file; the whole set is renamed into place when complete (with --overwrite, the earlier\n' +
    'set stays until then).',
  options: SHARDS_OPTIONS,
  validate: (o) => {
    // (a --seed 0 given explicitly cannot be told apart from the default, and changes nothing)
    if (!o.shuffle && o.seed !== SHARDS_OPTIONS.seed.default)
      throw new OptionError('seed', 'has no effect without --shuffle: the images are packed class by class, in name order');
  },
  preflight: (o) => checkFolderOption(o.output, 'output'),
  async run(o) {
    let progress: Progress | null = null;
    let start = 0;
    const r = await abortOnStopSignals(
      async (signal) => {
        try {
          return await packImageFolder({
            ...o,
            signal,
            // the line's clock starts with the packing, not after the first shard
            onStart: (total) => {
              progress = new Progress('shards', total);
              start = performance.now();
            },
            onProgress: (done) => progress?.update(done, { 'img/s': perSecond(done, start) }),
          });
        } finally {
          (progress as Progress | null)?.done();
        }
      },
      undefined,
      'stopping before the next image; no shard set is written',
    );
    const listed = <T>(files: T[], what: string, show: (f: T) => string): string =>
      files.length
        ? `; skipped ${files.length} file${files.length > 1 ? 's' : ''} ${what} (` +
          files.slice(0, 3).map(show).join('; ') +
          (files.length > 3 ? `; and ${files.length - 3} more` : '') +
          ')'
        : '';
    const skipped =
      listed(r.tooLarge, 'too large for an image', (f) => `${printable(f.path)}, ${formatBytes(f.bytes)}`) +
      listed(r.unreadable, 'that could not be read', (f) => `${printable(f.path)}: ${printable(f.reason)}`);
    process.stdout.write(
      `packed ${r.samples} images of ${r.classes.length} classes into ${r.shards.length} shard(s), ${(r.bytes / 2 ** 20).toFixed(1)} MiB${skipped}\n` +
        `  index:     ${quotedPath(r.index)}\n  data path: --dataset shards --data-path ${shellQuote(r.pattern)}\n`,
    );
    return 0;
  },
});
