// Starting workers: the built-in launcher (failure of one rank stops all and names it; kill -9 of one
// worker; signal forwarding; two "nodes" on 127.0.0.1) and torchrun (1.13's spelling, --no_python).
// Debian 12's torchrun (torch 1.13 on Python 3.11) fails before starting any worker unless given
// `--redirects 1 --tee 1`: its Std.from_str maps the default "0" to None (Python 3.11 no longer iterates
// a Flag's zero member). --monitor_interval only makes it notice the workers' exit sooner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import * as torch from '../../src/torch';
import * as dist from '../../src/dist';
import { workerScript } from './helpers';
import { inTempDir } from '../temp-dir';
import { waitUntilSync } from '../../src/util/sleep-sync';

/** A process's state letter in /proc/<pid>/stat ('T': stopped), '' when it cannot be read. */
const procState = (pid: number): string => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return '';
  }
};

const gloo = dist.distBuildInfo().gloo ? false : 'the addon was built without Gloo';
const TORCHRUN = '/usr/bin/torchrun';
const noTorchrun = existsSync(TORCHRUN) ? false : `${TORCHRUN} not found (Debian's python3-torch)`;

/** The torch version of torchrun's Python (read from torch/version.py, without importing torch). */
function torchrunTorchMajor(): number {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import importlib.util,os;print(os.path.dirname(importlib.util.find_spec("torch").origin))'], { encoding: 'utf8' });
  const file = `${r.stdout.trim()}/version.py`;
  const m = existsSync(file) ? /__version__\s*=\s*'(\d+)\./.exec(readFileSync(file, 'utf8')) : null;
  return m ? Number(m[1]) : NaN;
}
// With the static rendezvous the workers join the store of torchrun's own agent, so both must speak the
// same TCPStore protocol (2.x clients validate the connection with a command 1.13 servers lack).
const agentStoreMismatch = (): string | false => {
  if (noTorchrun) return noTorchrun;
  const agent = torchrunTorchMajor();
  const ours = torch.version().major;
  return agent === ours ? false : `torchrun's agent runs torch ${agent}.x, this addon libtorch ${ours}.x: their TCPStores do not talk to each other`;
};

/**
 * What torchrun's --standalone sets (the c10d rendezvous on localhost, a new id), on a free port: 1.13's
 * --standalone always takes port 29400, so a second run of these tests on the machine (another user's,
 * a CI job beside) failed with 'Address already in use'.
 */
async function standalone(): Promise<string[]> {
  return ['--rdzv_backend', 'c10d', '--rdzv_endpoint', `localhost:${await dist.freePort()}`, '--rdzv_id', randomUUID()];
}

/** A writable stream that keeps what was written. */
function sink(): PassThrough & { text: () => string } {
  const s = new PassThrough() as PassThrough & { text: () => string };
  let buf = '';
  s.setEncoding('utf8');
  s.on('data', (c: string) => { buf += c; });
  s.text = () => buf;
  return s;
}

const jsonLines = (text: string): Record<string, unknown>[] =>
  text.split('\n').map((l) => l.replace(/^\[rank \d+\] |^\[default\d+\]:/, '')).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

test('stripLaunchFlags removes the launcher flags in both spellings and keeps the rest', () => {
  assert.deepEqual(dist.stripLaunchFlags(['pretrain', '--nproc-per-node', '2', '--batch-size', '16', '--master-port=123', '--nnodes=1',
    '--node_rank', '0', '--master-addr', 'h', '--out-dir', 'x']), ['pretrain', '--batch-size', '16', '--out-dir', 'x']);
  assert.deepEqual(dist.launchOptionsFrom({ nprocPerNode: 4, nnodes: 2, nodeRank: 1, masterAddr: 'n0', masterPort: 0 }),
    { nprocPerNode: 4, nnodes: 2, nodeRank: 1, masterAddr: 'n0', masterPort: undefined });
});

test('launcher: workers that exit with 130 (stopped by a signal that reached rank 1 alone) are let finish; the launcher exits 130 without a failure report', { skip: gloo }, async () => {
  const stdout = sink();
  const stderr = sink();
  const r = await dist.launchWorkers(['stopped'], { nprocPerNode: 2, script: workerScript('launched'), stdout, stderr, killGraceMs: 5000 });
  // before, rank 1's exit counted as a failure: rank 0 got SIGTERM before it reported, and the launcher
  // printed "rank 1 ... exited with code 130; stopped the other 1 worker"
  assert.deepEqual([r.exitCode, r.failedRank, r.message], [130, null, null], stderr.text());
  assert.ok(jsonLines(stdout.text()).some((l) => l.rank === 0 && l.stopped === true), `rank 0 reported its stop:\n${stdout.text()}`);
  assert.doesNotMatch(stderr.text(), /launch:/);
});

