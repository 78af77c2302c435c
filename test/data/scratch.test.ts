// Scratch buffers: reused per key up to MAX_POOLED_BYTES; a larger request gets its own buffer, so one
// huge image does not keep hundreds of MB per worker for the rest of a run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_POOLED_BYTES, scratchU8 } from '../../src/data/scratch';

test('scratch buffers are reused per key, but one above the pool limit is not kept', () => {
  const a = scratchU8('scratch-test', 1000);
  assert.equal(scratchU8('scratch-test', 900).buffer, a.buffer, 'a smaller request reuses the buffer');
  const big = scratchU8('scratch-test', MAX_POOLED_BYTES + 1);
  assert.notEqual(scratchU8('scratch-test', MAX_POOLED_BYTES + 1).buffer, big.buffer, 'each large request is its own');
  const after = scratchU8('scratch-test', 1000);
  assert.equal(after.buffer, a.buffer, 'the pooled buffer is the small one still');
  const grown = scratchU8('scratch-test', MAX_POOLED_BYTES - 10);
  assert.ok(grown.buffer.byteLength <= MAX_POOLED_BYTES, `growth stops at the limit: ${grown.buffer.byteLength}`);
});
