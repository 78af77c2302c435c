// The free-space check on file systems whose statfs says odd things: an error, all zeros (FUSE file
// systems that do not implement it), missing or huge values. Only a real answer refuses a write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { NO_SPACE_CHECK_ENV, checkFreeSpace, formatBytes, freeBytes } from '../../src/util/disk-space';

function withStatfs(result: () => Partial<fs.StatsFs>, run: () => void): void {
  const real = fs.statfsSync;
  // the real statfs first: a path that does not exist fails (ENOENT) as it would
  fs.statfsSync = ((p: fs.PathLike) => ({ ...real(p), ...result() })) as unknown as typeof fs.statfsSync;
  try {
    run();
  } finally {
    fs.statfsSync = real;
  }
}

test('statfs of no blocks, of values that are not numbers, or that fails: the free space is unknown and nothing is refused', () => {
  for (const odd of [
    () => ({ blocks: 0, bfree: 0, bavail: 0, bsize: 0 }),
    () => ({ blocks: 0, bfree: 0, bavail: 0, bsize: 4096 }),
    () => ({ bsize: undefined as unknown as number }),
    () => ({ bavail: Number.NaN }),
    () => {
      throw Object.assign(new Error('ENOSYS: function not implemented, statfs'), { code: 'ENOSYS' });
    },
  ]) {
    withStatfs(odd, () => {
      assert.equal(freeBytes(tmpdir()), null, String(odd));
      assert.doesNotThrow(() => checkFreeSpace(tmpdir(), 1 << 30, 'the test'));
    });
  }
});

test('statfs of a real file system: a full one refuses, a huge one does not', () => {
  withStatfs(
    () => ({ blocks: 1000, bavail: 0, bsize: 4096 }),
    () => {
      assert.equal(freeBytes(tmpdir()), 0);
      assert.throws(() => checkFreeSpace(tmpdir(), 1, 'the test'), /not enough free space .*needs about 1 B, 0 B free/);
    },
  );
  withStatfs(
    () => ({ blocks: 2 ** 60, bavail: 2 ** 60, bsize: 2 ** 20 }),
    () => {
      assert.equal(freeBytes(tmpdir()), 2 ** 80);
      assert.doesNotThrow(() => checkFreeSpace(tmpdir(), 2 ** 60, 'the test'));
    },
  );
});

test('a folder not made yet is measured on the file system of its nearest existing parent; exactly enough is enough; the refusal is ENOSPC and says how to go on', () => {
  withStatfs(
    () => ({ blocks: 1000, bavail: 10, bsize: 4096 }),
    () => {
      // the output folder of a run that has not started yet: its parent's file system is where it will be
      assert.equal(freeBytes(`${tmpdir()}/semaim-not-made-${process.pid}/run/step-1`), 40960);
      assert.doesNotThrow(() => checkFreeSpace(tmpdir(), 40960, 'the test'));
      assert.throws(
        () => checkFreeSpace(tmpdir(), 40961, 'the checkpoints', { how: '3 × 13.3 KiB', remedy: 'Lower --keep-last' }),
        (e: NodeJS.ErrnoException) => {
          assert.equal(e.code, 'ENOSPC');
          assert.match(
            e.message,
            /for the checkpoints: needs about 40\.0 KiB \(3 × 13\.3 KiB\), 40\.0 KiB free\. Lower --keep-last; or set SEMAIM_NO_SPACE_CHECK=1/,
          );
          return true;
        },
      );
    },
  );
});

test('SEMAIM_NO_SPACE_CHECK=1 starts on a disk the estimate says is full; sizes print in binary units from 1 KiB', () => {
  withStatfs(
    () => ({ blocks: 1000, bavail: 0, bsize: 4096 }),
    () => {
      const before = process.env[NO_SPACE_CHECK_ENV];
      process.env[NO_SPACE_CHECK_ENV] = '1';
      try {
        assert.doesNotThrow(() => checkFreeSpace(tmpdir(), 1 << 30, 'the test'));
      } finally {
        if (before === undefined) delete process.env[NO_SPACE_CHECK_ENV];
        else process.env[NO_SPACE_CHECK_ENV] = before;
      }
      assert.throws(() => checkFreeSpace(tmpdir(), 1 << 30, 'the test'), /needs about 1\.0 GiB, 0 B free/);
    },
  );
  assert.deepEqual([1023, 1024, 1536, 1024 ** 2, 1.5 * 1024 ** 3, 1024 ** 5].map(formatBytes), [
    '1023 B',
    '1.0 KiB',
    '1.5 KiB',
    '1.0 MiB',
    '1.5 GiB',
    '1024.0 TiB',
  ]);
});
