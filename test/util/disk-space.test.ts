// The free-space check on file systems whose statfs says odd things: an error, all zeros (FUSE file
// systems that do not implement it), missing or huge values. Only a real answer refuses a write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { checkFreeSpace, freeBytes } from '../../src/util/disk-space';

function withStatfs(result: () => Partial<fs.StatsFs>, run: () => void): void {
  const real = fs.statfsSync;
  fs.statfsSync = (() => ({ ...real(tmpdir()), ...result() })) as unknown as typeof fs.statfsSync;
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
