// loadModel (visualize, report, object-start): the teacher and the EMA copy load after the model;
// when one of them fails, the model (and whatever else was loaded) is freed before the error reaches
// the caller, not left to the garbage collector of a long-lived process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { saveTensors, sha256File } from '../../src/io';
import { EncoderConfig, SemAIM, SemAIMConfig, VisionTransformer, loadEncoder, loadModel, makeConfig, resolveEncoder } from '../../src/semaim';
import { OptionError } from '../../src/util/options';

const ENC: EncoderConfig = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4 };

function checkpoint(dir: string, cfg: SemAIMConfig, extra?: Map<string, torch.Tensor>, step = 1): string {
  mkdirSync(dir, { recursive: true });
  const model = new SemAIM(cfg).initWeights(1);
  const files: Record<string, string> = {};
  saveTensors(join(dir, 'model.safetensors'), model.stateDict(), { config: JSON.stringify(cfg), format: 'semaim.pretrain/1' });
  files['model.safetensors'] = sha256File(join(dir, 'model.safetensors'));
  if (extra) {
    saveTensors(join(dir, 'optimizer.safetensors'), extra);
    files['optimizer.safetensors'] = sha256File(join(dir, 'optimizer.safetensors'));
  }
  writeFileSync(join(dir, 'state.json'), JSON.stringify({ step, files }));
  model.dispose();
  return dir;
}

