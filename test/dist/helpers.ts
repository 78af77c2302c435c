// Runs a compiled worker script in N processes on 127.0.0.1 with torchrun's environment variables
// (directly, not through the launcher), and collects each rank's JSON lines and exit status.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from '../../src/dist';

export interface WorkerRun {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: Record<string, unknown>[];
  stderr: string;
  ms: number;
}

export const workerScript = (name: string): string => join(__dirname, 'workers', `${name}.js`);

/** One process per rank; resolves when all have exited (kills them all after timeoutMs). */
export async function runWorkers(script: string, n: number, args: string[] = [], o: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<WorkerRun[]> {
  const port = await freePort();
  const t0 = Date.now();
  return Promise.all(Array.from({ length: n }, (_, rank) => new Promise<WorkerRun>((resolve) => {
    const child = spawn(process.execPath, [script, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env, ...o.env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(n), LOCAL_WORLD_SIZE: String(n),
        MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port),
      },
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c; });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c; });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ rank, code, signal, lines, stderr: err, ms: Date.now() - t0 });
    });
  })));
}

/** The first line of a rank's output that has `key`. */
export function lineWith(run: WorkerRun, key: string): Record<string, unknown> {
  const l = run.lines.find((x) => key in x);
  if (!l) throw new Error(`rank ${run.rank} printed no line with '${key}' (exit ${run.code ?? run.signal}); stderr:\n${run.stderr}`);
  return l;
}
