// `semaim embed`: features of every image of a folder or a dataset, from a checkpoint or an exported
// encoder, with the evaluations' preprocessing (the data factories' 'none' transform) and their
// feature extraction (encodeBatch): the [CLS] and mean features equal those k-NN and the linear probe use.
//
// Output: ONE safetensors file written incrementally (SafetensorsRowWriter): each batch's rows are
// appended as they are computed, so memory stays one batch however large the set, and the result
// is a single file that readers open lazily (Python's safe_open/get_slice, mmap) without
// concatenating parts. Beside it, <name>.json lists the images in row order with their labels, the
// skipped ones with the reason, the encoder and the preprocessing. Unreadable images are skipped
// (not replaced, as training does): they get no row, and are counted and listed.
//
// Data-parallel (a process group), each rank encodes its slices of the batches; after each batch rank 0
// gathers every rank's rows and writes them in dataset order (padding of the last batch dropped), so the
// file is the one a single process writes.
import { checkFreeSpace } from '../util/disk-space';
import { MAX_THREADS, MAX_THREADS_IS, MAX_WORKERS, OptionError, defineOptions, jobFields, SEED_RANGE } from '../util/options';
import { IMAGE_SOURCE_OPTIONS } from './options';
import { basename, dirname, resolve } from 'node:path';
import { statSync } from 'node:fs';
import * as torch from '../torch';
import { SafetensorsRowWriter, float32ToFloat16Bytes } from '../io';
import { DataLoader, Dataset, Split, imageFile, openDataset, subsetDataset, transformsFor, type Batch, type RankSlice, type TransformSpec } from '../data';
import { datasetIdentity } from '../data/factories';
import type { ImageInputOptions } from '../data/options';
import { EncoderSource, Pooling, VisionTransformer, loadEncoder, resolveEncoder } from '../semaim';
import { Progress, perSecond } from '../run/progress';
import { processDevice } from '../run/device';
import { inJobScope } from '../run/job-scope';
import { type Precision } from '../run/precision';
import { rankSlice, type ProcessGroup } from '../dist';
import { SAME_ENCODER_AND_DATA_HINT, StopAgreement, checkRanksAgree, prepareOnEveryRank, throwIfAbortedOnAnyRank } from '../dist/agree';
import { encodeBatch } from './features';
import { FeatureOverflowCheck } from './feature-overflow';
import { gatherRows } from './gather-features';
import { StagedFile, commitFiles, stageFile } from '../util/safe-write';
import { checkOutputName, claimOutputs, guardOutputs } from '../io/outputs';
import { DataError } from '../util/errors';
import { makeFolder } from '../util/make-folder';
import { makeOutputFolder } from '../util/output-folder';
import { stderrLine } from '../util/console-line';
import { printable, quotedPath } from '../util/printable';
import { checkEncoderFitsOnCpu } from './encoder-memory';

/**
 * The features {@link embed} can write (EmbedOptions.pooling; the --pooling choices of `semaim embed`):
 * the [CLS] token, the mean of the patch tokens, the authors' global pool ('gap'), or every token ('all').
 */
export const EMBED_POOLINGS = ['cls', 'mean', 'gap', 'all'] as const;
/** The stored types {@link embed} can write the features in (EmbedOptions.dtype; the --dtype choices of `semaim embed`). */
export const EMBED_DTYPES = ['float32', 'float16'] as const;
/** The stored type of embedded features: 'float32', or 'float16' (half the file). */
export type EmbedDType = (typeof EMBED_DTYPES)[number];

/** The images a job reads one by one (embed, predict): a folder or one image file, or a dataset split as the evaluations open it. */
export interface ImageSet {
  /** A folder of image files, searched recursively, or one image file (no labels). Give this or `dataset`. */
  images?: string;
  /** A dataset as the evaluations name them (cifar10, synthetic, folder, flat). */
  dataset?: string;
  dataPath?: string;
  /** Split of `dataset` (default 'test'). */
  split?: Split;
  /** At most this many images: the seeded, class-balanced subset the evaluations' --test-limit/--train-limit take. */
  limit?: number;
  /** Seed of that subset (default 0). */
  seed?: number;
}

