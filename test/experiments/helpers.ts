// The tiny pre-training every ablation test runs (8² images of 2×2 patches, one block, one epoch).
export const TINY_PRETRAIN = { imgSize: 8, patchSize: 4, embedDim: 16, depth: 1, numHeads: 2, decoderDepth: 1, epochs: 1, batchSize: 8 };

/** A tiny ablation's recipe over the synthetic set (one order, few steps, one thread), as these tests run it. */
export const TINY_ABLATION = {
  orders: 'raster',
  budget: 'small',
  ...TINY_PRETRAIN,
  pretrainLimit: 16,
  linprobeEpochs: 1,
  k: '5',
  threads: 1,
  pooling: 'cls',
  dataset: 'synthetic',
};
