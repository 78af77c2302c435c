export * from './safetensors';
export * from './tensors';
export * from './checkpoint';
export * from './safetensors-rows';