/** How a job over an image set (embed, predict) runs. */
export interface ImageSetJob extends ImageSet {
  /** Images per batch (default 256, as the evaluations). */
  batchSize?: number;
  /** Default 'cpu'. */
  device?: string;
  /** Autocast precision of the model; default 'fp32'. */
  precision?: Precision;
  /** CPU threads for libtorch (default: all cores). */
  threads?: number;
  /** Loader worker threads (default: the loader's). */
  numWorkers?: number;
  imageInput?: ImageInputOptions;
  /** Check a checkpoint folder's files against its state.json (default true). */
  verify?: boolean;
  /** Progress bar label; null for none. Default: the job's name ('embed', 'predict'). */
  progress?: string | null;
  /** Called after every batch with the images done so far and their total (progress for a program, with or without the bar). */
  onProgress?: (done: number, total: number) => void;
  /** Receives warnings (unreadable images, the summary); default: stderr. */
  onWarning?: (line: string) => void;
  /**
   * Replace existing output files (default false, as the command without --overwrite: an existing one is
   * refused with an OptionError, code 'ERR_OUTPUT_EXISTS', before any image is read).
   */
  overwrite?: boolean;
  /**
   * Aborting it stops the job after the current batch: it rejects with an AbortError (code 'ERR_ABORTED', `cause` the
   * signal's reason) and leaves no output files. Data-parallel: aborting any rank's signal stops every rank there.
   */
  signal?: AbortSignal;
}

/** The keys of an ImageSetJob that a library caller sets as values (checked as their flags are, see jobFields). */
export const IMAGE_SET_FIELDS = defineOptions({
  ...IMAGE_SOURCE_OPTIONS,
  seed: { type: 'int', ...SEED_RANGE, help: 'seed of the subset' },
  batchSize: { type: 'int', min: 1, help: 'images per batch' },
  device: { type: 'string', help: 'device' },
  precision: { type: 'string', choices: ['fp32', 'bf16', 'fp16'], help: 'autocast precision' },
  threads: { type: 'int', min: 1, max: MAX_THREADS, maxIs: MAX_THREADS_IS, help: 'CPU threads' },
  numWorkers: { type: 'int', min: 0, max: MAX_WORKERS, help: 'loader worker threads' },
  verify: { type: 'boolean', help: "check a checkpoint folder's files" },
  overwrite: { type: 'boolean', help: 'replace existing outputs' },
});

/** The keys of an ImageSetJob that are no option values (an object, callbacks, a signal): they pass to the job as they are (see jobFields). */
export const IMAGE_SET_JOB_OTHER_KEYS = {
  imageInput: 'object',
  progress: ['string', 'null'],
  onProgress: 'function',
  onWarning: 'function',
  signal: 'signal',
} as const;

const EMBED_FIELDS = defineOptions({
  checkpoint: { type: 'string', required: true, help: 'encoder' },
  out: { type: 'string', required: true, help: 'output .safetensors' },
  ...IMAGE_SET_FIELDS,
  pooling: { type: 'string', choices: EMBED_POOLINGS, help: 'feature' },
  dtype: { type: 'string', choices: EMBED_DTYPES, help: 'stored type' },
});

/** Options of {@link embed}: the encoder, the output file, the pooling and the stored type, and the images and how to read them ({@link ImageSetJob}). */
export interface EmbedOptions extends ImageSetJob {
  /** Pre-training run folder (newest valid checkpoint), checkpoint folder, or an encoder file (.safetensors, or torch.save .pth). */
  checkpoint: string;
  /** Output file, ending in .safetensors; the image list is written beside it as <name>.json. */
  out: string;
  /** 'cls' ([CLS] token), 'mean' (mean of the patch tokens), 'gap' (the authors' global pool, before the final norm) or 'all' (every token, [1 + P, D]); see Pooling. Default 'cls'. */
  pooling?: Pooling;
  /** Stored type of the features (computed in float32 or `precision`). Default 'float32'; 'float16' refuses a feature beyond its range (an OptionError, nothing written). */
  dtype?: EmbedDType;
  /** Data-parallel: the ranks share the images and rank 0 writes the file (the others return null). */
  group?: ProcessGroup | null;
}

