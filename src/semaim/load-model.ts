// Loads a SemAIM model for inspection from a run folder (newest valid checkpoint) or a checkpoint
// folder: weights, config, the frozen teacher for feature targets and the EMA encoder if saved.
import { existsSync } from 'node:fs';
import { CheckpointError, checkpointError, withErrorKind } from '../util/errors';
import { join } from 'node:path';
import * as torch from '../torch';
import { loadTensors, disposeAll } from '../io';
import { SemAIMConfig } from './config';
import { VisionTransformer } from './vit';
import { SemAIM } from './semaim';
import { VerifyOption, checkpointConfig, loadTeacher, readResolvedCheckpoint } from './pretrained';
import { readRegularFile } from '../util/regular-file';
import { isJsonObject } from '../util/json-file';
import { sha256File } from '../io/file-sha256';
import { checkDevice } from '../torch/check-device';
import { sparingGlobalRng } from '../torch/global-rng';

/** What {@link loadModel} returns: the model in eval mode and where it came from; `dispose()` frees the model, its teacher and the EMA encoder. */
export interface LoadedModel {
  model: SemAIM;
  /** EMA encoder (only when the order's similarity source is 'ema' and the checkpoint has one). */
  ema: VisionTransformer | null;
  /** The checkpoint folder read. */
  checkpoint: string;
  /** The training step from the checkpoint's state.json (null when it has none). */
  step: number | null;
  /** The SHA-256 of the model.safetensors read (the file loaded, whatever a run writing to the folder put there since). */
  sha256: string;
  config: SemAIMConfig;
  dispose(): void;
}

/**
 * Loads a whole SemAIM model (encoder, decoder, head) in eval mode from a pre-training run folder (its
 * newest valid checkpoint) or a checkpoint folder, with the teacher and the EMA encoder where its config uses them.
 * A file that is missing, damaged or does not fit the config is a CheckpointError.
 */
export function loadModel(source: string, device: torch.Device = 'cpu', o: VerifyOption = {}): LoadedModel {
  if (typeof device !== 'string')
    throw new TypeError(`loadModel(source, device, { verify }): the device is a string ('cpu', 'cuda'), got ${JSON.stringify(device)}`);
  const checked = checkDevice(device); // a device this machine lacks is not the file's fault
  return withErrorKind(() => loadModelFiles(source, checked, o), checkpointError);
}

function loadModelFiles(source: string, device: torch.Device, o: VerifyOption): LoadedModel {
  const { dir, config, state, sha256, tensors } = readResolvedCheckpoint(source, o, (dir) => {
    const config = checkpointConfig(dir);
    // state.json read once: its step and the hashes its files are loaded against belong to one checkpoint,
    // even where a run replaces the folder (best/) while this reads it
    const state = readState(dir);
    const sha256 = (o.verify !== false && recordedSha256(state, 'model.safetensors')) || sha256File(join(dir, 'model.safetensors'));
    const { tensors } = loadTensors(join(dir, 'model.safetensors'), { device, finite: true, sha256 });
    return { dir, config, state, sha256, tensors };
  });
  const model = sparingGlobalRng(() => new SemAIM(config));
  try {
    model.to({ device });
    model.loadStateDict(tensors, { strict: true });
  } catch (e) {
    model.dispose();
    throw new CheckpointError(`cannot load ${dir}/model.safetensors: ${(e as Error).message}`, 'ERR_CHECKPOINT_MISMATCH', { cause: e });
  } finally {
    disposeAll(tensors);
  }
  model.eval();
  // The teacher and the EMA copy load after the model: when either fails, what was loaded is freed.
  let ema: VisionTransformer | null = null;
  try {
    if (config.target.type === 'features') {
      if (!existsSync(config.target.teacher)) {
        throw new Error(`the checkpoint's teacher ${config.target.teacher} is not found (feature targets need it for the loss map)`);
      }
      model.teacher = loadTeacher(config, device);
    }
    const opt = join(dir, 'optimizer.safetensors');
    if ('source' in config.order && config.order.source === 'ema' && existsSync(opt)) {
      const checked = o.verify !== false ? recordedSha256(state, 'optimizer.safetensors') : undefined;
      const { tensors: e } = loadTensors(opt, { device, filter: (k) => k.startsWith('ema.'), finite: true, sha256: checked });
      try {
        // no ema.* tensors: the checkpoint has no EMA copy (an encoder built here would hold untrained weights)
        if (e.size > 0) {
          ema = sparingGlobalRng(() => new VisionTransformer(config)).to({ device });
          // not strict: the EMA copy holds the parameters only (pos_embed is a fixed buffer), but every one of them
          const { missing } = ema.loadStateDict(new Map([...e].map(([k, v]) => [k.slice(4), v])), { strict: false });
          const params = new Set([...ema.namedParameters()].map(([k]) => k));
          const lacking = missing.filter((k) => params.has(k)).map((k) => `ema.${k}`);
          if (lacking.length)
            throw new Error(
              `${opt}: its EMA copy lacks ${lacking.length} parameter(s) (${lacking.slice(0, 3).join(', ')}${lacking.length > 3 ? ', ...' : ''})`,
            );
          ema.eval();
        }
      } finally {
        disposeAll(e);
      }
    }
  } catch (e) {
    ema?.dispose();
    model.teacher?.dispose();
    model.dispose();
    throw e;
  }
  const step = Number(state?.step ?? NaN);
  return {
    model,
    ema,
    checkpoint: dir,
    step: Number.isFinite(step) ? step : null,
    sha256,
    config,
    dispose() {
      model.teacher?.dispose();
      model.dispose();
      ema?.dispose();
    },
  };
}

/** A checkpoint folder's state.json, or null where it has none or it is unreadable (a bare folder, --no-verify). */
function readState(dir: string): Record<string, unknown> | null {
  try {
    const state: unknown = JSON.parse(readRegularFile(join(dir, 'state.json'), 'utf8'));
    return isJsonObject(state) ? state : null;
  } catch {
    return null;
  }
}

/** The SHA-256 state.json records for `file`, or undefined. */
function recordedSha256(state: Record<string, unknown> | null, file: string): string | undefined {
  const files = state?.files;
  const sha = isJsonObject(files) ? files[file] : undefined;
  return typeof sha === 'string' ? sha : undefined;
}
