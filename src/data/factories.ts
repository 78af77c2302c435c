// The datasets by name, adapted to what training and evaluation consume (streams.ts): their
// transforms, seeded subsets, and resumable epoch streams.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Dataset, packStrings, sharedInt32, unpackString } from './dataset';
import { DataLoader, Batch } from './loader';
import { permutation } from './rng';
import { cifar10Jpeg } from './sources/cifar';
import { imageFolder, imageFiles } from './sources/folder';
import { syntheticObjects } from './sources/synthetic';
import {
  pretrainTransforms, finetuneTransforms, evalTransforms, randomResizedCrop, horizontalFlip, normalize, centerCrop, resize, TransformSpec, NormalizeSpec,
} from './transforms';
import type { Augment, BatchOptions, DataFactories, EvalDataRequest, LabelledBatch, LabelledData, TrainBatch, TrainData, TrainDataRequest } from './streams';

export const DATASETS = ['synthetic', 'cifar10', 'folder', 'flat'] as const;
export type DatasetName = (typeof DATASETS)[number];

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
  switch (name as DatasetName) {
    case 'synthetic':
      // The test split is the generator's disjoint 'val' stream.
      return syntheticObjects({ size: o.imgSize, count: o.syntheticSize ?? (o.split === 'train' ? 5000 : 1000), seed: o.seed ?? 0, split: o.split === 'train' ? 'train' : 'val' });
    case 'cifar10':
      if (o.dataPath && !/\.tar\.gz$|\.tgz$/.test(o.dataPath)) return imageFolder(join(o.dataPath, o.split));
      return cifar10Jpeg({ split: o.split, archive: o.dataPath });
    case 'folder':
      if (!o.dataPath) throw new Error("dataset 'folder' needs --data-path (a folder with train/ and test/, or class sub-folders)");
      return imageFolder(splitFolder(o.dataPath, o.split));
    case 'flat':
      if (!o.dataPath) throw new Error("dataset 'flat' needs --data-path (a folder of images)");
      return imageFiles(o.dataPath, { recursive: true });
    default:
      throw new Error(`unknown dataset '${name}' (known: ${DATASETS.join(', ')})`);
  }
}

function splitFolder(root: string, split: string): string {
  return existsSync(join(root, split)) ? join(root, split) : root;
}

/**
 * A seeded subset of a file or synthetic dataset with about the same number of images per class
 * (round-robin over classes in a seeded order).
 */
export function subsetDataset(ds: Dataset, limit: number, seed: number): Dataset {
  if (limit >= ds.length) return ds;
  if (ds.spec.kind === 'synthetic') return syntheticObjects({ ...ds.spec.config, size: [ds.spec.config.height, ds.spec.config.width], count: limit });
  const files = ds.spec;
  if (files.kind !== 'files') throw new Error(`cannot take a subset of ${ds.root}`);
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
  chosen.forEach((i, k) => { labels[k] = ds.label(i); });
  const spec = { kind: 'files' as const, root: files.root, paths: packStrings(paths), labels };
  return {
    spec, length: chosen.length, classes: ds.classes, root: `${ds.root} (subset of ${chosen.length}, seed ${seed})`, fixedSize: ds.fixedSize,
    hasMasks: false, label: (i: number) => labels[i], name: (i: number) => join(files.root, paths[i]),
  };
}

/** Transforms for an augmentation kind at a square size. */
export function transformsFor(kind: Augment | 'pretrain', size: number, ds: Dataset, minScale = 0.2): TransformSpec[] {
  const native = ds.fixedSize && ds.fixedSize[0] === size && ds.fixedSize[1] === size;
  switch (kind) {
    case 'pretrain': return pretrainTransforms(size, { scale: [minScale, 1] });
    case 'finetune': return finetuneTransforms(size);
    case 'crop-flip': return [randomResizedCrop(size, { scale: [0.08, 1], interpolation: 'bicubic' }), horizontalFlip(0.5), normalize()];
    default:
      // Small datasets at their native size are only normalised; others resize + centre-crop.
      return native ? [normalize()] : ds.fixedSize ? [resize(size, { interpolation: 'bicubic' }), centerCrop(size), normalize()] : evalTransforms(size);
  }
}

