// A model config read from a file someone handed over (an exported encoder's .json or metadata, a
// checkpoint's model.safetensors) is bounded and checked against the weights' shapes before a model
// of its size is built: a hostile or wrong config is refused quickly, naming the file and the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { disposeAll, loadTensors, saveTensors } from '../../src/io';
import {
  ConfigError,
  DEFAULT_ORDER,
  SemAIM,
  checkpointConfig,
  configFromJSON,
  configToJSON,
  makeConfig,
  resolveCheckpoint,
  resolveEncoder,
  validateEncoder,
} from '../../src/semaim';
import { TINY, writeEncoder } from '../eval/helpers';

test('encoder configs beyond the bounds or with an empty MLP are refused, naming the key', () => {
  const cases: [Record<string, number>, RegExp][] = [
    [{ depth: 100_000_000 }, /config 'depth': 100000000 is above the limit of 256/],
    [{ embedDim: 2 ** 32 }, /config 'embedDim': 4294967296 is above the limit/],
    [{ imgSize: 4_000_000 }, /config 'imgSize': 4000000 is above the limit of 8192/],
    [{ imgSize: 8192, patchSize: 16 }, /262144 patches, above the limit of 65536/],
    [{ mlpRatio: Infinity }, /config 'mlpRatio': must give an MLP of 1..64 × embedDim units, got Infinity/],
    [{ mlpRatio: 1e-9 }, /config 'mlpRatio'.*got 1e-9/],
    [{ inChans: 1e6 }, /config 'inChans': must be an integer in 1..64/],
  ];
  for (const [change, message] of cases) assert.throws(() => validateEncoder({ ...TINY, ...change }), message, JSON.stringify(change));
  validateEncoder({ imgSize: 224, patchSize: 14, inChans: 3, embedDim: 6144, depth: 48, numHeads: 48, mlpRatio: 4 }); // ViT-22B's shape
  // a preset named like an Object.prototype member was found on the prototype (the function Object)
  for (const name of ['constructor', 'toString', '__proto__']) assert.throws(() => makeConfig(name), /config 'preset': unknown preset/, name);
});

