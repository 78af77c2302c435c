// The ONNX export runs in onnxruntime-node (an independent runtime) and gives semaim's own
// forward pass: last_hidden_state and cls_attention within 1e-4 of the largest value (float32),
// 1e-2 (float16), for batch 1 and 3; plus the file's structure and the command line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as torch from '../../src/torch';
import { SemAIM, makeConfig, resolveCheckpoint } from '../../src/semaim';
import type { EncoderConfig, VisionTransformer } from '../../src/semaim';
import { decodeModel, encodeModel, DataType } from '../../src/export/onnx-proto';
import { encoderWeights, vitToOnnx } from '../../src/export/vit-onnx';
import type { FloatType } from '../../src/export/onnx-graph';
import { commands } from '../../src/cli/commands';
import { modelConfigJson } from '../../src/export/hf-config';
import { evalPreprocessing } from '../../src/export/preprocessing';
import { SMALL, difference, randomImages, smallEncoder } from './helpers';
import { writeCheckpointFolder } from '../viz/helpers';
import { captureStderr } from '../output';

interface Outputs {
  hidden: Float32Array;
  pooled: Float32Array;
  attention: Float32Array;
  dims: readonly number[];
}

async function runOnnx(bytes: Uint8Array, images: Float32Array, B: number, cfg: EncoderConfig): Promise<Outputs> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const r = await session.run({ pixel_values: new ort.Tensor('float32', images, [B, cfg.inChans ?? 3, cfg.imgSize, cfg.imgSize]) });
    return {
      hidden: r.last_hidden_state.data as Float32Array,
      pooled: r.pooler_output.data as Float32Array,
      attention: r.cls_attention.data as Float32Array,
      dims: r.last_hidden_state.dims,
    };
  } finally {
    await session.release();
  }
}

function reference(vit: VisionTransformer, images: Float32Array, B: number, cfg: EncoderConfig): { hidden: Float32Array; attention: Float32Array } {
  return torch.noGrad(() =>
    torch.scope(() => {
      const x = torch.tensor(images, { shape: [B, cfg.inChans ?? 3, cfg.imgSize, cfg.imgSize] });
      return { hidden: vit.forwardFeatures(x).toFloat32Array(), attention: vit.clsAttention(x).toFloat32Array() };
    }),
  );
}

function onnxBytes(vit: VisionTransformer, cfg: EncoderConfig, dtype: FloatType): Uint8Array {
  return encodeModel(vitToOnnx(cfg, encoderWeights(vit), { dtype, attention: true }));
}

function clsRows(hidden: Float32Array, B: number, T: number, D: number): Float32Array {
  const out = new Float32Array(B * D);
  for (let b = 0; b < B; b++) out.set(hidden.subarray(b * T * D, b * T * D + D), b * D);
  return out;
}

const CASES: { dtype: FloatType; tol: number }[] = [
  { dtype: 'float32', tol: 1e-4 },
  { dtype: 'float16', tol: 1e-2 },
];

for (const { dtype, tol } of CASES) {
  test(`onnx ${dtype}: onnxruntime-node equals semaim's forward for batch 1 and 3 (within ${tol} of max |y|)`, async () => {
    const vit = smallEncoder();
    const bytes = onnxBytes(vit, SMALL, dtype);
    const T = 1 + (SMALL.imgSize / SMALL.patchSize) ** 2;
    for (const B of [1, 3]) {
      const images = randomImages(B, SMALL, 20 + B);
      const got = await runOnnx(bytes, images, B, SMALL);
      const ref = reference(vit, images, B, SMALL);
      assert.deepEqual(got.dims, [B, T, SMALL.embedDim]);
      const h = difference(got.hidden, ref.hidden);
      const a = difference(got.attention, ref.attention);
      console.log(
        `# ${dtype} batch ${B}: last_hidden_state max abs ${h.maxAbs.toExponential(2)}, rel ${h.rel.toExponential(2)}; ` +
          `cls_attention max abs ${a.maxAbs.toExponential(2)}, rel ${a.rel.toExponential(2)}`,
      );
      assert.ok(h.rel <= tol, `last_hidden_state rel ${h.rel}`);
      assert.ok(a.rel <= tol, `cls_attention rel ${a.rel}`);
      assert.deepEqual(got.pooled, clsRows(got.hidden, B, T, SMALL.embedDim), 'pooler_output is the [CLS] row');
    }
  });
}

