// The public entry point: `import { SemAIM, torch } from 'semaim'` (or `require('semaim')`).
// The layers below the model are namespaces, as their own subpaths are (`semaim/torch`, `semaim/nn`, ...):
//   torch (tensors, autograd, functional), nn (modules), optim (optimisers, schedules), io (safetensors,
//   checkpoints), data (datasets, transforms, loader), viz (maps, figures, reports), dist (process
//   groups, collectives, DistributedDataParallel, the launcher).
// The model and the jobs on it are plain named exports (also `semaim/model`, `semaim/train`,
// `semaim/eval`, `semaim/export`): SemAIM, VisionTransformer, makeConfig, orders, loadEncoder,
// pretrain, extractFeatures, knnClassify, linprobe…, finetune, embed, exportEncoder, exportOnnx, exportWeb.
export * as torch from './torch';
export * as nn from './nn';
export * as optim from './optim';
export * as io from './io';
export * as data from './data';
export * as viz from './viz';
export * as dist from './dist';
export { Tensor } from './torch';

export * from './semaim';
export * from './train';
export * from './eval';
export * from './export';
// The errors a program switches on by `code` (README "Errors"); OptionError, ConfigError and
// RunInUseError come with the jobs above.
export { AbortError, CheckpointError, DataError, MissingPackageError } from './util/errors';