/** One image of the embed image list ({@link EmbedList}), in the features' row order. */
export interface EmbeddedImage {
  path: string;
  /** Class index (absent for unlabelled images). */
  label?: number;
}

/**
 * What {@link embed} returns (on rank 0): where the features and the image list
 * went, how many images got a row and how many were skipped, and the time taken.
 */
export interface EmbedResult {
  /** The safetensors file: `features` [n, D] or [n, 1 + P, D], `indices` (int32: dataset index of each row), `labels` (int32, labelled data only). */
  path: string;
  /** The image list (JSON). */
  listPath: string;
  /** Images with a row (the readable ones). */
  count: number;
  /** Unreadable images, left out (no row; listed in the image list). */
  skipped: number;
  /** Shape of `features`. */
  shape: number[];
  /** Wall-clock seconds of the whole job. */
  seconds: number;
}

/**
 * The image list {@link embed} writes beside the features (<name>.json, format 'semaim.embed/1'): the
 * encoder, input and preprocessing, then each row's image and label, and the skipped images with the reason.
 */
export interface EmbedList {
  format: 'semaim.embed/1';
  /** File name (without its folder) of the features .safetensors. */
  features: string;
  shape: number[];
  dtype: EmbedDType;
  pooling: Pooling;
  encoder: { path: string; weights: string; sha256: string; kind: EncoderSource['kind']; config: EncoderSource['config'] };
  input: ImageSetRecord;
  preprocessing: unknown[];
  classNames: string[] | null;
  count: number;
  images: EmbeddedImage[];
  skipped: { path: string; reason: string }[];
  seconds: number;
}

/** Where the image list of an output file goes: `x.safetensors` → `x.json`. */
export function embedListPath(out: string): string {
  return out.replace(/\.safetensors$/, '.json');
}

/** Checks of the options that need no files (the command runs them before any work). */
export function checkEmbedOptions(o: EmbedOptions): void {
  checkOutputName(o.out, '.safetensors', 'the image list goes beside it as .json');
  checkImageSetSource(o);
  if (o.pooling !== undefined && !EMBED_POOLINGS.includes(o.pooling))
    throw new OptionError('pooling', `must be one of ${EMBED_POOLINGS.join(', ')}, got '${o.pooling}'`);
  if (o.dtype !== undefined && !EMBED_DTYPES.includes(o.dtype)) throw new OptionError('dtype', `must be one of ${EMBED_DTYPES.join(', ')}, got '${o.dtype}'`);
  if (o.batchSize !== undefined && !(Number.isInteger(o.batchSize) && o.batchSize > 0))
    throw new OptionError('batchSize', `must be a positive integer, got ${o.batchSize}`);
}

/** An image set names one source: a folder of images (or one image file) or a dataset. */
export function checkImageSetSource(o: ImageSet): void {
  if (!o.images && !o.dataset) throw new OptionError('images', 'needs a folder of images or an image file (images) or a dataset (dataset): give one');
  if (o.images && o.dataset) throw new OptionError('images', 'give either images (a folder or a file) or a dataset (dataset), not both');
}

/** The images to embed: the folder or file, or the dataset split and subset exactly as makeEvalData opens them. */
export function embedDataset(o: ImageSet, imgSize: number): Dataset {
  const seed = o.seed ?? 0;
  const ds =
    o.images && statSync(o.images, { throwIfNoEntry: false })?.isFile()
      ? imageFile(o.images)
      : openDataset(o.images ? 'flat' : o.dataset!, { split: o.split ?? 'test', dataPath: o.images ?? o.dataPath, imgSize, seed, syntheticSize: o.limit });
  return o.limit ? subsetDataset(ds, o.limit, seed) : ds;
}