test('onnx: another shape (img 24, patch 8, dim 48, 3 heads, mlp ratio 2, depth 3) also matches', async () => {
  const cfg: EncoderConfig = { imgSize: 24, patchSize: 8, inChans: 3, embedDim: 48, depth: 3, numHeads: 3, mlpRatio: 2 };
  const vit = smallEncoder(5, cfg);
  const images = randomImages(2, cfg, 9);
  const got = await runOnnx(onnxBytes(vit, cfg, 'float32'), images, 2, cfg);
  const ref = reference(vit, images, 2, cfg);
  assert.ok(difference(got.hidden, ref.hidden).rel <= 1e-4);
  assert.ok(difference(got.attention, ref.attention).rel <= 1e-4);
});

test('onnx file: opset 17, dynamic batch, float32 interface, weights under their timm names and shapes', () => {
  const vit = smallEncoder();
  const sd = vit.stateDict();
  for (const dtype of ['float32', 'float16'] as const) {
    const m = decodeModel(onnxBytes(vit, SMALL, dtype));
    assert.deepEqual(
      m.opset_import.map((o) => [o.domain ?? '', o.version]),
      [['', 17]],
    );
    assert.equal(m.ir_version, 8);
    const input = m.graph.input[0];
    assert.equal(input.name, 'pixel_values');
    assert.equal(input.type.tensor_type.elem_type, DataType.FLOAT);
    assert.deepEqual(
      input.type.tensor_type.shape.dim.map((d) => d.dim_param ?? d.dim_value),
      ['batch', 3, 32, 32],
    );
    assert.deepEqual(
      m.graph.output.map((o) => o.name),
      ['last_hidden_state', 'pooler_output', 'cls_attention'],
    );
    for (const o of m.graph.output) assert.equal(o.type.tensor_type.elem_type, DataType.FLOAT, `${o.name} is float32`);
    const weights = new Map(m.graph.initializer.filter((t) => t.data_type !== DataType.INT64 && sd.has(t.name)).map((t) => [t.name, t]));
    assert.deepEqual([...weights.keys()].sort(), [...sd.keys()].sort());
    for (const [name, t] of weights) {
      assert.deepEqual(t.dims, sd.get(name)!.shape, name);
      assert.equal(t.data_type, dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT, name);
    }
    const ops = new Set(m.graph.node.map((n) => n.op_type));
    for (const op of ['Conv', 'LayerNormalization', 'MatMul', 'Softmax', 'Erf']) assert.ok(ops.has(op), op);
    if (dtype === 'float32') assert.ok(!ops.has('Cast'));
    const norms = m.graph.node.filter((n) => n.op_type === 'LayerNormalization');
    assert.equal(norms.length, 2 * SMALL.depth + 1);
    for (const n of norms) {
      assert.equal(n.attribute.find((a) => a.name === 'axis')?.i, -1);
      assert.ok(Math.abs((n.attribute.find((a) => a.name === 'epsilon')?.f ?? 0) - 1e-6) < 1e-12, 'LayerNorm epsilon is 1e-6 as in the model');
    }
  }
});

