// Encoders from outside semaim (timm, MAE, DDP): the layouts a user has are read into the same
// network (prefixed names, timm's no_embed_class positions, timm's config JSONs, global_pool='avg'
// files for fine-tuning), and parts of other networks are refused instead of silently dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';
import { loadTensors, readSafetensorsHeader, saveTensors, disposeAll } from '../../src/io';
import {
  ENCODER_KEY,
  encoderConfigFromJson,
  otherNormalization,
  TIMM_IMAGENET_DEFAULT,
  loadEncoder,
  loadEncoderTensors,
  loadTeacher,
  resolveEncoder,
  DEFAULT_ORDER,
  SemAIMConfig,
} from '../../src/semaim';
import { ViTClassifier } from '../../src/eval/classifier';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../src/data/color';
import { MAX_ENCODER_CONFIG_BYTES } from '../../src/semaim/pretrained';
import { exportEncoder, exportedConfigJson, timmCropPct } from '../../src/export/safetensors';
import { evalPreprocessing } from '../../src/export/preprocessing';
import { TINY, maxDiff, writeEncoder } from '../eval/helpers';
import { freeBytes } from '../../src/util/disk-space';

const root = mkdtempSync(join(tmpdir(), 'semaim-outside-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const reference = writeEncoder(root, TINY, 7, 'reference');
const images = (() => {
  torch.manualSeed(3);
  return torch.keep(torch.randn([3, 3, TINY.imgSize, TINY.imgSize]));
})();

function tokensOf(path: string): Float32Array {
  const { encoder } = loadEncoder(path);
  try {
    return torch.scope(() => encoder.forwardFeatures(images).toFloat32Array());
  } finally {
    encoder.dispose();
  }
}

/** Writes a variant of the reference encoder: its tensors renamed/changed by `edit`, with a config JSON. */
function variant(name: string, edit: (t: Map<string, Tensor>) => Map<string, Tensor>, json: Record<string, unknown> = { ...TINY }): string {
  const { tensors } = loadTensors(reference);
  const path = join(root, `${name}.safetensors`);
  saveTensors(path, edit(tensors));
  writeFileSync(join(root, `${name}.json`), JSON.stringify(json));
  disposeAll(tensors);
  return path;
}

const want = tokensOf(reference);

test("DDP's 'module.', MAE-style 'model.' and torch.compile's '_orig_mod.' prefixes are read as timm's names", () => {
  for (const prefix of ['module.', 'model.', 'module.model.', '_orig_mod.', 'module._orig_mod.']) {
    const path = variant(`prefixed-${prefix}`, (t) => new Map([...t].map(([k, v]) => [`${prefix}${k}`, v])));
    assert.equal(resolveEncoder(path).layout.prefix, prefix);
    assert.equal(maxDiff(tokensOf(path), want), 0, prefix);
  }
});

test("the authors' training checkpoint (torch.save .pth: {'model': DDP-prefixed weights with the decoder, 'args', 'optimizer', ...}) is the same network, read without running its pickle", async () => {
  const pth = join(root, 'authors-checkpoint.pth');
  execFileSync('/usr/bin/python3', [join(__dirname, '..', '..', '..', 'scripts', 'pytorch_file_make.py'), 'from-safetensors', reference, pth]);
  writeFileSync(join(root, 'authors-checkpoint.json'), JSON.stringify(TINY));
  const src = resolveEncoder(pth);
  assert.equal(src.layout.prefix, 'module.');
  assert.equal(maxDiff(tokensOf(pth), want), 0);
  // export converts it: timm's names (no prefix, no decoder), float32, the hub config beside it
  const converted = (await exportEncoder(pth, join(root, 'converted'))).weights;
  const header = readSafetensorsHeader(converted);
  assert.deepEqual(
    [...header.tensors.keys()].filter((k) => !ENCODER_KEY.test(k)),
    [],
  );
  assert.ok([...header.tensors.values()].every((t) => t.dtype === 'float32'));
  assert.equal(maxDiff(tokensOf(converted), want), 0);
  const bare = join(root, 'no-config.pth');
  copyFileSync(pth, bare);
  assert.throws(() => resolveEncoder(bare), /its sizes are not known: no .*no-config\.json beside it/);
});

// 4.5 GB on the disk and ~30 s to write: run with SEMAIM_LARGE_FILE_TESTS=1 (2026-12-04 on the 2-core VM:
// read in 2.8 s at 223 MiB RSS, the 4.5 GB entry never read)
const large = process.env.SEMAIM_LARGE_FILE_TESTS === '1' ? false : 'writes a 4.5 GB file: set SEMAIM_LARGE_FILE_TESTS=1';
test('a real torch.save checkpoint over 4 GiB (zip64: the encoder lies past 4 GiB, after a 4.5 GB decoder tensor) is the same network', { skip: large }, () => {
  const free = freeBytes(root);
  assert.ok(free === null || free > 6e9, `${root} needs 6 GB free, has ${free}`);
  const pth = join(root, 'over-4-gib.pth');
  execFileSync('/usr/bin/python3', [join(__dirname, '..', '..', '..', 'scripts', 'pytorch_file_make.py'), 'from-safetensors', reference, pth, '4.5e9']);
  try {
    assert.ok(statSync(pth).size > 4.5e9);
    writeFileSync(join(root, 'over-4-gib.json'), JSON.stringify(TINY));
    assert.equal(maxDiff(tokensOf(pth), want), 0);
  } finally {
    rmSync(pth, { force: true });
  }
});

test("timm's no_embed_class pos_embed (no row for [CLS]) gives the same network", () => {
  // timm adds no position to [CLS]: fold the reference's [CLS] position into the token itself
  const path = variant('no-embed-class', (t) => {
    const pos = t.get('pos_embed')!;
    t.set('cls_token', t.get('cls_token')!.add(pos.narrow(1, 0, 1)));
    t.set('pos_embed', pos.narrow(1, 1, pos.shape[1] - 1).contiguous());
    return t;
  });
  assert.equal(resolveEncoder(path).layout.noEmbedClass, true);
  assert.ok(maxDiff(tokensOf(path), want) < 1e-6);
  // the zero row given to [CLS] is freed with the file's table, not left to the garbage collector
  const live = torch.memoryStats().liveTensors;
  disposeAll(loadEncoderTensors(resolveEncoder(path)));
  loadEncoder(path).encoder.dispose();
  assert.equal(torch.memoryStats().liveTensors, live);
});

test('parts of other ViTs are refused, not dropped: pre-norm, registers, distillation token, LayerScale, qk-norm; pos_embed is required', () => {
  const D = TINY.embedDim;
  const cases: [string, (t: Map<string, Tensor>) => void, RegExp][] = [
    ['norm-pre', (t) => t.set('norm_pre.weight', torch.ones([D])), /holds 'norm_pre\.weight': timm's pre_norm=True ViT/],
    ['registers', (t) => t.set('reg_token', torch.zeros([1, 4, D])), /holds 'reg_token': register tokens/],
    ['dist', (t) => t.set('dist_token', torch.zeros([1, 1, D])), /DeiT's distillation token/],
    ['layer-scale', (t) => t.set('blocks.0.ls1.gamma', torch.ones([D])), /LayerScale/],
    ['qk-norm', (t) => t.set('blocks.1.attn.q_norm.weight', torch.ones([8])), /q\/k normalisation/],
    ['no-pos', (t) => t.delete('pos_embed'), /has no tensor 'pos_embed'/],
    [
      'rel-pos',
      (t) => t.set('blocks.1.attn.relative_position_bias_table', torch.zeros([4, 2])),
      /1 tensor\(s\) .* \('blocks\.1\.attn\.relative_position_bias_table'\)/,
    ],
    [
      'fc2-shape',
      (t) => (t.get('blocks.1.mlp.fc2.weight')!.dispose(), t.set('blocks.1.mlp.fc2.weight', torch.zeros([D, 8]))),
      /'blocks\.1\.mlp\.fc2\.weight' is \[\d+,8\]/,
    ],
  ];
  for (const [name, edit, message] of cases) {
    const path = variant(name, (t) => (edit(t), t));
    assert.throws(() => resolveEncoder(path), message, name);
  }
});

test('a .pth of a ViT plus 1,500 junk tensors under blocks.0 (views of one storage) is refused from its header, before any is read or exported', async () => {
  const pth = join(root, 'junk.pth');
  const script =
    'import sys, torch; sys.path.insert(0, sys.argv[1]); from pytorch_file_make import read_tensors\n' +
    'sd = read_tensors(sys.argv[2]); big = torch.zeros(256)\n' +
    "for i in range(1500): sd[f'blocks.0.junk{i}'] = big\n" +
    'torch.save(sd, sys.argv[3])';
  execFileSync('/usr/bin/python3', ['-c', script, join(__dirname, '..', '..', '..', 'scripts'), reference, pth]);
  writeFileSync(join(root, 'junk.json'), JSON.stringify(TINY));
  const message =
    /junk\.pth holds 1500 tensor\(s\) under the encoder's names that the ViT its config describes does not have \('blocks\.0\.junk0', 'blocks\.0\.junk1', 'blocks\.0\.junk2', \.\.\.\)/;
  assert.throws(() => resolveEncoder(pth), message);
  await assert.rejects(() => exportEncoder(pth, join(root, 'junk-out')), message);
  assert.throws(() => statSync(join(root, 'junk-out.safetensors')), /ENOENT/);
});

test('weights holding NaN or Inf are refused by every loader, naming the file and the tensor (they evaluated at chance level before)', async () => {
  const poisoned = variant('nan-weight', (t) => {
    const w = t.get('blocks.0.attn.qkv.weight')!;
    torch.scope(() => w.view([-1]).narrow(0, 5, 1).fill_(Number.NaN));
    return t;
  });
  const infinite = variant('inf-weight', (t) => {
    torch.scope(() => t.get('norm.bias')!.fill_(Number.POSITIVE_INFINITY));
    return t;
  });
  const start = torch.memoryStats().liveTensors;
  assert.throws(() => loadEncoder(poisoned), {
    code: 'ERR_CHECKPOINT',
    message: /nan-weight\.safetensors: tensor 'blocks\.0\.attn\.qkv\.weight' holds 1 NaN\/Inf value\(s\) of [\d,]+: these weights are not usable/,
  });
  assert.throws(() => loadEncoder(infinite), /tensor 'norm\.bias' holds \d+ NaN\/Inf value/);
  assert.throws(() => loadEncoderTensors(resolveEncoder(poisoned)), /NaN\/Inf/);
  await assert.rejects(exportEncoder(poisoned, join(root, 'poisoned-export')), /NaN\/Inf/);
  assert.equal(torch.memoryStats().liveTensors, start, 'what was read before the bad tensor was freed');
  // the plain reader still returns what the file holds (io.loadTensors without `finite`)
  const raw = loadTensors(poisoned).tensors;
  assert.ok(torch.scope(() => raw.get('blocks.0.attn.qkv.weight')!.isnan().any().item()));
  disposeAll(raw);
});

test("timm's config JSONs: model arguments, the hub's architecture + model_args, and model.safetensors + config.json", () => {
  const args = { img_size: 8, patch_size: 4, in_chans: 3, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2 };
  const snake = variant('timm-args', (t) => t, args);
  assert.deepEqual(resolveEncoder(snake).config, TINY);
  assert.equal(maxDiff(tokensOf(snake), want), 0);

  const hub = join(root, 'hub');
  mkdirSync(hub);
  const { tensors } = loadTensors(reference);
  saveTensors(join(hub, 'model.safetensors'), tensors);
  disposeAll(tensors);
  writeFileSync(join(hub, 'config.json'), JSON.stringify({ architecture: 'vit_tiny_patch16_224.augreg_in21k', num_classes: 0, model_args: args }));
  assert.deepEqual(resolveEncoder(join(hub, 'model.safetensors')).config, TINY);
  // an augreg ViT's images were normalised with 0.5 / 0.5: loaded, with a warning naming both normalisations
  const augreg = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], input_size: [3, 8, 8] };
  const pretrained_cfg = (cfg: object): string => JSON.stringify({ architecture: 'vit_tiny_patch16_224', model_args: args, pretrained_cfg: cfg });
  const warnings: string[] = [];
  writeFileSync(join(hub, 'config.json'), pretrained_cfg(augreg));
  assert.deepEqual(resolveEncoder(join(hub, 'model.safetensors'), { onWarning: (l) => warnings.push(l) }).config, TINY);
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0],
    /config\.json says the encoder was trained on images normalised with mean \[0\.5,0\.5,0\.5\] and std \[0\.5,0\.5,0\.5\]; semaim normalises with ImageNet's \(mean \[0\.485,0\.456,0\.406\]/,
  );
  writeFileSync(join(hub, 'config.json'), pretrained_cfg({ ...augreg, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }));
  resolveEncoder(join(hub, 'model.safetensors'), { onWarning: (l) => warnings.push(l) });
  assert.equal(warnings.length, 1, "ImageNet's own normalisation is not warned about");
  assert.equal(otherNormalization({ pretrained_cfg: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } }), null);
  assert.deepEqual(TIMM_IMAGENET_DEFAULT, { mean: IMAGENET_MEAN, std: IMAGENET_STD }, "what semaim's data pipeline normalises with");
  assert.equal(otherNormalization({ mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }), null, 'only pretrained_cfg says how timm normalises');
  assert.deepEqual(otherNormalization({ pretrained_cfg: { mean: [0.481, 0.458, 0.408], std: [0.269, 0.261, 0.276] } }), {
    mean: [0.481, 0.458, 0.408],
    std: [0.269, 0.261, 0.276],
  });

  assert.deepEqual(encoderConfigFromJson({ architecture: 'vit_base_patch16_224' }), {
    imgSize: 224,
    patchSize: 16,
    inChans: 3,
    embedDim: 768,
    depth: 12,
    numHeads: 12,
    mlpRatio: 4,
  });
  assert.throws(() => encoderConfigFromJson({ architecture: 'vit_large_patch14_clip_224' }), /not a plain timm ViT/);
  assert.throws(() => encoderConfigFromJson({ architecture: 'deit_base_distilled_patch16_224' }), /not a plain timm ViT/);
  assert.equal(encoderConfigFromJson({ architecture: 'deit_small_patch16_224.fb_in1k' }).embedDim, 384);
  assert.deepEqual(encoderConfigFromJson({ architecture: 'vit_tiny_custom', ...args }), TINY, "a user's own name with its sizes");
  assert.throws(
    () => encoderConfigFromJson({ architecture: 'vit_base_patch16_224', model_args: { pre_norm: true } }),
    /pre_norm = true: semaim's ViT has false/,
  );
  assert.throws(() => encoderConfigFromJson({ ...args, img_size: [8, 16] }), /semaim's ViT takes square images/);

  const bare = join(root, 'bare.safetensors');
  const t = loadTensors(reference).tensors;
  saveTensors(bare, t);
  disposeAll(t);
  assert.throws(
    () => resolveEncoder(bare),
    /its sizes are not known: no .*bare\.json beside it and no config in its metadata\. Write .*bare\.json with semaim's \{ imgSize/,
  );
});

