// checkRanksHoldSame in one process, over a stand-in group whose other rank holds the same tensors with
// its fingerprint moved by a chosen relative amount: the last bits (what other vector paths give a model
// initialised from the same seed) pass, a difference in the fifth digit is refused naming the tensor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { checkRanksAgree, checkRanksHoldSame, prepareOnEveryRank, StopAgreement, throwIfAbortedOnAnyRank, type RankDisagreement } from '../../src/dist/agree';
import { ownFailure } from '../../src/dist/late-failure';
import { AbortedOnAnotherRank } from '../../src/util/errors';
import { OptionError } from '../../src/util/options';
import type { ProcessGroup } from '../../src/dist/process-group';

type Gathered = { tensors: Record<string, { names: string[]; sums: (number | null)[][] }>; values: Record<string, unknown> };

/** Two ranks whose all-gather returns this rank's value and `other(mine)`, through JSON as the real one does. */
function withOther<T>(other: (mine: T) => unknown, rank = 0): ProcessGroup {
  return {
    rank,
    worldSize: 2,
    allGatherJson: async (mine: T) => {
      const ranks = rank === 0 ? [mine, other(mine)] : [other(mine), mine];
      return JSON.parse(JSON.stringify(ranks)) as unknown[];
    },
  } as unknown as ProcessGroup;
}

