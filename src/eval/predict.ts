// `semaim predict`: the class predictions of a fine-tuned classifier, or of an encoder with its linear
// probe (classifier-source.ts), for a folder of images or a dataset split, with the evaluation
// preprocessing (resize + centre crop + normalise, as the runs' own test accuracy). Output: <out>.json
// (the checkpoint, class names, preprocessing, accuracy on labelled data, skipped images, then one line
// per image with its top-k classes and probabilities) and <out>.csv (one row per image) for a
// spreadsheet. Unreadable images are skipped and listed, never replaced.
//
// Both files are streamed as the batches come (StagedStream: memory stays one batch however many images):
// the CSV's rows to its temporary file, the JSON's skipped and prediction lines to two scratch files,
// since the JSON's header (accuracy, count, seconds) and its skipped list come before the predictions and
// are known only at the end; then the JSON is written as its header and a copy of the two, and the pair
// is committed together (commitFiles). A stop or an error removes every temporary file.
import { dirname } from 'node:path';
import * as torch from '../torch';
import { defineOptions, jobFields } from '../util/options';
import { printable, quotedPath } from '../util/printable';
import { checkOutputName, claimOutputs, guardOutputs } from '../io/outputs';
import { DataError, throwIfAborted } from '../util/errors';
import { StopAgreement } from '../dist/agree';
import { transformsFor } from '../data';
import { classesOnlyIn } from '../data/streams';
import type { EncoderConfig } from '../semaim';
import { Progress, perSecond } from '../run/progress';
import { processDevice } from '../run/device';
import { inJobScope } from '../run/job-scope';
import { commitFiles, removeDeadTemps, type StagedFile } from '../util/safe-write';
import { StagedStream } from '../util/staged-stream';
import { makeOutputFolder } from '../util/output-folder';
import type { ClassifierConfig } from './classifier';
import type { FeaturePooling } from './features';
import { loadPredictor, resolvePredictor } from './classifier-source';
import { Accuracy, AccuracyTally } from './accuracy';
import {
  IMAGE_SET_FIELDS,
  IMAGE_SET_JOB_OTHER_KEYS,
  checkImageSetSource,
  embedDataset,
  imageSetLoader,
  imageSetRecord,
  listItemText,
  type ImageSetRecord,
  skipReasons,
  writeJsonWithListLines,
  type ImageSetJob,
} from './embed';
import { stderrLine } from '../util/console-line';
import { checkEncoderFitsOnCpu } from './encoder-memory';

/**
 * Options of {@link predict}: the classifier (a fine-tuning run or a linear-probe folder), the output
 * file, the classes listed per image, and the images and how to read them ({@link ImageSetJob}).
 */
export interface PredictOptions extends ImageSetJob {
  /** Fine-tuning run folder (its newest valid checkpoint), one of its checkpoint folders (e.g. checkpoints/best), or a linear-probe folder. */
  checkpoint: string;
  /** Output file, ending in .json; the CSV goes beside it. */
  out: string;
  /** Classes listed per image (default 5, at most the number of classes). */
  topK?: number;
  /** A linear probe's encoder, where it is not where linprobe.json says (it must have the SHA-256 the probe recorded). */
  encoder?: string;
}

/** One image's line in predict's output: its path, its label (labelled data only) and its top-k classes with their softmax probabilities. */
export interface Prediction {
  path: string;
  /** Class index of a labelled dataset's image. */
  label?: number;
  /** The top-k classes, most probable first: index, name and softmax probability. */
  top: { index: number; name: string; p: number }[];
}

/**
 * The JSON file {@link predict} writes (format 'semaim.predict/1'): the model, class names,
 * input, preprocessing and accuracy, the skipped images, then one {@link Prediction} per image.
 */
