// The datasets by name, adapted to what training and evaluation consume (streams.ts): their
// transforms, seeded subsets, and resumable epoch streams.
import { createHash } from 'node:crypto';
import { DataError, dataError, withErrorKind } from '../util/errors';
import { existsSync } from 'node:fs';
import { join, sep } from 'node:path';
import { Dataset, packStrings, sharedInt32, unpackString } from './dataset';
import { DataLoader, Batch } from './loader';
import { permutation } from './rng';
import { checkSampleIndex } from './sample-index';
import { OptionError, checkJobHooks, type HookKind } from '../util/options';
import { cifar10Jpeg, defaultCifar10Archive } from './sources/cifar';
import { imageFolder, imageFiles, hasOtherFolder, splitKinds, SPLIT_NAMES } from './sources/folder';
import { syntheticObjects } from './sources/synthetic';
import {
  pretrainTransforms,
  finetuneTransforms,
  evalTransforms,
  randomCrop,
  randomResizedCrop,
  horizontalFlip,
  normalize,
  centerCrop,
  resize,
  TransformSpec,
  NormalizeSpec,
} from './transforms';
import { ShardLoader, shardDataset, isShardDataset, type ShardDataset } from './shards';
import { type LoaderOptions } from './loader';
import { type RankSlice } from './sharding';
import { makeSegData } from './seg-loader';
import type {
  Augment,
  BatchOptions,
  DataFactories,
  EvalDataRequest,
  LabelledBatch,
  LabelledData,
  PassOptions,
  RankedTrainData,
  TrainBatch,
  TrainDataRequest,
} from './streams';
import { batchesPerEpoch } from './streams';
import { quotedPath } from '../util/printable';

/** The dataset names {@link openData} opens, and the choices of the pre-training --dataset option. */
export const DATASETS = ['synthetic', 'cifar10', 'folder', 'flat', 'shards'] as const;
/**
 * A dataset name {@link openData} opens: 'synthetic', 'cifar10', 'folder' (class sub-folders), 'flat'
 * (unlabelled images) or 'shards' (tar shards).
 */
export type DatasetName = (typeof DATASETS)[number];
/** The datasets with class labels, which the evaluations score on: 'flat' is a folder of images without labels. */
export const LABELLED_DATASETS = DATASETS.filter((d) => d !== 'flat');

/**
 * What {@link openDataset} and {@link openData} need besides the name: the split and --data-path, and for
 * synthetic objects the image size, the count (default 5000 train / 1000 test) and the seed (default 0).
 */
export interface OpenOptions {
  split: 'train' | 'test';
  dataPath?: string;
  imgSize: number;
  /** Synthetic objects: number of images of the split. */
  syntheticSize?: number;
  seed?: number;
}

/** Opens a dataset by name. CIFAR-10 reads ../shared/data's archive (extracted once) or --data-path. */
export function openDataset(name: string, o: OpenOptions): Dataset {
  return withErrorKind(() => openNamedDataset(name, o), dataError); // DataError (code ERR_DATA) unless already coded
}

function openNamedDataset(name: string, o: OpenOptions): Dataset {
  switch (name as DatasetName) {
    case 'synthetic':
      // The test split is the generator's disjoint 'val' stream.
      return syntheticObjects({
        size: o.imgSize,
        count: o.syntheticSize ?? (o.split === 'train' ? 5000 : 1000),
        seed: o.seed ?? 0,
        split: o.split === 'train' ? 'train' : 'val',
      });
    case 'cifar10':
      if (o.dataPath && !/\.tar\.gz$|\.tgz$/.test(o.dataPath)) return imageFolder(splitFolder(o.dataPath, o.split)); // as --dataset folder's: val/ too
      if (!o.dataPath && !existsSync(defaultCifar10Archive()))
        throw new Error(
          `dataset 'cifar10': no archive at ${quotedPath(defaultCifar10Archive())}: give --data-path (cifar10-jpeg.tar.gz, or a folder of train/ and test/ class folders) or set SEMAIM_CIFAR10_TAR`,
        );
      return cifar10Jpeg({ split: o.split, archive: o.dataPath });
    case 'folder':
      if (!o.dataPath) throw new Error("dataset 'folder' needs --data-path (a folder with train/ and test/, or class sub-folders)");
      return imageFolder(splitFolder(o.dataPath, o.split));
    case 'flat':
      if (!o.dataPath) throw new Error("dataset 'flat' needs --data-path (a folder of images)");
      return imageFiles(o.dataPath, { recursive: true });
    case 'shards':
      throw new Error("dataset 'shards' is streamed, not indexed: open it with openData");
    default:
      throw new Error(`unknown dataset '${name}' (known: ${DATASETS.join(', ')})`);
  }
}

