// The encoder (and classifier) both sides of test/dist/evaluation.test.ts's comparisons build: seeded, tiny.
import * as torch from '../../../src/torch';
import { EncoderConfig, VisionTransformer } from '../../../src/semaim';
import { ViTClassifier } from '../../../src/eval/classifier';

export const FEATURE_ENCODER: EncoderConfig = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 24, depth: 2, numHeads: 2, mlpRatio: 2 };

export function featureEncoder(): VisionTransformer {
  torch.manualSeed(5);
  return new VisionTransformer(FEATURE_ENCODER).initWeights();
}

/** A seeded classifier of the same architecture (10 classes, mean-pooled), for the data-parallel test-set evaluation. */
export function featureClassifier(): ViTClassifier {
  torch.manualSeed(6);
  return new ViTClassifier({ ...FEATURE_ENCODER, numClasses: 10, pool: 'avg' }).initWeights();
}
