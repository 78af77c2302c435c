// A fine-tuning run's classifier exported to ONNX (`semaim export --format onnx`): onnxruntime-node gives
// semaim's logits (pool avg and cls, float32 1e-4 and float16 1e-2 of the largest value), and
// transformers.js opens the folder offline as image-classification, naming the classes the run recorded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as tf from '@huggingface/transformers';
import * as torch from '../../src/torch';
import { CheckpointManager } from '../../src/run/checkpoints';
import { ViTClassifier, type ClassifierPool } from '../../src/eval/classifier';
import { exportOnnx } from '../../src/export/onnx-export';
import { exportEncoder } from '../../src/export/safetensors';
import { commands } from '../../src/cli/commands';
import { SMALL, difference, randomImages } from './helpers';
import { writeTestImages } from '../viz/helpers';

const CLASSES = ['cat', 'dog', '=SUM(A1)', 'ship', 'truck'];

/** A classifier with random weights everywhere (the head too: fine-tuning starts it near zero). */
function smallClassifier(pool: ClassifierPool, seed: number): ViTClassifier {
  torch.manualSeed(seed);
  const model = new ViTClassifier({ ...SMALL, numClasses: CLASSES.length, pool }).initWeights().eval();
  torch.noGrad(() => {
    for (const [name, p] of model.namedParameters()) {
      if (/norm\d?\.weight$/.test(name)) p.copy_(torch.rand(p.shape).mul(1.5).add(0.25));
      else if (name.endsWith('.bias') || name === 'cls_token' || name === 'head.weight') p.copy_(torch.randn(p.shape).mul(0.3));
    }
  });
  return model;
}

/** A fine-tuning run folder holding the model as its checkpoint, as the trainer writes it. */
function writeFinetuneRun(runDir: string, model: ViTClassifier): string {
  new CheckpointManager(runDir).save(4, {
    model: model.stateDict(),
    extra: new Map(),
    state: { step: 4, classNames: CLASSES },
    modelMetadata: { config: JSON.stringify(model.cfg), format: 'semaim.finetune/1' },
  });
  return runDir;
}

function logitsOf(model: ViTClassifier, pixels: Float32Array, B: number): Float32Array {
  return torch.noGrad(() => torch.scope(() => model.forward(torch.tensor(pixels, { shape: [B, 3, SMALL.imgSize, SMALL.imgSize] })).toFloat32Array()));
}

test("onnx: a fine-tuning run's classifier gives semaim's logits in onnxruntime (pool avg and cls, float32 and float16)", async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-clf-onnx-'));
  try {
    for (const pool of ['avg', 'cls'] as const) {
      const model = smallClassifier(pool, pool === 'avg' ? 5 : 6);
      const run = writeFinetuneRun(join(root, `ft-${pool}`), model);
      const B = 3;
      const images = randomImages(B, SMALL);
      const ref = logitsOf(model, images, B);
      for (const [dtype, tol] of [
        ['float32', 1e-4],
        ['float16', 1e-2],
      ] as const) {
        const out = join(root, `onnx-${pool}-${dtype}`);
        const r = await exportOnnx(run, out, { dtype, attention: true });
        const session = await ort.InferenceSession.create(readFileSync(r.model));
        try {
          assert.deepEqual([...session.outputNames], ['logits', 'pooler_output', 'cls_attention']);
          const y = await session.run({ pixel_values: new ort.Tensor('float32', images, [B, 3, SMALL.imgSize, SMALL.imgSize]) });
          assert.deepEqual(y.logits.dims, [B, CLASSES.length]);
          assert.deepEqual(y.pooler_output.dims, [B, SMALL.embedDim]);
          const d = difference(y.logits.data as Float32Array, ref);
          assert.ok(d.rel <= tol, `${pool} ${dtype}: logits rel ${d.rel}`);
        } finally {
          await session.release();
        }
        const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
        assert.deepEqual(config.architectures, ['ViTForImageClassification']);
        assert.equal(config.num_labels, 5);
        assert.equal(config.id2label['2'], '=SUM(A1)');
        assert.equal(config.label2id.ship, 3);
        assert.equal(config.semaim.classifier.pool, pool);
      }
      // the default format refuses a classifier, naming the timm model its checkpoint loads into as it is
      const [norm, globalPool] = pool === 'avg' ? ['fc_norm', 'avg'] : ['norm', 'token'];
      assert.ok(model.stateDict().has(`${norm}.weight`), `the ${pool} classifier's own final norm is ${norm}`);
      await assert.rejects(
        exportEncoder(run, join(root, `timm-${pool}`)),
        new RegExp(`has timm's names \\(${norm}, head\\) and loads into timm's VisionTransformer\\(global_pool='${globalPool}', num_classes=N\\) as it is`),
      );
      model.dispose();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('transformers.js opens an exported classifier offline as image-classification, with the run’s class names', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-clf-tfjs-'));
  try {
    const model = smallClassifier('avg', 7);
    const run = writeFinetuneRun(join(root, 'ft'), model);
    const models = join(root, 'models');
    await commands.export.run(['--checkpoint', run, '--format', 'onnx', '--out', join(models, 'semaim-clf')]);
    const [path] = await writeTestImages(join(root, 'img'), 1);
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = models;
    const classify = await tf.pipeline('image-classification', 'semaim-clf');
    try {
      const image = await tf.RawImage.read(path);
      const top = (await classify(image, { top_k: 5 })) as { label: string; score: number }[];
      const { pixel_values } = (await classify.processor(image)) as { pixel_values: tf.Tensor };
      const probs = torch.scope(() =>
        torch
          .tensor(logitsOf(model, pixel_values.data as Float32Array, 1), { shape: [1, CLASSES.length] })
          .softmax(-1)
          .toFloat32Array(),
      );
      const expected = [...probs].map((p, i) => ({ label: CLASSES[i], score: p })).sort((a, b) => b.score - a.score);
      assert.deepEqual(
        top.map((t) => t.label),
        expected.map((t) => t.label),
      );
      assert.ok(
        difference(
          Float32Array.from(top, (t) => t.score),
          Float32Array.from(expected, (t) => t.score),
        ).maxAbs < 1e-4,
      );
    } finally {
      await classify.dispose();
    }
    // the web page shows an encoder's attention and order: a classifier is refused, naming the run kind
    await assert.rejects(commands.export.run(['--checkpoint', run, '--format', 'web', '--out', join(root, 'web')]), /finetune/);
    model.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('onnx: a fine-tuning run whose newest checkpoint is unreadable (damaged, or pruned by the live run while it was looked at) exports its newest usable classifier', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-clf-onnx-newest-'));
  try {
    const model = smallClassifier('cls', 8);
    const run = writeFinetuneRun(join(root, 'ft'), model);
    const newest = new CheckpointManager(run).save(5, {
      model: model.stateDict(),
      extra: new Map(),
      state: { step: 5, classNames: CLASSES },
      modelMetadata: { config: JSON.stringify(model.cfg), format: 'semaim.finetune/1' },
    });
    truncateSync(join(newest, 'model.safetensors'), 100); // its header cut short
    const out = join(root, 'onnx');
    // (was: "…/step-00000004 is a 'semaim.finetune/1' checkpoint; an encoder comes from a pre-training run": the
    // run was taken for a pre-training one when its newest checkpoint's header could not be read)
    await exportOnnx(run, out, { dtype: 'float32' });
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.deepEqual(config.architectures, ['ViTForImageClassification']);
    assert.equal(config.id2label['3'], 'ship');
    model.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
