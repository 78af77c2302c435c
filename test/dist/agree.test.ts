// checkRanksHoldSame in one process, over a stand-in group whose other rank holds the same tensors with
// its fingerprint moved by a chosen relative amount: the last bits (what other vector paths give a model
// initialised from the same seed) pass, a difference in the fifth digit is refused naming the tensor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { checkRanksHoldSame, prepareOnEveryRank, type RankDisagreement } from '../../src/dist/agree';
import { OptionError } from '../../src/util/options';
import type { ProcessGroup } from '../../src/dist/process-group';

type Gathered = { tensors: Record<string, { names: string[]; sums: (number | null)[][] }>; values: Record<string, unknown> };

/** Two ranks: this one, and one whose sums of `part`'s first tensor are this one's times 1 + rel. */
function twoRanks(part: string, rel: number): ProcessGroup {
  return {
    rank: 0,
    worldSize: 2,
    allGatherJson: async (mine: Gathered) => {
      const other = JSON.parse(JSON.stringify(mine)) as Gathered;
      other.tensors[part].sums[0] = other.tensors[part].sums[0].map((v) => (v === null ? null : v * (1 + rel)));
      return [mine, other];
    },
  } as unknown as ProcessGroup;
}

test('checkRanksHoldSame: sums equal to the sixth digit pass; a difference in the fifth is refused, naming the part and tensor', async () => {
  torch.manualSeed(0);
  const w = torch.keep(torch.randn([64, 32]));
  try {
    const parts = () => ({ 'the model weights': [['blocks.0.weight', w]] as [string, torch.Tensor][] });
    await checkRanksHoldSame(twoRanks('the model weights', 0), 'the start', parts(), 'hint');
    await checkRanksHoldSame(twoRanks('the model weights', 1e-8), 'the start', parts(), 'hint');
    await assert.rejects(
      checkRanksHoldSame(twoRanks('the model weights', 1e-5), 'the start', parts(), 'same files everywhere'),
      (e: RankDisagreement) =>
        e.code === 'ERR_DIST_MISMATCH' &&
        e.differences.length === 1 &&
        e.differences[0].key === 'the model weights: blocks.0.weight' &&
        /the 2 ranks disagree on the start \(seen on rank 0\)/.test(e.message) &&
        /same files everywhere$/.test(e.message),
    );
  } finally {
    w.dispose();
  }
});

test("prepareOnEveryRank: a rank's option error reaches the others worded as on its command line (the flag), whichever job opened the data", async () => {
  const reasons: unknown[] = [];
  const group = {
    rank: 1,
    worldSize: 2,
    allGatherJson: async (mine: unknown) => {
      reasons.push(mine);
      return [null, mine];
    },
  } as unknown as ProcessGroup;
  const refusal = new OptionError('evalBatchSize', 'must be a positive integer, got 0');
  await assert.rejects(
    prepareOnEveryRank(group, () => {
      throw refusal;
    }),
    (e) => e === refusal,
  );
  // before, the evaluations passed e.message: "option 'evalBatchSize': ..." reached the other ranks
  assert.deepEqual(reasons, ['option --eval-batch-size: must be a positive integer, got 0']);
});