export interface PredictList {
  format: 'semaim.predict/1';
  checkpoint: { path: string; kind: 'finetune' | 'linprobe'; dir: string; weights: string; sha256: string; encoder?: { weights: string; sha256: string } };
  /** The classifier's config; a linear probe: the encoder's, its pooling and the number of classes. */
  model: ClassifierConfig | (EncoderConfig & { pooling: FeaturePooling; numClasses: number });
  classNames: string[];
  input: ImageSetRecord;
  preprocessing: unknown[];
  /** Accuracy over the labelled images read (null for a folder of unlabelled images). */
  accuracy: Accuracy | null;
  count: number;
  skipped: { path: string; reason: string }[];
  seconds: number;
  predictions: Prediction[];
}

/** What {@link predict} returns: the JSON and CSV paths, the images predicted and skipped, the accuracy on labelled data, and the time taken. */
export interface PredictResult {
  path: string;
  csvPath: string;
  /** Images predicted (the readable ones). */
  count: number;
  /** Unreadable images, left out (listed in the JSON). */
  skipped: number;
  /** Accuracy over the labelled images read (null for a folder of unlabelled images). */
  accuracy: Accuracy | null;
  seconds: number;
}

/** The CSV file beside predict's JSON output: `x.json` → `x.csv`. */
export const predictCsvPath = (out: string): string => out.replace(/\.json$/, '.csv');