/** Batches of one epoch from batch `start` on (earlier batches are skipped without decoding when possible). */
async function* epochFrom(loader: DataLoader, epoch: number, start: number): AsyncGenerator<Batch> {
  let b = 0;
  for await (const batch of loader.iterate(epoch)) {
    if (b++ < start) continue;
    yield batch;
  }
}

/** Pre-training data. */
export function makeTrainData(o: TrainDataRequest): TrainData {
  const size = o.imgSize;
  const ds = openDataset(o.dataset, { split: 'train', dataPath: o.dataPath, imgSize: size, syntheticSize: o.syntheticSize, seed: o.seed });
  let transforms = transformsFor('pretrain', size, ds, o.minScale).filter((t) => o.hflip || t.op !== 'horizontalFlip');
  // uint8 batches: the loader stops before normalising and the trainer normalises on the device.
  const normalizeOp = transforms.find((t): t is NormalizeSpec => t.op === 'normalize');
  const uint8 = o.uint8 && !!normalizeOp;
  if (uint8) transforms = transforms.filter((t) => t !== normalizeOp);
  const loader = new DataLoader(ds, {
    batchSize: o.batchSize, shuffle: true, dropLast: true, seed: o.seed, transforms, workers: o.numWorkers, uint8, ...o.imageInput,
  });
  return {
    batchesPerEpoch: loader.length,
    normalize: uint8 ? { mean: normalizeOp!.mean, std: normalizeOp!.std } : null,
    async *epoch(epoch: number, start: number): AsyncGenerator<TrainBatch> {
      for await (const b of epochFrom(loader, epoch, start)) yield { images: b.images, shape: b.shape, labels: b.labels };
    },
    close: () => loader.close(),
  };
}

/** Labelled data for evaluation (k-NN, linear probe, fine-tuning). */
export function makeEvalData(req: EvalDataRequest): LabelledData {
  let ds = openDataset(req.dataset, { split: req.split, dataPath: req.dataPath, imgSize: req.imgSize, seed: req.seed, syntheticSize: req.limit });
  if (req.limit) ds = subsetDataset(ds, req.limit, req.seed);
  if (ds.classes.length < 2) throw new Error(`${ds.root} has no class labels: evaluation needs a labelled dataset`);
  const loaders = new Map<string, DataLoader>();
  const loaderFor = (o: BatchOptions): DataLoader => {
    const key = `${o.batchSize}/${o.shuffle}/${o.augment}/${o.seed ?? 0}/${!!o.dropLast}`;
    let l = loaders.get(key);
    if (!l) {
      l = new DataLoader(ds, { batchSize: o.batchSize, shuffle: o.shuffle, dropLast: !!o.dropLast, seed: o.seed ?? 0,
        transforms: transformsFor(o.augment, req.imgSize, ds), workers: req.numWorkers, ...req.imageInput });
      loaders.set(key, l);
    }
    return l;
  };
  return {
    size: ds.length,
    numClasses: ds.classes.length,
    classNames: [...ds.classes],
    imageShape: [3, req.imgSize, req.imgSize],
    async *batches(o: BatchOptions): AsyncGenerator<LabelledBatch> {
      for await (const b of epochFrom(loaderFor(o), o.epoch, o.start ?? 0)) yield { images: b.images as Float32Array, shape: b.shape, labels: b.labels };
    },
    async close() {
      for (const l of loaders.values()) await l.close();
    },
  };
}


/** The real datasets, as the factories evaluations and experiments are given. */
export const DATA_FACTORIES: DataFactories = { makeEvalData, makeTrainData };