/** Opens a dataset by name, including streamed tar shards ('shards': a brace pattern, list or folder; `{split}` is replaced). */
export function openData(name: string, o: OpenOptions): Dataset | ShardDataset {
  if (name !== 'shards') return openDataset(name, o);
  return withErrorKind(() => {
    if (!o.dataPath) throw new Error("dataset 'shards' needs --data-path (e.g. 'dir/shard-{000000..000127}.tar', a list, or a folder of .tar files)");
    return shardDataset(o.dataPath, { split: o.split });
  }, dataError);
}

/**
 * What must be the same on every machine of a data-parallel run: the number of samples and a digest of
 * the classes and of every sample's name below the dataset's root with its label (for shards, of the
 * classes). A file missing on one machine would otherwise give its ranks other epochs (fewer batches:
 * the ranks then wait for each other's collectives until the timeout) or other images at the same
 * positions of the shared order.
 */
export function datasetIdentity(ds: Dataset | ShardDataset): Record<string, unknown> {
  const h = createHash('sha256');
  h.update(JSON.stringify(ds.classes));
  if (!isShardDataset(ds) && ds.spec.kind === 'files') {
    // the paths below the root as the spec packs them (UTF-8 bytes and where each ends) and the labels,
    // hashed as they lie in memory: no string per sample (1.28M of them took seconds), and a subset's
    // names below its root too (its `root` is a description, which its absolute names do not start with)
    const { paths, labels } = ds.spec;
    h.update(paths.offsets);
    h.update(paths.bytes);
    h.update(labels ?? new Int32Array(0));
  } else if (!isShardDataset(ds)) {
    const prefix = ds.root.endsWith(sep) ? ds.root : ds.root + sep;
    for (let i = 0; i < ds.length; i++) {
      const name = ds.name(i);
      h.update(`${name.startsWith(prefix) ? name.slice(prefix.length) : name}\t${ds.label(i)}\n`);
    }
  } else {
    // the shards in their order, each with its size and samples as the index has them (no read): another
    // list of shards with as many samples in all, or a shard packed again, is other data
    for (const e of ds.table.entries) h.update(`${e.file}\t${e.bytes}\t${e.samples}\n`);
  }
  return { samples: ds.length, classes: ds.classes.length, digest: h.digest('hex').slice(0, 16) };
}

/** The data-parallel place of this process (default: rank 0 of 1). */
export const SINGLE_PROCESS: RankSlice = { rank: 0, worldSize: 1 };

/** An epoch source: the DataLoader for indexed datasets, the ShardLoader for shards. */
type EpochLoader = DataLoader | ShardLoader;

function makeLoader(ds: Dataset | ShardDataset, opts: LoaderOptions & { shuffleBuffer?: number }): EpochLoader {
  // each loader refuses the other's options: the shuffle buffer is a stream's
  const { shuffleBuffer, replace, ...common } = opts;
  if (!isShardDataset(ds)) return new DataLoader(ds, { ...common, replace });
  // a stream always replaces an unusable sample; an evaluation leaves the stand-ins out (Batch.standIns)
  return new ShardLoader(ds, { ...common, shuffleBuffer });
}

/**
 * A split's folder: `root/<split>` where it holds class folders (the test split also `val/`, ImageNet's
 * layout, which is taken where test/ holds unlabelled images only, as Kaggle's). A root of class folders
 * alone is training data: a test split taken from it would score the model on its own training images.
 */
