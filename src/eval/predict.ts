// `semaim predict`: the class predictions of a fine-tuned classifier, or of an encoder with its linear
// probe, for a folder of images or a dataset split, with the evaluation preprocessing (resize + centre
// crop + normalise, as the runs' own test accuracy). Output: <out>.json (the checkpoint, class names, preprocessing, accuracy on labelled data,
// skipped images, then one line per image with its top-k classes and probabilities) and <out>.csv
// (one row per image) for a spreadsheet. Unreadable images are skipped and listed, never replaced.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as torch from '../torch';
import { disposeAll, listCheckpoints, loadTensors, readSafetensorsHeader, sha256File } from '../io';
import { guardOutputs } from '../io/outputs';
import { DataLoader, transformsFor } from '../data';
import type { Split } from '../data';
import type { ImageInputOptions } from '../data/options';
import { EncoderConfig, EncoderSource, checkEncoderShapes, loadEncoder, resolveCheckpoint, resolveEncoder } from '../semaim';
import { Tensor } from '../torch';
import { Progress } from '../run/progress';
import { processDevice, setProcessThreads } from '../run/device';
import { withPrecision, type Precision } from '../run/precision';
import { writeFileAtomic } from '../util/safe-write';
import { ClassifierConfig, LinearProbe, ViTClassifier } from './classifier';
import { encodeBatch } from './features';
import { Accuracy, AccuracyTally } from './accuracy';
import { embedDataset } from './embed';

export interface PredictOptions {
  /** Fine-tuning run folder (its newest valid checkpoint), one of its checkpoint folders (e.g. checkpoints/best), or a linear-probe folder. */
  checkpoint: string;
  /** Output file, ending in .json; the CSV goes beside it. */
  out: string;
  /** A folder of image files, searched recursively (no labels). Give this or `dataset`. */
  images?: string;
  /** A dataset as the evaluations name them (cifar10, synthetic, folder, flat). */
  dataset?: string;
  dataPath?: string;
  /** Split of `dataset` (default 'test'). */
  split?: Split;
  /** At most this many images: the seeded, class-balanced subset of the evaluations' --test-limit. */
  limit?: number;
  seed?: number;
  /** Classes listed per image (default 5, at most the number of classes). */
  topK?: number;
  batchSize?: number;
  device?: string;
  precision?: Precision;
  threads?: number;
  numWorkers?: number;
  imageInput?: ImageInputOptions;
  /** A linear probe's encoder, where it is not where linprobe.json says (it must have the SHA-256 the probe recorded). */
  encoder?: string;
  /** Check the checkpoint's files against its state.json (default true). */
  verify?: boolean;
  /** Progress bar label; null for none. Default 'predict'. */
  progress?: string | null;
  /** Receives warnings (unreadable images); default: stderr. */
  onWarning?: (line: string) => void;
}

export interface ClassifierSource {
  /** The checkpoint folder used. */
  dir: string;
  weights: string;
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
  pooling: 'cls' | 'mean';
  numClasses: number;
  classNames: string[] | null;
}

/** What predict runs: a fine-tuned classifier or an encoder with its linear probe. */
export type PredictorSource = ({ kind: 'finetune' } & ClassifierSource) | ({ kind: 'linprobe' } & ProbeSource);

export interface Prediction {
  path: string;
  /** Class index of a labelled dataset's image. */
  label?: number;
  /** The top-k classes, most probable first: index, name and softmax probability. */
  top: { index: number; name: string; p: number }[];
}

export interface PredictList {
  format: 'semaim.predict/1';
  checkpoint: { path: string; kind: 'finetune' | 'linprobe'; dir: string; weights: string; sha256: string; encoder?: { weights: string; sha256: string } };
  /** The classifier's config; a linear probe: the encoder's, its pooling and the number of classes. */
  model: ClassifierConfig | (EncoderConfig & { pooling: 'cls' | 'mean'; numClasses: number });
  classNames: string[];
  input: { images?: string; dataset?: string; dataPath?: string; split?: Split; limit?: number; root: string };
  preprocessing: unknown[];
  /** Accuracy over the labelled images read (null for a folder of unlabelled images). */
  accuracy: Accuracy | null;
  count: number;
  skipped: { path: string; reason: string }[];
  seconds: number;
  predictions: Prediction[];
}

export interface PredictResult {
  path: string;
  csvPath: string;
  count: number;
  skipped: number;
  accuracy: Accuracy | null;
  seconds: number;
}

export const predictCsvPath = (out: string): string => out.replace(/\.json$/, '.csv');

