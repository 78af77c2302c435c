// The feature bank is the big object of a k-NN or linear probe at ImageNet scale (1.28M × 768 floats,
// 3.9 GB): extracting it and classifying against it must not hold it several times over. Measured with
// the caching CPU allocator's live-byte peak (process-wide, so each test checks that no earlier peak hides its bound).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { VisionTransformer, type EncoderConfig } from '../../src/semaim';
import { MemoryLabelledData } from '../../src/data';
import { extractFeatures, disposeFeatures } from '../../src/eval/features';
import { knnClassify } from '../../src/eval/knn';
import { cpuOnly } from '../torch/helpers';

const skip = cpuOnly || (torch.cpuAllocator.stats().enabled ? false : 'the caching CPU allocator is off (SEMAIM_CPU_ALLOCATOR=system)');

/**
 * How far the allocator's live blocks rose above `base` at their peak while `run` ran; an earlier peak
 * hides only rises below it, so it must itself stay under `limit` above the base (the bound checked).
 */
async function peakAbove(base: number, limit: number, run: () => void | Promise<void>): Promise<number> {
  const before = torch.cpuAllocator.stats().peakLiveBytes!;
  assert.ok(before - base < limit, `an earlier allocation (peak ${before} bytes) would hide a rise of ${limit} bytes above ${base}`);
  await run();
  return torch.cpuAllocator.stats().peakLiveBytes! - base;
}

test('extractFeatures holds the features once, not the batches and their concatenation too', { skip }, async () => {
  // one patch, a wide embedding: a batch's features (64 × 256 floats = 64 KiB) are large allocator blocks
  const cfg: EncoderConfig = { imgSize: 4, patchSize: 4, inChans: 3, embedDim: 256, depth: 1, numHeads: 1, mlpRatio: 1 };
  torch.manualSeed(0);
  const enc = new VisionTransformer(cfg).initWeights();
  const n = 8192;
  const images = torch.scope(() => torch.randn([n, 3, 4, 4]).toFloat32Array());
  const data = new MemoryLabelledData(
    images,
    [n, 3, 4, 4],
    Int32Array.from({ length: n }, (_, i) => i % 10),
    10,
  );
  const bank = n * cfg.embedDim * 4; // 8 MiB
  let set: Awaited<ReturnType<typeof extractFeatures>> | null = null;
  try {
    const extra = await peakAbove(torch.cpuAllocator.stats().liveBytes!, 1.5 * bank, async () => {
      set = await extractFeatures(enc, data, { batchSize: 64, pooling: 'cls', label: null });
    });
    assert.deepEqual(set!.features.shape, [n, cfg.embedDim]);
    // the bank (1×) plus one batch's activations; batches kept until a torch.cat reached 2×
    assert.ok(extra < 1.5 * bank, `extraction peaked ${(extra / bank).toFixed(2)}× the bank's size above where it started`);
  } finally {
    disposeFeatures(set);
    enc.dispose();
  }
});

test('knnClassify makes one normalised copy of the bank (no transposed copy besides)', { skip }, async () => {
  const n = 40000;
  const D = 128;
  const bank = n * D * 4; // 20 MiB
  torch.manualSeed(1);
  const train = { features: torch.keep(torch.randn([n, D])), labels: Int32Array.from({ length: n }, (_, i) => i % 7) };
  const test = { features: torch.keep(torch.randn([16, D])), labels: Int32Array.from({ length: 16 }, (_, i) => i % 7) };
  try {
    const extra = await peakAbove(torch.cpuAllocator.stats().liveBytes!, 1.5 * bank, () => {
      const [r] = knnClassify(train, test, { ks: [5], numClasses: 7, chunkSize: 16, label: null });
      assert.equal(r.k, 5);
    });
    // the normalised bank (1×) + a [16, n] similarity block (0.125×); a contiguous transposed copy made it 2×
    assert.ok(extra < 1.5 * bank, `k-NN peaked ${(extra / bank).toFixed(2)}× the bank's size above the features it was given`);
  } finally {
    disposeFeatures(train, test);
  }
});
