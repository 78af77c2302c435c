// DINO's weighted k-NN classifier (eval_knn.py): L2-normalised features, cosine similarity to every
// training feature, the k nearest vote for their class with weight exp(sim / T). Test rows are
// processed in chunks so that a [chunk, nTrain] similarity block is all that is ever held, and every
// k in the list is read from one top-max(k) pass. Data-parallel, each rank holds a shard of the
// training features and the whole test set: every rank finds its shard's k nearest for a block of test
// rows, the ranks exchange those (k per row and rank) and each merges them into the global k nearest.
import * as torch from '../torch';
import { F, Tensor } from '../torch';
import { Progress, perSecond } from '../run/progress';
import { Accuracy, AccuracyTally } from './accuracy';
import type { ProcessGroup } from '../dist';
import { FeatureSet, checkLabels, setSize, shardGroup } from './features';
import { StopAgreement } from '../dist/agree';
import { checkSignalOption } from '../util/options';

/**
 * Options of {@link knnClassify} and {@link knnClassifyAsync}: the k values, the
 * vote temperature, the number of classes, the block size, data-parallel settings.
 */
export interface KnnOptions {
  /** Neighbour counts to report (DINO: 10, 20, 100, 200; SemAIM authors: 20, also 10 and 30, docs/METHOD.md §6.4). */
  ks: number[];
  /** Temperature of the vote weights exp(sim / T). Default 0.07. */
  temperature?: number;
  /** Classes of the labels (every label in 0..numClasses-1). */
  numClasses: number;
  /** Test rows per similarity block. Default 256. */
  chunkSize?: number;
  /** Progress bar label; null for none. */
  label?: string | null;
  /** Data-parallel: `train` is this rank's shard (extracted with gatherTo 'shard'); every rank gets the result. */
  group?: ProcessGroup | null;
  /** knnClassifyAsync: aborting it stops the vote before its next block of queries (rejects with an AbortError, code 'ERR_ABORTED'). */
  signal?: AbortSignal;
}

/** The accuracy of weighted k-NN for one k: {@link knnClassify} returns one per k, by increasing k. */
export interface KnnResult {
  k: number;
  accuracy: Accuracy;
}

/** Parses '10,20,30' into sorted distinct positive integers, written in decimal digits as every number option ('0x10' is refused). */
export function parseKs(text: string): number[] {
  const ks = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : NaN));
  if (!ks.length || ks.some((k) => !Number.isInteger(k) || k < 1)) throw new RangeError(`k list must be positive integers separated by commas, got '${text}'`);
  return [...new Set(ks)].sort((a, b) => a - b);
}

/**
 * Class votes [B, C] of the first k neighbours: sum of weights per class. `weights` and
 * `neighbourLabels` are [B, kmax], sorted by decreasing similarity.
 */
export function knnVotes(weights: Tensor, neighbourLabels: Tensor, k: number, numClasses: number): Tensor {
  return torch.scope(() => {
    const [B] = weights.shape;
    const w = weights.narrow(1, 0, k);
    const l = neighbourLabels.narrow(1, 0, k);
    return torch.zeros([B, numClasses], { dtype: w.dtype, device: w.device }).scatterAdd(1, l, w);
  });
}

/** Weighted k-NN accuracy of `test` against the bank `train`, for every k in o.ks (runs to the end without yielding: see knnClassifyAsync). */
export function knnClassify(train: FeatureSet, test: FeatureSet, o: KnnOptions): KnnResult[] {
  const steps = knnSteps(train, test, o);
  for (let r = steps.next(); ; r = steps.next()) if (r.done) return r.value;
}

/**
 * knnClassify, letting the event loop turn after every block of `chunkSize` test rows: at ImageNet scale
 * the vote takes minutes, during which a process that also serves requests (or a timer) would otherwise
 * get no turn. The same results.
 */
export async function knnClassifyAsync(train: FeatureSet, test: FeatureSet, o: KnnOptions): Promise<KnnResult[]> {
  checkSignalOption(o.signal);
  const stop = new StopAgreement(o.group); // (every rank votes on the same blocks of test rows)
  await stop.throwIfAborted(o.signal);
  const steps = knnSteps(train, test, o);
  for (let r = steps.next(); ; r = steps.next()) {
    if (r.done) return r.value;
    try {
      // (the event loop turns in it, after every block)
      await stop.throwIfAborted(o.signal);
    } catch (e) {
      steps.return([]); // runs the generator's finally: its tensors are freed
      throw e;
    }
  }
}

