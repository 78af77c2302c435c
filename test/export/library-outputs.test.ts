// The library's exports keep the checks the CLI makes: they never write into a checkpoint folder or
// over the encoder they read (export --out RUN/checkpoints/best/model replaced its weights).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportEncoder } from '../../src/export/safetensors';
import { exportOnnx } from '../../src/export/onnx-export';
import { verifyCheckpoint } from '../../src/io/checkpoint';
import { tinyModel, writeRunCheckpoint } from '../viz/helpers';

test('exportEncoder and exportOnnx refuse outputs in a checkpoint folder; the checkpoint stays intact', () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-lib-out-'));
  try {
    const model = tinyModel();
    const ckpt = writeRunCheckpoint(run, model);
    model.dispose();
    const before = readFileSync(join(ckpt, 'model.safetensors'));
    assert.throws(() => exportEncoder(ckpt, join(ckpt, 'model')), /model\.safetensors is what this command reads/);
    assert.throws(() => exportEncoder(run, join(ckpt, 'encoder')), /cannot be written, not even with --overwrite: it lies in the checkpoint folder/);
    assert.throws(() => exportOnnx(run, ckpt, { dtype: 'float32', attention: true }), /it lies in the checkpoint folder/);
    assert.ok(readFileSync(join(ckpt, 'model.safetensors')).equals(before));
    assert.equal(verifyCheckpoint(ckpt, 'weights'), null);
    const ok = exportEncoder(run, join(run, 'export', 'encoder'));
    assert.equal(ok.tensors > 0, true);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});
