// Where a prediction's model comes from: a fine-tuning run's classifier (checkpoint folder, its class
// names) or a linear probe with the encoder it was trained on, each checked (format, sizes, SHA-256)
// before any model is built, then loaded in eval mode as a Predictor (class logits of normalised images).
import { existsSync, statSync } from 'node:fs';
import { CheckpointError, checkpointError, withErrorKind } from '../util/errors';
import { dirname, join } from 'node:path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { sparingGlobalRng } from '../torch/global-rng';
import { disposeAll, listCheckpoints, loadTensors, readSafetensorsHeader, sha256File } from '../io';
import { refuseOtherFormatVersion, runKindOf } from '../io/checkpoint';
import { EncoderSource, VisionTransformer, checkEncoderShapes, loadEncoder, readResolvedCheckpoint, resolveEncoder, validateEncoder } from '../semaim';
import { withPrecision, type Precision } from '../run/precision';
import { ClassifierConfig, LinearProbe, ViTClassifier } from './classifier';
import { encodeBatch, type FeaturePooling } from './features';
import { isJsonObject, jsonBrief, readJsonObject } from '../util/json-file';
import { readRegularFile } from '../util/regular-file';
import { finishInterruptedCommits } from '../util/safe-write';
import { quotedPath } from '../util/printable';

/**
 * A fine-tuning checkpoint found and checked by {@link resolveClassifier} (format 'semaim.finetune/1', encoder and
 * head shapes): its folder, weights, config and class names, from which {@link loadClassifier} builds the model.
 */
export interface ClassifierSource {
  /** The checkpoint folder used. */
  dir: string;
  /** Its model.safetensors. */
  weights: string;
  /** SHA-256 of `weights` (hex). */
  sha256: string;
  config: ClassifierConfig;
  /** The fine-tuning data's class names, or null where the run did not record them. */
  classNames: string[] | null;
}

/** A linear probe (semaim linprobe's folder): its head and the frozen encoder it was trained on. */
export interface ProbeSource {
  /** The linprobe output folder. */
  dir: string;
  /** probe.safetensors and its SHA-256. */
  weights: string;
  sha256: string;
  encoder: EncoderSource;
  /** The features it was trained on, computed by predict as linprobe did (encodeBatch; 'gap': the authors' --global_pool). */
  pooling: FeaturePooling;
  numClasses: number;
  classNames: string[] | null;
}

/** What predict runs: a fine-tuned classifier or an encoder with its linear probe. */
export type PredictorSource = ({ kind: 'finetune' } & ClassifierSource) | ({ kind: 'linprobe' } & ProbeSource);

/**
 * Whether `path` is a fine-tuning run or checkpoint folder (by the format of its newest checkpoint whose header
 * reads; resolveClassifier checks it). A newer one that does not read (damaged, or pruned by the run writing to
 * the folder while it was looked at) is passed over, as resolveClassifier passes it over.
 */
export function isFinetuneFolder(path: string): boolean {
  if (!statSync(path, { throwIfNoEntry: false })?.isDirectory()) return false;
  const dirs = existsSync(join(path, 'state.json')) ? [path] : listCheckpoints(join(path, 'checkpoints')).map((c) => c.dir);
  for (const dir of dirs) {
    try {
      // (any version: resolveClassifier refuses one this semaim does not read, saying so)
      return runKindOf(readSafetensorsHeader(join(dir, 'model.safetensors')).metadata.format) === 'finetune';
    } catch {
      continue;
    }
  }
  return false;
}

/** The checkpoint of a fine-tuning run, checked (files, format, sizes) before any model is built. */
export function resolveClassifier(path: string, o: { verify?: boolean } = {}): ClassifierSource {
  return withErrorKind(() => findClassifier(path, o), checkpointError);
}

function findClassifier(path: string, o: { verify?: boolean }): ClassifierSource {
  if (existsSync(path) && !existsSync(join(path, 'state.json')) && !existsSync(join(path, 'checkpoints')))
    throw new Error(`${quotedPath(path)}: expected a fine-tuning run folder (with checkpoints/) or one of its checkpoint folders`);
  return readResolvedCheckpoint(path, { verify: o.verify, unusableHint: '--no-verify uses it anyway' }, (dir) => classifierOf(dir));
}

