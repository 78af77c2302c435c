// Test bodies that run with a new temporary folder, removed after it whatever the outcome.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// This checkout's build/: the addon is loaded from there, so its file system runs programs, where
// $TMPDIR may be mounted noexec (a hardened CI runner or laptop).
const EXEC_ROOT = join(__dirname, '..', '..', 'build', 'test-tmp');

/** `test('…', inTempDir('semaim-x-', async (dir) => { … }))`. */
export function inTempDir(prefix: string, fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return inNewDir(() => mkdtempSync(join(tmpdir(), prefix)), fn);
}

/** As inTempDir, for a test that writes stand-in programs and runs them. */
export function inExecTempDir(prefix: string, fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return inNewDir(() => makeExecTempDir(prefix), fn);
}

/** A new folder under this checkout's build/ that programs can run from; the caller removes it. */
export function makeExecTempDir(prefix: string): string {
  mkdirSync(EXEC_ROOT, { recursive: true });
  return mkdtempSync(join(EXEC_ROOT, prefix));
}

function inNewDir(make: () => string, fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = make();
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
