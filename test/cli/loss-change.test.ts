import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lossChange } from '../../src/cli/commands';
import { pixelLossRow } from '../../src/cli/demo';

test("the demo's loss row signs the change as it went: a fall is −, a rise +, no change has no percentage", () => {
  assert.equal(pixelLossRow(0.932, 0.25), '| pixel loss | 0.9320 → 0.2500 (−73.2%) |');
  assert.equal(pixelLossRow(1, 1.032), '| pixel loss | 1.0000 → 1.0320 (+3.2%) |');
  assert.equal(pixelLossRow(0.5, 0.5), '| pixel loss | 0.5000 |');
  // a change that rounds to zero has no sign: it neither rose nor fell as far as the reader can see ('(+0.0%)' said it rose)
  assert.equal(lossChange(1, 1.0001, { percent: true }), 'loss 1.0000 → 1.0001 (0.0%)');
  assert.equal(lossChange(1, 0.9999, { percent: true }), 'loss 1.0000 → 0.9999 (0.0%)');
  assert.equal(lossChange(1, 0.9994, { percent: true }), 'loss 1.0000 → 0.9994 (−0.1%)');
  assert.equal(pixelLossRow(NaN, NaN), '| pixel loss | no loss logged |');
  // no percentage where there is none to give: a last loss that is NaN (diverged), a first one of 0
  assert.equal(pixelLossRow(1.1649, NaN), '| pixel loss | 1.1649 → NaN |');
  assert.equal(pixelLossRow(0, 0.5), '| pixel loss | 0.0000 → 0.5000 |');
  assert.equal(lossChange(0.932, 0.25), 'loss 0.9320 → 0.2500', "pretrain's summary is as it was");
  assert.equal(lossChange(NaN, 0.25), 'loss 0.2500', 'no first loss: the last alone, not "NaN → 0.2500"');
});