/** The classifier of checkpoint folder `dir`, checked. */
function classifierOf(dir: string): ClassifierSource {
  const weights = join(dir, 'model.safetensors');
  const { metadata, tensors } = readSafetensorsHeader(weights);
  refuseOtherFormatVersion(metadata.format, dir);
  if (metadata.format !== 'semaim.finetune/1')
    throw new Error(
      `${quotedPath(dir)} is a${metadata.format ? ` '${metadata.format}'` : 'n unlabelled'} checkpoint: predict needs a fine-tuning run's (semaim finetune); ` +
        'features of an encoder come from semaim embed',
    );
  let config: ClassifierConfig;
  try {
    config = JSON.parse(metadata.config ?? 'null') as ClassifierConfig;
    if (!config || !Number.isSafeInteger(config.numClasses) || config.numClasses < 2) throw new Error(`numClasses ${config?.numClasses}`); // (as ViTClassifier)
    if (config.pool !== 'avg' && config.pool !== 'cls') throw new Error(`pool '${config.pool}'`);
    // (else ViTClassifier refused it when loaded: without the file's name, after reading its weights)
    validateEncoder(config);
  } catch (e) {
    throw new Error(`${weights}: the classifier config is not usable: ${(e as Error).message}`, { cause: e });
  }
  checkEncoderShapes(config, tensors, weights);
  const head = tensors.get('head.weight')?.shape;
  if (JSON.stringify(head) !== JSON.stringify([config.numClasses, config.embedDim]))
    throw new Error(`${weights}: head.weight has shape ${head ? `[${head.join(', ')}]` : '(missing)'}, expected [${config.numClasses}, ${config.embedDim}]`);
  return { dir, weights, sha256: sha256File(weights), config, classNames: classNamesOf(dir, config.numClasses) };
}

/** `names` when they are a name per class, else null. */
function classNamesFit(names: unknown, numClasses: number): string[] | null {
  return Array.isArray(names) && names.length === numClasses && names.every((s) => typeof s === 'string') ? (names as string[]) : null;
}

/** The class names the checkpoint's state.json keeps, else those of the run's finetune.json; null if neither has them. */
function classNamesOf(dir: string, numClasses: number): string[] | null {
  for (const file of [join(dir, 'state.json'), join(dirname(dirname(dir)), 'finetune.json')]) {
    try {
      const names = classNamesFit((JSON.parse(readRegularFile(file, 'utf8')) as { classNames?: unknown }).classNames, numClasses);
      if (names) return names;
    } catch {
      // absent or unreadable: the next place, else indices
    }
  }
  return null;
}

/** The classifier in eval mode on `device`, its weights loaded strictly. */
export function loadClassifier(src: ClassifierSource, device: torch.Device): ViTClassifier {
  return withErrorKind(() => loadClassifierWeights(src, device), checkpointError);
}

function loadClassifierWeights(src: ClassifierSource, device: torch.Device): ViTClassifier {
  const { tensors } = loadTensors(src.weights, { finite: true, sha256: src.sha256 });
  const model = sparingGlobalRng(() => new ViTClassifier(src.config));
  try {
    model.loadStateDict(tensors);
  } catch (e) {
    model.dispose();
    throw new CheckpointError(`${src.weights}: ${(e as Error).message}`, 'ERR_CHECKPOINT_MISMATCH', { cause: e });
  } finally {
    disposeAll(tensors);
  }
  model.to({ device });
  model.eval();
  for (const [, p] of model.namedParameters()) p.requiresGrad_(false);
  return model;
}

/**
 * The model behind `path`: a fine-tuning run or checkpoint folder, or a linear-probe folder (linprobe.json +
 * probe.safetensors) whose encoder is the one linprobe.json names, or `encoder` — either must have the
 * SHA-256 the probe recorded.
 */
export function resolvePredictor(path: string, o: { verify?: boolean; encoder?: string } = {}): PredictorSource {
  // a linprobe killed between renaming linprobe.json and probe.safetensors: completed (as the journal it
  // left lists), so the probe read is the one linprobe.json describes, never the earlier run's
  if (existsSync(path) && statSync(path).isDirectory()) finishInterruptedCommits(path);
  return withErrorKind(() => findPredictor(path, o), checkpointError);
}

/** resolveClassifier's refusals of a path that is no fine-tuning run (an encoder file, a pre-training run). */
const NOT_A_CLASSIFIER = /expected a fine-tuning run folder|predict needs a fine-tuning run's/;