/** What embed's and predict's result files record of the images they read (`input`): the image set as given, and the root opened. */
export interface ImageSetRecord {
  images?: string;
  dataset?: string;
  dataPath?: string;
  split?: Split;
  limit?: number;
  seed: number;
  /** The folder or dataset root that was opened. */
  root: string;
}

/** The {@link ImageSetRecord} of an image set opened at `root`. */
export function imageSetRecord(o: ImageSet, root: string): ImageSetRecord {
  return {
    images: o.images,
    dataset: o.dataset,
    dataPath: o.dataPath,
    split: o.images ? undefined : (o.split ?? 'test'),
    limit: o.limit,
    seed: o.seed ?? 0,
    root,
  };
}

/** JSON with the header's fields indented and each list after them one line per item (a list of 50,000 stays readable). */
export function jsonWithListLines(head: object, lists: Record<string, object[]>): string {
  const entries = Object.entries(lists);
  let text = '';
  writeJsonWithListLines(
    head,
    entries.map(([name, items]) => ({ name, count: items.length })),
    (t) => (text += t),
    (k) => (text += entries[k][1].map(listItemText).join('')),
  );
  return text;
}

/** Item `i` of a list in jsonWithListLines: its line, after a comma and a newline from the second item on. */
export function listItemText(item: object, i: number): string {
  return `${i ? ',\n' : ''}    ${JSON.stringify(item)}`;
}

/**
 * jsonWithListLines written in pieces, for lists too long to hold (predict's predictions): `write` gets
 * the text in order, and `items(k)` is called where the `lists[k].count` items of list k go (their
 * listItemText, written by the caller, e.g. copied from a file they were streamed to).
 */
export function writeJsonWithListLines(
  head: object,
  lists: { name: string; count: number }[],
  write: (text: string) => void,
  items: (k: number) => void,
): void {
  write(`${JSON.stringify(head, null, 2).replace(/\n}$/, '')},\n`);
  lists.forEach(({ name, count }, k) => {
    write(`${k ? ',\n' : ''}  ${JSON.stringify(name)}: ${count ? '[\n' : '[]'}`);
    if (!count) return;
    items(k);
    write('\n  ]');
  });
  write('\n}\n');
}

/** The image list as JSON: the header fields indented, then one line per image. */
export function formatList(list: EmbedList): string {
  const { images, skipped, ...head } = list;
  return jsonWithListLines(head, { skipped, images });
}

/**
 * The loader over an image set in dataset order, whole (no dropLast): an unusable image's row is left
 * blank with index -1 (not replaced, so no share of unusable files stops it) and its warning names the
 * file; the caller drops that row and lists the file with the reason in the batch's `skipped`. The
 * epoch summary is the caller's.
 */
export function imageSetLoader(
  ds: Dataset,
  transforms: TransformSpec[],
  o: { batchSize: number; numWorkers?: number; imageInput?: ImageInputOptions },
  warn: (line: string) => void,
  slice: RankSlice = { rank: 0, worldSize: 1 },
): DataLoader {
  return new DataLoader(ds, {
    batchSize: o.batchSize,
    shuffle: false,
    dropLast: false,
    replace: false,
    seed: 0,
    transforms,
    workers: o.numWorkers,
    ...o.imageInput,
    ...slice,
    onWarning: (line) => {
      if (!line.startsWith('data: epoch ')) warn(line);
    },
  });
}

/** Why each unusable image of `batch` was skipped, by dataset index. */
export function skipReasons(batch: Batch): Map<number, string> {
  return new Map(batch.skipped.map((s) => [s.index, s.message]));
}

/** What becomes of one row of a rank's batch: its dataset index, PADDING, or skipped (see rowCode). */
const PADDING = -1;
/** A row's code: the dataset index when the image was read, PADDING past the end, -(index + 2) when skipped. */
function rowCode(expected: number, got: number, size: number): number {
  if (expected >= size) return PADDING;
  return got === expected ? expected : -(expected + 2);
}

