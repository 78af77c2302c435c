// The epoch loop both probes train their head with (linprobe.ts: a linear classifier on [CLS] features;
// segprobe.ts: a linear head on patch tokens): the lr of a warm-up + cosine schedule set at every step, a
// stop every rank agrees on (data-parallel, they take the same steps), the mean loss of each epoch, an
// evaluation every evalEvery epochs but the last (the caller evaluates after it), progress on rank 0, and an
// OptionError naming the lr's option when an epoch's mean loss is not finite while the head's inputs were
// finite (else the encoder's outputs overflowed, and the lr is not to blame).
import * as torch from '../torch';
import type { Tensor } from '../torch';
import type { Module } from '../nn';
import { fractionalEpoch, minLrProblem, stepsInEpochs, warmupCosine, type BaseHyper, type Optimizer } from '../optim';
import { Progress, perSecond } from '../run/progress';
import { StopAgreement } from '../dist/agree';
import type { ProcessGroup } from '../dist';
import { OptionError } from '../util/options';
import { DataError } from '../util/errors';
import { FeatureOverflowCheck } from './feature-overflow';

/** Refuses (DataError) a probe's training split of fewer than 2 images, before any feature is extracted: the head trains on at least 2. */
export function refuseTooFewTrainingImages(probe: string, n: number): void {
  if (n < 2) throw new DataError(`${probe}: the train split has ${n} image${n === 1 ? '' : 's'}: the probe trains on at least 2`);
}

export interface HeadTrainingOptions {
  epochs: number;
  minLr?: number;
  warmupEpochs?: number;
  /** Evaluate every N epochs (0: only at the end, by the caller). */
  evalEvery?: number;
  /** Progress bar label (default: the probe's name); null for none. */
  label?: string | null;
  group?: ProcessGroup | null;
  signal?: AbortSignal;
}

/** Refuses (RangeError) a batch size, epochs or warm-up a head cannot be trained with; `what` names the probe. */
export function checkHeadTraining(what: string, o: HeadTrainingOptions & { batchSize: number }): void {
  if (!(Number.isInteger(o.batchSize) && o.batchSize > 0)) throw new RangeError(`${what}: batchSize must be a positive integer, got ${o.batchSize}`);
  if (!(o.epochs > 0)) throw new RangeError(`${what}: epochs must be > 0, got ${o.epochs}`);
  if (!((o.warmupEpochs ?? 0) < o.epochs)) throw new RangeError(`${what}: warmupEpochs (${o.warmupEpochs}) must be below epochs (${o.epochs})`);
}

/** One epoch of the history: its mean loss, its last lr and, where evaluated, the metric. */
export type HeadEpoch<M extends string> = { epoch: number; loss: number; lr: number } & { [k in M]?: number };

export interface HeadTraining<B, M extends string> {
  /** The probe's name: the progress bar's default label. */
  name: string;
  head: Module;
  /** Disposed when the loop ends. */
  optimizer: Optimizer<BaseHyper>;
  /** The peak lr of the schedule. */
  lr: number;
  /** The option that set `lr` (named when the loss diverges). */
  lrOption: string;
  /** Steps per epoch; `batches(epoch)` may yield more (the loop stops at the epochs' total) or fewer. */
  perEpoch: number;
  /**
   * The epoch's batches in order; null for a step whose batch has nothing to train on (no labelled pixel):
   * the step is passed over but keeps its place, so the lr schedule of the steps after it stays where it is.
   */
  batches: (epoch: number) => AsyncIterable<B | null>;
  /** The head's input features of a batch (checked for NaN/Inf): data-parallel, the global batch every rank steps on. */
  inputs: (b: B) => Tensor;
  /** The batch's loss, inside the step's scope. */
  loss: (b: B) => Tensor;
  /** Frees the batch's tensors: after its step, also when the step throws (a label outside the classes). */
  release: (b: B) => void;
  /** The metric's name in the history and the progress line, and its value on the test set now. */
  metric: M;
  evaluate: () => number;
}

