import * as fs from 'node:fs';

/** Fills `into` from `fd` at `position`, looping over short reads; `ended` is the error when the file ends first. */
export function readAt(fd: number, into: Uint8Array, position: number, ended: () => Error): void {
  let done = 0;
  while (done < into.byteLength) {
    const n = fs.readSync(fd, into, done, into.byteLength - done, position + done);
    if (n <= 0) throw ended();
    done += n;
  }
}
