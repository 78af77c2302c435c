// Checks that the ranks of a run start from the same place: the same command and options, the same
// versions, the same data, the same checkpoint. Ranks that differ would not fail: they would average
// gradients of different recipes (or of different data) silently, or call collectives in a different
// order and wait for each other until the timeout. One all-gather, before any work.
import { yieldToEventLoop } from '../util/event-loop';
import * as torch from '../torch';
import type { Tensor } from '../torch';
import type { ProcessGroup } from './process-group';
import { AbortError, AbortedOnAnotherRank, throwIfAborted } from '../util/errors';
import { markToldOtherRanks } from './late-failure';
import { errorText } from '../util/error-text';

export interface RankDisagreement extends Error {
  code: 'ERR_DIST_MISMATCH';
  /** The keys whose values differ, each with every rank's value (JSON). */
  differences: { key: string; values: string[] }[];
}

/**
 * Every rank passes its own `value` (a flat object of JSON values); throws the same Error on every
 * rank when some key differs between ranks, naming the key and each rank's value. `what` says what
 * the values are ('options', 'the training data'); `hint` how to make them agree.
 */
export async function checkRanksAgree(group: ProcessGroup, what: string, value: Record<string, unknown>, hint: string): Promise<void> {
  if (group.worldSize < 2) return;
  const all = await group.allGatherJson(value);
  const keys = [...new Set(all.flatMap((v) => Object.keys(v)))];
  const differences: RankDisagreement['differences'] = [];
  for (const key of keys) {
    const values = all.map((v) => (key in v ? JSON.stringify(v[key]) : '(unset)'));
    if (values.some((x) => x !== values[0])) differences.push({ key, values });
  }
  if (differences.length) throw disagreement(group, what, differences, hint);
}

function disagreement(group: ProcessGroup, what: string, differences: RankDisagreement['differences'], hint: string): RankDisagreement {
  const lines = differences.map(({ key, values }) => `  ${key}: ${values.map((x, r) => `rank ${r} ${x}`).join(', ')}`);
  const err = new Error(
    `the ${group.worldSize} ranks disagree on ${what} (seen on rank ${group.rank}), so they would not train or evaluate one model together:\n` +
      `${lines.join('\n')}\n${hint}`,
  ) as RankDisagreement;
  err.code = 'ERR_DIST_MISMATCH';
  err.differences = differences;
  return err;
}

/**
 * Runs `prepare`, this rank's part of the job before its first collective (opening its data), and tells
 * every rank whether each one could: a rank that cannot (a folder without a test/ split, no images on
 * its machine) throws its own error, and the others throw ERR_DIST_START naming it and its reason
 * (`rank 1 of 2 could not start: ...`) rather than Gloo's "Connection closed by peer" when it exits,
 * which on another machine or under torchrun said nothing of why. What `prepare` returned is released
 * (`release`) before the others throw. One all-gather; the reason is worded as the command line words it
 * (an option's error names its flag): the ranks of a data-parallel run are command-line workers.
 */
export async function prepareOnEveryRank<T>(
  group: ProcessGroup | null,
  prepare: () => T | Promise<T>,
  release: (prepared: T) => unknown = () => undefined,
): Promise<T> {
  if (!group || group.worldSize < 2) return prepare();
  let prepared: { value: T } | null = null;
  let failure: unknown = null;
  try {
    prepared = { value: await prepare() };
  } catch (e) {
    failure = e;
  }
  let reasons: (string | null)[];
  try {
    reasons = await group.allGatherJson(prepared ? null : errorText(failure));
  } catch (e) {
    if (!prepared) throw failure; // the others are gone already: this rank's own error is the one to report
    await release(prepared.value);
    throw e;
  }
  if (!prepared) {
    markToldOtherRanks(failure); // (the all-gather gave it to them: it is not posted again when the rank leaves)
    throw failure;
  }
  const other = reasons.findIndex((r) => r !== null);
  if (other < 0) return prepared.value;
  await release(prepared.value);
  throw rankCouldNotStart(group, other, reasons[other]!);
}

