// A tmpfs for the tests of full and read-only disks, which need the kernel's own errors (root only).
import { spawnSync } from 'node:child_process';

/** Mounts a tmpfs with mount's `options` ('size=2m', 'ro,size=1m') on the folder `mnt`: null when mounted, else why it could not be. */
export function mountTmpfs(mnt: string, options: string): string | null {
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', mnt], { encoding: 'utf8' });
  return m.status === 0 ? null : (m.stderr || m.error?.message || '').trim() || 'not root';
}