function findPredictor(path: string, o: { verify?: boolean; encoder?: string }): PredictorSource {
  const probeFile = join(path, 'probe.safetensors');
  if (!existsSync(probeFile) || !existsSync(join(path, 'linprobe.json'))) {
    if (o.encoder) throw new Error(`--encoder goes with a linear-probe folder; ${quotedPath(path)} has no probe.safetensors and linprobe.json`);
    try {
      return { kind: 'finetune', ...resolveClassifier(path, o) };
    } catch (e) {
      // resolveClassifier speaks for the ONNX export too; predict also takes a linear probe's folder, which its refusal left unsaid
      if (e instanceof CheckpointError && NOT_A_CLASSIFIER.test(e.message))
        throw new CheckpointError(`${e.message}; or a semaim linprobe output folder (probe.safetensors and linprobe.json)`, e.code, { cause: e });
      throw e;
    }
  }
  const { metadata, tensors } = readSafetensorsHeader(probeFile);
  refuseOtherFormatVersion(metadata.format, probeFile);
  if (metadata.format !== 'semaim.linprobe/1') throw new Error(`${quotedPath(probeFile)} is not a linear probe (format '${metadata.format ?? 'none'}')`);
  const reportFile = join(path, 'linprobe.json');
  const report = readJsonObject(reportFile);
  const field = (o: unknown, key: string): unknown => (isJsonObject(o) ? o[key] : undefined);
  const pooling = field(report.config, 'pooling');
  if (pooling !== 'cls' && pooling !== 'mean' && pooling !== 'gap')
    throw new Error(`${quotedPath(reportFile)}: pooling ${jsonBrief(pooling ?? 'missing')} is not cls, mean or gap`);
  const weights = field(report.checkpoint, 'weights');
  if (weights !== undefined && typeof weights !== 'string')
    throw new Error(`${quotedPath(reportFile)}: checkpoint.weights is ${jsonBrief(weights)}, not a path`);
  const recorded = weights as string | undefined;
  // a checkpoint's weights are read through their folder (state.json verifies them); an exported file as it is
  const named = o.encoder ?? (recorded && field(report.checkpoint, 'kind') === 'checkpoint' ? dirname(recorded) : recorded);
  if (!named || !existsSync(named))
    throw new Error(`the encoder the probe in ${quotedPath(path)} was trained on (${recorded ?? 'not recorded'}) is not there: name it with --encoder`);
  let encoder: EncoderSource;
  try {
    encoder = resolveEncoder(named, { verify: o.verify });
  } catch (e) {
    throw new Error(`${o.encoder ? '--encoder' : `the encoder linprobe.json in ${quotedPath(path)} names`}: ${(e as Error).message}`, { cause: e });
  }
  if (encoder.sha256 !== metadata.encoderSha256)
    throw new Error(
      `${quotedPath(encoder.weights)} (sha256 ${encoder.sha256.slice(0, 16)}…) is not the encoder the probe in ${quotedPath(path)} was trained on (sha256 ${String(metadata.encoderSha256).slice(0, 16)}…)` +
        (o.encoder ? '' : ': name it with --encoder'),
    );
  const head = tensors.get('head.1.weight')?.shape;
  if (!head || head.length !== 2 || head[1] !== encoder.config.embedDim)
    throw new Error(
      `${quotedPath(probeFile)}: head.1.weight has shape ${head ? `[${head.join(', ')}]` : '(missing)'}, expected [classes, ${encoder.config.embedDim}]`,
    );
  const numClasses = head[0];
  const classNames = classNamesFit(report.classNames, numClasses);
  const sha256 = sha256File(probeFile);
  // recorded since 2026-12-06 (earlier probes are taken as they are), and checked as a checkpoint's files are
  const recordedProbe = field(report.details, 'probeSha256');
  if (o.verify !== false && typeof recordedProbe === 'string' && recordedProbe !== sha256)
    throw new Error(
      `${quotedPath(probeFile)} does not match the SHA-256 ${quotedPath(reportFile)} records (${sha256.slice(0, 16)}…, recorded ${recordedProbe.slice(0, 16)}…): ` +
        'a damaged file, or not the probe that linprobe wrote (--no-verify uses it anyway)',
    );
  return { kind: 'linprobe', dir: path, weights: probeFile, sha256, encoder, pooling, numClasses, classNames };
}

/** Class logits of normalised images, as the model's own evaluation computes them. */
export interface Predictor {
  logits(images: Tensor, precision: Precision): Tensor;
  dispose(): void;
}

/** The model of `src` on `device`, in eval mode. */
export function loadPredictor(src: PredictorSource, device: torch.Device): Predictor {
  return withErrorKind(() => loadPredictorWeights(src, device), checkpointError);
}

function loadPredictorWeights(src: PredictorSource, device: torch.Device): Predictor {
  if (src.kind === 'finetune') {
    const model = loadClassifier(src, device);
    return { logits: (images, precision) => withPrecision(precision, device, () => model.forward(images)).float(), dispose: () => model.dispose() };
  }
  const { tensors } = loadTensors(src.weights, { finite: true, sha256: src.sha256 });
  let encoder: VisionTransformer;
  try {
    encoder = loadEncoder(src.encoder, { device }).encoder;
  } catch (e) {
    disposeAll(tensors);
    throw e;
  }
  const probe = sparingGlobalRng(() => new LinearProbe(src.encoder.config.embedDim, src.numClasses));
  try {
    probe.loadStateDict(tensors);
  } catch (e) {
    probe.dispose();
    encoder.dispose();
    throw new CheckpointError(`${src.weights}: ${(e as Error).message}`, 'ERR_CHECKPOINT_MISMATCH', { cause: e });
  } finally {
    disposeAll(tensors);
  }
  probe.to({ device }).eval();
  // the features linprobe trained on (encodeBatch: autocast for the encoder, float32 out), then the probe in float32
  return {
    logits: (images, precision) => probe.forward(encodeBatch(encoder, images, src.pooling, precision)),
    dispose: () => {
      probe.dispose();
      encoder.dispose();
    },
  };
}
