import * as fs from 'node:fs';

/** The most one read or write asks for: Node refuses one of 2 GiB or more (its length is a 32-bit int). */
export const MAX_IO_BYTES = 1 << 30;

/** Fills `into` from `fd` at `position`, looping over short reads; `ended` is the error when the file ends first. */
export function readAt(fd: number, into: Uint8Array, position: number, ended: () => Error): void {
  let done = 0;
  while (done < into.byteLength) {
    const n = fs.readSync(fd, into, done, Math.min(into.byteLength - done, MAX_IO_BYTES), position + done);
    if (n <= 0) throw ended();
    done += n;
  }
}
