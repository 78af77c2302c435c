// Synchronous waits of the file protocols (a lock being written, another process's commit): their limits are
// measured by the monotonic clock, so a wall clock stepped meanwhile (NTP) neither prolongs nor ends them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitUntilSync } from '../../src/util/sleep-sync';

test('waitUntilSync gives up after its time, also when the wall clock is stepped back an hour during the wait (it waited that hour)', () => {
  const realNow = Date.now;
  const t0 = performance.now();
  // 50 ms into the wait the wall clock reads an hour earlier
  Date.now = () => realNow() - (performance.now() - t0 > 50 ? 3_600_000 : 0);
  let tries = 0;
  let ready: boolean;
  try {
    // (ready after 200 tries, about 2 s: a bound on the wait the stepped clock would make an hour long)
    ready = waitUntilSync(100, () => ++tries >= 200);
  } finally {
    Date.now = realNow;
  }
  assert.equal(ready, false, `still waiting after ${tries} tries of a 100 ms wait`);
  assert.ok(tries < 100, `${tries} tries`);
});

test('waitUntilSync waits its whole time, also when the wall clock is stepped forward an hour during the wait (it gave up at once)', () => {
  const realNow = Date.now;
  const t0 = performance.now();
  // 50 ms into the wait the wall clock reads an hour later
  Date.now = () => realNow() + (performance.now() - t0 > 50 ? 3_600_000 : 0);
  try {
    assert.equal(
      waitUntilSync(300, () => false),
      false,
    );
  } finally {
    Date.now = realNow;
  }
  assert.ok(performance.now() - t0 >= 290, `waited ${performance.now() - t0} ms of 300`);
});

test('waitUntilSync answers true as soon as it is ready', () => {
  let tries = 0;
  assert.equal(
    waitUntilSync(5000, () => ++tries === 3),
    true,
  );
  assert.equal(tries, 3);
});