test('semaim export --format onnx: a checkpoint folder becomes onnx/model.onnx + config.json + preprocessor_config.json', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-onnx-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const model = new SemAIM(makeConfig('vit_tiny', { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, decoderDepth: 1 })).initWeights(4).eval();
  const ckpt = writeCheckpointFolder(join(dir, 'ckpt'), model);
  const out = join(dir, 'out');
  const { result: rc, stderr } = await captureStderr(() => commands.export.run(['--checkpoint', ckpt, '--out', out, '--format', 'onnx']));
  assert.equal(rc, 0);
  assert.equal(stderr, `export: converting the model of ${ckpt} to ONNX (float32) at ${out} …\n`, 'it says what it does before the silent work');
  assert.ok(existsSync(join(out, 'onnx', 'model.onnx')));
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(config.model_type, 'vit');
  assert.equal(config.hidden_size, 32);
  // a ViT config as Hugging Face reads it: the model's LayerNorm eps (not ViT's 1e-12 default), MLP width, biased qkv
  assert.equal(config.layer_norm_eps, 1e-6);
  assert.equal(config.intermediate_size, 32 * 4);
  assert.equal(config.qkv_bias, true);
  assert.equal(config.hidden_act, 'gelu');
  // the .onnx file describes itself: the encoder, the SHA-256 of the weights read and the preprocessing
  const semaim = config.semaim as { encoder: unknown; sourceSha256: string };
  const props = Object.fromEntries((decodeModel(readFileSync(join(out, 'onnx', 'model.onnx'))).metadata_props ?? []).map((p) => [p.key, p.value]));
  assert.deepEqual(JSON.parse(props.semaim_encoder), semaim.encoder);
  assert.equal(props.semaim_source_sha256, semaim.sourceSha256);
  assert.match(semaim.sourceSha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(JSON.parse(props.semaim_preprocessing), evalPreprocessing(16));
  const pre = JSON.parse(readFileSync(join(out, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(pre.crop_size, { height: 16, width: 16 });
  assert.deepEqual(pre.size, { shortest_edge: 18 });
  // pixels scaled to [0, 1] (÷255) and normalised with the mean and std semaim evaluates with
  assert.equal(pre.rescale_factor, 1 / 255);
  assert.deepEqual([pre.do_rescale, pre.do_normalize, pre.do_center_crop, pre.do_resize], [true, true, true, true]);
  assert.deepEqual([pre.image_mean, pre.image_std], [evalPreprocessing(16).mean, evalPreprocessing(16).std]);
  const images = randomImages(2, { ...model.config }, 3);
  const got = await runOnnx(readFileSync(join(out, 'onnx', 'model.onnx')), images, 2, model.config);
  assert.ok(difference(got.hidden, reference(model, images, 2, model.config).hidden).rel <= 1e-4);

  // A second export into the folder replaces its config files: only when asked.
  const half16 = ['--checkpoint', ckpt, '--out', out, '--format', 'onnx', '--dtype', 'float16', '--no-attention'];
  await assert.rejects(commands.export.run(half16), /option 'out': .*config\.json exists: choose another output, or pass --overwrite/);
  assert.equal(await commands.export.run([...half16, '--overwrite']), 0);
  const half = decodeModel(readFileSync(join(out, 'onnx', 'model_fp16.onnx')));
  // beside a model of other weights it is refused: config.json would describe only the new ones
  const other = new SemAIM(model.config).initWeights(5).eval();
  const otherCkpt = writeCheckpointFolder(join(dir, 'other'), other);
  other.dispose();
  await assert.rejects(
    commands.export.run(['--checkpoint', otherCkpt, '--out', out, '--format', 'onnx', '--overwrite']),
    /option 'out': .*model_fp16\.onnx was exported from other weights \(SHA-256 [0-9a-f]{12}…\)/,
  );
  assert.equal(await commands.export.run(['--checkpoint', otherCkpt, '--out', join(dir, 'out2'), '--format', 'onnx']), 0);
  assert.deepEqual(
    half.graph.output.map((o) => o.name),
    ['last_hidden_state', 'pooler_output'],
  );
  // The default format is still the timm safetensors export.
  assert.equal(await commands.export.run(['--checkpoint', ckpt, '--out', join(dir, 'enc')]), 0);
  assert.ok(existsSync(join(dir, 'enc.safetensors')) && existsSync(join(dir, 'enc.json')));
  await assert.rejects(commands.export.run(['--checkpoint', ckpt, '--out', join(dir, 'enc')]), /option 'out': .*enc\.safetensors exists/);
  // into a folder that does not exist yet: created, as the ONNX and web exports do
  assert.equal(await commands.export.run(['--checkpoint', ckpt, '--out', join(dir, 'new', 'deeper', 'enc')]), 0);
  assert.ok(existsSync(join(dir, 'new', 'deeper', 'enc.safetensors')));
  const own = join(resolveCheckpoint(ckpt), 'model');
  await assert.rejects(commands.export.run(['--checkpoint', ckpt, '--out', own, '--overwrite']), /model\.safetensors is what this command reads/);
});

test('semaim export: bad options fail with a message naming the option, before any work', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-onnx-bad-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await assert.rejects(
    commands.export.run(['--checkpoint', dir, '--out', join(dir, 'x'), '--format', 'tflite']),
    /option 'format': must be one of safetensors, onnx, web/,
  );
  await assert.rejects(
    commands.export.run(['--checkpoint', dir, '--out', join(dir, 'x'), '--dtype', 'float16']),
    /option 'dtype': float16 is for --format onnx or web/,
  );
  await assert.rejects(commands.export.run(['--checkpoint', join(dir, 'nothing'), '--out', join(dir, 'x'), '--format', 'onnx']), /does not exist/);
  assert.throws(() => vitToOnnx(SMALL, new Map(), { dtype: 'float32', attention: false }), /the encoder weights lack 'patch_embed.proj.weight'/);
});

test("config.json's MLP width is embed_dim × mlp_ratio (a ratio other than ViT's 4)", () => {
  const c = modelConfigJson({ ...SMALL, embedDim: 48, mlpRatio: 2.5 }, {});
  assert.equal(c.intermediate_size, 120);
  assert.equal(c.layer_norm_eps, 1e-6);
});

test('encodeModel: a model over 2 GiB is refused, suggesting --dtype float16 only when its weights are float32', () => {
  const huge = (data_type: (typeof DataType)['FLOAT'] | (typeof DataType)['FLOAT16']) => {
    const m = vitToOnnx(SMALL, encoderWeights(smallEncoder()), { dtype: 'float32', attention: false });
    // (only the length is read before the refusal)
    m.graph.initializer.push({ name: 'huge', dims: [2 ** 30], data_type, raw_data: { length: 2 ** 31 } as Uint8Array });
    return m;
  };
  assert.throws(() => encodeModel(huge(DataType.FLOAT)), /over protobuf's 2 GiB limit.*--dtype float16/);
  const f16 = huge(DataType.FLOAT16);
  for (const t of f16.graph.initializer) if (t.data_type === DataType.FLOAT) t.data_type = DataType.FLOAT16;
  assert.throws(
    () => encodeModel(f16),
    (e: Error) => /over protobuf's 2 GiB limit/.test(e.message) && !e.message.includes('--dtype float16'),
  );
});

test('encodeModel: a model whose weights fit under 2 GiB but whose whole file does not is refused', () => {
  const m = vitToOnnx(SMALL, encoderWeights(smallEncoder()), { dtype: 'float32', attention: false });
  const weights = m.graph.initializer.reduce((n, t) => n + t.raw_data.length, 0);
  // the weights 2 bytes under the limit; the names, nodes and metadata take the file over it
  // (only the lengths are read before the refusal)
  m.graph.initializer.push({ name: 'big', dims: [2 ** 29], data_type: DataType.FLOAT, raw_data: { length: 2 ** 31 - 3 - weights } as Uint8Array });
  assert.throws(() => encodeModel(m), /over protobuf's 2 GiB limit/);
});

test('float16 export: a weight beyond float16 range is refused by name, not stored as Inf', () => {
  const w = encoderWeights(smallEncoder());
  vitToOnnx(SMALL, w, { dtype: 'float16', attention: false }); // in range: accepted
  w.get('blocks.1.mlp.fc2.bias')!.values[5] = -65519; // rounds to -65504: still finite
  vitToOnnx(SMALL, w, { dtype: 'float16', attention: false });
  w.get('blocks.1.mlp.fc2.bias')!.values[5] = -70000;
  assert.throws(() => vitToOnnx(SMALL, w, { dtype: 'float16', attention: false }), /blocks\.1\.mlp\.fc2\.bias.*-70000.*float16.*--dtype float32/);
  // float32 keeps it as it is
  const m = vitToOnnx(SMALL, w, { dtype: 'float32', attention: false });
  const t = m.graph.initializer.find((i) => i.name === 'blocks.1.mlp.fc2.bias')!;
  assert.equal(new Float32Array(t.raw_data.slice().buffer)[5], -70000);
});