test('a downloaded hub folder given as the encoder is read from its weights file (it was refused as "no usable checkpoint")', () => {
  const args = { img_size: 8, patch_size: 4, in_chans: 3, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2 };
  for (const [i, name] of ['model.safetensors', 'pytorch_model.bin'].entries()) {
    const hub = join(root, `hub-folder-${i}`);
    mkdirSync(hub);
    if (name === 'model.safetensors') {
      const { tensors } = loadTensors(reference);
      saveTensors(join(hub, name), tensors);
      disposeAll(tensors);
    } else {
      execFileSync('/usr/bin/python3', [join(__dirname, '..', '..', '..', 'scripts', 'pytorch_file_make.py'), 'from-safetensors', reference, join(hub, name)]);
    }
    writeFileSync(join(hub, 'config.json'), JSON.stringify({ architecture: 'vit_tiny_patch16_224', model_args: args }));
    assert.equal(resolveEncoder(hub).weights, join(hub, name));
    assert.equal(maxDiff(tokensOf(hub), want), 0, 'the folder gives the encoder of its weights file');
  }
});

test('weights files are known by their extension in any case (ENCODER.SAFETENSORS, MODEL.PTH copied from a case-insensitive disk)', () => {
  const dir = join(root, 'upper-case');
  mkdirSync(dir);
  const upper = join(dir, 'ENCODER.SAFETENSORS');
  copyFileSync(reference, upper);
  assert.equal(maxDiff(tokensOf(upper), want), 0);
  const pth = join(dir, 'MODEL.PTH');
  execFileSync('/usr/bin/python3', [join(__dirname, '..', '..', '..', 'scripts', 'pytorch_file_make.py'), 'from-safetensors', reference, pth]);
  writeFileSync(join(dir, 'MODEL.json'), JSON.stringify({ imgSize: 8, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 2 }));
  assert.equal(maxDiff(tokensOf(pth), want), 0);
});

