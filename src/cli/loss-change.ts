// How pretrain's summary and the demo's table say how the loss changed over a run.

/**
 * The logged loss from the run's first metrics line to its last; one line (a run shorter than --log-every) is one number.
 * With `percent`, the relative change follows, signed as it went: `(−73.0%)` for a fall, `(+3.2%)` for a rise.
 */
export function lossChange(first: number, last: number, o: { percent?: boolean } = {}): string {
  if (Number.isNaN(first) && Number.isNaN(last)) return 'no loss logged';
  if (first === last || Number.isNaN(first)) return `loss ${last.toFixed(4)}`;
  const change = 100 * (last / first - 1);
  const percent = o.percent && Number.isFinite(change) ? ` (${change < 0 ? '−' : '+'}${Math.abs(change).toFixed(1)}%)` : '';
  return `loss ${first.toFixed(4)} → ${last.toFixed(4)}${percent}`;
}
