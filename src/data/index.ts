// Public API of the data pipeline: datasets, transforms, and the DataLoader.
// Batches are plain typed arrays (NCHW); converting them to tensors is left to the caller.

export { Rng, permutation, hashKeys } from './rng';

// datasets
export type { Dataset, DatasetSpec, MemoryImages } from './dataset';
export { imageFolder, imageFiles, imageFile, IMAGE_EXTENSIONS, type FolderOptions, type ImageFolderDataset } from './sources/folder';
export {
  cifarBinary,
  cifar10Jpeg,
  ensureCifar10Jpeg,
  extractArchive,
  defaultCifar10Archive,
  defaultDataCache,
  CIFAR10_CLASSES,
  type CifarBinaryOptions,
  type Cifar10JpegOptions,
} from './sources/cifar';
export { type IdxArray, idxDataset, parseIdx, mnist, mnistLike, fashionMnist, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, MNIST_CLASSES } from './sources/idx';
export {
  syntheticObjects,
  SyntheticObjects,
  renderSynthetic,
  syntheticConfig,
  SHAPES,
  type SyntheticOptions,
  type SyntheticConfig,
  type SyntheticSample,
  type ShapeName,
} from './sources/synthetic';
export { MemoryDataset } from './sources/memory';

// transforms
export {
  resize,
  centerCrop,
  randomResizedCrop,
  horizontalFlip,
  randAugment,
  normalize,
  randomErasing,
  pretrainTransforms,
  finetuneTransforms,
  evalTransforms,
  type TransformSpec,
  type ResizeSpec,
  type CenterCropSpec,
  type RandomCropSpec,
  type RandomResizedCropSpec,
  type HorizontalFlipSpec,
  type RandAugmentSpec,
  type NormalizeSpec,
  type RandomErasingSpec,
  type Size,
} from './transforms';
export type { Interpolation, Rect } from './resample';
export { IMAGENET_MEAN, IMAGENET_STD } from './color';
export { mixBatch, softTargets, type MixupOptions, type MixResult } from './mix';

// single-sample execution of a transform list (e.g. for visualisation tools)
export { Pipeline, type PipelineOptions } from './pipeline';
export { simdAvailable } from './simd';

// decoding (for tools and tests)
export { openImage, decodeImage, sniff, type ImageHandle, type ImageFormat, type ImageOpenOptions, type DecodeRequest } from './codecs/decode';
export { DecodeError, SKIP_REASONS, type SkipReason } from './codecs/errors';
export { DEFAULT_MAX_IMAGE_PIXELS } from './codecs/limits';
export { exifOrientation, orientImage, EXIF_ORIENTATION_POLICIES, type ExifOrientationPolicy } from './codecs/orientation';
export type { Image, Plane, ColorSpace } from './image';

// loader
export { DataLoader, type LoaderOptions, type Batch, type EpochSummary, type EpochStart } from './loader';
export type { SkipRecord } from './batch';
export { rankPlan, type RankSlice, type RankPlan, type RankPlanOptions } from './sharding';

// sharded tar datasets
export {
  shardDataset,
  isShardDataset,
  ShardLoader,
  packImageFolder,
  resolveShardPaths,
  expandBraces,
  DEFAULT_SHUFFLE_BUFFER,
  DEFAULT_SHARD_SIZE,
  type ShardDataset,
  type ShardDatasetOptions,
  type ShardLoaderOptions,
  type ShardEpochSummary,
  type PackOptions,
  type PackResult,
} from './shards';
export type { CacheOptions } from './cache';

// what training and evaluation consume, and the datasets by name
export * from './streams';
export { MemoryLabelledData } from './sources/memory-labelled';
export {
  DATASETS,
  DATA_FACTORIES,
  makeTrainData,
  makeEvalData,
  openDataset,
  subsetDataset,
  transformsFor,
  type DatasetName,
  type OpenOptions,
} from './factories';
export { IMAGE_INPUT_OPTIONS, imageInputOptions, type ImageInputOptions } from './options';

// segmentation data (runSegprobe's SegDataFactory makes it; DataFactories.makeSegData too)
export type { SegData, SegBatch, SegBatchOptions, SegAugment, SegSkip, SkipSummary } from './seg-streams';
export type { SegDataRequest } from './seg-loader';
