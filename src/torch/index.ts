// The tensor engine (libtorch under TypeScript): tensors, autograd, functional ops (torch.F), fused kernels, devices, CUDA graphs.
export { Tensor } from './tensor';
export type { Scalar, TensorOrScalar } from './tensor';
export type { DType, Device, TypedArray } from './dtype';
export { isFloating, dtypeBytes, deviceType } from './dtype';
export { scope, keep, scopeDepth } from './scope';
export { noGrad, enableGrad, isGradEnabled, autocast, autocastState } from './autograd';
export { manualSeed, getRngState, setRngState, Generator } from './random';
export * from './creation';
export * from './ops';
export * as F from './functional';
export * as fused from './fused';
export { CudaGraph, cudaEvents, sideStream, isCapturing } from './cuda-graphs';
export { isTorchError, TORCH_ERROR_CODES, type TorchError, type TorchErrorCode } from './errors';
