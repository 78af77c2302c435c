// The tiny SemAIM the pre-training tests train (16² images of 4² patches, 2 blocks of width 32, no blur):
// seconds per run on one CPU thread. Each test adds its decoder depth, data and schedule.
export const TINY_SEMAIM = { model: 'vit_tiny', imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2 } as const;
