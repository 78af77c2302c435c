// The PyTorch side of bench:engine and bench:eval: a Python script run as a server, one JSON request per
// line on its stdin, one JSON answer per line on its stdout.
import * as readline from 'node:readline';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export class TorchServer {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterableIterator<string>;
  private stderr = '';
  /** Settles when the server has ended and its stderr is read to the end. */
  private readonly ended: Promise<unknown>;
  /** Why the server could not start (no such Python: ENOENT), told by ask() instead of a crash on the 'error' event. */
  private startError: Error | null = null;

  constructor(
    private readonly python: string,
    private readonly script: string,
    args: string[],
  ) {
    this.proc = spawn(python, [script, ...args]);
    this.proc.on('error', (e) => (this.startError ??= e));
    this.proc.stdin.on('error', () => {}); // a server that ended: its answer's absence says so
    this.proc.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.ended = new Promise((resolve) => this.proc.on('close', resolve));
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }

  async ask<T>(cmd: Record<string, unknown>): Promise<T> {
    this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    const r = await this.lines.next();
    if (this.startError)
      throw new Error(`${this.python} ${this.script}: cannot start the PyTorch side (${this.startError.message}); set SEMAIM_PYTHON to a Python with torch`);
    if (r.done) {
      await this.ended;
      throw new Error(`${this.python} ${this.script} exited:\n${this.stderr}`);
    }
    return JSON.parse(r.value) as T;
  }

  close(): void {
    this.proc.stdin.end(`${JSON.stringify({ op: 'quit' })}\n`);
  }
}