function splitFolder(root: string, split: 'train' | 'test'): string {
  const kind = splitKinds(root);
  if (split === 'test') {
    if (kind('test') === 'labelled') return join(root, 'test');
    if (kind('val') === 'labelled') return join(root, 'val');
    const unlabelled = ['test', 'val'].filter((n) => kind(n) === 'unlabelled');
    if (unlabelled.length)
      throw new Error(
        `${unlabelled.map((n) => quotedPath(join(root, n))).join(' and ')} hold${unlabelled.length === 1 ? 's' : ''} no class folders (unlabelled images): evaluation scores on labelled images, class folders in test/ or val/`,
      );
    throw new Error(
      `${quotedPath(root)} has no test/ (or val/) folder: evaluation reads ${quotedPath(join(root, 'train'))} and ${quotedPath(join(root, 'test'))} (class folders in each); a folder of class folders alone is training data only`,
    );
  }
  if (kind('train') === 'labelled') return join(root, 'train');
  if (kind('test') === 'labelled' || kind('val') === 'labelled') throw new Error(`${quotedPath(root)} has a test/ or val/ folder but no train/ folder`);
  // a train/ (test/, val/) of images alone beside other folders is a class of a plain class-folder dataset
  // (vehicles: bus/, car/, train/), as torchvision's ImageFolder reads it; with no other folder, it is a split
  if (!SPLIT_NAMES.some((n) => existsSync(join(root, n))) || hasOtherFolder(root)) return root;
  if (existsSync(join(root, 'train'))) return join(root, 'train'); // (ImageFolder says it holds no class folders)
  throw new Error(`${quotedPath(root)} has a test/ or val/ folder but no train/ folder`);
}

/**
 * A seeded subset of a file or synthetic dataset with about the same number of images per class
 * (round-robin over classes in a seeded order).
 */
export function subsetDataset(ds: Dataset, limit: number, seed: number): Dataset {
  if (limit >= ds.length) return ds;
  if (ds.spec.kind === 'synthetic') {
    const { height, width, ...config } = ds.spec.config;
    return syntheticObjects({ ...config, size: [height, width], count: limit });
  }
  const files = ds.spec;
  if (files.kind !== 'files') throw new Error(`cannot take a subset of ${quotedPath(ds.root)}`);
  const byClass = new Map<number, number[]>();
  const perm = permutation(ds.length, seed, 'subset', 0);
  for (const i of perm) {
    const l = ds.label(i);
    if (!byClass.has(l)) byClass.set(l, []);
    byClass.get(l)!.push(i);
  }
  const pools = [...byClass.values()];
  const chosen: number[] = [];
  for (let r = 0; chosen.length < limit; r++) for (const p of pools) if (r < p.length && chosen.length < limit) chosen.push(p[r]);
  chosen.sort((a, b) => a - b);
  const paths = chosen.map((i) => unpackString(files.paths, i));
  const labels = sharedInt32(chosen.length);
  chosen.forEach((i, k) => {
    labels[k] = ds.label(i);
  });
  const spec = { kind: 'files' as const, root: files.root, paths: packStrings(paths), labels };
  const subset: Dataset = {
    spec,
    length: chosen.length,
    classes: ds.classes,
    root: `${ds.root} (subset of ${chosen.length}, seed ${seed})`,
    fixedSize: ds.fixedSize,
    hasMasks: false,
    label: (i: number) => {
      checkSampleIndex(i, subset);
      return labels[i];
    },
    name: (i: number) => {
      checkSampleIndex(i, subset);
      return join(files.root, paths[i]);
    },
  };
  return subset;
}

/** Transforms for an augmentation kind at a square size. */
export function transformsFor(kind: Augment | 'pretrain', size: number, ds: Pick<Dataset, 'fixedSize'>, minScale = 0.2): TransformSpec[] {
  const native = ds.fixedSize && ds.fixedSize[0] === size && ds.fixedSize[1] === size;
  switch (kind) {
    case 'pretrain':
      return pretrainTransforms(size, { scale: [minScale, 1] });
    case 'finetune':
      return finetuneTransforms(size);
    case 'crop-flip':
      // MAE's linear-probe transform: its util/crop.py RandomResizedCrop (one draw, clipped) + flip
      return [randomResizedCrop(size, { scale: [0.08, 1], interpolation: 'bicubic', singleDraw: true }), horizontalFlip(0.5), normalize()];
    case 'resize-crop-flip':
      return [resize(size, { interpolation: 'bicubic' }), randomCrop(size), horizontalFlip(0.5), normalize()];
    case 'none':
      // Small datasets at their native size are only normalised; others resize + centre-crop.
      return native ? [normalize()] : ds.fixedSize ? [resize(size, { interpolation: 'bicubic' }), centerCrop(size), normalize()] : evalTransforms(size);
    default:
      // (a caller in plain JS: 'foo' was read as 'none')
      throw new RangeError(`augment must be one of 'none', 'crop-flip', 'resize-crop-flip', 'finetune' (or 'pretrain'), got '${String(kind)}'`);
  }
}

