// Phase marks inside the training step, for a per-phase timer (bench/pretrain_worker.ts --phase-timer,
// src/run/phase-timer.ts). The model calls markPhase at each boundary; without a probe it costs a null
// check. A phase lasts from its mark to the next one.
export type Phase = 'input' | 'similarity' | 'order' | 'targets' | 'encoder' | 'decoder' | 'head' | 'loss' | 'backward' | 'optimizer';
export const PHASES: readonly Phase[] = ['input', 'similarity', 'order', 'targets', 'encoder', 'decoder', 'head', 'loss', 'backward', 'optimizer'];

export interface PhaseProbe {
  mark(phase: Phase): void;
}

let probe: PhaseProbe | null = null;

/** Installs (or with null removes) the probe that receives the marks. */
export function setPhaseProbe(p: PhaseProbe | null): void {
  probe = p;
}

export function markPhase(phase: Phase): void {
  if (probe) probe.mark(phase);
}