/** The error of a rank whose rank `failed` could not start the job and told it why: ERR_DIST_START, `rank R of N could not start: <reason>`. */
export function rankCouldNotStart(group: ProcessGroup, failed: number, reason: string): Error {
  const err = new Error(`rank ${failed} of ${group.worldSize} could not start: ${reason}`) as Error & { code: string; rank: number; worldSize: number };
  err.code = 'ERR_DIST_START';
  err.rank = group.rank;
  err.worldSize = group.worldSize;
  return err;
}

/** Per tensor: the sum, the sum of absolute values and the sum of squares of its elements, in float64. */
type Fingerprint = [number | null, number | null, number | null];

function fingerprints(tensors: Tensor[]): Fingerprint[] {
  if (!tensors.length) return [];
  const flat = torch.noGrad(() =>
    torch.scope(() => {
      const rows = tensors.map((t) => {
        const x = t.detach().to({ dtype: 'float64' });
        return torch.stack([x.sum(), x.abs().sum(), x.square().sum()]).to({ device: 'cpu' });
      });
      return torch.stack(rows).toFloat64Array();
    }),
  );
  return tensors.map((_, i) => [0, 1, 2].map((j) => (Number.isFinite(flat[3 * i + j]) ? flat[3 * i + j] : null)) as Fingerprint);
}

/**
 * Relative tolerance of the sums. A checkpoint read from the same file gives the same bits on every
 * rank; a model initialised from the same seed on machines whose CPUs take other vector paths (AVX2,
 * AVX-512) may differ in the last bits of some elements, which must not stop the run. Other weights
 * differ in the third digit, not the sixth.
 */
const SUM_TOLERANCE = 1e-6;

function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  const scale = Math.max(Math.abs(a[1] ?? 0), Math.abs(b[1] ?? 0)); // the sum of |x| bounds the sum's rounding
  return a.every((v, j) => {
    const w = b[j];
    if (v === null || w === null) return v === w;
    return Math.abs(v - w) <= SUM_TOLERANCE * (j === 2 ? Math.max(Math.abs(v), Math.abs(w)) : scale);
  });
}

const shortNumber = (v: number | null) => (v === null ? 'NaN/Inf' : Number(v.toPrecision(7)).toString());

/**
 * Every rank passes the tensors it starts from, by what they are ('the model weights', 'the optimiser
 * state', ...: name → tensor); throws the same Error on every rank when some differ between ranks (other
 * names, or other contents), naming each differing part and its first differing tensors with each rank's
 * sums. Compares a fingerprint of each tensor (float64 sum, sum of |x|, sum of squares: three reductions
 * where the tensor lies), so a checkpoint of gigabytes costs one pass over it and an all-gather of a few
 * numbers per tensor. Called before rank 0's weights are broadcast: after it they would agree anyway, and
 * what is not broadcast (optimiser moments, an EMA copy, a frozen teacher) would stay different unseen.
 * `values` (name → a JSON value, compared exactly) go in the same all-gather: state outside tensors.
 */
