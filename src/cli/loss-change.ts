// How pretrain's summary and the demo's table say how the loss changed over a run.

/**
 * The logged loss from the run's first metrics line to its last; one line (a run shorter than --log-every) is one number.
 * With `percent`, the relative change follows, signed as it went: `(−73.0%)` for a fall, `(+3.2%)` for a rise,
 * `(0.0%)` for one that rounds to nothing.
 */
export function lossChange(first: number, last: number, o: { percent?: boolean } = {}): string {
  if (Number.isNaN(first) && Number.isNaN(last)) return 'no loss logged';
  if (first === last || Number.isNaN(first)) return `loss ${last.toFixed(4)}`;
  const change = 100 * (last / first - 1);
  const size = Math.abs(change).toFixed(1);
  const sign = size === '0.0' ? '' : change < 0 ? '−' : '+'; // a change that rounds to nothing neither rose nor fell
  const percent = o.percent && Number.isFinite(change) ? ` (${sign}${size}%)` : '';
  return `loss ${first.toFixed(4)} → ${last.toFixed(4)}${percent}`;
}
