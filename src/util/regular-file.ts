// Files semaim reads from folders someone else may have made (a downloaded run or encoder, its JSON
// beside it): only regular files are read, through links. A FIFO would block the open or the read for
// ever, and a device (a link to /dev/zero) never ends, growing memory until the process is killed.
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';

/** What `st` is when it is not a regular file ('a folder', 'a FIFO', 'a device or socket'), else null. */
export function notRegular(st: Stats): string | null {
  if (st.isFile()) return null;
  return st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a FIFO' : 'a device or socket';
}

/**
 * A file descriptor of `path` for reading; throws `<path> is a FIFO, not a regular file` (and so on) before any read.
 * `followLinks: false` refuses a symbolic link at the name (the open fails, ELOOP).
 */
export function openRegularFile(path: string, o: { followLinks?: boolean } = {}): number {
  // O_NONBLOCK: opening a FIFO does not wait for a writer
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (o.followLinks === false ? constants.O_NOFOLLOW : 0));
  try {
    const what = notRegular(fstatSync(fd));
    if (what) throw Object.assign(new Error(`${path} is ${what}, not a regular file`), { code: 'ENOTREGULAR' });
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/** The bytes of the regular file `path` (as readFileSync; other kinds of file are refused, see openRegularFile). */
export function readRegularFile(path: string): Buffer;
export function readRegularFile(path: string, encoding: 'utf8', o?: { followLinks?: boolean }): string;
export function readRegularFile(path: string, encoding?: 'utf8', o: { followLinks?: boolean } = {}): Buffer | string {
  const fd = openRegularFile(path, o);
  try {
    return encoding ? readFileSync(fd, encoding) : readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}
