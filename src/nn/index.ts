export { Module, StateDictError } from './module';
export type { StateDict } from './module';
export * from './layers';
export * from './containers';
export * as init from './init';
