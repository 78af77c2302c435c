// `semaim ablate --jobs N` runs its shards in child processes: a SIGTERM (or SIGINT) sent to the parent
// alone (a scheduler, `kill`) is passed on to every child, which stops at its checkpoint, and the parent
// waits for them and exits with the signal's code instead of dying and leaving them running unattended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { processAlive } from '../../src/util/process-alive';

test('a signal to the ablate --jobs parent reaches its shard processes, and the parent waits for them', async () => {
  // a shard stopped by it exits 143; one that ends its work anyway (0) is still a run stopped by the signal, not a complete one
  for (const exit of [143, 0]) {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-signal-'));
    const started = () => readdirSync(dir).filter((f) => f.startsWith('started-'));
    try {
      // a stand-in for a shard process: marks its start, and on SIGTERM its stop, as a pre-training does
      const child = join(dir, 'child.js');
      writeFileSync(
        child,
        `const { writeFileSync } = require('node:fs');
         process.on('SIGTERM', () => { writeFileSync(${JSON.stringify(dir)} + '/stopped-' + process.pid, ''); process.exit(${exit}); });
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
        assert.deepEqual([code, signal], [143, null], `shards exiting ${exit}: the parent waited for its children and exits as a process stopped by SIGTERM`);
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
  }
});

test('a log that cannot be written (a full disk) does not kill the ablate --jobs parent: it reports the child with its last lines', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-log-'));
  try {
    const child = join(dir, 'child.js');
    const jobs = JSON.stringify(join(__dirname, '..', '..', 'src', 'cli', 'ablate-jobs'));
    // every write to a log fails as on a full disk (the WriteStream calls fs.write / fs.writev)
    const parent = `const fs = require('node:fs');
      const full = (...a) => { const cb = a.pop(); process.nextTick(cb, Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })); };
      fs.write = full; fs.writev = full;
      require(${jobs}).runShardProcesses(
        { command: [process.execPath, ${JSON.stringify(child)}], argv: [], outDir: ${JSON.stringify(dir)}, jobs: 1, threads: 1, log: () => {} },
        ['0/1'], {},
      ).catch((e) => { process.stdout.write('reported: ' + e.message); process.exitCode = 1; });`;
    // the last three lines; a last line without its newline too
    for (const [written, shown] of [
      [
        'line 1\\nline 2\\nline 3\\nsemaim: cannot write x/model.safetensors: ENOSPC\\n',
        'line 2 \\| line 3 \\| semaim: cannot write x\\/model\\.safetensors: ENOSPC',
      ],
      ['line 1\\nsemaim: cannot write x/model.safetensors: ENOSPC', 'line 1 \\| semaim: cannot write x\\/model\\.safetensors: ENOSPC'],
    ]) {
      writeFileSync(child, `process.stderr.write('${written}'); process.exit(1);`);
      const p = spawn(process.execPath, ['-e', parent], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (b) => (out += b));
      p.stderr.on('data', (b) => (err += b));
      const code = await new Promise((resolve) => p.on('exit', resolve));
      assert.equal(code, 1, err);
      assert.match(
        out,
        new RegExp(`^reported: shard-0-of-1 exited with code 1; cannot write .*logs/shard-0-of-1\\.log: ENOSPC.*; its last lines: ${shown}$`),
        `stdout: ${out}\nstderr: ${err}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a --config file's jobs does not reach the shard processes: each gets --jobs 1 (every shard failed on 'jobs: 2' there)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-config-'));
  try {
    const config = join(dir, 'jobs.yaml');
    writeFileSync(config, 'jobs: 2\nstop-after-minutes: 30\n');
    // a stand-in for a shard process: reads its command line as `semaim ablate` does, and says what it got
    const cli = (p: string) => JSON.stringify(join(__dirname, '..', '..', 'src', p));
    const child = join(dir, 'child.js');
    writeFileSync(
      child,
      `const { parseCommand } = require(${cli('cli/command')});
       const { ABLATE_OPTIONS, validateAblate } = require(${cli('experiments/ablate-options')});
       const { o } = parseCommand(process.argv.slice(3), '', '', ABLATE_OPTIONS, validateAblate);
       require('node:fs').writeFileSync(${JSON.stringify(dir)} + '/got-' + o.shard.replace('/', '-of-'), JSON.stringify([o.jobs, o.stopAfterMinutes]));`,
    );
    const { runShardProcesses } = await import('../../src/cli/ablate-jobs');
    const runner = { command: [process.execPath, child] as [string, string], argv: ['--config', config], outDir: dir, jobs: 2, threads: 1, log: () => {} };
    await runShardProcesses(runner, ['0/2', '1/2'], { stopAfterMinutes: 29.5 });
    for (const s of ['0-of-2', '1-of-2']) assert.deepEqual(JSON.parse(readFileSync(join(dir, `got-${s}`), 'utf8')), [1, 29.5], s);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a shard's progress shows on the parent's console: its first line, then one per 30 s, and each phase's end", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-progress-'));
  try {
    // a stand-in for a shard process printing progress lines as a piped `semaim ablate` does (and a result)
    const child = join(dir, 'child.js');
    const lines = [
      "[1/2] pre-training 'raster' ...",
      'pretrain [#...................] 1/60 | epoch 0.02 | elapsed 0:01 ETA --:--',
      'pretrain [###.................] 10/60 | loss 1.2 | img/s 20.0 | elapsed 0:06 ETA 0:30',
      'pretrain [#######.............] 20/60 | loss 1.1 | img/s 20.0 | elapsed 0:11 ETA 0:20',
      'pretrain [####################] 60/60 | loss 0.9 | img/s 20.0 | elapsed 0:31 ETA 0:00',
      'features (train) [####################] 400/400 | img/s 90.0 | elapsed 0:04 ETA 0:00',
      'raster seed 0: loss 0.9242',
    ];
    writeFileSync(child, `for (const l of ${JSON.stringify(lines)}) process.stderr.write(l + '\\n');`);
    const { runShardProcesses } = await import('../../src/cli/ablate-jobs');
    const echoed: string[] = [];
    const runner = { command: [process.execPath, child] as [string, string], argv: [], outDir: dir, jobs: 1, threads: 1, log: (l: string) => echoed.push(l) };
    await runShardProcesses(runner, ['0/1'], {});
    assert.deepEqual(
      echoed,
      [0, 1, 4, 5, 6].map((i) => `[shard-0-of-1] ${lines[i]}`),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a shard's progress shows again 30 s after its last line also when the wall clock was stepped back an hour meanwhile (NTP): it was hidden for that hour", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-progress-clock-'));
  const [realNow, realPerf] = [Date.now, performance.now];
  try {
    const child = join(dir, 'child.js');
    const lines = [
      'pretrain [#...................] 1/60 | epoch 0.02 | elapsed 0:01 ETA --:--',
      'pretrain [#######.............] 20/60 | loss 1.1 | img/s 20.0 | elapsed 0:41 ETA 0:20',
    ];
    writeFileSync(child, `for (const l of ${JSON.stringify(lines)}) process.stderr.write(l + '\\n');`);
    const { runShardProcesses } = await import('../../src/cli/ablate-jobs');
    const echoed: string[] = [];
    // once the first line is echoed, 31 s pass (the monotonic clock) and the wall clock reads an hour earlier
    const log = (l: string) => {
      echoed.push(l);
      const [wall, mono] = [realNow(), realPerf.call(performance)];
      Date.now = () => wall - 3_600_000;
      performance.now = () => mono + 31_000;
    };
    await runShardProcesses({ command: [process.execPath, child], argv: [], outDir: dir, jobs: 1, threads: 1, log }, ['0/1'], {});
    [Date.now, performance.now] = [realNow, realPerf];
    assert.deepEqual(
      echoed,
      lines.map((l) => `[shard-0-of-1] ${l}`),
    );
  } finally {
    [Date.now, performance.now] = [realNow, realPerf];
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a shard that exits 75 (stopped early by --stop-after-minutes) is not a failure: the parent goes on to write the partial table', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-75-'));
  try {
    const child = join(dir, 'child.js');
    writeFileSync(child, `process.stdout.write('shard 0/1: stopped early\\n'); process.exit(75);`);
    const { measureInProcesses, runShardProcesses } = await import('../../src/cli/ablate-jobs');
    const runner = { command: [process.execPath, child] as [string, string], argv: [], outDir: dir, jobs: 1, threads: 1, log: () => {} };
    await runShardProcesses(runner, ['0/1'], {});
    // any other code is the shard's failure, named with its log
    writeFileSync(child, 'process.exit(3);');
    await assert.rejects(runShardProcesses(runner, ['0/1'], {}), /^Error: shard-0-of-1 exited with code 3; see .*logs\/shard-0-of-1\.log$/);
    // 75 is a shard's partial end only: a measuring process that exits 75 has printed no measurement
    writeFileSync(child, 'process.exit(75);');
    await assert.rejects(measureInProcesses(runner, 1), /^Error: measure-0 exited with code 75; see .*logs\/measure-0\.log$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without --threads each of the --jobs shard processes gets its share of the cores (each took them all: N processes on N× the cores)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-threads-'));
  try {
    const child = join(dir, 'child.js');
    const seen = join(dir, 'argv.jsonl');
    writeFileSync(child, `require('node:fs').appendFileSync(${JSON.stringify(seen)}, JSON.stringify(process.argv.slice(2)) + '\\n');`);
    const { runShardProcesses } = await import('../../src/cli/ablate-jobs');
    const runner = { command: [process.execPath, child] as [string, string], argv: ['--jobs', '2'], outDir: dir, jobs: 2, log: () => {} };
    await runShardProcesses(runner, ['0/2', '1/2'], {});
    const runs = readFileSync(seen, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as string[]);
    assert.equal(runs.length, 2);
    const share = String(Math.max(1, Math.floor(availableParallelism() / 2)));
    for (const a of runs) {
      assert.equal(a[a.indexOf('--threads') + 1], share, a.join(' '));
      assert.equal(a[a.indexOf('--jobs') + 1], '1', a.join(' '));
    }
    // more processes than cores: each still gets one thread, not '--threads 0'
    const many = 2 * availableParallelism() + 1;
    await runShardProcesses({ ...runner, argv: ['--jobs', String(many)], jobs: many }, [`0/${many}`], {});
    const last = JSON.parse(readFileSync(seen, 'utf8').trim().split('\n').pop()!) as string[];
    assert.equal(last[last.indexOf('--threads') + 1], '1', last.join(' '));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a shard process whose spawn throws (ENOMEM, E2BIG) is that shard's failure: the others run to their end with signals forwarded, then the parent reports it", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ablate-spawn-throws-'));
  try {
    // a stand-in for a shard process: marks its end after a moment
    const child = join(dir, 'child.js');
    writeFileSync(
      child,
      `setTimeout(() => require('node:fs').writeFileSync(${JSON.stringify(dir)} + '/ended-' + process.argv.pop().replace('/', '-of-'), ''), 500);`,
    );
    const { runShardProcesses } = await import('../../src/cli/ablate-jobs');
    // the second spawn throws, as child_process.spawn does for an error other than EACCES, EAGAIN, EMFILE, ENFILE and
    // ENOENT (ENOMEM from fork); a path with a NUL byte is refused the same way, by a throw before any process starts
    const command = [process.execPath, child] as [string, string];
    let reads = 0;
    Object.defineProperty(command, 0, { get: () => (reads++ === 1 ? `${process.execPath}\0` : process.execPath) });
    const runner = { command, argv: [], outDir: dir, jobs: 2, threads: 1, log: () => {} };
    const signals = () => [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
    const before = signals();
    // before: the call rejected at once with the bare error, shard 0 left running with no one forwarding a signal to it
    await assert.rejects(runShardProcesses(runner, ['0/2', '1/2'], {}), (e: Error) => {
      assert.match(e.message, /^cannot start shard-1-of-2: .*null bytes/);
      assert.ok(existsSync(join(dir, 'ended-0-of-2')), `shard 0 had ended: ${readdirSync(dir).join(', ')}`);
      return true;
    });
    assert.deepEqual(signals(), before, 'the forwarding is released');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
