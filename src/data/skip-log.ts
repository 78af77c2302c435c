// What the loaders say about unusable samples (corrupt, truncated or oversized images): each one's
// reason once, when the loader first meets it, and at the end of an epoch one line with the count by reason.
import type { SkipReason } from './codecs/errors';
import type { SkipRecord } from './batch';
import { printable } from '../util/printable';

/** The skips of one epoch as its summary gives them. */
export interface EpochSkips {
  /** Distinct samples skipped. */
  skipped: number;
  byReason: Partial<Record<SkipReason, number>>;
  /** Their names (the first 20). */
  files: string[];
}

export class SkipLog {
  private readonly warned = new Set<string>();

  constructor(readonly warn: (line: string) => void) {}

  /** Counts a batch's skipped samples in the epoch's `tally` (by sample index), warning about each new name. */
  count(skipped: readonly SkipRecord[], tally: Map<number, SkipRecord>): void {
    for (const s of skipped) {
      this.note(s);
      tally.set(s.index, s);
    }
  }

  /** Warns about a skipped sample the first time its name comes up. */
  note(s: SkipRecord): void {
    if (this.warned.has(s.name)) return;
    this.warned.add(s.name);
    this.warn(printable(`data: skipping ${s.name}: ${s.message}`));
  }

  /**
   * The epoch's skips, with one warning line when there were any: `noun` is what a sample is ('file'),
   * `fate` what became of each ('replaced by another sample').
   */
  epochSkips(epoch: number, complete: boolean, tally: Map<number, SkipRecord>, noun: string, fate: string): EpochSkips {
    const byReason: Partial<Record<SkipReason, number>> = {};
    const files: string[] = [];
    for (const s of tally.values()) {
      byReason[s.reason] = (byReason[s.reason] ?? 0) + 1;
      if (files.length < 20 && !files.includes(s.name)) files.push(s.name);
    }
    if (tally.size > 0) {
      const reasons = Object.entries(byReason)
        .map(([r, k]) => `${k} ${r}`)
        .join(', ');
      this.warn(
        `data: epoch ${epoch}${complete ? '' : ' (stopped early)'}: skipped ${tally.size} unusable ${noun}${tally.size === 1 ? '' : 's'} (${reasons}); each was ${fate}`,
      );
    }
    return { skipped: tally.size, byReason, files };
  }
}
