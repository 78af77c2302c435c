// Checks that the ranks of a run start from the same place: the same command and options, the same
// versions, the same data, the same checkpoint. Ranks that differ would not fail: they would average
// gradients of different recipes (or of different data) silently, or call collectives in a different
// order and wait for each other until the timeout. One all-gather, before any work.
import * as torch from '../torch';
import type { Tensor } from '../torch';
import type { ProcessGroup } from './process-group';

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
 */
export async function checkRanksHoldSame(group: ProcessGroup, what: string, parts: Record<string, Iterable<[string, Tensor]>>, hint: string): Promise<void> {
  if (group.worldSize < 2) return;
  const mine: Record<string, { names: string[]; sums: Fingerprint[] }> = {};
  for (const [part, named] of Object.entries(parts)) {
    const list = [...named];
    mine[part] = { names: list.map(([n]) => n), sums: fingerprints(list.map(([, t]) => t)) };
  }
  const all = await group.allGatherJson(mine);
  const differences: RankDisagreement['differences'] = [];
  for (const part of Object.keys(mine)) {
    const ranks = all.map((r) => r[part] ?? { names: [], sums: [] });
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
  'Every rank must start from the same weights: the same --checkpoint and --teacher file on every machine, and, when resuming, the same checkpoints in --out-dir (one shared folder, or the same copy of it on each machine).';

/** How to make the ranks' data agree. */
export const SAME_DATA_HINT =
  'Every rank must read the same dataset: the same files (with the same names below --data-path) and the same options; a file missing or added on one machine changes the epoch for all.';

/** How to make the ranks' encoder and data agree (evaluations). */
export const SAME_ENCODER_AND_DATA_HINT = `${SAME_DATA_HINT} The --checkpoint must be the same file on every machine.`;
