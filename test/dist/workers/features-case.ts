// The encoder both sides of test/dist/evaluation.test.ts's feature comparison build: seeded, tiny.
import * as torch from '../../../src/torch';
import { EncoderConfig, VisionTransformer } from '../../../src/semaim';

export const FEATURE_ENCODER: EncoderConfig = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 24, depth: 2, numHeads: 2, mlpRatio: 2 };

export function featureEncoder(): VisionTransformer {
  torch.manualSeed(5);
  return new VisionTransformer(FEATURE_ENCODER).initWeights();
}