test('launcher: rank 1 crashes -> every worker stops within seconds, exit non-zero, the message names rank 1 and its last lines', { skip: gloo }, async () => {
  const stdout = sink();
  const stderr = sink();
  const t0 = Date.now();
  const r = await dist.launchWorkers(['crash'], { nprocPerNode: 2, script: workerScript('launched'), stdout, stderr, killGraceMs: 5000 });
  const ms = Date.now() - t0;
  assert.equal(r.failedRank, 1, stderr.text());
  assert.notEqual(r.exitCode, 0);
  assert.match(r.message ?? '', /^launch: rank 1 \(node 0, local rank 1, pid \d+\) exited with code 1; stopped the other 1 worker on this node/);
  assert.match(r.message ?? '', /deliberate crash on rank 1/);
  assert.match(r.message ?? '', /rank 1 is about to crash/);
  assert.match(stderr.text(), /launch: rank 1/);
  assert.ok(ms < 30_000, `took ${ms} ms`);
});

test('launcher: a worker it stopped itself (SIGTERM after another failed) is not named as the cause; the rank whose reason the others repeat is, with its exit code', { skip: gloo }, async () => {
  const stdout = sink();
  const stderr = sink();
  const r = await dist.launchWorkers(['told'], { nprocPerNode: 3, script: workerScript('launched'), stdout, stderr, killGraceMs: 5000 });
  // before: "launch: rank 1 ... was killed by SIGTERM", exit code 1
  assert.deepEqual([r.failedRank, r.exitCode], [0, 2], stderr.text());
  assert.match(r.message ?? '', /^launch: rank 0 \(node 0, local rank 0, pid \d+\) exited with code 2; stopped the other 2 workers on this node/);
  assert.match(r.message ?? '', /the run cannot start here/);
});

test('launcher: a worker that fails repeating another rank\'s reason leaves that rank time to exit by itself, so it is named with its exit code', { skip: gloo }, async () => {
  const stdout = sink();
  const stderr = sink();
  const r = await dist.launchWorkers(['told-dies'], { nprocPerNode: 3, script: workerScript('launched'), stdout, stderr, killGraceMs: 5000 });
  // before: rank 2 failed at once with rank 0's reason, the launcher sent SIGTERM to rank 0 as it was
  // exiting with its own error (killing it) and named rank 2, exit code 1
  assert.deepEqual([r.failedRank, r.exitCode], [0, 2], stderr.text());
  assert.match(r.message ?? '', /^launch: rank 0 \(node 0, local rank 0, pid \d+\) exited with code 2; stopped the other 2 workers on this node/);
});

test('launcher: kill -9 of one worker -> the other sees ERR_DIST_PEER and exits; the launcher names the killed rank', { skip: gloo }, async () => {
  const stdout = sink();
  const stderr = sink();
  let killedAt = 0;
  const watcher = setInterval(() => {
    const r1 = jsonLines(stdout.text()).find((l) => l.rank === 1 && typeof l.pid === 'number');
    if (r1 && !killedAt) {
      killedAt = Date.now();
      process.kill(Number(r1.pid), 'SIGKILL');
    }
  }, 100);
  const r = await dist.launchWorkers(['loop'], { nprocPerNode: 2, script: workerScript('launched'), stdout, stderr, killGraceMs: 60_000 });
  clearInterval(watcher);
  assert.ok(killedAt > 0, 'rank 1 never started');
  const ms = Date.now() - killedAt;
  assert.equal(r.failedRank, 1, stderr.text());
  assert.match(r.message ?? '', /^launch: rank 1 \(node 0, local rank 1, pid \d+\) was killed by SIGKILL/);
  // Rank 0 ignores the launcher's SIGTERM: it can only have stopped on its collective's error.
  assert.match(stderr.text(), /worker failed: ERR_DIST_PEER dist\.allReduce failed on rank 0 of 2/, 'rank 0 should report the dead peer itself');
  assert.ok(ms < 60_000, `the workers took ${ms} ms to stop after the kill`);
});

test('launcher: a worker stopped with SIGSTOP -> the other times out; the launcher names the stopped rank, continues it so that SIGTERM ends it, exits non-zero', { skip: gloo, timeout: 50_000 }, async () => {
  const stdout = sink();
  const stderr = sink();
  let stopped = 0;
  const watcher = setInterval(() => {
    const r1 = jsonLines(stdout.text()).find((l) => l.rank === 1 && typeof l.pid === 'number');
    if (r1 && !stopped) {
      stopped = Number(r1.pid);
      process.kill(stopped, 'SIGSTOP');
    }
  }, 100);
  // a grace period beyond the test's timeout: only the SIGCONT after the SIGTERM lets the stopped worker end in time
  const r = await dist.launchWorkers(['stall'], { nprocPerNode: 2, script: workerScript('launched'), stdout, stderr, killGraceMs: 120_000 });
  clearInterval(watcher);
  assert.ok(stopped > 0, 'rank 1 never started');
  assert.equal(r.failedRank, 1, stderr.text());
  assert.equal(r.exitCode, 1);
  assert.match(r.message ?? '', new RegExp(`^launch: rank 1 \\(node 0, local rank 1, pid ${stopped}\\) had stopped running \\(process state T.*\\) when rank 0 exited with code 1`));
  assert.match(r.message ?? '', /last \d+ lines of rank 0:\n.*ERR_DIST_TIMEOUT dist\.allReduce failed on rank 0 of 2/s);
});

