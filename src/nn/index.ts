// Neural-network modules (torch.nn): Module with parameters and state dicts, the layers, containers and initialisers.
export { Module, StateDictError } from './module';
export type { StateDict } from './module';
export * from './layers';
export * from './containers';
export * as init from './init';
export { batchSlice, setBatchSlice } from './batch-slice';
export type { BatchSlice } from './batch-slice';
