// Reading a small file that someone else may have planted at a name semaim acts on (a lock, a commit
// journal): opened without blocking (a FIFO would block the read, a device never end), sized before it
// is read, and, where asked, not through a symbolic link.
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { notRegular } from './regular-file';

/**
 * `{ text }` of `path` when it is a regular file of at most `maxBytes`; `{ other }` saying what is there
 * instead ('a folder', 'a FIFO', 'a file of N bytes', 'a device or socket'); null when nothing is.
 * `followLinks: false` refuses a symbolic link at the name (the open fails, ELOOP). Other errors are thrown.
 */
export function readSmallFile(path: string, maxBytes: number, o: { followLinks?: boolean } = {}): { text: string } | { other: string } | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (o.followLinks === false ? constants.O_NOFOLLOW : 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (st.isFile() && st.size <= maxBytes) return { text: readFileSync(fd, 'utf8') };
    return { other: notRegular(st) ?? `a file of ${st.size} bytes` };
  } finally {
    closeSync(fd);
  }
}
