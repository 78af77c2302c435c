// The ranks' stop agreement (src/dist/agree.ts's StopAgreement) comes about once a second at the loop's
// pace, from the first call on: a loop that checks once before its first batch (as feature extraction
// does) measured a pace of 1 call per millisecond there and put its next agreement 1000 calls away, so
// an evaluation of fewer batches never agreed to stop (measured: `knn` on 2 ranks ran to its end, 4 s
// after the signal). One rank's view: the all-reduce of a group of 2 whose other rank proposes the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StopAgreement, signalOfLevel, stopLevel } from '../../src/dist/agree';
import type { ProcessGroup } from '../../src/dist';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a loop at 5 ms per call agrees within its first second, and then about once a second (not at every call)', async () => {
  let agreements = 0;
  const group = { worldSize: 2, rank: 0, device: 'cpu', allReduce: async () => void agreements++ } as unknown as ProcessGroup;
  const stop = new StopAgreement(group, 1000);
  await stop.agree(false); // the check before the first batch: agrees at once
  assert.equal(agreements, 1);
  const t0 = Date.now();
  let calls = 0;
  let stoppedAt = -1;
  while (Date.now() - t0 < 2500) {
    await sleep(5);
    calls++;
    // the request arrives at 0.5 s; it must be agreed on within about a second of it
    if (await stop.agree(Date.now() - t0 >= 500)) {
      stoppedAt = Date.now() - t0;
      break;
    }
  }
  assert.ok(stoppedAt >= 500 && stoppedAt < 1700, `stopped ${stoppedAt} ms into the loop (the request came at 500 ms)`);
  assert.ok(agreements < calls / 4, `${agreements} agreements in ${calls} calls: not one per call`);
});

test('stop levels: SIGTERM above SIGINT above a request without a signal, and each level gives its signal back (every rank exits with the strongest one\'s code)', () => {
  assert.deepEqual([stopLevel('SIGTERM'), stopLevel('SIGINT'), stopLevel(undefined), stopLevel('SIGHUP')], [3, 2, 1, 1]);
  assert.deepEqual([3, 2, 1].map(signalOfLevel), ['SIGTERM', 'SIGINT', undefined]);
  assert.equal(signalOfLevel(Math.max(stopLevel('SIGINT'), stopLevel('SIGTERM'))), 'SIGTERM');
});