/** Whether `path` is a fine-tuning run or checkpoint folder (by its newest checkpoint's format; resolveClassifier checks it). */
export function isFinetuneFolder(path: string): boolean {
  if (!statSync(path, { throwIfNoEntry: false })?.isDirectory()) return false;
  const dir = existsSync(join(path, 'state.json')) ? path : listCheckpoints(join(path, 'checkpoints'))[0]?.dir;
  try {
    return !!dir && readSafetensorsHeader(join(dir, 'model.safetensors')).metadata.format === 'semaim.finetune/1';
  } catch {
    return false;
  }
}

/** The checkpoint of a fine-tuning run, checked (files, format, sizes) before any model is built. */
export function resolveClassifier(path: string, o: { verify?: boolean } = {}): ClassifierSource {
  if (existsSync(path) && !existsSync(join(path, 'state.json')) && !existsSync(join(path, 'checkpoints')))
    throw new Error(`${path}: expected a fine-tuning run folder (with checkpoints/) or one of its checkpoint folders`);
  const dir = resolveCheckpoint(path, { verify: o.verify, unusableHint: '--no-verify uses it anyway' });
  const weights = join(dir, 'model.safetensors');
  const { metadata, tensors } = readSafetensorsHeader(weights);
  if (metadata.format !== 'semaim.finetune/1')
    throw new Error(
      `${dir} is a${metadata.format ? ` '${metadata.format}'` : 'n unlabelled'} checkpoint: predict needs a fine-tuning run's (semaim finetune); ` +
        'features of an encoder come from semaim embed',
    );
  let config: ClassifierConfig;
  try {
    config = JSON.parse(metadata.config ?? 'null') as ClassifierConfig;
    if (!config || !Number.isSafeInteger(config.numClasses) || config.numClasses < 1) throw new Error(`numClasses ${config?.numClasses}`);
    if (config.pool !== 'avg' && config.pool !== 'cls') throw new Error(`pool '${config.pool}'`);
  } catch (e) {
    throw new Error(`${weights}: the classifier config is not usable: ${(e as Error).message}`, { cause: e });
  }
  checkEncoderShapes(config, tensors, weights);
  const head = tensors.get('head.weight')?.shape;
  if (JSON.stringify(head) !== JSON.stringify([config.numClasses, config.embedDim]))
    throw new Error(`${weights}: head.weight has shape ${head ? `[${head.join(', ')}]` : '(missing)'}, expected [${config.numClasses}, ${config.embedDim}]`);
  return { dir, weights, sha256: sha256File(weights), config, classNames: classNamesOf(dir, config.numClasses) };
}

/** The class names the checkpoint's state.json keeps, else those of the run's finetune.json; null if neither has them. */
function classNamesOf(dir: string, numClasses: number): string[] | null {
  const fits = (v: unknown): v is string[] => Array.isArray(v) && v.length === numClasses && v.every((s) => typeof s === 'string');
  for (const file of [join(dir, 'state.json'), join(dirname(dirname(dir)), 'finetune.json')]) {
    try {
      const names = (JSON.parse(readFileSync(file, 'utf8')) as { classNames?: unknown }).classNames;
      if (fits(names)) return names;
    } catch {
      // absent or unreadable: the next place, else indices
    }
  }
  return null;
}

