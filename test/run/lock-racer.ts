// A process that starts a run at a given moment: `node lock-racer.js <dir> <epoch ms>` waits for that
// moment, tries to take the folder's lock, keeps it 400 ms, and prints 1 if it got it, 0 if refused.
import { RunLock } from '../../src/run/run-lock';

const [dir, at] = [process.argv[2], Number(process.argv[3])];
while (Date.now() < at) {
  /* spin: every racer leaves at the same moment */
}
let got = '0';
try {
  RunLock.acquire(dir);
  got = '1';
} catch (e) {
  if (!/is in use by another semaim run|at the same moment/.test((e as Error).message)) throw e;
}
const until = Date.now() + 400;
while (Date.now() < until) {
  /* hold it while the others try */
}
process.stdout.write(got);
