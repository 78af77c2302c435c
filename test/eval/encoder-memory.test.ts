// The evaluations' CPU memory guard (src/eval/encoder-memory.ts): a batch whose attention maps cannot fit is
// refused before any work, naming the option and the largest batch that fits, as pretrain refuses its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkEncoderFitsOnCpu, encoderHeldCount } from '../../src/eval/encoder-memory';
import { runKnn } from '../../src/eval/run';
import { KNN_OPTIONS } from '../../src/eval/options';
import { EncoderConfig, VisionTransformer } from '../../src/semaim';
import type { EvalDataRequest } from '../../src/data';
import { OptionError, resolveOptions } from '../../src/util/options';
import { memoryFactories, toyImages, writeEncoder } from './helpers';

const GiB = 2 ** 30;
const memory = { bytes: 24 * GiB, describe: "this machine's 24.0 GiB of memory" };
const VIT_L_448: EncoderConfig = { imgSize: 448, patchSize: 14, inChans: 3, embedDim: 1024, depth: 24, numHeads: 16, mlpRatio: 4 };

test('encoderHeldCount counts what the encoder holds', () => {
  const enc = new VisionTransformer({ imgSize: 32, patchSize: 8, inChans: 3, embedDim: 24, depth: 3, numHeads: 2, mlpRatio: 3 });
  try {
    const held = enc.parameters().reduce((n, p) => n + p.numel, 0) + [...enc.namedBuffers()].reduce((n, [, b]) => n + b.numel, 0);
    assert.equal(encoderHeldCount(enc.cfg), held);
  } finally {
    enc.dispose();
  }
});

test('an imported ViT-L at 448² in 14² patches with the evaluations’ batch of 256 is refused on the CPU, naming the batch that fits', () => {
  // one map: 256 × 16 heads × 1025² tokens × 4 bytes = 16.0 GiB; with the weights, above 24 GiB at two maps' worth
  const perImage = 16 * 1025 * 1025 * 4;
  const fits = Math.floor((memory.bytes - encoderHeldCount(VIT_L_448) * 4) / perImage);
  assert.throws(
    () => checkEncoderFitsOnCpu(VIT_L_448, 'cpu', [{ key: 'evalBatchSize', batch: 512 }], memory),
    (e: unknown) =>
      e instanceof OptionError &&
      e.key === 'evalBatchSize' &&
      e.message.includes('one attention map of 512 images × 16 heads × 1025² tokens (1024 patches of 448² images in 14² patches, and [CLS]) takes 32.1 GiB') &&
      e.message.endsWith(`more than this machine's 24.0 GiB of memory: a --eval-batch-size of at most ${fits}`),
  );
  checkEncoderFitsOnCpu(VIT_L_448, 'cpu', [{ key: 'evalBatchSize', batch: fits }], memory);
  checkEncoderFitsOnCpu(VIT_L_448, 'cuda', [{ key: 'evalBatchSize', batch: 512 }], memory); // a GPU's kernels hold no map
  // fine-tuning keeps every block's map for the backward, and gradients and AdamW state beside the weights
  assert.throws(
    () => checkEncoderFitsOnCpu(VIT_L_448, 'cpu', [{ key: 'batchSize', batch: 64, training: true }], memory),
    (e: unknown) => e instanceof OptionError && e.key === 'batchSize' && /each of its 24 blocks keeps one for the backward/.test(e.message),
  );
  assert.throws(
    () => checkEncoderFitsOnCpu({ ...VIT_L_448, imgSize: 2240 }, 'cpu', [{ key: 'batchSize', batch: 1 }], memory),
    /the encoder does not fit with one image; use a GPU \(--device cuda\)$/,
  );
});

test('runKnn refuses a batch whose attention map cannot fit before it opens any data or makes its folder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-encoder-memory-'));
  try {
    // 1024² images in 8² patches: one image's map is 2 heads × 16385² tokens × 4 bytes = 2 GiB
    const enc = writeEncoder(dir, { imgSize: 1024, patchSize: 8, inChans: 3, embedDim: 8, depth: 1, numHeads: 2, mlpRatio: 1 });
    const outDir = join(dir, 'knn');
    const requests: EvalDataRequest[] = [];
    const f = memoryFactories(toyImages(4, 2, 8, 1), toyImages(4, 2, 8, 2), requests);
    await assert.rejects(
      runKnn(resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir, k: '1', threads: 1, evalBatchSize: 65536 }), f),
      (e: unknown) => e instanceof OptionError && e.key === 'evalBatchSize' && /is too large for this encoder on the CPU/.test(e.message),
    );
    assert.deepEqual(requests, []);
    assert.equal(existsSync(outDir), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
