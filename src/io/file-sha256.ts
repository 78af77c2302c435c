// SHA-256 of files, by path or on a descriptor already open: a reader that hashes the descriptor it reads
// from knows the bytes it read are those hashed, whatever is renamed over the path meanwhile.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, readSync } from 'node:fs';
import { openRegularFile } from '../util/regular-file';

/**
 * SHA-256 of a file, read in 4 MiB pieces. A file this process hashed before and that has not changed
 * since (the same inode, size, modification and change times) is not read again: a command checks its
 * checkpoint before any work and its job resolves it again (a ViT-L run's files are ~6 GB, seconds of
 * reading each time). Any write, rename or chmod sets the change time; only files whose change time was
 * over 2 s old when hashed are remembered, so that a file system's coarse clock (a tick of up to 2 s)
 * cannot give a later change, or a new file on a reused inode, the time remembered.
 */
export function sha256File(path: string): string {
  const fd = openRegularFile(path);
  try {
    return sha256OfOpenFile(fd);
  } finally {
    closeSync(fd);
  }
}

/** {@link sha256File} of the file open as `fd` (read from its start; the descriptor's own position is left as it was). */
export function sha256OfOpenFile(fd: number): string {
  const st = fstatSync(fd, { bigint: true });
  const id = `${st.dev}:${st.ino}`;
  const stamp = `${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const known = hashedFiles.get(id);
  if (known?.stamp === stamp) return known.sha256;
  const settled = BigInt(Date.now()) * 1_000_000n - st.ctimeNs > SETTLED_NS;
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(4 << 20);
  for (let pos = 0; ;) {
    const n = readSync(fd, buf, 0, buf.length, pos);
    if (n <= 0) break;
    h.update(buf.subarray(0, n));
    pos += n;
  }
  const sha256 = h.digest('hex');
  if (settled) hashedFiles.set(id, { stamp, sha256 });
  return sha256;
}

/** The settled files sha256File read, by device and inode: their size and times then, and their hash. */
const hashedFiles = new Map<string, { stamp: string; sha256: string }>();
const SETTLED_NS = 2_000_000_000n;
