// Free space checked before long work whose output size is known up front (a run's checkpoints, embed's
// rows): a disk that cannot hold them is refused at the start, not found full after minutes or hours.
// SEMAIM_NO_SPACE_CHECK=1 skips the check (an estimate that is wrong for a file system: compression,
// copy-on-write clones of 'best', quotas that statfs does not see).
import * as fs from 'node:fs';
import { dirname, resolve } from 'node:path';

export const NO_SPACE_CHECK_ENV = 'SEMAIM_NO_SPACE_CHECK';

/** Bytes in words: 1.5 GiB, 120.0 MiB, 3.2 KiB, 17 B. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  for (; i < units.length - 1 && n >= 1024; i++) n /= 1024;
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Bytes an unprivileged process may still write on the file system of `dir` (or of its nearest existing parent), or null when unknown. */
export function freeBytes(dir: string): number | null {
  let p = resolve(dir);
  while (!fs.existsSync(p) && dirname(p) !== p) p = dirname(p);
  try {
    const s = fs.statfsSync(p);
    const free = Number(s.bavail) * Number(s.bsize);
    // a file system of no blocks at all (FUSE ones that do not implement statfs report zeros) says nothing
    return Number(s.blocks) > 0 && Number.isFinite(free) && free >= 0 ? free : null;
  } catch {
    return null; // no statfs here: the writers still fail cleanly, naming the file
  }
}

/**
 * Throws, before the work, when the file system of `dir` has less than `needed` bytes free for `what`
 * (`how` says how the estimate is made, `remedy` what to do); nothing when SEMAIM_NO_SPACE_CHECK=1.
 */
export function checkFreeSpace(dir: string, needed: number, what: string, o: { how?: string; remedy?: string } = {}): void {
  if (process.env[NO_SPACE_CHECK_ENV] === '1') return;
  const free = freeBytes(dir);
  if (free === null || free >= needed) return;
  throw Object.assign(
    new Error(
      `not enough free space in ${dir} for ${what}: needs about ${formatBytes(needed)}${o.how ? ` (${o.how})` : ''}, ${formatBytes(free)} free. ` +
        `${o.remedy ?? 'Free space, or write elsewhere'}; or set ${NO_SPACE_CHECK_ENV}=1 to start anyway if the estimate is wrong`,
    ),
    { code: 'ENOSPC' },
  );
}
