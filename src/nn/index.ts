export { Module, StateDictError } from './module';
export type { StateDict } from './module';
export * from './layers';
export * from './containers';
export * as init from './init';
export { batchSlice, setBatchSlice } from './batch-slice';
export type { BatchSlice } from './batch-slice';
