// `semaim ablate --jobs N` runs its shards in child processes: a SIGTERM (or SIGINT) sent to the parent
// alone (a scheduler, `kill`) is passed on to every child, which stops at its checkpoint, and the parent
// waits for them and exits with the signal's code instead of dying and leaving them running unattended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processAlive } from '../../src/util/process-alive';

test('a signal to the ablate --jobs parent reaches its shard processes, and the parent waits for them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-signal-'));
  const started = () => readdirSync(dir).filter((f) => f.startsWith('started-'));
  try {
    // a stand-in for a shard process: marks its start, and on SIGTERM its stop, as a pre-training does
    const child = join(dir, 'child.js');
    writeFileSync(
      child,
      `const { writeFileSync } = require('node:fs');
       process.on('SIGTERM', () => { writeFileSync(${JSON.stringify(dir)} + '/stopped-' + process.pid, ''); process.exit(143); });
       writeFileSync(${JSON.stringify(dir)} + '/started-' + process.pid, ''); // after the handler: a signal from now on is seen
       setInterval(() => {}, 1000);`,
    );
    const jobs = JSON.stringify(join(__dirname, '..', '..', 'src', 'cli', 'ablate-jobs'));
    const parent = `require(${jobs}).runShardProcesses(
        { command: [process.execPath, ${JSON.stringify(child)}], argv: [], outDir: ${JSON.stringify(dir)}, jobs: 2, threads: 1, log: () => {} },
        ['0/2', '1/2'], {},
      ).catch((e) => { process.exitCode = e.exitCode ?? 1; });`;
    const p = spawn(process.execPath, ['-e', parent], { stdio: 'ignore' });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => p.on('exit', (code, signal) => resolve([code, signal])));
    while (started().length < 2) await new Promise((r) => setTimeout(r, 10));
    p.kill('SIGTERM');
    const [code, signal] = await exited;
    const pids = started().map((f) => Number(f.slice('started-'.length)));
    try {
      assert.deepEqual([code, signal], [143, null], 'the parent waited for its children and exits as a process stopped by SIGTERM');
      for (const pid of pids) {
        assert.ok(existsSync(join(dir, `stopped-${pid}`)), `shard process ${pid} was asked to stop`);
        assert.equal(processAlive(pid), false, `shard process ${pid} has ended`);
      }
    } finally {
      for (const pid of pids) if (processAlive(pid)) process.kill(pid, 'SIGKILL'); // without the forwarding they run on
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