/** The classifier in eval mode on `device`, its weights loaded strictly. */
export function loadClassifier(src: ClassifierSource, device: torch.Device): ViTClassifier {
  const model = new ViTClassifier(src.config);
  const { tensors } = loadTensors(src.weights);
  try {
    model.loadStateDict(tensors);
  } catch (e) {
    model.dispose();
    throw e;
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
  const probeFile = join(path, 'probe.safetensors');
  if (!existsSync(probeFile) || !existsSync(join(path, 'linprobe.json'))) {
    if (o.encoder) throw new Error(`--encoder goes with a linear-probe folder; ${path} has no probe.safetensors and linprobe.json`);
    return { kind: 'finetune', ...resolveClassifier(path, o) };
  }
  const { metadata, tensors } = readSafetensorsHeader(probeFile);
  if (metadata.format !== 'semaim.linprobe/1') throw new Error(`${probeFile} is not a linear probe (format '${metadata.format ?? 'none'}')`);
  const report = JSON.parse(readFileSync(join(path, 'linprobe.json'), 'utf8')) as {
    checkpoint?: { weights?: string; kind?: string };
    config?: { pooling?: string };
    classNames?: unknown;
  };
  const pooling = report.config?.pooling;
  if (pooling !== 'cls' && pooling !== 'mean') throw new Error(`${join(path, 'linprobe.json')}: pooling '${pooling}' is not cls or mean`);
  const recorded = report.checkpoint?.weights;
  // a checkpoint's weights are read through their folder (state.json verifies them); an exported file as it is
  const named = o.encoder ?? (recorded && report.checkpoint?.kind === 'checkpoint' ? dirname(recorded) : recorded);
  if (!named || !existsSync(named))
    throw new Error(`the encoder the probe in ${path} was trained on (${recorded ?? 'not recorded'}) is not there: name it with --encoder`);
  const encoder = resolveEncoder(named, { verify: o.verify });
  if (encoder.sha256 !== metadata.encoderSha256)
    throw new Error(
      `${encoder.weights} (sha256 ${encoder.sha256.slice(0, 16)}…) is not the encoder the probe in ${path} was trained on (sha256 ${String(metadata.encoderSha256).slice(0, 16)}…)` +
        (o.encoder ? '' : ': name it with --encoder'),
    );
  const head = tensors.get('head.1.weight')?.shape;
  if (!head || head.length !== 2 || head[1] !== encoder.config.embedDim)
    throw new Error(`${probeFile}: head.1.weight has shape ${head ? `[${head.join(', ')}]` : '(missing)'}, expected [classes, ${encoder.config.embedDim}]`);
  const numClasses = head[0];
  const names = report.classNames;
  const classNames = Array.isArray(names) && names.length === numClasses && names.every((n) => typeof n === 'string') ? (names as string[]) : null;
  return { kind: 'linprobe', dir: path, weights: probeFile, sha256: sha256File(probeFile), encoder, pooling, numClasses, classNames };
}

/** Class logits of normalised images, as the model's own evaluation computes them. */
export interface Predictor {
  logits(images: Tensor, precision: Precision): Tensor;
  dispose(): void;
}

/** The model of `src` on `device`, in eval mode. */
export function loadPredictor(src: PredictorSource, device: torch.Device): Predictor {
  if (src.kind === 'finetune') {
    const model = loadClassifier(src, device);
    return { logits: (images, precision) => withPrecision(precision, device, () => model.forward(images)).float(), dispose: () => model.dispose() };
  }
  const { encoder } = loadEncoder(src.encoder, { device });
  const probe = new LinearProbe(src.encoder.config.embedDim, src.numClasses);
  const { tensors } = loadTensors(src.weights);
  try {
    probe.loadStateDict(tensors);
  } catch (e) {
    probe.dispose();
    encoder.dispose();
    throw e;
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

/** CSV field: quoted where needed, and a leading = + - @ defused so a spreadsheet shows a name, not a formula. */
function csvField(s: string): string {
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

function formatCsv(list: PredictList, k: number): string {
  const labelled = list.accuracy !== null;
  const head = ['path', ...(labelled ? ['label'] : []), ...Array.from({ length: k }, (_, i) => [`class${i + 1}`, `p${i + 1}`]).flat()];
  const rows = list.predictions.map((p) =>
    [csvField(p.path), ...(labelled ? [csvField(list.classNames[p.label!])] : []), ...p.top.flatMap((t) => [csvField(t.name), t.p.toPrecision(6)])].join(','),
  );
  return [head.join(','), ...rows].join('\n') + '\n';
}

/** The JSON with the header indented and one line per prediction (a list of 50,000 stays readable). */
function formatList(list: PredictList): string {
  const { predictions, skipped, ...head } = list;
  const lines = (items: object[]) => (items.length ? `[\n${items.map((i) => `    ${JSON.stringify(i)}`).join(',\n')}\n  ]` : '[]');
  const top = JSON.stringify(head, null, 2).replace(/\n}$/, '');
  return `${top},\n  "skipped": ${lines(skipped)},\n  "predictions": ${lines(predictions)}\n}\n`;
}

/** Predicts every image and writes the JSON and CSV (see the top of this file). */
export async function predict(o: PredictOptions): Promise<PredictResult> {
  if (!o.out.endsWith('.json')) throw new Error(`predict: the output '${o.out}' must end in .json (the CSV goes beside it)`);
  if (!!o.images === !!o.dataset) throw new Error('predict: give either a folder of images (images) or a dataset (dataset), not both');
  const t0 = Date.now();
  const batchSize = o.batchSize ?? 256;
  const warn = o.onWarning ?? ((line: string) => process.stderr.write(`${line}\n`));
  const device = processDevice(o.device ?? 'cpu', null);
  setProcessThreads(o.threads);
  const src = resolvePredictor(o.checkpoint, { verify: o.verify, encoder: o.encoder });
  const out = o.out;
  guardOutputs([out, predictCsvPath(out)], src.weights);
  if (src.kind === 'linprobe') guardOutputs([out, predictCsvPath(out)], src.encoder.weights);
  const numClasses = src.kind === 'finetune' ? src.config.numClasses : src.numClasses;
  const imgSize = src.kind === 'finetune' ? src.config.imgSize : src.encoder.config.imgSize;
  const k = Math.min(o.topK ?? 5, numClasses);
  const ds = embedDataset({ ...o, out: '' }, imgSize);
  const labelled = ds.classes.length > 0;
  if (labelled && ds.classes.length !== numClasses) throw new Error(`predict: ${ds.root} has ${ds.classes.length} classes, the classifier ${numClasses}`);
  const classNames = src.classNames ?? (labelled ? [...ds.classes] : Array.from({ length: numClasses }, (_, i) => String(i)));
  if (!src.classNames) warn(`predict: ${src.dir} does not record its class names; ${labelled ? `using those of ${ds.root}` : 'classes are named by index'}`);
  const model = loadPredictor(src, device);
  const transforms = transformsFor('none', imgSize, ds);
  const warnings: string[] = [];
  const loader = new DataLoader(ds, {
    batchSize,
    shuffle: false,
    dropLast: false,
    seed: 0,
    transforms,
    workers: o.numWorkers,
    ...o.imageInput,
    onWarning: (line) => {
      warnings.push(line);
      if (!line.startsWith('data: epoch ')) warn(line);
    },
  });
  const tally = labelled ? new AccuracyTally(numClasses) : null;
  const predictions: Prediction[] = [];
  const skipped: { path: string; reason: string }[] = [];
  const progress = o.progress === null ? null : new Progress(o.progress ?? 'predict', ds.length);
  const plan = loader.plan(0);
  let seen = 0;
  try {
    for await (const batch of loader.iterate(0)) {
      const B = batch.shape[0];
      const [first] = plan.range(batch.index);
      // the loader puts another image in place of an unusable one: that row is dropped here
      const read = [...Array(B).keys()].filter((i) => batch.indices[i] === first + i);
      for (let i = 0; i < B; i++) {
        if (batch.indices[i] === first + i) continue;
        const name = ds.name(first + i);
        const line = warnings.find((l) => l.startsWith(`data: skipping ${name}: `));
        skipped.push({ path: name, reason: line ? line.slice(`data: skipping ${name}: `.length) : 'unreadable' });
      }
      const pixels = batch.images;
      if (!(pixels instanceof Float32Array)) throw new Error('predict: the loader gave uint8 images, expected normalised float32');
      const { probs, index } = torch.noGrad(() =>
        torch.scope(() => {
          const images = torch.tensor(pixels, { shape: batch.shape, device });
          const logits = model.logits(images, o.precision ?? 'fp32');
          const rows = read.length === B ? logits : logits.indexSelect(0, torch.tensor(Int32Array.from(read), { dtype: 'int64', device }));
          if (tally && read.length)
            tally.add(
              rows,
              Int32Array.from(read, (i) => batch.labels[i]),
            );
          const [p, idx] = rows.softmax(-1).topk(k, -1);
          return { probs: p.toFloat32Array(), index: idx.to({ dtype: 'int32' }).data() as Int32Array };
        }),
      );
      read.forEach((i, r) => {
        const top = Array.from({ length: k }, (_, j) => {
          const c = index[r * k + j];
          return { index: c, name: classNames[c], p: probs[r * k + j] };
        });
        predictions.push(labelled ? { path: ds.name(first + i), label: batch.labels[i], top } : { path: ds.name(first + i), top });
      });
      seen += B;
      progress?.update(seen, { 'img/s': (seen / Math.max((Date.now() - t0) / 1000, 1e-9)).toFixed(1), skipped: skipped.length });
    }
    if (seen !== ds.length) throw new Error(`predict: the loader gave ${seen} images, the dataset has ${ds.length}`);
    if (!predictions.length) throw new Error(`predict: no readable image in ${ds.root} (${skipped.length} skipped)`);
    const seconds = (Date.now() - t0) / 1000;
    const list: PredictList = {
      format: 'semaim.predict/1',
      checkpoint: {
        path: o.checkpoint,
        kind: src.kind,
        dir: src.dir,
        weights: src.weights,
        sha256: src.sha256,
        ...(src.kind === 'linprobe' ? { encoder: { weights: src.encoder.weights, sha256: src.encoder.sha256 } } : {}),
      },
      model: src.kind === 'finetune' ? src.config : { ...src.encoder.config, pooling: src.pooling, numClasses: src.numClasses },
      classNames,
      input: { images: o.images, dataset: o.dataset, dataPath: o.dataPath, split: o.images ? undefined : (o.split ?? 'test'), limit: o.limit, root: ds.root },
      preprocessing: transforms,
      accuracy: tally ? tally.result() : null,
      count: predictions.length,
      skipped,
      seconds,
      predictions,
    };
    writeFileAtomic(predictCsvPath(out), formatCsv(list, k));
    writeFileAtomic(out, formatList(list));
    if (skipped.length) warn(`predict: skipped ${skipped.length} unreadable image${skipped.length === 1 ? '' : 's'} (listed in ${out})`);
    return { path: out, csvPath: predictCsvPath(out), count: predictions.length, skipped: skipped.length, accuracy: list.accuracy, seconds };
  } finally {
    progress?.done();
    await loader.close();
    model.dispose();
  }
}
