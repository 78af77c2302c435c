// An exported encoder opens in timm as its JSON says: scripts/golden_timm_vit.py (timm's
// VisionTransformer rebuilt in PyTorch from timm's code) builds the model from the JSON's model_args,
// loads the weights strictly and computes the same tokens as semaim; and the models_vit.py global-pool
// feature of MAE and the SemAIM authors is semaim's --pooling gap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { EncoderConfig } from '../../src/semaim';
import { MemoryLabelledData } from '../../src/data';
import { disposeFeatures, extractPooledFeatures } from '../../src/eval/features';
import { difference, randomImages, smallEncoder, writeExportedEncoder } from './helpers';

const PY = '/usr/bin/python3';
const SCRIPT = join(__dirname, '..', '..', '..', 'scripts', 'golden_timm_vit.py');
const noTorch = spawnSync(PY, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0 ? false : `${PY} cannot import torch`;

test("timm's VisionTransformer, built from the exported JSON's model_args, loads the weights strictly and gives semaim's tokens", { skip: noTorch }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-timm-'));
  try {
    const cfgs: EncoderConfig[] = [
      { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 64, depth: 2, numHeads: 4, mlpRatio: 4 },
      { imgSize: 24, patchSize: 8, inChans: 1, embedDim: 48, depth: 3, numHeads: 3, mlpRatio: 2.5 },
    ];
    for (const [i, cfg] of cfgs.entries()) {
      const vit = smallEncoder(5 + i, cfg);
      const weights = writeExportedEncoder(join(dir, `enc${i}`), vit, cfg);
      const images = randomImages(3, cfg, 17 + i);
      const [input, output] = [join(dir, `x${i}.f32`), join(dir, `y${i}.f32`)];
      writeFileSync(input, Buffer.from(images.buffer, images.byteOffset, images.byteLength));
      const r = spawnSync(PY, [SCRIPT, weights, weights.replace(/\.safetensors$/, '.json'), input, output], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const b = readFileSync(output);
      const timm = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      const ours = torch.scope(() => vit.forwardFeatures(torch.tensor(images, { shape: [3, cfg.inChans ?? 3, cfg.imgSize, cfg.imgSize] })).toFloat32Array());
      vit.dispose();
      const d = difference(ours, timm);
      assert.ok(d.maxAbs < 2e-5, `${JSON.stringify(cfg)}: max |diff| ${d.maxAbs}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--pooling gap is the authors' and MAE's --global_pool feature: mean of the pre-norm patch tokens, fresh fc_norm", { skip: noTorch }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-gap-'));
  const cfg: EncoderConfig = { imgSize: 32, patchSize: 8, inChans: 3, embedDim: 48, depth: 2, numHeads: 3, mlpRatio: 4 };
  const vit = smallEncoder(11, cfg); // trained-looking final norm (weights ≠ 1, biases ≠ 0)
  try {
    const weights = writeExportedEncoder(join(dir, 'enc'), vit, cfg);
    const B = 5;
    const images = randomImages(B, cfg, 23);
    const [input, tokens, pooled] = [join(dir, 'x.f32'), join(dir, 'y.f32'), join(dir, 'p.f32')];
    writeFileSync(input, Buffer.from(images.buffer, images.byteOffset, images.byteLength));
    const r = spawnSync(PY, [SCRIPT, weights, weights.replace(/\.safetensors$/, '.json'), input, tokens, pooled], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const b = readFileSync(pooled);
    const ref = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    assert.equal(ref.length, B * cfg.embedDim);
    const shape = [B, 3, cfg.imgSize, cfg.imgSize];
    const [gap, mean] = torch.scope(() => {
      const x = torch.tensor(images, { shape });
      return [vit.features(x, 'gap').toFloat32Array(), vit.features(x, 'mean').toFloat32Array()];
    });
    assert.ok(difference(gap, ref).maxAbs < 2e-5, `max |diff| ${difference(gap, ref).maxAbs}`);
    // not the mean after the trained final norm (semaim's --pooling mean)
    assert.ok(difference(mean, ref).maxAbs > 0.1);
    // the evaluations' one-pass extraction gives the same rows
    const data = new MemoryLabelledData(images, shape, new Int32Array(B), 2);
    const sets = await extractPooledFeatures(vit, data, ['cls', 'gap'], { batchSize: 2, label: null });
    try {
      assert.ok(difference(sets.get('gap')!.features.toFloat32Array(), ref).maxAbs < 2e-5);
    } finally {
      disposeFeatures(...sets.values());
    }
  } finally {
    vit.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