/** Runs the launcher's `scenario` and sends SIGTERM (by `send`) once both workers are ready; its exit code and output. */
async function launcherSignalled(scenario: string, send: (child: ReturnType<typeof spawn>) => void, detached = false): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [workerScript('launcher'), scenario], { stdio: ['ignore', 'pipe', 'pipe'], detached });
  let out = '';
  let sent = false;
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
    if (!sent && jsonLines(out).filter((l) => l.ready).length === 2) {
      sent = true;
      send(child);
    }
  });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c; });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  return { code, out, err };
}

for (const to of ['the launcher', 'its process group (as a terminal sends Ctrl-C)'] as const)
test(`launcher forwards SIGTERM sent to ${to} to each worker once and exits with 128 + 15`, { skip: gloo }, async () => {
  const { code, out, err } = await launcherSignalled('sigterm', (child) => (to === 'the launcher' ? child.kill('SIGTERM') : process.kill(-child.pid!, 'SIGTERM')), true);
  const got = jsonLines(out).filter((l) => l.signal === 'SIGTERM').map((l) => l.rank).sort();
  assert.deepEqual(got, [0, 1], `stdout:\n${out}\nstderr:\n${err}`);
  assert.equal(code, 143);
});

test('launcher: a worker that fails while it stops on the forwarded SIGTERM (its checkpoint cannot be written) is a failure: named, with its exit code, not 143', { skip: gloo }, async () => {
  // before, any signal to the launcher made it exit 128 + signal without a report, as if every rank had stopped cleanly
  const { code, out, err } = await launcherSignalled('sigterm-fails', (child) => child.kill('SIGTERM'));
  assert.equal(code, 1, `stdout:\n${out}\nstderr:\n${err}`);
  assert.match(err, /launch: rank 1 \(node 0, local rank 1, pid \d+\) exited with code 1/);
  assert.match(err, /\| semaim: cannot write checkpoints\/step-00000003\/model\.safetensors: ENOSPC/);
});

test('launcher: two nodes on 127.0.0.1 (--nnodes 2 --node-rank 0/1) form one world of 2', { skip: gloo }, async () => {
  const masterPort = await dist.freePort();
  const outs = [sink(), sink()];
  const rs = await Promise.all([0, 1].map((nodeRank) => dist.launchWorkers(['ok'], {
    nprocPerNode: 1, nnodes: 2, nodeRank, masterAddr: '127.0.0.1', masterPort, script: workerScript('launched'), stdout: outs[nodeRank], stderr: outs[nodeRank],
  })));
  assert.deepEqual(rs.map((r) => r.exitCode), [0, 0], outs.map((o) => o.text()).join('\n'));
  const lines = outs.flatMap((o) => jsonLines(o.text())).sort((a, b) => Number(a.rank) - Number(b.rank));
  // rank 1 is local rank 0 of its node: the group takes LOCAL_RANK (NCCL's GPU), not the global rank
  assert.deepEqual(lines.map((l) => [l.rank, l.worldSize, l.localRank, l.groupLocalRank, l.sum]), [[0, 2, 0, 0, 3], [1, 2, 0, 0, 3]]);
});

