// The jobs behind `semaim knn | linprobe | finetune`: resolve the encoder, make the labelled data,
// run the protocol, write `<out-dir>/<command>.json` and return the short table.
import { join } from 'node:path';
import * as torch from '../torch';
import { saveTensors } from '../io';
import { OptionValues } from '../util/options';
import { EvalDataFactories, EvalDataRequest, LabelledData, Split } from './data';
import { EncoderSource, LoadedEncoder, loadEncoder, resolveEncoder, sha256File } from './encoder';
import { FeaturePooling, FeatureSet, checkImageShape, disposeFeatures, extractFeatures } from './features';
import { FinetuneHooks, finetune } from './finetune';
import { KnnResult, knnClassify, parseKs } from './knn';
import { LinprobeOptions, linprobeOnFeatures, linprobeOnline } from './linprobe';
import { validateEval } from './options';
import { imageInputOptions } from '../data/options';
import { EvalResult, formatResult, makeResult, writeResult } from './result';
import type { Precision } from '../train/precision';

export interface EvalRun {
  result: EvalResult;
  path: string;
  table: string;
}

export function dataRequest(o: OptionValues, split: Split, imgSize: number): EvalDataRequest {
  return {
    split, dataset: String(o.dataset), dataPath: o.dataPath as string | undefined, imgSize,
    limit: (split === 'train' ? o.trainLimit : o.testLimit) as number | undefined, seed: o.seed as number, numWorkers: o.numWorkers as number | undefined,
    imageInput: imageInputOptions(o),
  };
}

function setThreads(o: OptionValues): void {
  torch.setNumThreads((o.threads as number | undefined) ?? require('node:os').availableParallelism());
}

/** Both labelled splits; checks that they agree on the classes. */
export async function makeSplits(f: EvalDataFactories, o: OptionValues, imgSize: number): Promise<{ train: LabelledData; test: LabelledData }> {
  const train = await f.makeEvalData(dataRequest(o, 'train', imgSize));
  let test: LabelledData;
  try {
    test = await f.makeEvalData(dataRequest(o, 'test', imgSize));
  } catch (e) {
    await train.close();
    throw e;
  }
  if (train.numClasses !== test.numClasses) {
    await train.close();
    await test.close();
    throw new Error(`the train split has ${train.numClasses} classes, the test split ${test.numClasses}`);
  }
  return { train, test };
}

/** Loads the encoder and extracts train and test features. */
export async function encoderFeatures(o: OptionValues, f: EvalDataFactories, source: EncoderSource): Promise<{
  loaded: LoadedEncoder; train: FeatureSet; test: FeatureSet; numClasses: number; classNames?: string[]; sizes: { train: number; test: number };
}> {
  const loaded = loadEncoder(source, { device: o.device as torch.Device });
  let train: FeatureSet | null = null;
  try {
    const splits = await makeSplits(f, o, loaded.source.config.imgSize);
    try {
      checkImageShape(loaded.encoder, splits.train, 'train data');
      checkImageShape(loaded.encoder, splits.test, 'test data');
      const fo = { batchSize: o.evalBatchSize as number, pooling: o.pooling as FeaturePooling, precision: o.precision as Precision };
      train = await extractFeatures(loaded.encoder, splits.train, { ...fo, label: 'features (train)' });
      const test = await extractFeatures(loaded.encoder, splits.test, { ...fo, label: 'features (test)' });
      return { loaded, train, test, numClasses: splits.train.numClasses, classNames: splits.train.classNames, sizes: { train: splits.train.size, test: splits.test.size } };
    } finally {
      await splits.train.close();
      await splits.test.close();
    }
  } catch (e) {
    disposeFeatures(train);
    loaded.encoder.dispose();
    throw e;
  }
}

export function knnRows(results: KnnResult[]): { name: string; accuracy: KnnResult['accuracy'] }[] {
  // The headline is k = 20 when asked for (SPEC), else the first k.
  const sorted = [...results].sort((a, b) => (a.k === 20 ? -1 : b.k === 20 ? 1 : a.k - b.k));
  return sorted.map((r) => ({ name: `k-NN k=${r.k}`, accuracy: r.accuracy }));
}

export async function runKnn(o: OptionValues, f: EvalDataFactories): Promise<EvalRun> {
  validateEval(o);
  const source = resolveEncoder(String(o.checkpoint));
  setThreads(o);
  const t0 = Date.now();
  const ft = await encoderFeatures(o, f, source);
  try {
    const results = knnClassify(ft.train, ft.test, {
      ks: parseKs(String(o.k)), temperature: o.temperature as number, numClasses: ft.numClasses, chunkSize: o.chunkSize as number,
    });
    const result = makeResult('knn', knnRows(results), {
      source: ft.loaded.source, config: o, data: { ...ft.sizes, numClasses: ft.numClasses }, classNames: ft.classNames,
      seconds: (Date.now() - t0) / 1000, details: { perK: results.map((r) => ({ k: r.k, ...r.accuracy })) },
    });
    const path = writeResult(String(o.outDir), result);
    return { result, path, table: formatResult(result) };
  } finally {
    disposeFeatures(ft.train, ft.test);
    ft.loaded.encoder.dispose();
  }
}