export async function trainHead<B, M extends string>(t: HeadTraining<B, M>, o: HeadTrainingOptions): Promise<HeadEpoch<M>[]> {
  const minLrTooHigh = minLrProblem(o.minLr, t.lr);
  if (minLrTooHigh) {
    t.optimizer.dispose();
    throw new OptionError('minLr', minLrTooHigh);
  }
  const schedule = warmupCosine({ lr: t.lr, minLr: o.minLr ?? 0, warmupEpochs: o.warmupEpochs ?? 0, epochs: o.epochs });
  const epochs = Math.ceil(o.epochs);
  const totalSteps = Math.max(1, stepsInEpochs(o.epochs, t.perEpoch));
  const label = o.label === undefined ? t.name : o.label;
  const progress = label === null || (o.group && o.group.rank !== 0) ? null : new Progress(label, totalSteps);
  const history: HeadEpoch<M>[] = [];
  const lossSum = torch.keep(torch.zeros([], { device: t.head.parameters()[0].device }));
  let step = 0;
  const stop = new StopAgreement(o.group);
  const overflow = new FeatureOverflowCheck();
  // the progress line moves at every batch (an epoch through the encoder takes long), with the last epoch's
  // loss and metric: an epoch's mean loss is known at its end
  const start = performance.now();
  let seen = 0;
  let last: Partial<HeadEpoch<M>> = {};
  const rate = () => perSecond(seen, start);
  t.head.train();
  try {
    for (let epoch = 0; epoch < epochs && step < totalSteps; epoch++) {
      let i = 0;
      let trained = 0;
      lossSum.zero_();
      for await (const b of t.batches(epoch)) {
        if (b === null) await stop.throwIfAborted(o.signal);
        else
          try {
            // (the event loop turns in it: cached features are at hand at once, and the probe ran without a turn)
            await stop.throwIfAborted(o.signal);
            seen += t.inputs(b).shape[0]; // (data-parallel, the batch is already every rank's rows)
            torch.scope(() => {
              t.optimizer.setLr(schedule(fractionalEpoch(epoch, i, t.perEpoch)));
              overflow.add(t.inputs(b));
              const loss = t.loss(b);
              loss.backward();
              t.optimizer.step();
              t.optimizer.zeroGrad();
              lossSum.add_(loss.detach());
            });
            trained++;
          } finally {
            t.release(b);
          }
        i++;
        step++;
        if (step >= totalSteps) break;
        progress?.update(step, { ...last, epoch: epoch + 1, lr: t.optimizer.paramGroups[0].lr, 'img/s': rate() });
      }
      const rec = { epoch: epoch + 1, loss: lossSum.item() / Math.max(trained, 1), lr: t.optimizer.paramGroups[0].lr } as HeadEpoch<M>;
      // A head trained past a NaN/Inf loss evaluates at chance level: stop, on every rank at once, before any result exists.
      const diverged = !Number.isFinite(rec.loss);
      if (o.group ? await o.group.anyTrue(diverged) : diverged) {
        await overflow.throwIfOverflowed(undefined, `the ${t.name} head's input features (epoch ${epoch + 1})`, o.group);
        throw new OptionError(
          t.lrOption,
          `the ${t.name} loss became NaN/Inf in epoch ${epoch + 1} (peak lr ${t.lr}${o.group ? ', on some rank' : ''}): lower it; no result was written`,
        );
      }
      if (o.evalEvery && (epoch + 1) % o.evalEvery === 0 && epoch + 1 < epochs) (rec as Record<string, number>)[t.metric] = t.evaluate();
      history.push(rec);
      last = rec;
      progress?.update(step, { ...rec, 'img/s': rate() });
    }
    return history;
  } finally {
    lossSum.dispose();
    overflow.dispose();
    t.optimizer.dispose();
    progress?.done();
  }
}