// Stand-in workers (a few lines of node, no libtorch): what the launcher itself decides, in well under a second.
const STAND_IN = `
const e = process.env;
console.log(JSON.stringify({ rank: +e.RANK, localRank: +e.LOCAL_RANK, worldSize: +e.WORLD_SIZE, localWorldSize: +e.LOCAL_WORLD_SIZE,
  groupRank: +e.GROUP_RANK, groupWorldSize: +e.GROUP_WORLD_SIZE, master: e.MASTER_ADDR + ':' + e.MASTER_PORT, argv: process.argv.slice(2) }));
const [mode, who, code] = process.argv.slice(2);
if (mode === 'fail' && e.LOCAL_RANK === who) { console.error('stand-in rank ' + e.RANK + ' fails'); code === 'KILL' ? process.kill(process.pid, 'SIGKILL') : process.exit(Number(code)); }
if (mode === 'fail') setTimeout(() => process.exit(0), 20000);
// stubborn: rank 0 ignores SIGTERM (it tells rank 1 so through a file, and marks each SIGTERM with the file who-term); rank 1 fails once it has
if (mode === 'stubborn' && e.LOCAL_RANK === '0') { process.on('SIGTERM', () => require('fs').writeFileSync(who + '-term', '')); require('fs').writeFileSync(who, ''); setTimeout(() => undefined, 20000); }
if (mode === 'stubborn' && e.LOCAL_RANK === '1') setInterval(() => { if (require('fs').existsSync(who)) process.exit(3); }, 10);
// peer: rank 0 exits first only saying it lost its peer (ERR_DIST_PEER); rank 1 then fails by itself (code 9)
if (mode === 'peer' && e.LOCAL_RANK === '1') { process.on('SIGTERM', () => process.exit(9)); require('fs').writeFileSync(who, ''); setTimeout(() => undefined, 20000); }
if (mode === 'peer' && e.LOCAL_RANK === '0') setInterval(() => { if (require('fs').existsSync(who)) { console.error('worker failed: ERR_DIST_PEER dist.allReduce failed on rank 0 of 2'); process.exit(1); } }, 10);
// relayed: rank 0 fails only repeating a rank of another node (code 1); rank 1 stops as a training worker does on SIGTERM (143)
if (mode === 'relayed' && e.LOCAL_RANK === '1') { process.on('SIGTERM', () => process.exit(143)); require('fs').writeFileSync(who, ''); setTimeout(() => undefined, 20000); }
if (mode === 'relayed' && e.LOCAL_RANK === '0') setInterval(() => { if (require('fs').existsSync(who)) { console.error('worker failed: ERR_DIST_PEER rank 3 of 4 failed: ENOSPC: no space left on device'); process.exit(1); } }, 10);
// held: rank 1 exits with code 5 while a process it started still holds its output (its pipes stay open until
// rank 0 got the launcher's SIGTERM, which rank 0 marks by writing the file); rank 0 would end by itself after 20 s
if (mode === 'held' && e.LOCAL_RANK === '1') {
  const poll = 'const fs = require("fs"); setInterval(() => { if (fs.existsSync(' + JSON.stringify(who) + ')) process.exit(0); }, 10); setTimeout(() => process.exit(0), 30000);';
  require('child_process').spawn(process.execPath, ['-e', poll], { stdio: ['ignore', 'inherit', 'inherit'], detached: true }).unref();
  console.error('stand-in rank 1 fails'); process.exit(5);
}
if (mode === 'held' && e.LOCAL_RANK === '0') { process.on('SIGTERM', () => { require('fs').writeFileSync(who, ''); process.exit(143); }); setTimeout(() => process.exit(0), 20000); }
// slow-stop: each rank marks that it is ready (its SIGTERM handler installed); on SIGTERM it takes 1.5 s (the step under
// way and its checkpoint), marks that it stopped, and exits 143, as a training worker does
// killed-stopping: on SIGTERM rank 1 is killed by SIGKILL (the OOM killer, during its checkpoint); rank 0 stops as asked (143)
if (mode === 'killed-stopping') {
  process.on('SIGTERM', () => (e.LOCAL_RANK === '1' ? process.kill(process.pid, 'SIGKILL') : process.exit(143)));
  require('fs').writeFileSync(who + '-ready-' + e.RANK, ''); setTimeout(() => process.exit(0), 20000);
}
if (mode === 'slow-stop') {
  process.on('SIGTERM', () => setTimeout(() => { require('fs').writeFileSync(who + '-stopped-' + e.RANK, ''); process.exit(143); }, 1500));
  require('fs').writeFileSync(who + '-ready-' + e.RANK, String(process.pid)); setTimeout(() => process.exit(0), 20000);
}
`;

test(
  'launcher (stand-in workers): node rank 1 of 2 numbers its workers 2 and 3 of a world of 4 with torchrun\'s variables; the launcher flags are not passed on',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const r = await dist.launchWorkers(['ok', '--node-rank', '1', '--x', '2'], {
      nprocPerNode: 2, nnodes: 2, nodeRank: 1, masterAddr: '10.1.2.3', masterPort: 4567, script, execArgv: [], stdout: out, stderr: out,
    });
    assert.deepEqual([r.exitCode, r.failedRank, r.message], [0, null, null], out.text());
    const lines = jsonLines(out.text()).sort((a, b) => Number(a.rank) - Number(b.rank));
    assert.deepEqual(lines, [0, 1].map((localRank) => ({
      rank: 2 + localRank, localRank, worldSize: 4, localWorldSize: 2, groupRank: 1, groupWorldSize: 2, master: '10.1.2.3:4567', argv: ['ok', '--x', '2'],
    })));
    assert.match(out.text(), /^\[rank 3\] \{"rank":3,/m);
  }),
);

test(
  "launcher (stand-in workers): a rank that exits with code 7 stops the others at once, the launcher exits 7 naming it; one killed by SIGKILL is a failure too (exit 1)",
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const t0 = Date.now();
    // rank 0 would run for 20 s by itself
    const r = await dist.launchWorkers(['fail', '1', '7'], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 5000, tailLines: 2 });
    const ms = Date.now() - t0;
    assert.equal(r.exitCode, 7, out.text());
    assert.equal(r.failedRank, 1);
    assert.match(r.message ?? '', /^launch: rank 1 \(node 0, local rank 1, pid \d+\) exited with code 7; stopped the other 1 worker on this node\.\nlast 2 lines of rank 1:\n {2}\| \{"rank":1,.*\n {2}\| stand-in rank 1 fails\n$/);
    assert.ok(ms < 10_000, `the launcher took ${ms} ms: rank 0 was not stopped`);
    // killed by a signal (the OOM killer's SIGKILL) is a failure too: exit 1, the others stopped at once
    const t1 = Date.now();
    const k = await dist.launchWorkers(['fail', '1', 'KILL'], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 5000 });
    assert.deepEqual([k.exitCode, k.failedRank], [1, 1], out.text());
    assert.match(k.message ?? '', /^launch: rank 1 \(node 0, local rank 1, pid \d+\) was killed by SIGKILL; stopped the other 1 worker/);
    assert.ok(Date.now() - t1 < 10_000, `the launcher took ${Date.now() - t1} ms: rank 0 was not stopped`);
  }),
);

