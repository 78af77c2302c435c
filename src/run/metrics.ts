// Metrics as JSON lines: one object per logged step, appended and flushed as it happens.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isJsonObject } from '../util/json-file';
import { appendNoFollow, writeFileAtomic } from '../util/safe-write';
import { dirname } from 'node:path';

export class MetricsLog {
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
  }

  write(record: Record<string, unknown>): void {
    appendNoFollow(this.path, JSON.stringify({ time: new Date().toISOString(), ...record }) + '\n');
  }

  /**
   * Drops the records of steps after `step` (a resumed run computes them again), and with `lossLinesAt`
   * the loss lines of that step too (a line a stopped run wrote off the --log-every cadence), rewriting
   * the file atomically. Returns how many were dropped.
   */
  truncateAfter(step: number, o: { lossLinesAt?: number } = {}): number {
    if (!existsSync(this.path)) return 0;
    const lines = readFileSync(this.path, 'utf8')
      .split('\n')
      .filter((l) => l.trim());
    const keep = lines.filter((l) => {
      try {
        const r = JSON.parse(l) as { step?: number; loss?: unknown };
        return !(r.step! > step || (o.lossLinesAt !== undefined && r.step === o.lossLinesAt && 'loss' in r));
      } catch {
        return true; // a line this reader cannot parse is kept as it is
      }
    });
    if (keep.length === lines.length) return 0;
    writeFileAtomic(this.path, keep.map((l) => l + '\n').join(''));
    return lines.length - keep.length;
  }
}

/** The records of a metrics file; lines that are not JSON objects (a torn last line, a stray value) are left out. */
export function readMetrics(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .flatMap((l) => {
      try {
        const r: unknown = JSON.parse(l);
        return isJsonObject(r) ? [r] : [];
      } catch {
        return [];
      }
    });
}
