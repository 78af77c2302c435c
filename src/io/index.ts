// Files: safetensors read and write (timm's format), checkpoints (written atomically, verified on load), half-float conversion.
export * from './safetensors';
export * from './half-float';
export * from './tensors';
export * from './checkpoint';
export * from './safetensors-rows';
export type { StagedFile } from '../util/safe-write';
