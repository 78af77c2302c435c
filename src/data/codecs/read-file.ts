// Reading an image file to decode it: only a regular file is opened (a FIFO or a device named .png would
// block or never end), a file larger than an image within the pixel limit can be is refused from its size
// unread, one over 64 MiB is read whole only when its first 4 KiB start as an image does, and no single read
// asks for more than readSync takes.
import { closeSync, fstatSync, readSync } from 'node:fs';
import { DecodeError } from './errors';
import { mayBeImage, NOT_AN_IMAGE } from './decode';
import { openRegularFile } from '../../util/regular-file';

let readBuf = Buffer.allocUnsafe(1 << 20);
/** The per-thread buffer grows to at most this; a larger file gets a buffer of its own, dropped after it. */
const KEEP_READ_BYTES = 64 << 20;
/** The most one readSync may be asked for (it refuses 2^31 and up). */
const MAX_READ = 0x7fffffff;

const mib = (n: number) => `${Math.floor(n / 2 ** 20).toLocaleString('en-US')} MiB`;

/**
 * The whole file at `path`, refused (DecodeError 'too-large') from its size when over `cap` bytes. With
 * `reuse`, into a per-thread buffer (no allocation for a file up to KEEP_READ_BYTES) whose bytes are valid
 * until the next such call: for callers that decode one sample at a time. Without, into a buffer of its own.
 */
export function readImageFile(path: string, cap: number, o: { reuse?: boolean } = {}): Uint8Array {
  const fd = openRegularFile(path);
  try {
    const size = fstatSync(fd).size;
    if (size > cap) {
      throw new DecodeError(
        'too-large',
        `file of ${mib(size)} is over the ${mib(cap)} an image within the pixel limit can take (raise it with --max-image-pixels, 0 = no limit)`,
      );
    }
    if (size > KEEP_READ_BYTES) {
      // a large file is read whole only when it starts as an image does
      const head = Buffer.alloc(4096);
      if (!mayBeImage(head.subarray(0, readSync(fd, head, 0, head.length, 0)))) throw new DecodeError('unsupported', NOT_AN_IMAGE);
    }
    let buf: Buffer;
    if (o.reuse && size <= KEEP_READ_BYTES) {
      if (size > readBuf.length) readBuf = Buffer.allocUnsafe(Math.min(2 ** Math.ceil(Math.log2(size)), KEEP_READ_BYTES));
      buf = readBuf;
    } else {
      buf = Buffer.allocUnsafe(size);
    }
    // shortened since fstat: the decoder sees a truncated file
    const n = readSized(fd, buf, size);
    return new Uint8Array(buf.buffer, buf.byteOffset, n);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads the `size` bytes fstat gave for `fd` into `buf` from the file's start, in reads readSync takes;
 * returns how many came (fewer when the file was shortened since).
 */
export function readSized(fd: number, buf: Buffer, size: number): number {
  let n = 0;
  while (n < size) {
    const k = readSync(fd, buf, n, Math.min(size - n, MAX_READ), n);
    if (k === 0) break;
    n += k;
  }
  return n;
}
