// Checks that the ranks of a run start from the same place: the same command and options, the same
// versions, the same data, the same checkpoint. Ranks that differ would not fail: they would average
// gradients of different recipes (or of different data) silently, or call collectives in a different
// order and wait for each other until the timeout. One all-gather, before any work.
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
  if (!differences.length) return;
  const lines = differences.map(({ key, values }) => `  ${key}: ${values.map((x, r) => `rank ${r} ${x}`).join(', ')}`);
  const err = new Error(
    `the ${group.worldSize} ranks disagree on ${what} (seen on rank ${group.rank}), so they would not train or evaluate one model together:\n` +
      `${lines.join('\n')}\n${hint}`,
  ) as RankDisagreement;
  err.code = 'ERR_DIST_MISMATCH';
  err.differences = differences;
  throw err;
}

/** How to make the ranks' data agree. */
export const SAME_DATA_HINT =
  'Every rank must read the same dataset: the same files (with the same names below --data-path) and the same options; a file missing or added on one machine changes the epoch for all.';

/** How to make the ranks' encoder and data agree (evaluations). */
export const SAME_ENCODER_AND_DATA_HINT = `${SAME_DATA_HINT} The --checkpoint must be the same file on every machine.`;
