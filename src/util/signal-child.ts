import type { ChildProcess } from 'node:child_process';

/**
 * Sends `signal` to a child process that started and has not ended; returns whether it was sent.
 *
 * Node's `child.kill()` on a child whose spawn failed (ENOENT, EACCES, EAGAIN: no `pid`, its 'error' not
 * yet emitted) hands libuv a process id that was never set (Node 20, libuv 1.46): when that memory held 0,
 * kill(0, signal) went to this process's whole process group (a stopped benchmark's SIGKILL killed the
 * test runner and CI with it, exit 137); otherwise to whatever process had that number.
 */
export function signalChild(child: ChildProcess, signal: NodeJS.Signals): boolean {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false;
  return child.kill(signal);
}
