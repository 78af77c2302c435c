export * from './safetensors';
export * from './tensors';
