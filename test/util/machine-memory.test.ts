import { test } from 'node:test';
import assert from 'node:assert/strict';
import { machineMemory } from '../../src/util/machine-memory';
import { checkModelFits, modelConfigFrom, PRETRAIN_OPTIONS, semaimParameterCount, type PretrainOptions } from '../../src/train/pretrain-options';
import { SemAIM } from '../../src/semaim';
import { OptionError, resolveOptions } from '../../src/util/options';

const GiB = 2 ** 30;

test("a container's limit below the machine's memory is the figure; none, or one above, leaves the machine's", () => {
  assert.deepEqual(machineMemory(8 * GiB, 64 * GiB), { bytes: 8 * GiB, describe: "this container's limit of 8.0 GiB" });
  assert.deepEqual(machineMemory(0, 64 * GiB), { bytes: 64 * GiB, describe: "this machine's 64.0 GiB of memory" });
  // cgroup v1 without a limit reports a huge number
  assert.deepEqual(machineMemory(2 ** 63, 64 * GiB), { bytes: 64 * GiB, describe: "this machine's 64.0 GiB of memory" });
  assert.ok(machineMemory().bytes > 0);
});

test("a model whose weights, gradients and AdamW state exceed the container's limit is refused, naming the limit", () => {
  const o: PretrainOptions = resolveOptions(PRETRAIN_OPTIONS, { model: 'vit_large', dataPath: '/x' });
  const cfg = modelConfigFrom(o);
  // ViT-L/16 with its decoder: ~0.46 billion parameters, ~6.9 GiB at 16 bytes each
  assert.doesNotThrow(() => checkModelFits(cfg, o, machineMemory(0, 64 * GiB)));
  assert.throws(
    () => checkModelFits(cfg, o, machineMemory(4 * GiB, 64 * GiB)),
    (e: unknown) =>
      e instanceof OptionError &&
      e.key === 'model' &&
      /GiB for weights, gradients and AdamW state, more than this container's limit of 4\.0 GiB/.test(e.message),
  );
});

test('on the CPU, a model whose attention map alone exceeds memory is refused, naming the image and patch size; on a GPU it is not', () => {
  const o: PretrainOptions = resolveOptions(PRETRAIN_OPTIONS, {
    model: 'vit_tiny',
    embedDim: 16,
    depth: 1,
    numHeads: 2,
    imgSize: 8192,
    patchSize: 32,
    batchSize: 1,
  });
  const cfg = modelConfigFrom({ ...o, device: 'cuda' }); // (modelConfigFrom checks this machine's memory itself)
  assert.throws(
    () => checkModelFits(cfg, o, machineMemory(0, 24 * GiB)),
    (e: unknown) =>
      e instanceof OptionError &&
      e.key === 'imgSize' &&
      /batch 1 × 2 heads × 65537² tokens .* takes 32\.0 GiB, more than this machine's 24\.0 GiB/.test(e.message),
  );
  assert.doesNotThrow(() => checkModelFits(cfg, { ...o, device: 'cuda' }, machineMemory(0, 24 * GiB)));
  const small = { ...o, imgSize: 224, patchSize: 16 };
  assert.doesNotThrow(() => checkModelFits(modelConfigFrom(small), small, machineMemory(0, 24 * GiB)));
});

test('on the CPU, a batch whose attention map fits only without the model state is refused naming --batch-size and the largest that fits', () => {
  // ViT-B/16 at 224²: one map is 12 × 197² × 4 bytes an image; 13,000 images take 22.6 GiB, under 24 GiB alone
  const o: PretrainOptions = resolveOptions(PRETRAIN_OPTIONS, { batchSize: 13000 });
  const cfg = modelConfigFrom({ ...o, device: 'cuda' });
  const memory = machineMemory(0, 24 * GiB);
  const fits = Math.floor((24 * GiB - semaimParameterCount(cfg) * 16) / (12 * 197 * 197 * 4));
  assert.throws(
    () => checkModelFits(cfg, o, memory),
    (e: unknown) =>
      e instanceof OptionError &&
      e.key === 'batchSize' &&
      // the map alone (22.6 GiB) was said to be "more than this machine's 24.0 GiB"
      /takes 22\.6 GiB; with the weights, gradients and AdamW state that is 2[5-9]\.\d GiB, more than this machine's 24\.0 GiB/.test(e.message) &&
      e.message.includes(`a --batch-size of at most ${fits},`),
  );
  assert.doesNotThrow(() => checkModelFits(cfg, { ...o, batchSize: fits }, memory));
  assert.throws(() => checkModelFits(cfg, { ...o, batchSize: fits + 1 }, memory), /at most/);
});

test("the size estimate counts the model's parameters at any --mlp-ratio: the prediction head's and the MLPs' hidden widths as the model makes them", () => {
  // 12 × 4.125 = 49.5 hidden units: the model makes 49 (floor); ratio 8 makes the head twice as wide as ratio 4
  for (const mlpRatio of [4.125, 8]) {
    const o: PretrainOptions = resolveOptions(PRETRAIN_OPTIONS, {
      model: 'vit_tiny',
      imgSize: 16,
      patchSize: 4,
      embedDim: 12,
      depth: 2,
      numHeads: 2,
      mlpRatio,
    });
    const cfg = modelConfigFrom(o);
    const model = new SemAIM(cfg);
    try {
      assert.equal(semaimParameterCount(cfg), model.numParameters(), `--mlp-ratio ${mlpRatio}`);
    } finally {
      model.dispose();
    }
  }
});
