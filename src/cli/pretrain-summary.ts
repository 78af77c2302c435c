// What `semaim pretrain` prints when it ends: why it stopped, how the loss changed, where its files are.
import type { StopReason } from '../run/loop';
import type { PretrainResult } from '../train/pretrain';
import { lossChange } from './loss-change';
import { quotedPath } from '../util/printable';

/** How the summary line says why a pre-training run ended. */
const STOPPED: Record<StopReason, string> = {
  finished: 'finished',
  maxSteps: 'stopped at --max-steps',
  signal: 'stopped by a signal',
  nonfinite: 'diverged (NaN/Inf)',
};

/** The summary; a run stopped before its first checkpoint says "none yet" (it printed "checkpoint: null"). */
export function pretrainSummary(r: Pick<PretrainResult, 'stoppedBy' | 'steps' | 'firstLoss' | 'lastLoss' | 'checkpoint' | 'outDir'>): string {
  return (
    `pretrain ${STOPPED[r.stoppedBy]} after ${r.steps} steps; ${loss(r)}\n` +
    `  checkpoint: ${r.checkpoint === null ? 'none yet' : quotedPath(r.checkpoint)}\n  metrics:    ${quotedPath(`${r.outDir}/metrics.jsonl`)}\n`
  );
}

/**
 * How the loss changed. A diverged run has logged the window that diverged (src/run/loop.ts), so a NaN first and last
 * loss is that window's, not "no loss logged" as lossChange reads them.
 */
function loss(r: Pick<PretrainResult, 'stoppedBy' | 'firstLoss' | 'lastLoss'>): string {
  return r.stoppedBy === 'nonfinite' && Number.isNaN(r.firstLoss) && Number.isNaN(r.lastLoss) ? 'loss NaN' : lossChange(r.firstLoss, r.lastLoss);
}