/** Batches of one epoch from batch `start` on (earlier batches are not built). */
function epochFrom(loader: EpochLoader, epoch: number, start: number, end?: number): AsyncGenerator<Batch> {
  return loader.iterate(epoch, { batch: start, end });
}

/**
 * The keys of a TrainDataRequest (tsc wants every one listed) and the kind of each value: any other key is
 * refused, never ignored, and so is a value of another kind (`hflip: 'false'`, a truthy string, flipped the images).
 */
const TRAIN_REQUEST_KEYS: Record<keyof TrainDataRequest, HookKind> = {
  dataset: 'string',
  dataPath: 'string',
  imgSize: 'number',
  syntheticSize: 'number',
  seed: 'number',
  minScale: 'number',
  hflip: 'boolean',
  batchSize: 'number',
  numWorkers: 'number',
  uint8: 'boolean',
  imageInput: 'object',
  shuffleBuffer: 'number',
};

/** The keys of an EvalDataRequest (tsc wants every one listed) and the kind of each value: any other key, or value of another kind, is refused. */
const EVAL_REQUEST_KEYS: Record<keyof EvalDataRequest, HookKind> = {
  split: 'string',
  dataset: 'string',
  dataPath: 'string',
  imgSize: 'number',
  limit: 'number',
  seed: 'number',
  numWorkers: 'number',
  imageInput: 'object',
  trainPass: 'object',
};

/** Pre-training data of rank `dist.rank` of `dist.worldSize` (see RankedTrainData). */
export function makeTrainData(o: TrainDataRequest, dist: RankSlice = SINGLE_PROCESS): RankedTrainData & AsyncDisposable {
  checkJobHooks(o, TRAIN_REQUEST_KEYS, 'request');
  const size = o.imgSize;
  const ds = openData(o.dataset, { split: 'train', dataPath: o.dataPath, imgSize: size, syntheticSize: o.syntheticSize, seed: o.seed });
  let transforms = transformsFor('pretrain', size, ds, o.minScale).filter((t) => o.hflip || t.op !== 'horizontalFlip');
  // uint8 batches: the loader stops before normalising and the trainer normalises on the device.
  const normalizeOp = transforms.find((t): t is NormalizeSpec => t.op === 'normalize');
  const uint8 = o.uint8 && !!normalizeOp;
  if (uint8) transforms = transforms.filter((t) => t !== normalizeOp);
  // an epoch drops its last partial batch: a set smaller than one global batch gives no step at all
  if (ds.length < o.batchSize * dist.worldSize)
    throw new OptionError(
      'batchSize',
      `the training set (${ds.length} images in ${ds.root}) gives no full batch of ${o.batchSize} × ${dist.worldSize} images (--batch-size × processes)`,
    );
  const loader = makeLoader(ds, {
    batchSize: o.batchSize,
    shuffle: true,
    dropLast: true,
    seed: o.seed,
    transforms,
    workers: o.numWorkers,
    uint8,
    ...o.imageInput,
    rank: dist.rank,
    worldSize: dist.worldSize,
    shuffleBuffer: o.shuffleBuffer,
  });
  const batches = async function* (it: AsyncIterable<Batch>): AsyncGenerator<TrainBatch> {
    for await (const b of it) yield { images: b.images, shape: b.shape, labels: b.labels };
  };
  return {
    rank: dist.rank,
    worldSize: dist.worldSize,
    globalBatchSize: dist.worldSize * o.batchSize,
    batchesPerEpoch: loader.length,
    normalize: uint8 ? { mean: normalizeOp!.mean, std: normalizeOp!.std } : null,
    epoch: (epoch: number, start: number, end?: number) => batches(epochFrom(loader, epoch, start, end)),
    epochFromSample: (epoch: number, sample: number) => batches(loader.iterate(epoch, { sample })),
    identity: () => datasetIdentity(ds),
    close: () => loader.close(),
    [Symbol.asyncDispose]: () => loader.close(),
  };
}

