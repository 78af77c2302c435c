// Another process that writes a command's outputs while the command runs, between the command's check of
// them and its taking of their lock: the lock is left empty at its name (a process creating it, which
// lockFile waits for, up to 2 s), and the other process, once told, writes the files a moment later and
// gives that lock up. The command, told after it to run, is then past its check and waits at the lock.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { signalChild } from '../src/util/signal-child';

/** Starts the other process; `go()` leaves the lock `lock` empty and tells it to write `files` 1 s later; `exited` is its exit code. */
export async function writerMeanwhile(
  t: TestContext,
  lock: string,
  files: [path: string, text: string][],
): Promise<{ go: () => Promise<void>; exited: Promise<number | null> }> {
  const other = spawn(process.execPath, [
    '-e',
    `const fs = require('node:fs');
     process.stdin.once('data', () => setTimeout(() => {
       for (const [path, text] of ${JSON.stringify(files)}) fs.writeFileSync(path, text);
       fs.unlinkSync(${JSON.stringify(lock)});
       process.exit(0);
     }, 1000));
     console.log('ready');`,
  ]);
  const exited = once(other, 'exit').then(([code]) => code as number | null);
  t.after(() => signalChild(other, 'SIGKILL'));
  const first = await createInterface({ input: other.stdout })[Symbol.asyncIterator]().next();
  if (first.value !== 'ready') throw new Error(`the writer did not start: ${String(first.value)}`);
  return {
    go: async () => {
      writeFileSync(lock, '');
      await new Promise((r) => other.stdin.write('go\n', r));
    },
    exited,
  };
}
