// Pre-trained weights: finds and verifies checkpoints of a run, reads their model config, and loads
// encoders (for evaluation), frozen teachers (feature targets) and exported encoders
// (`<name>.safetensors` + `<name>.json`), identified by the SHA-256 of their weights file.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { disposeAll, loadTensors, readSafetensorsHeader, type TensorInfo } from '../io';
import { listCheckpoints, runKindOf, sha256File, verifyCheckpoint } from '../io/checkpoint';
import { EncoderConfig, SemAIMConfig, validateConfig, validateEncoder } from './config';
import { VisionTransformer } from './vit';

export { sha256File };

export interface VerifyOption {
  /** Check a checkpoint folder's files against the SHA-256 in its state.json (default true). */
  verify?: boolean;
  /** What the user can do about a corrupted checkpoint folder (default: the --no-verify of evaluation commands). */
  unusableHint?: string;
}

/**
 * The newest valid checkpoint folder of a run folder, or the folder itself if it is a checkpoint
 * (verified unless `verify` is false: a corrupted one is refused).
 */
export function resolveCheckpoint(path: string, o: VerifyOption = {}): string {
  if (existsSync(path) && statSync(path).isFile()) {
    throw new Error(
      `${path} is a file: this needs a pre-training run folder or one of its checkpoint folders (an exported encoder has no decoder or run settings)`,
    );
  }
  if (existsSync(join(path, 'state.json'))) {
    const problem = o.verify === false ? null : verifyCheckpoint(path, 'weights');
    if (problem) throw new Error(`checkpoint ${path} is not usable: ${problem} (${o.unusableHint ?? '--no-verify uses it anyway'})`);
    return path;
  }
  for (const { dir } of listCheckpoints(join(path, 'checkpoints'))) {
    const problem = verifyCheckpoint(dir, 'weights');
    if (!problem) return dir;
    console.warn(`warning: skipping checkpoint ${dir}: ${problem}`);
  }
  throw new Error(`no usable checkpoint in ${path} (expected a run folder with checkpoints/step-* or a checkpoint folder)`);
}

/**
 * Reads the model config stored in a checkpoint's model.safetensors metadata, checked (bounds, and
 * against the shapes of the file's tensors) before any model of that size is built.
 */
export function checkpointConfig(checkpointDir: string): SemAIMConfig {
  const file = join(checkpointDir, 'model.safetensors');
  const { metadata, tensors } = readSafetensorsHeader(file);
  if (!metadata.config) throw new Error(`${file} has no model config in its metadata`);
  let cfg: SemAIMConfig;
  try {
    cfg = JSON.parse(metadata.config) as SemAIMConfig;
    validateConfig(cfg);
  } catch (e) {
    throw new Error(`${file}: the model config is not usable: ${(e as Error).message}`, { cause: e });
  }
  checkEncoderShapes(cfg, tensors, file);
  return cfg;
}

/**
 * Refuses a config that the weights' shapes contradict (width, channels, patch, MLP, depth, patches),
 * from the file's header alone: a wrong config fails here, not after a model of its size is built.
 */
export function checkEncoderShapes(c: EncoderConfig, shapes: Map<string, TensorInfo>, file: string): void {
  const D = c.embedDim;
  const want: [string, number[]][] = [
    ['cls_token', [1, 1, D]],
    ['patch_embed.proj.weight', [D, c.inChans ?? 3, c.patchSize, c.patchSize]],
    ['blocks.0.attn.qkv.weight', [3 * D, D]],
    ['blocks.0.mlp.fc1.weight', [Math.floor(D * (c.mlpRatio ?? 4)), D]],
  ];
  if (shapes.has('pos_embed')) want.push(['pos_embed', [1, (c.imgSize / c.patchSize) ** 2 + 1, D]]);
  for (const [name, shape] of want) {
    const got = shapes.get(name);
    if (!got) throw new Error(`${file} has no tensor '${name}': not the weights of a ViT encoder`);
    if (got.shape.join() !== shape.join())
      throw new Error(`${file}: '${name}' is [${got.shape}], its model config implies [${shape}]: the config does not describe these weights`);
  }
  const blocks = new Set([...shapes.keys()].map((k) => /^blocks\.(\d+)\./.exec(k)?.[1]).filter((b) => b !== undefined));
  if (blocks.size !== c.depth) throw new Error(`${file} holds ${blocks.size} encoder blocks, its model config says depth ${c.depth}`);
}

/** The encoder part of a SemAIM config. */
export function encoderConfigOf(c: EncoderConfig): EncoderConfig {
  return {
    imgSize: c.imgSize,
    patchSize: c.patchSize,
    inChans: c.inChans ?? 3,
    embedDim: c.embedDim,
    depth: c.depth,
    numHeads: c.numHeads,
    mlpRatio: c.mlpRatio ?? 4,
  };
}

