// A process-wide setting kept across jobs that may run at once: the caller's value comes back after the
// last, and while several run the value is that of the latest started still running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobSetting } from '../../src/util/job-setting';

function setting(initial: number): { value: number; s: JobSetting<number> } {
  const box = { value: initial, s: null as unknown as JobSetting<number> };
  box.s = new JobSetting(
    () => box.value,
    (v) => {
      if (v < 0) throw new RangeError('negative');
      box.value = v;
    },
  );
  return box;
}

test('jobs that end in the order they started, or the other: the latest started still running sets it, the caller’s value comes back after the last', () => {
  for (const firstEndsFirst of [true, false]) {
    const box = setting(1);
    const leaveA = box.s.enter(2);
    const leaveB = box.s.enter(3);
    assert.equal(box.value, 3);
    if (firstEndsFirst) {
      leaveA();
      assert.equal(box.value, 3, 'b still runs');
      leaveB();
    } else {
      leaveB();
      assert.equal(box.value, 2, 'a still runs');
      leaveA();
    }
    assert.equal(box.value, 1);
  }
});

test('leaving twice does nothing more; a value the setting refuses leaves it as it was; during gives it back when the job throws', async () => {
  const box = setting(1);
  const leaveA = box.s.enter(2);
  const leaveB = box.s.enter(3);
  leaveB();
  leaveB();
  assert.equal(box.value, 2, 'a still runs');
  leaveA();
  assert.throws(() => box.s.enter(-1), RangeError);
  assert.equal(box.value, 1);
  box.value = 4; // the caller changed it since
  await assert.rejects(
    box.s.during(5, async () => {
      assert.equal(box.value, 5);
      throw new Error('late');
    }),
    /late/,
  );
  assert.equal(box.value, 4);
});