test(
  'launcher (stand-in workers): a SIGTERM to the launcher while it stops the others after a failure keeps that failure as the result (its code, the rank), not 143',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const ready = join(dir, 'ready');
    // once rank 0 got the launcher's SIGTERM (rank 1 has failed), a scheduler's SIGTERM reaches the launcher
    let running = true;
    const watcher = setInterval(() => {
      if (!running || !existsSync(`${ready}-term`)) return;
      clearInterval(watcher);
      process.kill(process.pid, 'SIGTERM');
    }, 10);
    try {
      const r = await dist.launchWorkers(['stubborn', ready], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 3000 });
      running = false;
      assert.deepEqual([r.exitCode, r.failedRank], [3, 1], out.text());
      assert.match(r.message ?? '', /^launch: rank 1 \(node 0, local rank 1, pid \d+\) exited with code 3/);
    } finally {
      running = false;
      clearInterval(watcher);
    }
  }),
);

test(
  "launcher (stand-in workers): a worker that exited while a process it started holds its output open is judged at its exit: the others are stopped, it is named with its code",
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const stopped = join(dir, 'rank0-stopped');
    const r = await dist.launchWorkers(['held', stopped], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 5000 });
    assert.deepEqual([r.exitCode, r.failedRank], [5, 1], out.text());
    // before its output closed (only after rank 0 ended by itself), rank 1's exit was not judged and rank 0 was not stopped
    assert.ok(existsSync(stopped), 'rank 0 was stopped by the launcher');
  }),
);

test(
  'launcher (stand-in workers): a SIGTERM to the launcher lets every worker finish its step and checkpoint, however long past the failure grace period, before it exits 143',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const mark = join(dir, 'mark');
    let running = true;
    const watcher = setInterval(() => {
      if (!running || !existsSync(`${mark}-ready-0`) || !existsSync(`${mark}-ready-1`)) return;
      clearInterval(watcher);
      process.kill(process.pid, 'SIGTERM'); // a scheduler's SIGTERM to the launcher, once both workers handle it
    }, 10);
    try {
      const r = await dist.launchWorkers(['slow-stop', mark], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 300 });
      running = false;
      // before: both were killed with SIGKILL at the 300 ms grace, in the middle of their checkpoint, and the launcher
      // still exited 143 without a word, as if every rank had stopped after its checkpoint
      assert.deepEqual([r.exitCode, r.failedRank, r.message], [143, null, null], out.text());
      for (const rank of [0, 1]) assert.ok(existsSync(`${mark}-stopped-${rank}`), `rank ${rank} finished its checkpoint`);
    } finally {
      running = false;
      clearInterval(watcher);
    }
  }),
);

test(
  'launcher (stand-in workers): a worker found stopped (SIGSTOP, a debugger) when a signal is forwarded is continued, so that it stops after its checkpoint too',
  { timeout: 30_000 },
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const mark = join(dir, 'mark');
    let running = true;
    const watcher = setInterval(() => {
      if (!running || !existsSync(`${mark}-ready-0`) || !existsSync(`${mark}-ready-1`)) return;
      clearInterval(watcher);
      const pid = Number(readFileSync(`${mark}-ready-1`, 'utf8'));
      if (Number.isSafeInteger(pid) && pid > 1) process.kill(pid, 'SIGSTOP'); // (never 0: this whole process group)
      // the stop takes effect when the worker is next scheduled: on a loaded machine /proc still said running when
      // the launcher looked, which then had no stopped worker to continue (the test hung, not the launcher)
      waitUntilSync(10_000, () => /^[Tt]$/.test(procState(pid)));
      process.kill(process.pid, 'SIGTERM');
    }, 10);
    try {
      // (no SIGKILL follows a forwarded signal: a stopped worker left stopped would hold the launcher forever)
      const r = await dist.launchWorkers(['slow-stop', mark], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 300 });
      running = false;
      assert.deepEqual([r.exitCode, r.failedRank, r.message], [143, null, null], out.text());
      for (const rank of [0, 1]) assert.ok(existsSync(`${mark}-stopped-${rank}`), `rank ${rank} finished its checkpoint`);
    } finally {
      running = false;
      clearInterval(watcher);
    }
  }),
);

test(
  'launcher (stand-in workers): a worker killed by another signal (SIGKILL: the OOM killer) while it stops on the forwarded SIGTERM is a failure, named, not 143',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const mark = join(dir, 'mark');
    let running = true;
    const watcher = setInterval(() => {
      if (!running || !existsSync(`${mark}-ready-0`) || !existsSync(`${mark}-ready-1`)) return;
      clearInterval(watcher);
      process.kill(process.pid, 'SIGTERM');
    }, 10);
    try {
      const r = await dist.launchWorkers(['killed-stopping', mark], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 5000 });
      running = false;
      // before: 143 without a report, the code that says every rank stopped after its checkpoint
      assert.deepEqual([r.exitCode, r.failedRank], [1, 1], out.text());
      assert.match(r.message ?? '', /^launch: rank 1 \(node 0, local rank 1, pid \d+\) was killed by SIGKILL while stopping on SIGTERM\./);
    } finally {
      running = false;
      clearInterval(watcher);
    }
  }),
);