test('a hub config whose pretrained_cfg.input_size is not square is refused as not square, not read as its width', () => {
  // timm builds img_size from input_size[-2:] (H, W): a 384×224 model was read as a 224² one, and its weights
  // then refused as "the config does not describe these weights"
  const hub = { architecture: 'vit_tiny_patch16_224', model_args: { patch_size: 4, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2 } };
  assert.throws(() => encoderConfigFromJson({ ...hub, pretrained_cfg: { input_size: [3, 12, 8] } }), /input_size \[3,12,8\]: semaim's ViT takes square images/);
  assert.equal(encoderConfigFromJson({ ...hub, pretrained_cfg: { input_size: [3, 12, 12] } }).imgSize, 12);
  // img_size, which timm takes over input_size, decides
  assert.equal(encoderConfigFromJson({ ...hub, model_args: { ...hub.model_args, img_size: 8 }, pretrained_cfg: { input_size: [3, 12, 8] } }).imgSize, 8);
});

test("an exported encoder's JSON is timm's hub config too, and reads back to the same config", () => {
  const json = exportedConfigJson({ ...TINY });
  assert.equal(json.architecture, 'vit_base_patch16_224');
  assert.deepEqual(json.model_args, {
    ...{ img_size: 8, patch_size: 4, in_chans: 3, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2 },
    num_classes: 0,
    global_pool: 'token',
    class_token: true,
    qkv_bias: true,
  });
  assert.deepEqual((json.pretrained_cfg as Record<string, unknown>).input_size, [3, 8, 8]);
  // timm's create_model reads these top-level fields and the eval transform from pretrained_cfg: an encoder
  // without a head (num_classes 0) whose feature is the [CLS] token, resized and centre-cropped as semaim evaluates
  assert.equal(json.num_classes, 0);
  assert.equal(json.global_pool, 'token');
  assert.equal(json.num_features, 16);
  const pre = evalPreprocessing(8);
  assert.deepEqual(json.pretrained_cfg, {
    input_size: [3, 8, 8],
    interpolation: 'bicubic',
    crop_pct: 8 / pre.resizeShortSide,
    crop_mode: 'center',
    mean: pre.mean,
    std: pre.std,
  });
  const grey = exportedConfigJson({ ...TINY, inChans: 1 });
  assert.deepEqual((grey.pretrained_cfg as Record<string, unknown>).input_size, [1, 8, 8], 'a one-channel encoder takes one channel');
  const timmOnly = Object.fromEntries(Object.entries(json).filter(([k]) => !(k in TINY)));
  assert.deepEqual(encoderConfigFromJson(timmOnly), TINY, 'timm fields alone describe the encoder');
  const base = exportedConfigJson({ imgSize: 224, patchSize: 16, inChans: 3, embedDim: 768, depth: 12, numHeads: 12, mlpRatio: 4 });
  assert.equal(base.architecture, 'vit_base_patch16_224');
  assert.equal((base.pretrained_cfg as Record<string, unknown>).crop_pct, 0.875);
  // timm's eval transform resizes to floor(img_size / crop_pct): the short side semaim resizes to, at every size
  // (890 / (890 / 1017) is 1016.99…: 11 sizes in 8..2048 came out a pixel short)
  for (let size = 8; size <= 2048; size++) {
    const resize = evalPreprocessing(size).resizeShortSide;
    const cropPct = timmCropPct(size, resize);
    assert.equal(Math.floor(size / cropPct), resize, `img_size ${size}`);
    assert.ok(Math.abs(cropPct - size / resize) < 1e-12, `img_size ${size}: crop_pct ${cropPct}`);
  }
});

test("a timm global_pool='avg' file (fc_norm, no norm): fine-tuning loads its fc_norm, feature evaluation and the export refuse it", async () => {
  const path = variant('fc-norm', (t) => {
    t.set('fc_norm.weight', t.get('norm.weight')!.mul(2));
    t.set('fc_norm.bias', t.get('norm.bias')!.add(1));
    t.delete('norm.weight');
    t.delete('norm.bias');
    return t;
  });
  const source = resolveEncoder(path);
  assert.equal(source.layout.fcNorm, true);
  assert.throws(() => loadEncoder(source), /is a timm global_pool='avg' model \(fc_norm over the mean of the patch tokens, no final norm\)/);
  // the export writes an encoder with a final norm: it would write one without its fc_norm (a different feature)
  await assert.rejects(exportEncoder(path, join(root, 'fc-norm-export')), /is a timm global_pool='avg' model \(fc_norm, no final norm\)/);
  assert.equal(existsSync(join(root, 'fc-norm-export.safetensors')), false);
  const model = new ViTClassifier({ ...TINY, numClasses: 4, pool: 'avg' });
  const tensors = loadEncoderTensors(source, { withFcNorm: true });
  const missing = model.loadEncoder(tensors);
  assert.deepEqual(missing.sort(), ['head.bias', 'head.weight']);
  assert.equal(maxDiff(model.fc_norm!.weight!.toFloat32Array(), tensors.get('fc_norm.weight')!.toFloat32Array()), 0);
  disposeAll(tensors);
  model.dispose();
});

test('a file lacking weights of the encoder it describes (no final norm, no qkv bias) is refused by the export, not written as a timm encoder that loads nowhere', async () => {
  // timm's final_norm=False (no norm, no fc_norm) and qkv_bias=False / proj_bias=False files: the header check
  // reads the shapes of the tensors there; the export wrote the rest, and its file then failed to load in semaim and timm
  for (const [name, gone] of [
    ['no-final-norm', ['norm.weight', 'norm.bias']],
    ['no-qkv-bias', ['blocks.1.attn.qkv.bias']],
  ] as const) {
    const path = variant(name, (t) => {
      for (const k of gone) t.delete(k);
      return t;
    });
    const out = join(root, `${name}-export`);
    const lacks = `${name}.safetensors lacks ${gone.length} weight(s) of the encoder its config describes (${gone.map((k) => `'${k}'`).join(', ')})`;
    await assert.rejects(exportEncoder(path, out), (e: Error) => e.message.includes(lacks));
    assert.equal(existsSync(`${out}.safetensors`), false, `${name}: nothing written`);
    assert.throws(() => loadEncoder(path), /missing: +(norm|blocks\.1\.attn\.qkv)\.(weight|bias)/, `${name}: semaim cannot load it either`);
  }
});

test('a teacher is read as any outside encoder: a head, a decoder and a prefix do not stop it', () => {
  const path = variant('teacher-with-head', (t) => {
    const out = new Map([...t].map(([k, v]) => [`module.${k}`, v]));
    out.set('module.head.weight', torch.zeros([10, TINY.embedDim]));
    out.set('module.decoder_embed.weight', torch.zeros([4, TINY.embedDim]));
    return out;
  });
  const cfg: SemAIMConfig = { ...TINY, decoderDepth: 1, order: DEFAULT_ORDER, target: { type: 'features', teacher: path, teacherConfig: { ...TINY } } };
  const teacher = loadTeacher(cfg, 'cpu')!;
  const got = torch.scope(() => teacher.forwardFeatures(images).toFloat32Array());
  teacher.dispose();
  assert.equal(maxDiff(got, want), 0);
  const changed: SemAIMConfig = { ...cfg, target: { type: 'features', teacher: path, teacherConfig: { ...TINY, numHeads: 4 } } };
  assert.throws(() => loadTeacher(changed, 'cpu'), /the teacher .* is now .*; the run was started with/);
});

test("an encoder's config JSON (beside it, or the hub's config.json) larger than any config is refused unread, naming it: 3 GB of it were read and ended in V8's 'Cannot create a string longer than ...'", () => {
  const dir = join(root, 'huge-json');
  mkdirSync(dir);
  const { tensors } = loadTensors(reference);
  saveTensors(join(dir, 'enc.safetensors'), tensors);
  saveTensors(join(dir, 'model.safetensors'), tensors);
  disposeAll(tensors);
  const sparse = (path: string, bytes: number) => {
    writeFileSync(path, '');
    truncateSync(path, bytes); // (sparse: nothing on the disk)
  };
  sparse(join(dir, 'enc.json'), MAX_ENCODER_CONFIG_BYTES + 1);
  sparse(join(dir, 'config.json'), 3 * 2 ** 30);
  for (const [weights, json] of [
    ['enc.safetensors', 'enc.json'],
    ['model.safetensors', 'config.json'],
  ]) {
    assert.throws(
      () => resolveEncoder(join(dir, weights)),
      (e: unknown) => e instanceof Error && e.message.includes(join(dir, json)) && /bytes: a model config holds at most 64 MiB/.test(e.message),
      json,
    );
  }
  // one of the limit's size is read (and here is no JSON)
  sparse(join(dir, 'enc.json'), MAX_ENCODER_CONFIG_BYTES);
  assert.throws(() => resolveEncoder(join(dir, 'enc.safetensors')), /enc\.json: the model config is not valid JSON/);
});