/** CSV field: quoted where needed, and a leading = + - @ defused so a spreadsheet shows a name, not a formula. */
function csvField(s: string): string {
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** The CSV's header line: the path, the label of labelled images, and each of the k classes with its probability. */
function csvHeader(labelled: boolean, k: number): string {
  return ['path', ...(labelled ? ['label'] : []), ...Array.from({ length: k }, (_, i) => [`class${i + 1}`, `p${i + 1}`]).flat()].join(',') + '\n';
}

/** The CSV row of one prediction, with its newline. */
function csvRow(p: Prediction, labelled: boolean, classNames: string[]): string {
  return (
    [csvField(p.path), ...(labelled ? [csvField(classNames[p.label!])] : []), ...p.top.flatMap((t) => [csvField(t.name), t.p.toPrecision(6)])].join(',') + '\n'
  );
}

/**
 * The output files while they are written: the CSV, and the JSON's skipped and prediction lines
 * (listItemText, as jsonWithListLines writes them) in scratch files beside it, until finish() writes the
 * JSON as its header and a copy of both. Nothing of a prediction stays in memory once added.
 */
export class PredictWriter {
  private readonly streams: StagedStream[] = [];
  private readonly csv: StagedStream;
  private readonly skippedLines: StagedStream;
  private readonly predictionLines: StagedStream;
  private nSkipped = 0;
  private nPredicted = 0;

  constructor(
    readonly out: string,
    private readonly labelled: boolean,
    private readonly classNames: string[],
    k: number,
  ) {
    try {
      removeDeadTemps(out); // (the JSON's own file is made at the end: those of a killed run go now, as the others')
      this.csv = this.open(predictCsvPath(out), { initial: csvHeader(labelled, k) });
      this.skippedLines = this.open(`${out}.skipped`, { names: out });
      this.predictionLines = this.open(`${out}.predictions`, { names: out });
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  private open(path: string, o: { initial?: string; names?: string }): StagedStream {
    const s = new StagedStream(path, o);
    this.streams.push(s);
    return s;
  }

  get skipped(): number {
    return this.nSkipped;
  }

  get count(): number {
    return this.nPredicted;
  }

  addSkipped(items: { path: string; reason: string }[]): void {
    if (!items.length) return;
    this.skippedLines.write(items.map((s, i) => listItemText(s, this.nSkipped + i)).join(''));
    this.nSkipped += items.length;
  }

  /** Appends one batch's predictions to the CSV and to the JSON's lines. */
  add(predictions: Prediction[]): void {
    if (!predictions.length) return;
    this.csv.write(predictions.map((p) => csvRow(p, this.labelled, this.classNames)).join(''));
    this.predictionLines.write(predictions.map((p, i) => listItemText(p, this.nPredicted + i)).join(''));
    this.nPredicted += predictions.length;
  }

  /**
   * Writes the JSON (`head`, then the skipped images and the predictions, one line each) and puts it and
   * the CSV in place together (commitFiles: both or, on a full disk, neither). The scratch files go.
   */
  finish(head: Omit<PredictList, 'skipped' | 'predictions'>): void {
    try {
      const json = this.open(this.out, {});
      const lines = [this.skippedLines, this.predictionLines];
      writeJsonWithListLines(
        head,
        [
          { name: 'skipped', count: this.nSkipped },
          { name: 'predictions', count: this.nPredicted },
        ],
        (text) => json.write(text),
        (k) => json.append(lines[k]),
      );
      // the JSON first: its commit journal, <out>.commit, sits beside the lock (<out>.lock) this job holds
      const staged: StagedFile[] = [];
      try {
        staged.push(json.stage());
        staged.push(this.csv.stage());
      } catch (e) {
        for (const f of staged) f.abort();
        throw e;
      }
      commitFiles(staged);
    } finally {
      this.abort();
    }
  }

  /** Removes every temporary file not yet committed. */
  abort(): void {
    for (const s of this.streams) s.abort();
  }
}

const PREDICT_FIELDS = defineOptions({
  checkpoint: { type: 'string', required: true, help: 'classifier' },
  encoder: { type: 'string', help: "a linear probe's encoder" },
  out: { type: 'string', required: true, help: 'output .json' },
  topK: { type: 'int', min: 1, help: 'classes listed per image' },
  ...IMAGE_SET_FIELDS,
});

/** Predicts every image and writes the JSON and CSV (see the top of this file). */
export async function predict(o: PredictOptions): Promise<PredictResult> {
  o = jobFields(o, PREDICT_FIELDS, IMAGE_SET_JOB_OTHER_KEYS);
  return inJobScope(o.threads, () => predictJob(o));
}

async function predictJob(o: PredictOptions): Promise<PredictResult> {
  throwIfAborted(o.signal); // before any work: the checkpoint, the images, the output folder, the first batch
  checkOutputName(o.out, '.json', 'the CSV goes beside it');
  checkImageSetSource(o);
  const t0 = performance.now();
  const batchSize = o.batchSize ?? 256;
  const warn = o.onWarning ?? stderrLine;
  const device = processDevice(o.device ?? 'cpu', null);
  const src = resolvePredictor(o.checkpoint, { verify: o.verify, encoder: o.encoder });
  const out = o.out;
  guardOutputs([out, predictCsvPath(out)], src.weights, o.overwrite);
  if (src.kind === 'linprobe') guardOutputs([out, predictCsvPath(out)], src.encoder.weights, o.overwrite);
  const numClasses = src.kind === 'finetune' ? src.config.numClasses : src.numClasses;
  const encoderConfig = src.kind === 'finetune' ? src.config : src.encoder.config;
  checkEncoderFitsOnCpu(encoderConfig, o.device ?? 'cpu', [{ key: 'batchSize', batch: batchSize }]);
  const imgSize = encoderConfig.imgSize;
  const k = Math.min(o.topK ?? 5, numClasses);
  const ds = embedDataset(o, imgSize);
  const labelled = ds.classes.length > 0;
  if (labelled && ds.classes.length !== numClasses) {
    const which = src.classNames ? classesOnlyIn(ds.classes, src.classNames, 'the data', 'the classifier') : '';
    throw new DataError(`predict: ${quotedPath(ds.root)} has ${ds.classes.length} classes, the classifier ${numClasses}${which ? `: ${which}` : ''}`);
  }
  // label k of the data must be the classifier's class k, or every image is scored against another class
  const differs = labelled && src.classNames ? src.classNames.findIndex((name, c) => name !== ds.classes[c]) : -1;
  if (differs >= 0)
    throw new DataError(
      `predict: class ${differs} is ${printable(`'${src.classNames![differs]}'`)} for the classifier but ${printable(`'${ds.classes[differs]}'`)} in ${quotedPath(ds.root)}: a dataset is scored only with the classes the classifier was trained on, in their order (--images predicts without scoring)`,
    );
  const classNames = src.classNames ?? (labelled ? [...ds.classes] : Array.from({ length: numClasses }, (_, i) => String(i)));
  if (!src.classNames)
    warn(
      `predict: ${quotedPath(src.dir)} does not record its class names; ${labelled ? `using those of ${quotedPath(ds.root)}` : 'classes are named by index'}`,
    );
  const transforms = transformsFor('none', imgSize, ds);
  // (made before the model, as embed's: the loader checks its options, and starts no worker until iterated,
  // so a refusal of them leaves no model behind)
  const loader = imageSetLoader(ds, transforms, { ...o, batchSize }, warn);
  const model = loadPredictor(src, device);
  const tally = labelled ? new AccuracyTally(numClasses) : null;
  const progress = o.progress === null ? null : new Progress(o.progress ?? 'predict', ds.length);
  const plan = loader.plan(0);
  let seen = 0;
  let release = () => {};
  let takeBack = () => {}; // (the output folders this call made, removed if it fails while they are empty)
  let failed = false;
  let writer: PredictWriter | null = null;
  try {
    takeBack = makeOutputFolder(dirname(out));
    // from the start: another writer of the same files (this process or another) is refused before the work, not after it
    // (checked before the model was loaded and the images listed: another process's list written there since is kept)
    release = claimOutputs([out, predictCsvPath(out)], 'out', !!o.overwrite);
    writer = new PredictWriter(out, labelled, classNames, k);
    const stop = new StopAgreement(null); // (one process: it gives the event loop its turns, for a SIGINT handler)
    for await (const batch of loader.iterate(0)) {
      await stop.throwIfAborted(o.signal);
      const B = batch.shape[0];
      const [first] = plan.range(batch.index);
      // an unusable image's row is left blank by the loader: it is dropped here
      const read: number[] = [];
      const reasons = skipReasons(batch);
      const skipped: { path: string; reason: string }[] = [];
      for (let i = 0; i < B; i++) {
        if (batch.indices[i] === first + i) read.push(i);
        else skipped.push({ path: ds.name(first + i), reason: reasons.get(first + i) ?? 'unreadable' });
      }
      writer.addSkipped(skipped);
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
      writer.add(
        read.map((i, r) => {
          const top = Array.from({ length: k }, (_, j) => {
            const c = index[r * k + j];
            return { index: c, name: classNames[c], p: probs[r * k + j] };
          });
          return labelled ? { path: ds.name(first + i), label: batch.labels[i], top } : { path: ds.name(first + i), top };
        }),
      );
      seen += B;
      progress?.update(seen, { 'img/s': perSecond(seen, t0), skipped: writer.skipped });
      o.onProgress?.(seen, ds.length);
    }
    throwIfAborted(o.signal);
    if (seen !== ds.length) throw new Error(`predict: the loader gave ${seen} images, the dataset has ${ds.length}`);
    const { count, skipped } = writer;
    if (!count) throw new DataError(`predict: no readable image in ${quotedPath(ds.root)} (${skipped} skipped)`);
    const seconds = (performance.now() - t0) / 1000;
    const accuracy = tally ? tally.result() : null;
    // both or (a full disk) neither: an earlier run's list never sits beside this run's table
    writer.finish({
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
      input: imageSetRecord(o, ds.root),
      preprocessing: transforms,
      accuracy,
      count,
      seconds,
    });
    if (skipped) warn(`predict: skipped ${skipped} unreadable image${skipped === 1 ? '' : 's'} (listed in ${quotedPath(out)})`);
    return { path: out, csvPath: predictCsvPath(out), count, skipped, accuracy, seconds };
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    writer?.abort(); // (a stop or an error: no temporary file is left)
    release();
    if (failed) takeBack();
    progress?.done();
    await loader.close();
    model.dispose();
  }
}