test('a checkpoint whose teacher or EMA copy cannot be loaded: loadModel throws and frees the model', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-model-'));
  try {
    // a teacher (exported encoder + its JSON) that has changed since the run: loadTeacher refuses it
    const teacherPath = join(dir, 'teacher.safetensors');
    const teacher = new VisionTransformer(ENC).initWeights(2);
    saveTensors(teacherPath, teacher.stateDict(), { config: JSON.stringify(ENC) });
    teacher.dispose();
    writeFileSync(join(dir, 'teacher.json'), JSON.stringify({ ...ENC, numHeads: 4 }));
    const withTeacher = makeConfig('vit_tiny', {
      ...ENC,
      decoderDepth: 1,
      target: { type: 'features', teacher: teacherPath, teacherConfig: { ...ENC } },
    });
    const t = checkpoint(mkdtempSync(join(dir, 'teacher-')), withTeacher);

    // an EMA copy whose tensors do not fit the encoder
    const emaCfg = makeConfig('vit_tiny', { ...ENC, decoderDepth: 1, order: { type: 'semantic', source: 'ema', filter: true, lambda: 0.01 } });
    const bad = new Map([['ema.cls_token', torch.zeros([1, 1, 7])]]);
    const e = checkpoint(mkdtempSync(join(dir, 'ema-')), emaCfg, bad);
    bad.get('ema.cls_token')!.dispose();

    const start = torch.memoryStats().liveTensors;
    for (let i = 0; i < 3; i++) {
      assert.throws(() => loadModel(t), /teacher .* is now/);
      assert.throws(() => loadModel(e), /cls_token/);
    }
    assert.equal(torch.memoryStats().liveTensors, start, 'every failed load freed what it had loaded');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a fine-tuning checkpoint given where the SemAIM model is needed (visualize) is named as such, not as a config without decoderDepth', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-model-'));
  try {
    const enc = new VisionTransformer(ENC).initWeights(2);
    saveTensors(join(dir, 'model.safetensors'), enc.stateDict(), { config: JSON.stringify({ ...ENC, numClasses: 3 }), format: 'semaim.finetune/1' });
    enc.dispose();
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ step: 1, files: { 'model.safetensors': sha256File(join(dir, 'model.safetensors')) } }));
    assert.throws(() => loadModel(dir), { code: 'ERR_CHECKPOINT', message: /is a 'semaim\.finetune\/1' checkpoint, not a pre-training run's/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a pre-training checkpoint a newer semaim wrote (format semaim.pretrain/2) is refused as such, not as a checkpoint of another kind', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-model-'));
  try {
    const cfg = makeConfig('vit_tiny', { ...ENC, decoderDepth: 1 });
    const model = new SemAIM(cfg).initWeights(1);
    saveTensors(join(dir, 'model.safetensors'), model.stateDict(), { config: JSON.stringify(cfg), format: 'semaim.pretrain/2' });
    model.dispose();
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ step: 1, files: { 'model.safetensors': sha256File(join(dir, 'model.safetensors')) } }));
    const newer = { code: 'ERR_CHECKPOINT', message: /was written by a newer semaim \(format 'semaim\.pretrain\/2'; this one reads 'semaim\.pretrain\/1'\)/ };
    assert.throws(() => loadModel(dir), newer);
    assert.throws(() => resolveEncoder(dir), newer);
    // its weights file named itself, as an encoder file
    assert.throws(() => resolveEncoder(join(dir, 'model.safetensors')), newer);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a checkpoint whose weights hold NaN is refused by loadModel, naming the tensor, and frees nothing it did not make', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-model-'));
  try {
    const cfg = makeConfig('vit_tiny', { ...ENC, decoderDepth: 1 });
    const model = new SemAIM(cfg).initWeights(1);
    const sd = model.stateDict();
    torch.noGrad(() => torch.scope(() => sd.get('norm.weight')!.fill_(Number.NaN)));
    saveTensors(join(dir, 'model.safetensors'), sd, { config: JSON.stringify(cfg), format: 'semaim.pretrain/1' });
    model.dispose();
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ step: 1, files: { 'model.safetensors': sha256File(join(dir, 'model.safetensors')) } }));
    const start = torch.memoryStats().liveTensors;
    assert.throws(() => loadModel(dir), /tensor 'norm\.weight' holds 32 NaN\/Inf value\(s\) of 32/);
    assert.equal(torch.memoryStats().liveTensors, start);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadModel and loadEncoder refuse a device this machine lacks as an OptionError on device (not a CheckpointError blaming the file), before reading it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-model-'));
  try {
    const ckpt = checkpoint(dir, makeConfig('vit_tiny', { ...ENC, decoderDepth: 1 }));
    const start = torch.memoryStats().liveTensors;
    const option = (code: string) => (e: unknown) => e instanceof OptionError && e.key === 'device' && e.code === code;
    assert.throws(() => loadModel(ckpt, 'tpu' as torch.Device), option('ERR_OPTION'));
    assert.throws(() => loadEncoder(ckpt, { device: 'cuda:x' as torch.Device }), option('ERR_OPTION'));
    if (!torch.cuda.isAvailable()) {
      assert.throws(() => loadModel(ckpt, 'cuda'), option('ERR_DEVICE_UNAVAILABLE'));
      assert.throws(() => loadEncoder(ckpt, { device: 'cuda' }), option('ERR_DEVICE_UNAVAILABLE'));
    }
    // the options object where the device goes (loadEncoder's form): said, not read as a damaged file
    assert.throws(() => loadModel(ckpt, { verify: false } as unknown as torch.Device), /loadModel\(source, device, \{ verify \}\): the device is a string/);
    assert.equal(torch.memoryStats().liveTensors, start);
    loadModel(ckpt, 'cpu').dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadModel and loadEncoder take none of the caller’s global random draws (the models they build get the file’s weights)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-rng-'));
  const next = () => torch.scope(() => Array.from(torch.rand([4]).toFloat32Array()));
  try {
    const cfg = makeConfig('vit_tiny', { ...ENC, decoderDepth: 1 });
    checkpoint(dir, cfg);
    const enc = new VisionTransformer(ENC).initWeights(3);
    saveTensors(join(dir, 'encoder.safetensors'), enc.stateDict(), { config: JSON.stringify(ENC) });
    enc.dispose();
    writeFileSync(join(dir, 'encoder.json'), JSON.stringify(ENC));
    torch.manualSeed(5);
    const expected = next();
    torch.manualSeed(5);
    loadModel(dir).model.dispose();
    loadEncoder(join(dir, 'encoder.safetensors')).encoder.dispose();
    assert.deepEqual(next(), expected);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loadModel loads the model file its state.json records, however the folder changes after the check: other bytes there are refused (ERR_CHECKPOINT_CHANGED), and the SHA-256 it reports is the loaded file's", () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-model-'));
  try {
    const cfg = makeConfig('vit_tiny', { ...ENC, decoderDepth: 1 });
    const run = join(dir, 'run');
    const good = checkpoint(join(run, 'checkpoints', 'step-00000002'), cfg, undefined, 2);
    const newer = checkpoint(join(run, 'checkpoints', 'step-00000004'), cfg, undefined, 4);
    writeFileSync(join(newer, 'state.json'), '{'); // skipped with a warning, once the older one has been checked
    const loaded = loadModel(run);
    assert.equal(loaded.sha256, sha256File(join(good, 'model.safetensors')));
    assert.equal(loaded.step, 2);
    loaded.dispose();
    // a run writing to the folder puts other weights at the name between the check and the load
    const other = new SemAIM(cfg).initWeights(9);
    const swap = () => saveTensors(join(good, 'model.safetensors'), other.stateDict(), { config: JSON.stringify(cfg), format: 'semaim.pretrain/1' });
    assert.throws(() => loadModel(run, 'cpu', { onWarning: swap }), {
      code: 'ERR_CHECKPOINT_CHANGED',
      message: /was replaced by other bytes after it was checked/,
    });
    other.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loadEncoder with newerIfPruned: a run folder's checkpoint pruned since it was resolved is read from the run's newest; a checkpoint folder named itself, or without the option, is ERR_CHECKPOINT_CHANGED", () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-pruned-'));
  try {
    const cfg = makeConfig('vit_tiny', { ...ENC, decoderDepth: 1 });
    const run = join(dir, 'run');
    const step = (n: number) => join(run, 'checkpoints', `step-0000000${n}`);
    checkpoint(step(2), cfg, undefined, 2);
    const source = resolveEncoder(run);
    assert.equal(source.weights, join(step(2), 'model.safetensors'));
    // the run saves step 4 and prunes step 2 (--keep-last 1) before the weights are read
    checkpoint(step(4), cfg, undefined, 4);
    rmSync(step(2), { recursive: true });
    assert.throws(() => loadEncoder(source), { code: 'ERR_CHECKPOINT_CHANGED', message: /step-00000002.*was removed after it was checked/ });
    const notes: string[] = [];
    const loaded = loadEncoder(source, { newerIfPruned: true, onWarning: (l) => notes.push(l) });
    loaded.encoder.dispose();
    assert.equal(loaded.source.weights, join(step(4), 'model.safetensors'), 'the checkpoint it read');
    assert.equal(loaded.source.sha256, sha256File(join(step(4), 'model.safetensors')));
    assert.equal(loaded.source.path, run);
    assert.match(notes.join('\n'), /step-00000002.*was pruned by the run before it was read: reading its newest checkpoint, .*step-00000004/);
    // a checkpoint folder named itself is the one asked for: no other is read in its place
    const named = resolveEncoder(step(4));
    checkpoint(step(6), cfg, undefined, 6);
    rmSync(step(4), { recursive: true });
    assert.throws(() => loadEncoder(named, { newerIfPruned: true }), { code: 'ERR_CHECKPOINT_CHANGED' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loadModel's EMA encoder is the checkpoint's EMA copy or null: none when optimizer.safetensors holds no ema.* tensors, refused when it holds only part of one (never untrained weights)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-load-ema-'));
  try {
    const emaCfg = makeConfig('vit_tiny', { ...ENC, decoderDepth: 1, order: { type: 'semantic', source: 'ema', filter: true, lambda: 0.01 } });
    const other = new Map([['optimizer.step', torch.zeros([1])]]);
    const noEma = checkpoint(mkdtempSync(join(dir, 'none-')), emaCfg, other);
    const loaded = loadModel(noEma);
    assert.equal(loaded.ema, null, 'no EMA copy in the checkpoint');
    loaded.dispose();

    const part = new Map([['ema.cls_token', torch.zeros([1, 1, ENC.embedDim])]]);
    const partial = checkpoint(mkdtempSync(join(dir, 'part-')), emaCfg, part);
    const start = torch.memoryStats().liveTensors;
    assert.throws(() => loadModel(partial), { code: 'ERR_CHECKPOINT', message: /EMA copy .*lacks .*ema\.patch_embed\.proj\.weight/ });
    assert.equal(torch.memoryStats().liveTensors, start, 'the failed load freed what it had loaded');
    for (const t of [...other.values(), ...part.values()]) t.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
