// Data-parallel training on libtorch's c10d: process groups and collectives, the DDP wrapper, and the
// launcher.
export { readDistEnv, isWorkerProcess, isLoopback } from './env';
export { stopWhenLauncherDies, launcherPid } from './orphan-watch';
export type { DistEnv } from './env';
export {
  ProcessGroup, Work, initProcessGroup, getProcessGroup, processGroupOrNull, rank, worldSize, isDistributed,
  destroyProcessGroup, reportStartFailure, rankSlice, severalRanks, backendFor, DEFAULT_TIMEOUT_MS, defaultTimeoutMs,
} from './process-group';
export type { Backend, ReduceOp, InitOptions, CollectiveOptions, RankFailure } from './process-group';
export { DistributedDataParallel, bucketsBySize, compressionRefusal } from './ddp';
export type { DdpOptions, GradCompression, GradSyncMode, ParameterOwner } from './ddp';
export { launchWorkers, launchOptionsFrom, MULTI_NODE_PORT, stripLaunchFlags, freePort, LAUNCH_OPTIONS, GRAD_SYNC_OPTIONS } from './launch';
export type { LaunchOptions, LaunchResult, LaunchFlags } from './launch';
export { isDistError, classifyDistMessage } from './errors';
export type { DistError, DistErrorCode } from './errors';
export { distBuildInfo } from './native-dist';
export type { DistBuildInfo } from './native-dist';