/**
 * Labelled data for evaluation (k-NN, linear probe, fine-tuning), this process's part of it. For rank
 * `dist.rank` of `dist.worldSize`, each rank's batches are its slices of the global batches (worldSize ×
 * batchSize), or over tar shards a contiguous range of the stream; without dropLast every rank gets
 * ceil(size / worldSize) rows, the last ranks padded with repeats (the batch `indices` tell them:
 * src/eval/gather-features.ts's firstOccurrences). Batches per rank and epoch = batchesPerEpoch(size,
 * worldSize × batchSize, dropLast).
 */
export function makeEvalData(req: EvalDataRequest, dist: RankSlice = SINGLE_PROCESS): LabelledData & AsyncDisposable {
  checkJobHooks(req, EVAL_REQUEST_KEYS, 'request');
  let ds = openData(req.dataset, { split: req.split, dataPath: req.dataPath, imgSize: req.imgSize, seed: req.seed, syntheticSize: req.limit });
  // an option the data shows to be impossible: an option error (exit code 2, ERR_OPTION), as a k above the training images
  if (req.limit && isShardDataset(ds))
    throw new OptionError(
      req.split === 'train' ? 'trainLimit' : 'testLimit',
      `a subset of streamed shards is not supported: leave it out, or pack a smaller folder with \`semaim shards\``,
    );
  if (req.limit && !isShardDataset(ds)) ds = subsetDataset(ds, req.limit, req.seed);
  if (ds.classes.length === 0) throw new DataError(`${quotedPath(ds.root)} has no class labels: evaluation needs a labelled dataset`);
  if (ds.classes.length === 1)
    throw new DataError(
      `${quotedPath(ds.root)} has only one class ('${ds.classes[0]}'): a classifier or k-NN needs at least two to tell apart (one sub-folder per class)`,
    );
  const data = ds;
  const loaders = new Map<string, EpochLoader>();
  let closed = false;
  const loaderFor = (o: PassOptions): EpochLoader => {
    // a pass after close() made a new loader (and its workers) the data no longer closes
    if (closed) throw new Error('makeEvalData: closed');
    const key = `${o.batchSize}/${o.shuffle}/${o.augment}/${o.seed ?? 0}/${!!o.dropLast}`;
    let l = loaders.get(key);
    if (!l) {
      l = makeLoader(data, {
        batchSize: o.batchSize,
        shuffle: o.shuffle,
        dropLast: !!o.dropLast,
        // an unshuffled pass is an evaluation's, which leaves an unusable image out (no stand-in to
        // read, so no share of unusable files stops it); training keeps its batch size
        replace: o.shuffle,
        seed: o.seed ?? 0,
        transforms: transformsFor(o.augment, req.imgSize, data),
        workers: req.numWorkers,
        ...req.imageInput,
        rank: dist.rank,
        worldSize: dist.worldSize,
      });
      loaders.set(key, l);
    }
    return l;
  };
  // made now, not at the first epoch: a loader it refuses (shuffle buffers of tar shards over their
  // memory budget) is refused before the job loads a model or extracts features. A set too small for one
  // batch is left to the job, whose own check names its flags.
  const pass = req.trainPass;
  if (pass && batchesPerEpoch(data.length, pass.batchSize * dist.worldSize, !!pass.dropLast) > 0) loaderFor(pass);
  return {
    size: ds.length,
    numClasses: ds.classes.length,
    classNames: [...ds.classes],
    imageShape: [3, req.imgSize, req.imgSize],
    identity: () => datasetIdentity(data),
    async *batches(o: BatchOptions): AsyncGenerator<LabelledBatch> {
      for await (const b of epochFrom(loaderFor(o), o.epoch, o.start ?? 0, o.end)) {
        yield { images: b.images as Float32Array, shape: b.shape, labels: b.labels, standIns: b.standIns, indices: b.indices };
      }
    },
    async close() {
      closed = true;
      for (const l of loaders.values()) await l.close();
    },
    async [Symbol.asyncDispose]() {
      await this.close();
    },
  };
}

/** The real datasets, as the factories evaluations and experiments are given. */
export const DATA_FACTORIES: DataFactories = { makeEvalData, makeTrainData, makeSegData };
