// What a training loop does after each optimiser step, shared by `pretrain` and `finetune`: log the
// window of losses, stop on a non-finite loss, write checkpoints, and stop at the step budget or on
// SIGINT/SIGTERM. One place for the policy, so both trainers checkpoint and stop the same way.

export type StopReason = 'finished' | 'maxSteps' | 'signal' | 'nonfinite';

export interface StepState {
  step: number;
  epoch: number;
  /** Batches (micro-batches) consumed in this epoch so far. */
  batchIndex: number;
  /** Optimiser steps per epoch and micro-batches per step. */
  perEpoch: number;
  accum: number;
  totalSteps: number;
  /** Steps the epochs alone would give (more than totalSteps when --max-steps cut the run). */
  plannedSteps: number;
  logEvery: number;
  checkpointEvery: number;
}

export interface StepHooks {
  /** Writes the metrics window; false when the loss became NaN/Inf. */
  flushMetrics(fractionalEpoch: number): boolean;
  /** Writes a checkpoint positioned at (epoch, batch). */
  saveCheckpoint(epoch: number, batch: number): void;
  /** Runs at an epoch end before its checkpoint (e.g. a test-set evaluation), except after the last step. */
  onEpochEnd?(epochsDone: number): Promise<void>;
  stopRequested(): boolean;
  /** The learning rate to quote when the loss became non-finite. */
  lr(): number;
  lastCheckpoint(): string | null;
  log(message: string): void;
}

/** Decides what follows a step: a reason to stop, 'epochEnd' (leave the epoch's batch loop) or null. */
export async function afterStep(s: StepState, h: StepHooks): Promise<StopReason | 'epochEnd' | null> {
  if (s.step % s.logEvery === 0 || s.step === s.totalSteps) {
    if (!h.flushMetrics(s.epoch + s.batchIndex / (s.perEpoch * s.accum))) {
      h.log(`\nstopping: the loss became NaN/Inf by step ${s.step} (lr ${h.lr()}). ` +
        `The last good checkpoint is ${h.lastCheckpoint() ?? '(none yet)'}; lower --blr, raise --warmup-epochs, or use --precision fp32.`);
      return 'nonfinite';
    }
  }
  const epochEnd = s.batchIndex >= s.perEpoch * s.accum;
  if (epochEnd && s.step < s.totalSteps && h.onEpochEnd) await h.onEpochEnd(s.epoch + 1);
  if (s.step % s.checkpointEvery === 0 || (epochEnd && s.step < s.totalSteps)) {
    h.saveCheckpoint(epochEnd ? s.epoch + 1 : s.epoch, epochEnd ? 0 : s.batchIndex);
  }
  if (s.step >= s.totalSteps) return s.totalSteps < s.plannedSteps ? 'maxSteps' : 'finished';
  if (h.stopRequested()) {
    h.log(`\nstopping on request at step ${s.step}: writing a checkpoint`);
    return 'signal';
  }
  return epochEnd ? 'epochEnd' : null;
}

/** Sets `stop.requested` on SIGINT/SIGTERM until the returned function is called. */
export function catchStopSignals(stop: { requested: boolean }): () => void {
  const onSignal = (): void => { stop.requested = true; };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