test(
  'launcher (stand-in workers): a worker that ignores the SIGTERM after another failed is killed after the grace period; a rank that only lost its peer is not named; several nodes meet at port 29500 by default; a --node-rank outside --nnodes is refused',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const t0 = Date.now();
    const r = await dist.launchWorkers(['stubborn', join(dir, 'ready')], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 300 });
    const ms = Date.now() - t0;
    assert.deepEqual([r.exitCode, r.failedRank], [3, 1], out.text());
    assert.ok(ms < 10_000, `the launcher took ${ms} ms: rank 0, which ignores SIGTERM, was not killed`);
    const multi = sink();
    const m = await dist.launchWorkers(['ok'], { nprocPerNode: 1, nnodes: 2, nodeRank: 1, masterAddr: 'n0', script, execArgv: [], stdout: multi, stderr: multi });
    assert.equal(m.exitCode, 0, multi.text());
    assert.deepEqual(jsonLines(multi.text()).map((l) => [l.rank, l.worldSize, l.master]), [[1, 2, 'n0:29500']]);
    // the rank that only saw its peer go away is passed over when naming the failure, though it exited first
    const peer = sink();
    const p = await dist.launchWorkers(['peer', join(dir, 'peer-ready')], { nprocPerNode: 2, script, execArgv: [], stdout: peer, stderr: peer, killGraceMs: 5000 });
    assert.deepEqual([p.exitCode, p.failedRank], [9, 1], peer.text());
    await assert.rejects(dist.launchWorkers(['ok'], { nprocPerNode: 1, nnodes: 2, nodeRank: 2, script, execArgv: [] }), /--node-rank must be in \[0, 1\] \(--nnodes 2\), got 2/);
    // a port no worker can use (0, which the command's flag reads as "a free port") is refused before any starts
    for (const masterPort of [0, 65536, 1.5])
      await assert.rejects(dist.launchWorkers(['ok'], { nprocPerNode: 1, masterPort, script, execArgv: [] }), /--master-port must be an integer in \[1, 65535\]/);
  }),
);

test(
  'launcher (stand-in workers): a worker that ends with 143 on the SIGTERM the launcher sent it after another failed is not named as the cause, even when the failed one only repeats a rank of another node',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const r = await dist.launchWorkers(['relayed', join(dir, 'ready')], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 5000 });
    // before: "launch: rank 1 ... exited with code 143", and the launcher exited 143 as if stopped by SIGTERM
    assert.deepEqual([r.exitCode, r.failedRank], [1, 0], out.text());
    assert.match(r.message ?? '', /^launch: rank 0 \(node 0, local rank 0, pid \d+\) exited with code 1; stopped the other 1 worker on this node\.\n/);
    assert.match(r.message ?? '', /rank 3 of 4 failed: ENOSPC/);
  }),
);

test(
  'launcher (stand-in workers): a worker that cannot be started (spawn fails: no process left, EAGAIN) is a failure that stops the others at once, named with the reason',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const t0 = Date.now();
    // the second spawn fails (its program is missing: spawn's 'error' and 'close', no 'exit'); with the
    // port given, launchWorkers spawns every worker before its first await
    const node = process.execPath;
    let spawns = 0;
    Object.defineProperty(process, 'execPath', { configurable: true, enumerable: true, get: () => (spawns++ === 1 ? join(dir, 'missing-node') : node) });
    let launched: Promise<dist.LaunchResult>;
    try {
      launched = dist.launchWorkers(['fail', 'none'], { nprocPerNode: 2, masterPort: 1, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 5000 });
    } finally {
      Object.defineProperty(process, 'execPath', { configurable: true, enumerable: true, writable: true, value: node });
    }
    const r = await launched;
    // before: rank 0 was left running (a real worker waits for the missing rank until the timeout, 30 min by
    // default), and the report said "rank 1 (... pid undefined) exited with code null"
    assert.ok(Date.now() - t0 < 10_000, `the launcher took ${Date.now() - t0} ms: rank 0 was not stopped`);
    assert.deepEqual([r.exitCode, r.failedRank], [1, 1], out.text());
    assert.match(r.message ?? '', /^launch: rank 1 \(node 0, local rank 1\) could not be started; stopped the other 1 worker on this node\.\n/);
    assert.match(r.message ?? '', /launch: cannot start the worker: spawn .*missing-node ENOENT/);
  }),
);

