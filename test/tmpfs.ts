// A tmpfs for the tests of full and read-only disks, which need the kernel's own errors (root only).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** Mounts a tmpfs with mount's `options` ('size=2m', 'ro,size=1m') on the folder `mnt`: null when mounted, else why it could not be. */
export function mountTmpfs(mnt: string, options: string): string | null {
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', mnt], { encoding: 'utf8' });
  return m.status === 0 ? null : (m.stderr || m.error?.message || '').trim() || 'not root';
}

/**
 * A new temporary folder `dir` holding `mnt`, a tmpfs mounted with `options`; both unmounted and removed
 * after the test. null, the test skipped, where no tmpfs can be mounted.
 */
export function tmpfsScratch(t: TestContext, prefix: string, options: string): { dir: string; mnt: string } | null {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const unmounted = mountTmpfs(mnt, options);
  t.after(() => {
    if (!unmounted) spawnSync('umount', [mnt]);
    rmSync(dir, { recursive: true, force: true });
  });
  if (unmounted) {
    t.skip(`cannot mount a tmpfs here (${unmounted})`);
    return null;
  }
  return { dir, mnt };
}