/** Every rank's rows and row codes of one batch, in rank order, on rank 0 (this rank's alone without a group; [] on the other ranks). */
async function gatherBatch(group: ProcessGroup | null, rows: torch.Tensor, codes: Float64Array): Promise<{ rows: Float32Array; codes: Float64Array }[]> {
  if (!group || group.worldSize === 1) return [{ rows: rows.toFloat32Array(), codes }];
  const all = await gatherRows(group, rows, [codes], { root: 0 });
  if (!all) return [];
  try {
    return all.rows.map((p, r) => ({ rows: p.toFloat32Array(), codes: all.perRow[r][0] }));
  } finally {
    for (const t of all.rows) t.dispose();
  }
}

/** float16's largest finite value is 65504: a float32 from 65520 on (the midpoint to the next power of two) rounds to Inf. */
const FLOAT16_OVERFLOW = 65520;

/** The largest |x| of the finite values of `rows` and where it is (NaN/Inf rows are FeatureOverflowCheck's to report). */
function largestFiniteMagnitude(rows: Float32Array): { value: number; at: number } {
  let value = -1;
  let at = -1;
  for (let i = 0; i < rows.length; i++) {
    const m = Math.abs(rows[i]);
    if (m > value && m !== Infinity) [value, at] = [m, i];
  }
  return { value, at };
}

/** The error of features float16 cannot store (they would be written as Inf). */
function float16RangeError(o: { value: number; image: string }): OptionError {
  return new OptionError(
    'dtype',
    `float16 cannot store these features: ${printable(o.image)} has a feature of ${o.value.toPrecision(6)}, beyond float16's largest value (65504), ` +
      'so it would be written as Inf. Nothing was written: use float32',
  );
}

/** Computes the features of every image and writes them (see the top of this file); null on ranks other than 0. */
export async function embed(o: EmbedOptions & { group?: undefined }): Promise<EmbedResult>;
export async function embed(o: EmbedOptions): Promise<EmbedResult | null>;
export async function embed(o: EmbedOptions): Promise<EmbedResult | null> {
  o = jobFields(o, EMBED_FIELDS, { ...IMAGE_SET_JOB_OTHER_KEYS, group: ['object', 'null'] });
  return inJobScope(o.threads, () => embedJob(o));
}