/** Loads a frozen teacher encoder (feature targets / teacher similarity source); null for pixel targets. */
export function loadTeacher(cfg: SemAIMConfig, device: torch.Device): VisionTransformer | null {
  if (cfg.target.type !== 'features') return null;
  const teacher = new VisionTransformer(cfg.target.teacherConfig);
  try {
    const { tensors } = loadTensors(cfg.target.teacher);
    try {
      teacher.loadStateDict(tensors, { strict: true });
    } finally {
      disposeAll(tensors);
    }
  } catch (e) {
    teacher.dispose();
    throw new Error(`cannot load the teacher ${cfg.target.teacher}: ${(e as Error).message}`, { cause: e });
  }
  for (const p of teacher.parameters()) p.requiresGrad = false;
  return teacher.to({ device }).eval();
}

/** Tensors of a pre-training checkpoint that belong to the encoder (timm names). */
export const ENCODER_KEY = /^(patch_embed\.|cls_token$|pos_embed$|blocks\.|norm\.)/;

export interface EncoderSource {
  /** What the user gave. */
  path: string;
  /** The weights file actually read (a checkpoint's model.safetensors or the exported file). */
  weights: string;
  /** SHA-256 of `weights`. */
  sha256: string;
  kind: 'checkpoint' | 'exported';
  config: EncoderConfig;
}

function configFromMetadata(text: string, where: string): EncoderConfig {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${where}: the model config is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  const enc = (c.encoder ?? c) as EncoderConfig;
  const cfg = encoderConfigOf(enc);
  try {
    validateEncoder(cfg);
  } catch (e) {
    throw new Error(`${where}: the model config is not usable: ${(e as Error).message}`, { cause: e });
  }
  return cfg;
}

/** Finds the weights and config of an encoder without loading any tensor. */
export function resolveEncoder(path: string, o: VerifyOption = {}): EncoderSource {
  if (!existsSync(path)) throw new Error(`encoder '${path}' does not exist (give a run folder, a checkpoint folder or an exported .safetensors)`);
  if (statSync(path).isDirectory()) {
    const dir = resolveCheckpoint(path, o);
    const weights = join(dir, 'model.safetensors');
    const { metadata, tensors } = readSafetensorsHeader(weights);
    if (!metadata.config) throw new Error(`${weights} has no model config in its metadata`);
    if (metadata.format && metadata.format !== 'semaim.pretrain/1') {
      throw new Error(`${dir} is a '${metadata.format}' checkpoint; evaluation takes a pre-training run (or an exported encoder)`);
    }
    const config = configFromMetadata(metadata.config, weights);
    checkEncoderShapes(config, tensors, weights);
    return { path, weights, sha256: sha256File(weights), kind: 'checkpoint', config };
  }
  if (!path.endsWith('.safetensors')) throw new Error(`encoder '${path}': expected a folder or a .safetensors file`);
  const jsonPath = path.replace(/\.safetensors$/, '.json');
  const { metadata, tensors } = readSafetensorsHeader(path);
  const kind = runKindOf(metadata.format);
  if (kind && kind !== 'pretrain') {
    throw new Error(
      `${path} holds the weights of a ${kind} run, not a pre-trained encoder: give a pre-training run folder, a checkpoint folder of one, or an exported encoder`,
    );
  }
  let text: string;
  let where = jsonPath;
  if (existsSync(jsonPath)) {
    text = readFileSync(jsonPath, 'utf8');
  } else {
    if (!metadata.config) throw new Error(`encoder '${path}': no ${jsonPath} beside it and no config in its metadata`);
    text = metadata.config;
    where = path;
  }
  const config = configFromMetadata(text, where);
  checkEncoderShapes(config, tensors, path);
  return { path, weights: path, sha256: sha256File(path), kind: 'exported', config };
}

/**
 * The encoder's weights as a state dict (encoder tensors only). The caller disposes them.
 * `pos_embed` is a fixed buffer: when the file lacks it, the model's own is kept.
 */
export function loadEncoderTensors(src: EncoderSource, device?: torch.Device): Map<string, Tensor> {
  return loadTensors(src.weights, { filter: (k) => ENCODER_KEY.test(k), device }).tensors;
}

export interface LoadedEncoder {
  encoder: VisionTransformer;
  source: EncoderSource;
}

/** A frozen encoder in eval mode on `device` (parameters do not require gradients). */
export function loadEncoder(from: string | EncoderSource, o: { device?: torch.Device } = {}): LoadedEncoder {
  const source = typeof from === 'string' ? resolveEncoder(from) : from;
  const encoder = new VisionTransformer(source.config);
  const tensors = loadEncoderTensors(source);
  try {
    if (!tensors.has('pos_embed')) tensors.set('pos_embed', encoder.pos_embed.clone());
    encoder.loadStateDict(tensors, { strict: true });
  } catch (e) {
    encoder.dispose();
    throw new Error(`cannot load the encoder from ${source.weights}: ${(e as Error).message}`, { cause: e });
  } finally {
    disposeAll(tensors);
  }
  for (const p of encoder.parameters()) p.requiresGrad = false;
  encoder.to({ device: o.device ?? 'cpu' }).eval();
  return { encoder, source };
}