/** The k-NN vote, one block of test rows per step. */
function* knnSteps(train: FeatureSet, test: FeatureSet, o: KnnOptions): Generator<void, KnnResult[]> {
  const T = o.temperature ?? 0.07;
  const chunk = o.chunkSize ?? 256;
  if (!Array.isArray(o.ks)) {
    const k = (o as { k?: unknown }).k;
    throw new RangeError(
      `knnClassify: ks must be a list of positive integers, got ${String(o.ks)}${k !== undefined ? ` (the option is 'ks'; 'k' is the command's)` : ''}`,
    );
  }
  const ks = [...new Set(o.ks)].sort((a, b) => a - b);
  const group = shardGroup('knnClassify', train, test, o.group);
  const nTrain = setSize(train);
  const nLocal = train.features.shape[0];
  const nTest = test.features.shape[0];
  if (!ks.length) throw new RangeError('knnClassify: no k given');
  if (ks.some((k) => !Number.isInteger(k) || k < 1)) throw new RangeError(`knnClassify: k must be positive integers, got ${ks}`);
  const kmax = ks[ks.length - 1];
  if (kmax > nTrain) throw new RangeError(`knnClassify: k = ${kmax} exceeds the ${nTrain} training features`);
  if (typeof T !== 'number' || !(T > 0))
    throw new RangeError(`knnClassify: temperature must be a number > 0, got ${typeof T === 'string' ? `'${T}'` : String(T)}`);
  if (!(Number.isInteger(chunk) && chunk > 0)) throw new RangeError(`knnClassify: chunkSize must be a positive integer, got ${chunk}`);
  if (train.features.shape[1] !== test.features.shape[1]) {
    throw new Error(`knnClassify: train features have width ${train.features.shape[1]}, test features ${test.features.shape[1]}`);
  }
  if (train.labels.length !== nLocal || test.labels.length !== nTest) throw new Error('knnClassify: features and labels differ in count');
  checkLabels('knnClassify', 'training', train.labels, o.numClasses);
  checkLabels('knnClassify', 'test', test.labels, o.numClasses);

  const tallies = ks.map(() => new AccuracyTally(o.numClasses));
  const label = o.label === undefined ? 'k-NN' : o.label;
  const progress = label === null || (group && group.rank !== 0) ? null : new Progress(label, nTest);
  const device = train.features.device;
  const [bank, bankLabels] = torch.noGrad(() =>
    torch.scope(() => {
      // [nTrain, D]: the one copy of the bank k-NN makes (at ImageNet scale 1.28M × 768 floats, 3.9 GB);
      // the similarity block multiplies by its transposed view, which BLAS reads without a copy
      const b = F.normalize(train.features.float(), 2, 1);
      const l = torch.tensor(train.labels, { dtype: 'int64', device });
      return [torch.keep(b), torch.keep(l)];
    }),
  );
  const t0 = performance.now();
  try {
    for (let start = 0; start < nTest; start += chunk) {
      const len = Math.min(chunk, nTest - start);
      const labels = test.labels.subarray(start, start + len);
      torch.noGrad(() =>
        torch.scope(() => {
          const q = F.normalize(test.features.narrow(0, start, len).to({ dtype: 'float32', device }), 2, 1);
          let [top, neighbourLabels] = nearest(q, bank, bankLabels, kmax);
          if (group) [top, neighbourLabels] = mergeNearest(group, top, neighbourLabels, kmax);
          // exp((cos - max) / T): the same ranking as exp(cos / T) (one positive factor per query), but
          // no overflow to inf for small T (cos above 88.7·T), where every vote tied and the lowest class won
          const weights = top
            .sub(top.narrow(1, 0, 1))
            .div(T)
            .exp();
          ks.forEach((k, i) => tallies[i].add(knnVotes(weights, neighbourLabels, k, o.numClasses), labels));
        }),
      );
      progress?.update(start + len, { 'img/s': perSecond(start + len, t0) });
      if (start + len < nTest) yield;
    }
  } finally {
    bank.dispose();
    bankLabels.dispose();
    progress?.done();
  }
  return ks.map((k, i) => ({ k, accuracy: tallies[i].result() }));
}

/**
 * The k nearest bank rows of each query row, by decreasing cosine similarity: [len, k] similarities
 * and labels. A bank of fewer than k rows (a small shard) is padded with similarity -inf, label 0.
 */
function nearest(q: Tensor, bank: Tensor, bankLabels: Tensor, k: number): [Tensor, Tensor] {
  const [len] = q.shape;
  const n = bank.shape[0]; // bank [n, D], L2-normalised rows
  const take = Math.min(k, n);
  let top = torch.zeros([len, 0], { device: q.device });
  let labels = torch.zeros([len, 0], { dtype: 'int64', device: q.device });
  if (take > 0) {
    const sim = q.mm(bank.T); // [len, n] cosine similarities
    const [t, idx] = sim.topk(take, 1, true, true);
    top = t;
    labels = bankLabels.unsqueeze(0).expand(len, n).gather(1, idx);
  }
  if (take === k) return [top, labels];
  return [
    torch.cat([top, torch.full([len, k - take], -Infinity, { device: q.device })], 1),
    torch.cat([labels, torch.zeros([len, k - take], { dtype: 'int64', device: q.device })], 1),
  ];
}

/** Every rank's k nearest per row, exchanged and merged into the global k nearest (the same on every rank). */
function mergeNearest(group: ProcessGroup, top: Tensor, labels: Tensor, k: number): [Tensor, Tensor] {
  const all = torch.cat(group.allGatherSync(top.contiguous()), 1); // [len, W·k]
  const allLabels = torch.cat(group.allGatherSync(labels.contiguous()), 1);
  const [merged, idx] = all.topk(k, 1, true, true);
  return [merged, allLabels.gather(1, idx)];
}