export function linprobeOptionsFrom(o: OptionValues): LinprobeOptions {
  return {
    epochs: o.epochs as number, batchSize: o.batchSize as number, blr: o.blr as number, lr: o.lr as number | undefined,
    minLr: o.minLr as number, warmupEpochs: o.warmupEpochs as number, weightDecay: o.weightDecay as number,
    momentum: o.momentum as number, optimizer: o.optimizer as 'sgd' | 'lars', seed: o.seed as number, evalEvery: o.evalEvery as number,
  };
}

export async function runLinprobe(o: OptionValues, f: EvalDataFactories): Promise<EvalRun> {
  validateEval(o);
  const source = resolveEncoder(String(o.checkpoint));
  setThreads(o);
  const t0 = Date.now();
  const lo = linprobeOptionsFrom(o);
  let train: FeatureSet | null = null;
  let test: FeatureSet | null = null;
  let sizes: { train: number; test: number };
  let numClasses: number;
  let classNames: string[] | undefined;
  let loaded: LoadedEncoder;
  let r;
  if (o.cacheFeatures) {
    const ft = await encoderFeatures(o, f, source);
    ({ loaded, train, test, numClasses, classNames, sizes } = ft);
    try {
      r = await linprobeOnFeatures(train, test, numClasses, lo);
    } finally {
      disposeFeatures(train, test);
      loaded.encoder.dispose();
    }
  } else {
    loaded = loadEncoder(source, { device: o.device as torch.Device });
    try {
      const splits = await makeSplits(f, o, loaded.source.config.imgSize);
      try {
        checkImageShape(loaded.encoder, splits.train, 'train data');
        checkImageShape(loaded.encoder, splits.test, 'test data');
        ({ numClasses, classNames } = splits.train);
        sizes = { train: splits.train.size, test: splits.test.size };
        // The test features in the precision the probe trains on, as the cached path extracts both splits.
        const precision = o.precision as Precision;
        test = await extractFeatures(loaded.encoder, splits.test, { batchSize: o.evalBatchSize as number, pooling: o.pooling as FeaturePooling, precision, label: 'features (test)' });
        r = await linprobeOnline(loaded.encoder, splits.train, test, numClasses, { ...lo, pooling: o.pooling as FeaturePooling, precision });
      } finally {
        await splits.train.close();
        await splits.test.close();
      }
    } finally {
      disposeFeatures(test);
      loaded.encoder.dispose();
    }
  }
  try {
    const outDir = String(o.outDir);
    const result = makeResult('linprobe', [{ name: `linear probe (${o.optimizer}, ${o.epochs} ep)`, accuracy: r.accuracy }], {
      source: loaded.source, config: o, data: { ...sizes, numClasses }, classNames,
      seconds: (Date.now() - t0) / 1000, details: { lr: r.lr, history: r.history },
    });
    const path = writeResult(outDir, result);
    saveTensors(`${outDir}/probe.safetensors`, r.probe.stateDict(), { format: 'semaim.linprobe/1', encoderSha256: loaded.source.sha256 });
    return { result, path, table: formatResult(result) };
  } finally {
    r.probe.dispose();
  }
}

export interface FinetuneRun {
  /** null when the run stopped before the end (signal, NaN). */
  result: EvalResult | null;
  path: string | null;
  table: string;
  stoppedBy: string;
}

export async function runFinetune(o: OptionValues, f: EvalDataFactories, hooks: FinetuneHooks = {}): Promise<FinetuneRun> {
  validateEval(o);
  const source = resolveEncoder(String(o.checkpoint));
  setThreads(o);
  const t0 = Date.now();
  const splits = await makeSplits(f, o, source.config.imgSize);
  try {
    const r = await finetune(o, splits, hooks, source);
    if (!r.accuracy) {
      const msg = `fine-tuning stopped (${r.stoppedBy}) after ${r.steps} steps; run again with the same --out-dir to continue from ${r.checkpoint ?? 'the start'}`;
      return { result: null, path: null, table: msg + '\n', stoppedBy: r.stoppedBy };
    }
    const rows = [{ name: `fine-tune (${r.steps} steps)`, accuracy: r.accuracy }];
    if (r.emaAccuracy) rows.push({ name: 'fine-tune (EMA)', accuracy: r.emaAccuracy });
    const result = makeResult('finetune', rows, {
      source: r.encoder, config: o, data: { train: splits.train.size, test: splits.test.size, numClasses: splits.train.numClasses },
      classNames: splits.train.classNames, seconds: (Date.now() - t0) / 1000,
      details: {
        steps: r.steps, stoppedBy: r.stoppedBy, bestTop1: r.bestTop1, lastLoss: r.lastLoss, model: r.config,
        finetuneCheckpoint: r.checkpoint, finetuneSha256: r.checkpoint ? sha256File(join(r.checkpoint, 'model.safetensors')) : null,
      },
    });
    const path = writeResult(String(o.outDir), result);
    return { result, path, table: formatResult(result), stoppedBy: r.stoppedBy };
  } finally {
    await splits.train.close();
    await splits.test.close();
  }
}
