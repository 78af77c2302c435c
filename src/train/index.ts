// Pre-training: the job behind `semaim pretrain` and its option table.
export * from './pretrain';
export * from './pretrain-options';
// Types that the results and hooks above name.
export type { StopReason, MetricsRecord } from '../run/train-state';
export type { StopSignal, StopRequest } from '../run/signals';
export type { LoopHooks } from '../run/loop';
export { RunInUseError } from '../run/run-lock';
export type { Precision } from '../run/precision';
// Options for the jobs as the library's callers build them: resolveOptions(PRETRAIN_OPTIONS, { ... })
// (or KNN_OPTIONS, LINPROBE_OPTIONS, FINETUNE_OPTIONS from semaim/eval) fills in every default and
// checks each value as the command line would; readConfigFile(path) reads a config file as a layer of them.
export {
  resolveOptions,
  readConfigFile,
  OptionError,
  type Options,
  type OptionsInput,
  type OptionTable,
  type OptionValues,
  type OptionErrorCode,
} from '../util/options';