test('a config, or a part of one, that is null, an array or a number is a ConfigError naming it, not a TypeError', () => {
  const good = JSON.parse(configToJSON(makeConfig('vit_tiny', { imgSize: 32, patchSize: 4 }))) as Record<string, unknown>;
  const cases: [unknown, RegExp][] = [
    [null, /config 'config': must be an object, got null/],
    [[good], /config 'config': must be an object, got \[/],
    [{ ...good, target: null }, /config 'target': must be an object, got null/],
    [{ ...good, target: undefined }, /config 'target': must be an object, got undefined/],
    [{ ...good, order: [] }, /config 'order': must be an object, got \[\]/],
    [{ ...good, target: { type: 'features', teacher: 't.safetensors', teacherConfig: null } }, /config 'target.teacherConfig': must be an object, got null/],
  ];
  for (const [c, message] of cases) {
    assert.throws(
      () => configFromJSON(JSON.stringify(c)),
      (e) => e instanceof ConfigError && message.test(e.message),
      JSON.stringify(c)?.slice(0, 80),
    );
  }
  assert.deepEqual(configFromJSON(JSON.stringify(good)), good);
});

test('an exported encoder whose config contradicts its weights is refused from the header alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-untrusted-'));
  try {
    const weights = writeEncoder(dir);
    const json = weights.replace(/\.safetensors$/, '.json');
    const claim = (change: Record<string, unknown>) => writeFileSync(json, JSON.stringify({ ...TINY, ...change }));
    claim({ depth: 100_000_000 });
    const t0 = Date.now();
    assert.throws(() => resolveEncoder(weights), new RegExp(`${json}: the model config is not usable: config 'depth': 100000000 is above the limit`));
    assert.ok(Date.now() - t0 < 5000, 'refused without building anything');
    claim({ depth: 3 });
    assert.throws(() => resolveEncoder(weights), /holds 2 encoder blocks, its model config says depth 3/);
    claim({ embedDim: 32, numHeads: 2 });
    assert.throws(() => resolveEncoder(weights), /'cls_token' is \[1,1,16\], its model config implies \[1,1,32\]: the config does not describe these weights/);
    claim({ mlpRatio: 3 });
    assert.throws(() => resolveEncoder(weights), /'blocks\.0\.mlp\.fc1\.weight' is \[32,16\], its model config implies \[48,16\]/);
    claim({ patchSize: 2 });
    assert.throws(() => resolveEncoder(weights), /'patch_embed\.proj\.weight' is \[16,3,4,4\], its model config implies \[16,3,2,2\]/);
    claim({});
    assert.equal(resolveEncoder(weights).config.depth, 2, 'the true config is accepted');
    // integer weights (a quantised file without its scales) would be cast into meaningless floats
    const quantised = join(dir, 'int8.safetensors');
    const { tensors } = loadTensors(weights);
    const asInt = [...tensors].map(([k, t]): [string, torch.Tensor] => [k, k === 'blocks.1.norm1.weight' ? t.to({ dtype: 'int8' }) : t]);
    saveTensors(quantised, asInt, { config: JSON.stringify(TINY) });
    disposeAll(tensors);
    asInt.find(([k]) => k === 'blocks.1.norm1.weight')![1].dispose();
    assert.throws(() => resolveEncoder(quantised), /int8\.safetensors holds 1 encoder weight\(s\) as integers \('blocks\.1\.norm1\.weight' \(int8\)\)/);
    // weights of something else
    const other = join(dir, 'other.safetensors');
    saveTensors(other, [['w', torch.zeros([2])]], { config: JSON.stringify(TINY) });
    assert.throws(() => resolveEncoder(other), /other\.safetensors has no tensor 'cls_token': not the weights of a ViT encoder/);
    // a fine-tuned classifier's weights file, and an exported encoder where a checkpoint is needed
    const classifier = join(dir, 'model.safetensors');
    saveTensors(classifier, [['w', torch.zeros([2])]], { config: JSON.stringify(TINY), format: 'semaim.finetune/1' });
    assert.throws(() => resolveEncoder(classifier), /model\.safetensors holds the weights of a finetune run, not a pre-trained encoder/);
    assert.throws(() => resolveCheckpoint(weights), /encoder\.safetensors is a file: this needs a pre-training run folder or one of its checkpoint folders/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a checkpoint's model config is checked too (visualize, report, export read it)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-untrusted-ck-'));
  try {
    const cfg = makeConfig('vit_tiny', { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, decoderDepth: 1 });
    torch.manualSeed(0);
    const model = new SemAIM(cfg);
    const good = join(dir, 'good');
    mkdirSync(good);
    saveTensors(join(good, 'model.safetensors'), model.stateDict(), { config: JSON.stringify(cfg) });
    assert.equal(checkpointConfig(good).depth, 2);
    const bad = join(dir, 'bad');
    mkdirSync(bad);
    saveTensors(join(bad, 'model.safetensors'), model.stateDict(), { config: JSON.stringify({ ...cfg, depth: 100_000_000 }) });
    assert.throws(() => checkpointConfig(bad), /bad\/model\.safetensors: the model config is not usable: config 'depth': 100000000 is above the limit/);
    const wrong = join(dir, 'wrong');
    mkdirSync(wrong);
    saveTensors(join(wrong, 'model.safetensors'), model.stateDict(), { config: JSON.stringify({ ...cfg, depth: 4, decoderDepth: 1 }) });
    assert.throws(() => checkpointConfig(wrong), /holds 2 encoder blocks, its model config says depth 4/);
    model.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('target and order settings out of their range are refused, naming the key; a depth override sets the decoder depth', () => {
  const base = { imgSize: 32, patchSize: 8, depth: 2, embedDim: 32, numHeads: 2, decoderDepth: 1 };
  const px = { type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 };
  const sem = { type: 'semantic', source: 'online', filter: true, lambda: 0.01 };
  const mc = { type: 'multicenter', source: 'online', k: 2, minRelHeight: 0.5, minDistance: 2, filter: true, lambda: 0.01 };
  const teacher = { imgSize: 32, patchSize: 8, embedDim: 16, depth: 1, numHeads: 2 };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ target: { ...px, blurKernel: 4 } }, /config 'target\.blurKernel': must be an odd positive integer/],
    [{ target: { ...px, blurSigma: 0 } }, /config 'target\.blurSigma': must be > 0/],
    [{ order: { ...sem, lambda: -1 } }, /config 'order\.lambda': must be in \[0, 1e6\], got -1/],
    [{ order: { ...mc, minRelHeight: 2 } }, /config 'order\.minRelHeight': must be in \[0, 1\]/],
    [{ order: { ...mc, minRelHeight: -0.1 } }, /config 'order\.minRelHeight': must be in \[0, 1\]/],
    [{ order: { ...mc, k: 0 } }, /config 'order\.k': must be a positive integer/],
    [
      { target: { type: 'features', teacher: 't.safetensors', teacherConfig: { ...teacher, imgSize: 64 } } },
      /config 'target\.teacherConfig': the teacher must use the same image and patch size/,
    ],
    [
      { target: { type: 'features', teacher: 't.safetensors', teacherConfig: { ...teacher, patchSize: 4 } } },
      /config 'target\.teacherConfig': the teacher must use the same image and patch size/,
    ],
    [{ dropPath: 1 }, /config 'dropPath': must be in \[0, 1\)/],
  ];
  for (const [change, message] of cases) assert.throws(() => makeConfig('vit_tiny', { ...base, ...change } as never), message, JSON.stringify(change));
  // the edges of each range are accepted
  const edges: Record<string, unknown>[] = [
    { target: { ...px, blurKernel: 1, blurSigma: 1e-3 } },
    { order: { ...sem, lambda: 0 } },
    { order: { ...mc, k: 1, minRelHeight: 0 } },
    { order: { ...mc, minRelHeight: 1 } },
    { target: { type: 'features', teacher: 't.safetensors', teacherConfig: teacher } },
    { dropPath: 0.99 },
  ];
  for (const change of edges) makeConfig('vit_tiny', { ...base, ...change } as never);
  // without a decoderDepth, the decoder is as deep as the (overridden) encoder
  assert.equal(makeConfig('vit_tiny', { imgSize: 32, patchSize: 8, depth: 2 }).decoderDepth, 2);
  assert.equal(makeConfig('vit_tiny', { imgSize: 32, patchSize: 8, depth: 3, decoderDepth: 1 }).decoderDepth, 1);
});

