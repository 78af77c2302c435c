// Top-1 / top-5 tallies against hits counted by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { AccuracyTally } from '../../src/eval/accuracy';

test('tied scores go to the lower class index (a stable sort): with 100 tied classes the top-1 is class 0 and the top-5 classes 0..4', () => {
  const t = new AccuracyTally(100);
  // rows 0-3: all 100 scores tied; row 4: class 50 above 99 tied others, so its top-5 is 50, 0, 1, 2, 3
  const labels = Int32Array.from([0, 4, 5, 99, 3]);
  const rowOf50 = new Float32Array(100);
  rowOf50[50] = 1;
  const scores = () => torch.cat([torch.zeros([4, 100]), torch.tensor(rowOf50, { shape: [1, 100] })], 0);
  const hits = torch.scope(() => t.hits(scores(), labels));
  assert.deepEqual([...hits.top1], [1, 0, 0, 0, 0]);
  assert.deepEqual([...hits.top5], [1, 1, 0, 0, 1]);
  torch.scope(() => t.add(scores(), labels));
  const r = t.result();
  assert.equal(r.n, 5);
  assert.equal(r.top1, 1 / 5);
  assert.equal(r.top5, 3 / 5);
});
