// The command-line tool run as a child and stopped by a signal once its stderr shows a line: for the tests
// of how commands stop (eval-stop.test.ts, stop-commands.test.ts).
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const PAUSE = join(__dirname, 'pause-staging.js');

export interface Stopped {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export interface StopOptions {
  /** The pids to signal instead of the child's (its workers, say). */
  target?: (pid: number) => number[];
  /** The command blocks for 0.6 s when it stages the file of this name (pause-staging.ts), and says so: the signal arrives then. */
  pauseAt?: RegExp;
}

/** Runs the CLI with `args` and sends `signal` once its stderr matches `when`; resolves when it has exited. */
export function runAndStop(args: string[], when: RegExp, signal: NodeJS.Signals, o: StopOptions = {}): Promise<Stopped> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(o.pauseAt ? ['--require', PAUSE] : []), CLI, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...(o.pauseAt && { SEMAIM_TEST_PAUSE_AT: o.pauseAt.source }) },
    });
    let stderr = '';
    let sent = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!sent && when.test(stderr)) {
        sent = true;
        for (const pid of o.target ? o.target(child.pid!) : [child.pid!]) process.kill(pid, signal);
      }
    });
    child.on('error', reject);
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      resolve({ code, signal: sig, stderr });
    });
  });
}
