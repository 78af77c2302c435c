// A process racing for a run folder's lock: `node lock-racer.js <dir>` prints "ready", waits for a line on
// stdin, tries to take the lock and prints 1 if it got it, 0 if refused; it keeps the lock until stdin
// ends, so every racer tries while the winner still holds it, however late the machine lets it start.
import { readSync, writeSync } from 'node:fs';
import { RunLock } from '../../src/run/run-lock';
import { sleepSync } from '../../src/util/sleep-sync';

/** Blocks until stdin has a byte (true) or has ended (false). */
function waitForStdin(): boolean {
  for (;;) {
    try {
      return readSync(0, Buffer.alloc(1)) > 0;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      sleepSync(5);
    }
  }
}

writeSync(1, 'ready\n');
waitForStdin();
let got = '0';
try {
  RunLock.acquire(process.argv[2]);
  got = '1';
} catch (e) {
  if (!/is in use by another semaim run/.test((e as Error).message)) throw e;
}
writeSync(1, `${got}\n`);
while (waitForStdin()) {
  /* hold it until the test has every answer (exit releases it) */
}
