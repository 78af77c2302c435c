// Per-phase step times from the model's phase marks (src/semaim/phases.ts). On CUDA each mark records
// an event on the current stream, so the GPU time of each phase is measured without synchronising
// between phases (the step's own end is the only wait); the host time between marks is kept too (how
// long the host took to issue the phase: where it exceeds the GPU time, the step is launch-bound). On
// the CPU the host time is the phase time.
import * as torch from '../torch';
import { PHASES, type Phase, type PhaseProbe } from '../semaim/phases';

export type PhaseTimes = Partial<Record<Phase, number>>;

export interface StepPhases {
  /** GPU milliseconds per phase (CUDA only). */
  gpu: PhaseTimes | null;
  /** Host milliseconds per phase. */
  host: PhaseTimes;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

export class PhaseTimer implements PhaseProbe {
  private marks: { phase: Phase | null; host: number }[] = [];

  constructor(private readonly cuda: boolean) {}

  /** Starts a step (its first phase is the next mark). */
  beginStep(): void {
    this.marks = [];
    this.record(null);
  }

  mark(phase: Phase): void {
    this.record(phase);
  }

  /** Ends the step and returns the time per phase (summed over the phase's intervals). */
  endStep(): StepPhases {
    this.record(null);
    const host: PhaseTimes = {};
    const gpu: PhaseTimes | null = this.cuda ? {} : null;
    for (let i = 1; i < this.marks.length; i++) {
      const phase = this.marks[i - 1].phase;
      if (!phase) continue; // time before the first mark belongs to no phase
      host[phase] = (host[phase] ?? 0) + this.marks[i].host - this.marks[i - 1].host;
      if (gpu) gpu[phase] = (gpu[phase] ?? 0) + torch.cudaEvents.elapsed(i - 1, i);
    }
    return { gpu, host };
  }

  private record(phase: Phase | null): void {
    if (this.cuda) torch.cudaEvents.record(this.marks.length);
    this.marks.push({ phase, host: now() });
  }
}

/** Medians per phase over steps (phases never marked are left out), in the order of PHASES. */
export function medianPhases(steps: PhaseTimes[]): PhaseTimes {
  const out: PhaseTimes = {};
  for (const p of PHASES) {
    const xs = steps
      .map((s) => s[p])
      .filter((x): x is number => x !== undefined)
      .sort((a, b) => a - b);
    if (!xs.length) continue;
    out[p] = xs.length % 2 ? xs[(xs.length - 1) / 2] : (xs[xs.length / 2 - 1] + xs[xs.length / 2]) / 2;
  }
  return out;
}