/** Two ranks: this one, and one whose sums of `part`'s first tensor are this one's times 1 + rel. */
function twoRanks(part: string, rel: number): ProcessGroup {
  return withOther((mine: Gathered) => {
    const other = JSON.parse(JSON.stringify(mine)) as Gathered;
    other.tensors[part].sums[0] = other.tensors[part].sums[0].map((v) => (v === null ? null : v * (1 + rel)));
    return other;
  });
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

/** What checkRanksHoldSame sends for `parts` (caught from a group that agrees with it). */
async function payloadOf(parts: Record<string, [string, torch.Tensor][]>): Promise<Gathered> {
  let sent: Gathered | null = null;
  const catcher = { rank: 1, worldSize: 2, allGatherJson: async (mine: Gathered) => ((sent = mine), JSON.parse(JSON.stringify([mine, mine])) as Gathered[]) } as unknown as ProcessGroup;
  await checkRanksHoldSame(catcher, 'x', parts, 'hint');
  return JSON.parse(JSON.stringify(sent)) as Gathered;
}

test('checkRanksAgree: two ranks with another value or a key set on one rank only are refused, naming each; equal values pass', async () => {
  const mine = { blr: 0.001, epochs: 10 };
  await checkRanksAgree(withOther(() => ({ epochs: 10, blr: 0.001 })), 'options', mine, 'hint');
  await assert.rejects(
    checkRanksAgree(withOther(() => ({ blr: 0.002, epochs: 10, seed: 1 })), 'options', mine, 'use the same command'),
    (e: RankDisagreement) => {
      assert.equal(e.code, 'ERR_DIST_MISMATCH');
      assert.deepEqual(e.differences, [
        { key: 'blr', values: ['0.001', '0.002'] },
        { key: 'seed', values: ['(unset)', '1'] },
      ]);
      assert.match(e.message, /the 2 ranks disagree on options \(seen on rank 0\)/);
      assert.match(e.message, /blr: rank 0 0\.001, rank 1 0\.002/);
      return /use the same command$/.test(e.message);
    },
  );
});

test('checkRanksHoldSame: other names, values and counts are refused; all-zero tensors pass; at most 3 differing tensors are named', async () => {
  const t = (values: number[]) => torch.keep(torch.tensor(Float64Array.from(values)));
  const held: torch.Tensor[] = [];
  const keep = (x: torch.Tensor) => (held.push(x), x);
  try {
    // a bias initialised to zeros: every sum is 0 on both ranks
    const zeros = { bias: [['b', keep(t([0, 0, 0]))]] as [string, torch.Tensor][] };
    await checkRanksHoldSame(withOther((mine: Gathered) => mine), 'the start', zeros, 'hint');

    const w = keep(t([1, 2, 3]));
    const named = (name: string) => ({ model: [[name, w]] as [string, torch.Tensor][] });
    const other = await payloadOf(named('blocks.1.weight'));
    await assert.rejects(
      checkRanksHoldSame(withOther(() => other), 'the start', named('blocks.0.weight'), 'hint'),
      (e: RankDisagreement) => e.differences.length === 1 && e.differences[0].key === 'model: the tensors' && /first other name blocks\.1\.weight/.test(e.differences[0].values[1]),
    );

    const position = (step: number) => (mine: Gathered) => ({ ...mine, values: { step } });
    await checkRanksHoldSame(withOther(position(5)), 'the start', named('w'), 'hint', { step: 5 });
    await assert.rejects(
      checkRanksHoldSame(withOther(position(6)), 'the start', named('w'), 'hint', { step: 5 }),
      (e: RankDisagreement) => e.differences.length === 1 && e.differences[0].key === 'step' && e.differences[0].values.join() === '5,6',
    );

    // the same sum, other elements: the sum of |x| and of squares tell them apart
    const sameSum = await payloadOf({ model: [['w', keep(t([2, -2]))]] });
    await assert.rejects(checkRanksHoldSame(withOther(() => sameSum), 'the start', { model: [['w', keep(t([1, -1]))]] }, 'hint'), { code: 'ERR_DIST_MISMATCH' });
    // small elements: the sum of squares differs by 1e-4 of itself (other sums equal), far below the sum of |x|
    const small = await payloadOf({ model: [['w', keep(t([0.001 + 2.5e-7, 0.003 - 2.5e-7]))]] });
    await assert.rejects(checkRanksHoldSame(withOther(() => small), 'the start', { model: [['w', keep(t([0.001, 0.003]))]] }, 'hint'), { code: 'ERR_DIST_MISMATCH' });
    // NaN on one rank only
    const nan = await payloadOf({ model: [['w', keep(t([NaN, 1]))]] });
    await assert.rejects(checkRanksHoldSame(withOther(() => nan), 'the start', { model: [['w', keep(t([0, 1]))]] }, 'hint'), { code: 'ERR_DIST_MISMATCH' });

    const four = (scale: number) => ({ model: [0, 1, 2, 3].map((i) => [`w${i}`, keep(t([scale * (i + 1)]))] as [string, torch.Tensor]) });
    const doubled = await payloadOf(four(2));
    await assert.rejects(checkRanksHoldSame(withOther(() => doubled), 'the start', four(1), 'hint'), (e: RankDisagreement) => {
      assert.deepEqual(e.differences.map((d) => d.key), ['model: w0', 'model: w1', 'model: w2', 'model: 1 more tensors differ']);
      return true;
    });
  } finally {
    for (const x of held) x.dispose();
  }
});

test('prepareOnEveryRank: another rank that could not start (rank 0 too) is named with its reason after this rank released its work', async () => {
  for (const [rank, failed] of [[0, 1], [1, 0]]) {
    const released: string[] = [];
    const group = withOther(() => 'no test/ split', rank);
    await assert.rejects(
      prepareOnEveryRank(group, () => 'opened', (v) => released.push(v)),
      (e: Error & { code?: string; rank?: number; worldSize?: number }) =>
        e.message === `rank ${failed} of 2 could not start: no test/ split` && e.code === 'ERR_DIST_START' && e.rank === rank && e.worldSize === 2,
    );
    assert.deepEqual(released, ['opened']);
  }
  assert.equal(await prepareOnEveryRank(withOther(() => null), () => 'opened'), 'opened');
});

test("prepareOnEveryRank: this rank's own error is thrown even when the others are gone, and is not posted again when the rank leaves", async () => {
  const own = new Error('no images below /data');
  const gone = { rank: 1, worldSize: 2, allGatherJson: async () => Promise.reject(new Error('Connection closed by peer')) } as unknown as ProcessGroup;
  await assert.rejects(prepareOnEveryRank(gone, () => { throw own; }), (e) => e === own);
  const told = new Error('no images below /data');
  await assert.rejects(prepareOnEveryRank(withOther(() => null, 1), () => { throw told; }), (e) => e === told);
  assert.equal(ownFailure(told, (e) => String(e)), null, 'the others got it from the all-gather');
  assert.notEqual(ownFailure(own, (e) => String(e)), null);
});

/**
 * One rank's StopAgreement on a clock that moves 5 ms per call, with another rank that proposes what this
 * one does and asks to stop at `otherLevel` from call `from` on: the calls where the ranks agree.
 */
async function agreements(o: { calls: number; otherLevel?: number; from?: number; force?: number[] }): Promise<{ at: number[]; levels: number[] }> {
  const realNow = Date.now;
  let now = 1_000_000;
  Date.now = () => now;
  try {
    const at: number[] = [];
    const levels: number[] = [];
    let call = 0;
    const group = {
      rank: 0,
      worldSize: 2,
      device: 'cpu',
      allReduce: async (t: torch.Tensor, op: string) => {
        at.push(call);
        const [level, negProposal] = Array.from(t.toFloat64Array());
        const other = [call >= (o.from ?? Infinity) ? (o.otherLevel ?? 0) : 0, negProposal];
        const combined = [level, negProposal].map((v, i) => (op === 'max' ? Math.max(v, other[i]) : op === 'sum' ? v + other[i] : NaN));
        t.copy_(torch.tensor(Float64Array.from(combined)));
      },
    } as unknown as ProcessGroup;
    const stop = new StopAgreement(group, 1000);
    for (call = 1; call <= o.calls; call++) {
      const level = await stop.agreeOn(0, o.force?.includes(call));
      if (level) levels.push(level);
      now += 5;
    }
    return { at, levels };
  } finally {
    Date.now = realNow;
  }
}

test('StopAgreement: agreements come at calls 1, 3, 7, 15, ... (at most twice the calls since the last), then every second at the pace; force agrees at once', async () => {
  assert.deepEqual((await agreements({ calls: 700 })).at, [1, 3, 7, 15, 31, 63, 127, 255, 455, 655]);
  assert.deepEqual((await agreements({ calls: 20, force: [5] })).at, [1, 3, 5, 9, 17]);
});

test("StopAgreement: another rank's request is every rank's at the next agreement, with its level", async () => {
  const { at, levels } = await agreements({ calls: 40, otherLevel: 3, from: 10 });
  assert.deepEqual(at.slice(0, 5), [1, 3, 7, 15, 31]);
  assert.deepEqual(levels.slice(0, 2), [3, 3], 'from call 15 on');
});

test('throwIfAbortedOnAnyRank and StopAgreement.throwIfAborted: another rank stopped by SIGTERM aborts this one naming it; an aborted signal throws its own reason', async () => {
  const otherStopped = { rank: 1, worldSize: 2, device: 'cpu', maxOf: async () => 3 } as unknown as ProcessGroup;
  await assert.rejects(throwIfAbortedOnAnyRank(undefined, otherStopped), (e: AbortedOnAnotherRank) =>
    e instanceof AbortedOnAnotherRank && e.signal === 'SIGTERM' && /aborted by SIGTERM on another rank \(this is rank 1 of 2\)/.test(e.message));
  const nobody = { rank: 1, worldSize: 2, maxOf: async (v: number) => v } as unknown as ProcessGroup;
  await throwIfAbortedOnAnyRank(new AbortController().signal, nobody);
  const mine = new AbortController();
  mine.abort(new Error('stopped here'));
  await assert.rejects(throwIfAbortedOnAnyRank(mine.signal, nobody), (e: Error) => !(e instanceof AbortedOnAnotherRank) && e.message === 'stopped here');

  const agreeing = {
    rank: 1,
    worldSize: 2,
    device: 'cpu',
    allReduce: async (t: torch.Tensor) => void t.copy_(t.maximum(torch.tensor(Float64Array.of(2, -1)))),
  } as unknown as ProcessGroup;
  await assert.rejects(new StopAgreement(agreeing).throwIfAborted(undefined), (e: AbortedOnAnotherRank) => e instanceof AbortedOnAnotherRank && e.signal === 'SIGINT');
  await assert.rejects(new StopAgreement(agreeing).throwIfAborted(mine.signal), (e: Error) => !(e instanceof AbortedOnAnotherRank) && e.message === 'stopped here');
});
