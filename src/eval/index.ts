// Evaluation: k-NN, linear probe, fine-tuning, and their result files.
export * from './accuracy';
export * from './features';
export * from './knn';
export * from './classifier';
export * from './linprobe';
export * from './mix';
export * from './finetune';
export * from './options';
export * from './result';
export * from './run';
export * from './embed';
export * from './predict';
export * from './classifier-source';
export * from './miou';
export { runSegprobe, type SegprobeRun, type SegprobeFile, type SegRow, type SegDataFactory } from './segprobe-run';
export {
  SEGPROBE_OPTIONS,
  readSegprobeConfig,
  type SegprobeConfig,
  type SegprobeCommandOptions,
  type SegprobeSettings,
  type SegDataSettings,
} from './segprobe-options';
export type { Precision } from '../run/precision';
export type { ProcessGroup } from '../dist';