test(
  'launcher (stand-in workers): a worker whose spawn throws (ENOMEM, E2BIG: no process, no events) is a failure that stops the others started before it, named with the reason',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const t0 = Date.now();
    // the second spawn throws, as child_process.spawn does for an error other than EACCES, EAGAIN, EMFILE, ENFILE and
    // ENOENT (ENOMEM from fork: a machine short of memory while the first workers load); a path with a NUL byte is
    // refused the same way, by a throw before any process starts
    const node = process.execPath;
    let spawns = 0;
    Object.defineProperty(process, 'execPath', { configurable: true, enumerable: true, get: () => (spawns++ === 1 ? `${node}\0` : node) });
    let launched: Promise<dist.LaunchResult>;
    try {
      launched = dist.launchWorkers(['fail', 'none'], { nprocPerNode: 2, masterPort: 1, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 5000 });
    } finally {
      Object.defineProperty(process, 'execPath', { configurable: true, enumerable: true, writable: true, value: node });
    }
    // before: launchWorkers rejected with the spawn's error and left rank 0 running unattended (a real worker waits
    // for the missing rank until the timeout, 30 min by default), its output still copied, its signals no longer forwarded
    const r = await launched;
    assert.ok(Date.now() - t0 < 10_000, `the launcher took ${Date.now() - t0} ms: rank 0 was not stopped`);
    assert.deepEqual([r.exitCode, r.failedRank], [1, 1], out.text());
    assert.match(r.message ?? '', /^launch: rank 1 \(node 0, local rank 1\) could not be started; stopped the other 1 worker on this node\.\n/);
    assert.match(r.message ?? '', /launch: cannot start the worker: .*null bytes/);
  }),
);

test(
  'launcher (stand-in workers): which rank is named does not depend on how many lines the report quotes (tailLines)',
  inTempDir('semaim-launch-', async (dir) => {
    const script = join(dir, 'stand-in.js');
    writeFileSync(script, STAND_IN);
    const out = sink();
    const r = await dist.launchWorkers(['peer', join(dir, 'peer-ready')], { nprocPerNode: 2, script, execArgv: [], stdout: out, stderr: out, killGraceMs: 5000, tailLines: 0 });
    // before: the lines kept for the report were the only ones searched for "only repeats another rank":
    // with none kept, rank 0, which only lost its peer, was named (exit 1) and stopped rank 1 at once
    assert.deepEqual([r.exitCode, r.failedRank], [9, 1], out.text());
    assert.match(r.message ?? '', /^launch: rank 1 \(node 0, local rank 1, pid \d+\) exited with code 9; stopped the other 1 worker on this node\.\nlast 0 lines of rank 1:\n {2}\(no output\)\n$/);
  }),
);

test(
  'stopWhenLauncherDies: a worker whose launcher (SEMAIM_LAUNCHER_PID, its parent) exits stops within its check interval',
  inTempDir('semaim-orphan-watch-', async (dir) => {
    const out = join(dir, 'out');
    const watch = join(__dirname, '..', '..', 'src', 'dist', 'orphan-watch.js');
    writeFileSync(join(dir, 'worker.js'), `
      const fs = require('fs');
      require(${JSON.stringify(watch)}).stopWhenLauncherDies({ intervalMs: 20, onGone: () => { fs.writeFileSync(${JSON.stringify(out)}, 'gone'); process.exit(0); } });
      fs.writeFileSync(${JSON.stringify(out)}, 'watching');
      setTimeout(() => { fs.writeFileSync(${JSON.stringify(out)}, 'still running'); process.exit(1); }, 8000);`);
    // the launcher: starts the worker, exits once it watches
    const launcher = spawn(process.execPath, ['-e', `
      const fs = require('fs');
      const c = require('child_process').spawn(process.execPath, [${JSON.stringify(join(dir, 'worker.js'))}], { env: { ...process.env, SEMAIM_LAUNCHER_PID: String(process.pid) }, stdio: 'ignore', detached: true });
      c.unref();
      const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(out)})) { clearInterval(t); process.exit(0); } }, 10);`], { stdio: 'ignore' });
    await new Promise((resolve) => launcher.on('exit', resolve));
    const t0 = Date.now();
    let text = '';
    while (Date.now() - t0 < 10_000 && !['gone', 'still running'].includes(text)) {
      await new Promise((r) => setTimeout(r, 20));
      text = readFileSync(out, 'utf8');
    }
    assert.equal(text, 'gone', "the watch fired before the worker's own 8 s deadline");
  }),
);