async function embedJob(o: EmbedOptions): Promise<EmbedResult | null> {
  await throwIfAbortedOnAnyRank(o.signal, o.group ?? null); // before any work: the encoder, the images, the output folder
  checkEmbedOptions(o);
  const t0 = performance.now();
  const pooling = o.pooling ?? 'cls';
  const dtype = o.dtype ?? 'float32';
  const batchSize = o.batchSize ?? 256;
  const warn = o.onWarning ?? stderrLine;
  const group = o.group ?? null;
  const { rank, worldSize } = rankSlice(group);
  const device = processDevice(o.device ?? 'cpu', group);
  let source = resolveEncoder(o.checkpoint, { verify: o.verify });
  checkEncoderFitsOnCpu(source.config, o.device ?? 'cpu', [{ key: 'batchSize', batch: batchSize }]);
  guardOutputs([o.out, embedListPath(o.out)], source.weights, o.overwrite);
  const ds = await prepareOnEveryRank(group, () => embedDataset(o, source.config.imgSize));
  // ranks with other weights or other images would write rows of different models or sets into one file
  if (group)
    await checkRanksAgree(group, 'the encoder and the images', { 'encoder sha256': source.sha256, ...datasetIdentity(ds) }, SAME_ENCODER_AND_DATA_HINT);
  const out = resolve(o.out);
  const listPath = embedListPath(out);
  const transforms = transformsFor('none', source.config.imgSize, ds);
  // (made before the encoder: the loader checks its options, and starts no worker until iterated)
  const loader = imageSetLoader(ds, transforms, { ...o, batchSize }, warn, { rank, worldSize });
  const labelled = ds.classes.length > 0;
  const indices: number[] = [];
  const skipped: { path: string; reason: string }[] = [];
  const plan = loader.plan(0);
  const mine = Array.from({ length: plan.count }, (_, j) => plan.range(j)).reduce((s, [a, b]) => s + b - a, 0);
  let seen = 0;
  // Everything that holds something (the encoder's tensors, the partial files, the loader's workers)
  // is made inside the try, so that a failure at any point (an output folder that cannot be made, a
  // full disk, an unreadable data set) releases it before the error reaches the caller.
  let encoder: VisionTransformer | null = null;
  let writer: SafetensorsRowWriter | null = null;
  let progress: Progress | null = null;
  let release = () => {};
  let takeBack = () => {}; // (the output folders this call made, removed if it fails while they are empty)
  let failed = false;
  const overflow = new FeatureOverflowCheck();
  let halfOverflow: { value: number; image: string } | null = null;
  try {
    // another embed of this process writing the same files would interleave its rows and renames with ours
    if (rank === 0) {
      takeBack = makeOutputFolder(dirname(o.out));
      // checked before the images were listed: another process's features written there since are kept
      release = claimOutputs([o.out, embedListPath(o.out)], 'out', !!o.overwrite);
    }
    // data-parallel ranks agreed on this source's weights (checkRanksAgree): theirs or none
    ({ encoder, source } = loadEncoder(source, { device, verify: o.verify, newerIfPruned: !group }));
    const P = encoder.numPatches;
    const D = source.config.embedDim;
    const rowShape = pooling === 'all' ? [1 + P, D] : [D];
    if (rank === 0) {
      makeFolder(dirname(out));
      // every image's row, index and label, and its line in the list (a path: under 1 KiB), beside the earlier files until the renames
      const rowBytes = rowShape.reduce((a, b) => a * b, 1) * (dtype === 'float32' ? 4 : 2);
      checkFreeSpace(dirname(out), ds.length * (rowBytes + 8 + 1024) + (64 << 10), `the features of ${ds.length} images`, {
        how: `${ds.length} × [${rowShape.join(', ')}] ${dtype} and the image list`,
        remedy: 'Free space, write --out elsewhere, or take fewer images (--limit) or smaller rows (--dtype float16, --pooling cls)',
      });
      writer = new SafetensorsRowWriter(out, { name: 'features', dtype, rowShape });
    }
    progress = o.progress === null || rank !== 0 ? null : new Progress(o.progress ?? 'embed', ds.length);
    const stop = new StopAgreement(group);
    for await (const batch of loader.iterate(0)) {
      await stop.throwIfAborted(o.signal); // (every rank has the same number of batches)
      const B = batch.shape[0];
      const [first] = plan.range(batch.index);
      const codes = Float64Array.from({ length: B }, (_, i) => rowCode(first + i, batch.indices[i], ds.length));
      // The whole batch, as extractFeatures runs it: the kept rows are bit-equal to the evaluations' features.
      const pixels = batch.images;
      if (!(pixels instanceof Float32Array)) throw new Error('embed: the loader gave uint8 images, expected normalised float32');
      const enc = encoder;
      const f = torch.scope(() => {
        const images = torch.tensor(pixels, { shape: batch.shape, device });
        enc.checkImages(images);
        return encodeBatch(enc, images, pooling, o.precision ?? 'fp32');
      });
      overflow.add(f);
      const reasons = skipReasons(batch);
      let parts: { rows: Float32Array; codes: Float64Array }[];
      try {
        parts = await gatherBatch(group, f, codes);
      } finally {
        f.dispose();
      }
      seen += B;
      if (!writer) continue;
      for (const [r, part] of parts.entries()) {
        const per = part.rows.length / part.codes.length;
        const keep: number[] = [];
        part.codes.forEach((code, i) => {
          if (code >= 0) keep.push(i);
          else if (code !== PADDING) {
            const index = -code - 2;
            const reason = r === rank ? (reasons.get(index) ?? 'unreadable') : `unreadable (rank ${r}'s warnings give the reason)`;
            skipped.push({ path: ds.name(index), reason });
          }
        });
        const kept = keep.length === part.codes.length ? part.rows : new Float32Array(keep.length * per);
        if (kept !== part.rows) keep.forEach((i, k) => kept.set(part.rows.subarray(i * per, (i + 1) * per), k * per));
        if (dtype === 'float16') {
          const peak = largestFiniteMagnitude(kept);
          if (peak.value >= FLOAT16_OVERFLOW && peak.value > (halfOverflow?.value ?? 0))
            halfOverflow = { value: peak.value, image: ds.name(part.codes[keep[Math.floor(peak.at / per)]]) };
          // past the first such row nothing more is written: the job fails (the partial file is removed)
          if (halfOverflow) continue;
        }
        writer.append(dtype === 'float32' ? new Uint8Array(kept.buffer, kept.byteOffset, kept.byteLength) : float32ToFloat16Bytes(kept));
        for (const i of keep) indices.push(part.codes[i]);
      }
      // one process fails at once; data-parallel, the other ranks would wait in the next gather: rank 0 fails after the loop
      if (halfOverflow && worldSize === 1) throw float16RangeError(halfOverflow);
      const done = Math.min(ds.length, seen * worldSize);
      progress?.update(done, { 'img/s': perSecond(done, t0), skipped: skipped.length });
      o.onProgress?.(done, ds.length);
    }
    await throwIfAbortedOnAnyRank(o.signal, group);
    await overflow.throwIfOverflowed(source.weights, `its features of ${ds.root}`, group);
    const ofRank = worldSize > 1 ? ` (rank ${rank} of ${worldSize}: its share of ${ds.length})` : '';
    if (seen !== mine) throw new Error(`embed: the loader gave ${seen} images, the dataset has ${mine}${ofRank}`);
    if (!writer) return null;
    if (halfOverflow) throw float16RangeError(halfOverflow);
    if (indices.length === 0) throw new DataError(`embed: no readable image in ${quotedPath(ds.root)} (${skipped.length} skipped)`);
    const n = indices.length;
    const idx = Int32Array.from(indices);
    const tail: Record<string, { dtype: 'int32'; shape: number[]; data: Uint8Array }> = {
      indices: { dtype: 'int32', shape: [n], data: new Uint8Array(idx.buffer) },
    };
    const labels = Int32Array.from(indices, (i) => ds.label(i));
    if (labelled) tail.labels = { dtype: 'int32', shape: [n], data: new Uint8Array(labels.buffer) };
    const seconds = (performance.now() - t0) / 1000;
    const list: EmbedList = {
      format: 'semaim.embed/1',
      features: basename(out),
      shape: [n, ...rowShape],
      dtype,
      pooling,
      encoder: { path: source.path, weights: source.weights, sha256: source.sha256, kind: source.kind, config: source.config },
      input: imageSetRecord(o, ds.root),
      preprocessing: transforms,
      classNames: labelled ? [...ds.classes] : null,
      count: n,
      images: indices.map((i, k) => (labelled ? { path: ds.name(i), label: labels[k] } : { path: ds.name(i) })),
      skipped,
      seconds,
    };
    // the rows and the list that describes them in place together (commitFiles: a kill between the two
    // renames is completed by the next writer or reader), or, on a full disk, neither
    const listed = stageFile(listPath, formatList(list));
    const staging = writer;
    writer = null; // its partial file is the commit's from here: a failed stage removes it, a journal keeps it
    let rows: StagedFile;
    try {
      rows = staging.stage(tail, { format: 'semaim.embed/1', pooling, encoder_sha256: source.sha256, images: basename(listPath) });
    } catch (e) {
      listed.abort();
      throw e;
    }
    commitFiles([rows, listed]);
    if (skipped.length) warn(`embed: skipped ${skipped.length} unreadable image${skipped.length === 1 ? '' : 's'} (no row; listed in ${quotedPath(listPath)})`);
    return { path: out, listPath, count: n, skipped: skipped.length, shape: list.shape, seconds };
  } catch (e) {
    writer?.abort();
    failed = true;
    throw e;
  } finally {
    progress?.done();
    await loader.close();
    encoder?.dispose();
    overflow.dispose();
    release();
    if (failed) takeBack();
  }
}
