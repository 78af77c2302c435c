// bench/onnx.ts's statistics (the script's main runs only when it is started as a script).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { median } from '../../bench/onnx';

test('bench:onnx: the median of an even number of runs is the mean of the two middle ones', () => {
  // Before: the upper middle value (--runs 4 reported the third fastest run as the median).
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([7]), 7);
});