for (const [name, args] of [
  ["--standalone's c10d rendezvous (on a free port)", ['--nproc_per_node', '2']],
  ['static rendezvous (the agent hosts the store)', ['--nnodes', '1', '--nproc_per_node', '2', '--master_addr', '127.0.0.1']],
] as const) {
  test(`torchrun ${name} --no_python node <worker> works unchanged`, { skip: gloo || (name.startsWith('static') ? agentStoreMismatch() : noTorchrun) }, async () => {
    const extra = name.startsWith('static') ? ['--master_port', String(await dist.freePort())] : await standalone();
    const r = spawnSync(TORCHRUN, [...args, ...extra, '--redirects', '1', '--tee', '1', '--monitor_interval', '0.2', '--no_python', process.execPath, workerScript('launched'), 'ok'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const lines = jsonLines(r.stdout).sort((a, b) => Number(a.rank) - Number(b.rank));
    assert.deepEqual(lines.map((l) => [l.rank, l.worldSize, l.localRank, l.sum]), [[0, 2, 0, 3], [1, 2, 1, 3]]);
    assert.deepEqual(lines.map((l) => l.agentStore), name.startsWith('static') ? [true, true] : [false, false]);
  });
}

test('launcherPid: a worker of torchrun or of semaim\'s launcher watches its parent; one started by hand does not', () => {
  assert.equal(dist.launcherPid({ TORCHELASTIC_RUN_ID: 'none', RANK: '0' }, 42), 42);
  assert.equal(dist.launcherPid({ SEMAIM_LAUNCHER_PID: '42', RANK: '0' }, 42), 42);
  assert.equal(dist.launcherPid({ SEMAIM_LAUNCHER_PID: '42', RANK: '0' }, 7), null, 'inherited from a launcher further up');
  assert.equal(dist.launcherPid({ RANK: '0', WORLD_SIZE: '2' }, 42), null);
});

/** Whether a process is gone (a zombie no init reaps counts as gone). */
function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0] === 'Z';
  } catch {
    return true;
  }
}

for (const launcher of ['torchrun', 'semaim --nproc-per-node'] as const) {
  test(`${launcher}'s launcher killed with SIGKILL: its pretrain workers stop as on SIGTERM (a checkpoint, the lock released) instead of training on as orphans or dying on the closed pipes`, { skip: gloo || (launcher === 'torchrun' && noTorchrun), timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-orphans-'));
    const out = join(dir, 'run');
    const cli = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
    const tiny = '--model vit_tiny --embed-dim 32 --depth 2 --num-heads 2 --img-size 32 --patch-size 4 --synthetic-size 4096 --batch-size 8 --epochs 10 --warmup-epochs 0 --num-workers 0 --threads 1 --log-every 1 --checkpoint-every 1000';
    const command = [cli, 'pretrain', ...tiny.split(' '), '--out-dir', out];
    // semaim's launcher holds its workers' stdout and stderr (pipes): once it is gone, their every write fails with EPIPE
    const agent =
      launcher === 'torchrun'
        ? spawn(TORCHRUN, [...(await standalone()), '--nproc_per_node', '2', '--redirects', '1', '--tee', '1', '--monitor_interval', '0.2', '--no_python', process.execPath, ...command], { stdio: 'ignore' })
        : spawn(process.execPath, [...command, '--nproc-per-node', '2'], { stdio: 'ignore' });
    const metrics = join(out, 'metrics.jsonl');
    const deadline = Date.now() + 90_000;
    while (!(existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const workers = readFileSync(`/proc/${agent.pid}/task/${agent.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    assert.equal(workers.length, 2, 'two workers training');
    agent.kill('SIGKILL');
    const killed = Date.now();
    while (!workers.every(gone) && Date.now() - killed < 20_000) await new Promise((r) => setTimeout(r, 100));
    for (const pid of workers.filter((p) => !gone(p))) process.kill(pid, 'SIGKILL');
    try {
      assert.ok(Date.now() - killed < 20_000, 'the workers outlived their launcher');
      assert.equal(existsSync(join(out, 'run.lock')), false, 'the run folder is released');
      // (an epoch is 256 steps: no checkpoint but the one of the stop)
      const steps = readdirSync(join(out, 'checkpoints')).filter((d) => d.startsWith('step-'));
      const lastLogged = JSON.parse(readFileSync(metrics, 'utf8').trim().split('\n').pop()!) as { step: number };
      assert.deepEqual(steps, [`step-${String(lastLogged.step).padStart(8, '0')}`], 'a checkpoint of where they stopped');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("SIGTERM to one worker of semaim's launcher (a scheduler preempting it): every rank stops after a checkpoint, and the launcher exits 143, not SIGINT's 130", { skip: gloo, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-term-one-'));
  const out = join(dir, 'run');
  const cli = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
  const tiny = '--model vit_tiny --embed-dim 32 --depth 2 --num-heads 2 --img-size 32 --patch-size 4 --synthetic-size 4096 --batch-size 8 --epochs 10 --warmup-epochs 0 --num-workers 0 --threads 1 --log-every 1 --checkpoint-every 1000';
  const launcher = spawn(process.execPath, [cli, 'pretrain', ...tiny.split(' '), '--out-dir', out, '--nproc-per-node', '2'], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => launcher.on('exit', (code) => resolve(code)));
  try {
    const metrics = join(out, 'metrics.jsonl');
    const deadline = Date.now() + 90_000;
    while (!(existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const workers = readFileSync(`/proc/${launcher.pid}/task/${launcher.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const rankOne = workers.find((pid) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('RANK=1'));
    assert.ok(rankOne, 'rank 1 found');
    process.kill(rankOne, 'SIGTERM');
    assert.equal(await exited, 143);
    const steps = readdirSync(join(out, 'checkpoints')).filter((d) => d.startsWith('step-'));
    assert.equal(steps.length, 1, 'a checkpoint of where they stopped');
  } finally {
    launcher.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
