// Loads a pre-trained ViT encoder for evaluation from a run folder, a checkpoint folder, or an
// exported encoder (`<name>.safetensors` + `<name>.json`), and identifies it by the SHA-256 of its
// weights file.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { disposeAll, loadTensors } from '../io';
import { EncoderConfig, VisionTransformer, validateEncoder } from '../semaim';
import { encoderConfigOf, resolveCheckpoint } from '../train/export';

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

/** SHA-256 of a file, read in 4 MiB pieces. */
export function sha256File(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

function configFromMetadata(text: string, where: string): EncoderConfig {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${where}: the model config is not valid JSON (${(e as Error).message})`);
  }
  const enc = (c.encoder ?? c) as EncoderConfig;
  const cfg = encoderConfigOf(enc as never);
  validateEncoder(cfg);
  return cfg;
}

/** Finds the weights and config of an encoder without loading any tensor. */
export function resolveEncoder(path: string): EncoderSource {
  if (!existsSync(path)) throw new Error(`encoder '${path}' does not exist (give a run folder, a checkpoint folder or an exported .safetensors)`);
  if (statSync(path).isDirectory()) {
    const dir = resolveCheckpoint(path);
    const weights = join(dir, 'model.safetensors');
    const { metadata, tensors } = loadTensors(weights, { filter: () => false });
    disposeAll(tensors);
    if (!metadata.config) throw new Error(`${weights} has no model config in its metadata`);
    if (metadata.format && metadata.format !== 'semaim.pretrain/1') {
      throw new Error(`${dir} is a '${metadata.format}' checkpoint; evaluation takes a pre-training run (or an exported encoder)`);
    }
    return { path, weights, sha256: sha256File(weights), kind: 'checkpoint', config: configFromMetadata(metadata.config, weights) };
  }
  if (!path.endsWith('.safetensors')) throw new Error(`encoder '${path}': expected a folder or a .safetensors file`);
  const jsonPath = path.replace(/\.safetensors$/, '.json');
  let text: string;
  if (existsSync(jsonPath)) {
    text = readFileSync(jsonPath, 'utf8');
  } else {
    const { metadata, tensors } = loadTensors(path, { filter: () => false });
    disposeAll(tensors);
    if (!metadata.config) throw new Error(`encoder '${path}': no ${jsonPath} beside it and no config in its metadata`);
    text = metadata.config;
  }
  return { path, weights: path, sha256: sha256File(path), kind: 'exported', config: configFromMetadata(text, jsonPath) };
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
    throw new Error(`cannot load the encoder from ${source.weights}: ${(e as Error).message}`);
  } finally {
    disposeAll(tensors);
  }
  for (const p of encoder.parameters()) p.requiresGrad = false;
  encoder.to({ device: o.device ?? 'cpu' }).eval();
  return { encoder, source };
}