export async function checkRanksHoldSame(
  group: ProcessGroup,
  what: string,
  parts: Record<string, Iterable<[string, Tensor]>>,
  hint: string,
  values: Record<string, unknown> = {},
): Promise<void> {
  if (group.worldSize < 2) return;
  const mine: Record<string, { names: string[]; sums: Fingerprint[] }> = {};
  for (const [part, named] of Object.entries(parts)) {
    const list = [...named];
    mine[part] = { names: list.map(([n]) => n), sums: fingerprints(list.map(([, t]) => t)) };
  }
  // `values` (JSON: a position, a loss scaler's state) travel in the same all-gather and must be equal
  const all = await group.allGatherJson({ tensors: mine, values });
  const differences: RankDisagreement['differences'] = [];
  for (const key of Object.keys(values)) {
    const each = all.map((r) => (key in r.values ? JSON.stringify(r.values[key]) : '(unset)'));
    if (each.some((x) => x !== each[0])) differences.push({ key, values: each });
  }
  for (const part of Object.keys(mine)) {
    const ranks = all.map((r) => r.tensors[part] ?? { names: [], sums: [] });
    const names = ranks.map((r) => r.names.join('\n'));
    if (names.some((n) => n !== names[0])) {
      const counts = ranks.map((r) => r.names.length);
      const firstOther = ranks.map((r) => r.names.find((n, i) => n !== ranks[0].names[i]) ?? '(none)');
      differences.push({ key: `${part}: the tensors`, values: ranks.map((_, r) => `${counts[r]} tensors${r ? `, first other name ${firstOther[r]}` : ''}`) });
      continue;
    }
    const differing = ranks[0].names.map((n, i) => [n, i] as const).filter(([, i]) => ranks.some((r) => !sameFingerprint(r.sums[i], ranks[0].sums[i])));
    for (const [name, i] of differing.slice(0, 3)) {
      differences.push({ key: `${part}: ${name}`, values: ranks.map((r) => `sum ${shortNumber(r.sums[i][0])}, sum of squares ${shortNumber(r.sums[i][2])}`) });
    }
    if (differing.length > 3) differences.push({ key: `${part}: ${differing.length - 3} more tensors differ`, values: [] });
  }
  if (differences.length) throw disagreement(group, what, differences, hint);
}

/** How to make the ranks' starting weights agree (training). */
export const SAME_START_HINT =
  'Every rank must start from the same weights and training state: the same --checkpoint and --teacher file on every machine, and, when resuming, the same checkpoints in --out-dir (one shared folder, or the same copy of it on each machine).';

/** How to make the ranks' data agree. */
export const SAME_DATA_HINT =
  'Every rank must read the same dataset: the same files (with the same names below --data-path) and the same options; a file missing or added on one machine changes the epoch for all.';

/** How to make the ranks' encoder and data agree (evaluations). */
export const SAME_ENCODER_AND_DATA_HINT = `${SAME_DATA_HINT} The --checkpoint must be the same file on every machine.`;

/** About how often (ms) the ranks of a StopAgreement agree on a request between forced agreements. */
export const STOP_AGREE_MS = 1000;

/**
 * A stop request (a signal, an AbortSignal) that one rank may see before the others, agreed on by all
 * ranks at the same points of a loop without a collective at every one: every rank calls agree() at the
 * same points (each step, batch or block), and at the agreed ones the ranks all-reduce whether any asks
 * to stop, together with the points until the next agreement: the fewest any rank proposes (its points
 * in STOP_AGREE_MS at its pace since the last agreement, at least 1). So every rank counts to the same
 * next point, a request on any rank stops all of them at the same point within about STOP_AGREE_MS
 * plus one point, and the collective (a device sync under NCCL) comes about once a second, not at every
 * step. The first call agrees at once. Without a group of several ranks agree() answers the flag itself.
 */
export class StopAgreement {
  private calls = 0;
  private next = 1;
  private last = { calls: 0, time: Date.now() };

  constructor(
    private readonly group: ProcessGroup | null | undefined,
    private readonly everyMs = STOP_AGREE_MS,
  ) {}

  /** True on every rank, at the same point, once any rank passed true; `force` agrees at this point (every rank must pass the same). */
  async agree(flag: boolean, force = false): Promise<boolean> {
    return (await this.agreeOn(flag ? 1 : 0, force)) > 0;
  }

