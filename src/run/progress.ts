// A progress line for long loops: position, metrics, rate and ETA. Redraws in place on a terminal and
// prints a plain line every few seconds otherwise (logs, CI, TERM=dumb).
import { markProgressLine, progressLineShown } from '../util/console-line';

export interface ProgressFields {
  [name: string]: string | number | undefined;
}

function duration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return (h ? `${h}:${String(m).padStart(2, '0')}` : String(m)) + `:${String(sec).padStart(2, '0')}`;
}

export function formatNumber(v: number): string {
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e6) return String(v); // counts: 'skipped 1', not 'skipped 1.000'
  return a >= 1000 || a < 1e-3 ? v.toExponential(2) : v.toPrecision(4);
}

function redraws(out: NodeJS.WriteStream): boolean {
  return !!out.isTTY && process.env.TERM !== 'dumb';
}

/**
 * `count` items since `startMs` per second, for a rate field: undefined (the field left out) in the first
 * fifth of a second, when one batch over a near-zero time gave rates like 8000000000.0 img/s. `startMs` is
 * a reading of the monotonic clock, performance.now(): Date.now() steps with the wall clock (NTP), and an hour's
 * step made the rate 0 or negative.
 */
export function perSecond(count: number, startMs: number): string | undefined {
  const seconds = (performance.now() - startMs) / 1000;
  return seconds < 0.2 ? undefined : (count / seconds).toFixed(1);
}

export class Progress {
  private readonly tty: boolean;
  private lastPrint = -Infinity; // (the first update prints: performance.now() counts from the process start)
  /** Times are read from the monotonic clock (performance.now()): a wall clock stepped an hour read as an hour of work. */
  private readonly start = performance.now();
  /**
   * What the ETA's rate is measured from: the first update (after the start or a resume), so that the
   * time before the first unit ends (start-up, warm-up, a first slow step) does not weigh on every estimate.
   */
  private from = { done: 0, time: this.start };
  private measuring = false;
  constructor(
    readonly label: string,
    readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
    readonly plainEverySec = 5,
  ) {
    this.tty = redraws(out);
  }

  /** The loop continues from `done` (a resumed run): the ETA counts only what this process does. */
  resumeFrom(done: number): void {
    this.from = { done, time: performance.now() };
    this.measuring = false;
  }

  /**
   * Shows position `done`. On a terminal every call redraws; otherwise a line is printed at most every
   * `plainEverySec` seconds, however often it is called (a line per --log-every step flooded batch logs),
   * and at the end.
   */
  update(done: number, fields: ProgressFields = {}): void {
    const now = performance.now();
    if (!this.measuring && done > this.from.done) [this.from, this.measuring] = [{ done, time: now }, true];
    if (!this.tty && now - this.lastPrint < this.plainEverySec * 1000 && done < this.total) return;
    this.lastPrint = now;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 0;
    const elapsed = (now - this.start) / 1000;
    const rate = (done - this.from.done) / ((now - this.from.time) / 1000);
    const eta = done >= this.total ? 0 : rate > 0 ? (this.total - done) / rate : NaN;
    const f = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k} ${typeof v === 'number' ? formatNumber(v) : v}`);
    const line = (shown: string[], narrow = false) =>
      `${this.label} [${'#'.repeat(Math.round(frac * (narrow ? 10 : 20))).padEnd(narrow ? 10 : 20, '.')}] ${done}/${this.total} | ` +
      `${shown.map((x) => `${x} | `).join('')}${narrow ? '' : `elapsed ${duration(elapsed)} `}ETA ${duration(eta)}`;
    if (!this.tty) return void this.out.write(`${line(f)}\n`);
    // a line wider than the terminal wraps, and \r then redraws only its last row: the rows above stay,
    // one per redraw. So the bar is narrowed and the elapsed time left out, then the fields that do not
    // fit (the caller puts the ones that matter most first), then the line is cut.
    const room = Math.max((this.out.columns || 80) - 1, 10);
    const narrow = line(f).length > room;
    let shown = f;
    while (shown.length && line(shown, narrow).length > room) shown = shown.slice(0, -1);
    this.out.write(`\r\x1b[K${[...line(shown, narrow)].slice(0, room).join('')}`);
    markProgressLine(this.out, true);
  }

  done(message?: string): void {
    if (progressLineShown(this.out)) this.out.write('\n');
    markProgressLine(this.out, false);
    if (message) this.out.write(`${message}\n`);
  }
}