test('makeConfig gives each config its own target and order: a caller changing one does not change the defaults (DEFAULT_ORDER is frozen)', () => {
  const mine = makeConfig('vit_tiny', { imgSize: 32, patchSize: 4 });
  (mine.order as { lambda: number }).lambda = 0.5;
  (mine.target as { blurSigma: number }).blurSigma = 3;
  const next = makeConfig('vit_tiny', { imgSize: 32, patchSize: 4 });
  assert.deepEqual(next.order, { type: 'semantic', source: 'online', filter: true, lambda: 0.01 });
  assert.deepEqual(next.target, { type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 });
  assert.deepEqual(DEFAULT_ORDER, next.order);
  assert.throws(() => ((DEFAULT_ORDER as { lambda: number }).lambda = 1), TypeError);
});

test('configs written by earlier releases still load: the 2026-12-02 checkpoint, and a teacherConfig holding the teacher’s whole .json', () => {
  const upgrade = join(__dirname, '..', '..', '..', 'test', 'golden', 'upgrade', 'run', 'checkpoints', 'step-00000005');
  assert.equal(checkpointConfig(upgrade).order.type, 'semantic');
  // runs before 2026-12-03 recorded the exported teacher's .json as it was, its timm block too
  const teacherJson = {
    imgSize: 32,
    patchSize: 4,
    inChans: 3,
    embedDim: 16,
    depth: 1,
    numHeads: 2,
    mlpRatio: 4,
    timm: { architecture: 'vit_tiny_patch16_224' },
  };
  const old = {
    ...makeConfig('vit_tiny', { imgSize: 32, patchSize: 4, embedDim: 16, depth: 1, numHeads: 2 }),
    target: { type: 'features', teacher: 't.safetensors', teacherConfig: teacherJson },
  };
  assert.deepEqual(configFromJSON(JSON.stringify(old)).target, old.target);
});