  /**
   * As agree, with a level for the request (0: none): every rank gets the highest level passed, once any
   * rank passed one above 0. Levels say which signal asked (stopLevel), so that every rank exits with the
   * code of the strongest: a scheduler's SIGTERM to one worker is 143 on all of them, not 130 on the others.
   */
  async agreeOn(level: number, force = false): Promise<number> {
    const group = this.group;
    if (!group || group.worldSize < 2) return level;
    this.calls++;
    if (!force && this.calls < this.next) return 0;
    const since = this.calls - this.last.calls;
    const pace = since / Math.max(Date.now() - this.last.time, 1);
    // at most twice as many calls as since the last agreement: the first call comes right after the
    // constructor (a loop's check before its first batch), so its pace (1 call in ≤ 1 ms) would put the
    // next agreement 1000 calls away; an evaluation then ran to its end before it agreed to stop
    const proposal = Math.min(Math.max(1, Math.floor(this.everyMs * pace)), 2 * since);
    const t = torch.tensor(Float64Array.of(level, -proposal), { device: group.device });
    try {
      await group.allReduce(t, 'max'); // one collective: the highest request, and the smallest proposal
      const [highest, negPoints] = t.toFloat64Array();
      this.next = this.calls - negPoints;
      this.last = { calls: this.calls, time: Date.now() };
      return highest;
    } finally {
      t.dispose();
    }
  }

  /**
   * throwIfAborted for a loop several ranks run: every rank throws an AbortError at the same point once any
   * rank's signal was aborted. Gives the event loop a turn first, at every call (every batch), with a signal
   * or without: a loop whose awaits all resolve at once (a loader on the main thread, data in memory) would
   * otherwise never let Node run the SIGINT handler that aborts the signal (`semaim embed --num-workers 0`
   * ran to its end), nor a library caller's timers and requests (README: the jobs let the event loop turn
   * after every batch of images; a turn every 50 ms, and only with a signal, left them none in a whole pass).
   */
  async throwIfAborted(signal: AbortSignal | undefined | null): Promise<void> {
    await yieldToEventLoop();
    const level = await this.agreeOn(signal?.aborted ? stopLevel(signalOf(signal.reason)) : 0);
    if (level === 0) return;
    throwIfAborted(signal);
    throw abortedElsewhere(this.group!, level);
  }
}

/** A stop request's level in StopAgreement.agreeOn: SIGTERM above SIGINT above a request without a signal. */
export function stopLevel(signal: string | undefined): number {
  return signal === 'SIGTERM' ? 3 : signal === 'SIGINT' ? 2 : 1;
}

/** The signal of a level that stopLevel gave (undefined: none named). */
export function signalOfLevel(level: number): 'SIGINT' | 'SIGTERM' | undefined {
  return level >= 3 ? 'SIGTERM' : level === 2 ? 'SIGINT' : undefined;
}

/** The signal an abort reason names (a StoppedBySignal's), if any. */
function signalOf(reason: unknown): string | undefined {
  const s = (reason as { signal?: unknown } | null | undefined)?.signal;
  return typeof s === 'string' ? s : undefined;
}

function abortedElsewhere(group: ProcessGroup, level: number): AbortError {
  const signal = signalOfLevel(level);
  const by = signal ? ` by ${signal}` : '';
  const e = new AbortedOnAnotherRank(new Error(`the job was aborted${by} on another rank (this is rank ${group.rank} of ${group.worldSize})`));
  e.signal = signal;
  return e;
}

/**
 * throwIfAborted for a job that several ranks run together: an AbortSignal is each process's own, and a
 * rank that stopped alone would leave the others waiting in their next collective until the timeout.
 * With a group of several ranks, one collective (every rank must call it at the same points, with a
 * signal or without) tells every rank whether any rank's signal was aborted, and then every rank throws
 * an AbortError: the aborted ones with their signal's reason, the others naming their rank. For the
 * points of a loop, StopAgreement agrees about once a second instead.
 */
export async function throwIfAbortedOnAnyRank(signal: AbortSignal | undefined | null, group: ProcessGroup | null | undefined): Promise<void> {
  if (!group || group.worldSize < 2) return throwIfAborted(signal);
  const level = await group.maxOf(signal?.aborted ? stopLevel(signalOf(signal.reason)) : 0);
  if (level === 0) return;
  throwIfAborted(signal);
  throw abortedElsewhere(group, level);
}
