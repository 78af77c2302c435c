#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's built-in test runner.
// Node 20's `--test` does not expand globs, so the list is built here.
// Pass substrings to run a subset: `node scripts/run-tests.js tensor optim` (files whose path in the
// checkout, e.g. dist/test/torch/tensor.test.js, holds any of them).
// SEMAIM_TEST_DEVICE=cuda runs them with tensors created without a device on that device
// (scripts/test-device.js); tests of CPU-only behaviour skip themselves then.
// A test file still running after SEMAIM_TEST_FILE_TIMEOUT_S seconds (default 900) is killed with every
// process it started, and named as failed: one that hung (an open handle, a child that never exits) hung
// the whole run until CI's own limit, without a word on which file.
'use strict';
const { existsSync, readdirSync, readFileSync, statSync } = require('node:fs');
const { join, relative } = require('node:path');
const { spawn } = require('node:child_process');
const { constants } = require('node:os');

function walk(dir) {
  let out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

// The substrings are matched against each file's path relative to the checkout
// (dist/test/package/libtorch.test.js), not its absolute path: a checkout under a folder whose name
// holds the substring would otherwise run every file. `--list` prints the files instead of running them.
const ROOT = join(__dirname, '..');
const list = process.argv.includes('--list');
const filters = process.argv.slice(2).filter((a) => a !== '--list');
// A compiled test whose test/**/*.ts is gone (deleted or moved: tsc leaves its old output in dist/) is
// not run: it would test code that no longer exists, from dist/src files left over beside it.
const sourceOf = (f) => join(ROOT, relative(join(ROOT, 'dist'), f)).replace(/\.js$/, '.ts');
const compiled = walk(join(ROOT, 'dist', 'test'));
const stale = compiled.filter((f) => !existsSync(sourceOf(f)));
if (stale.length) console.error(`run-tests: not running ${stale.map((f) => relative(ROOT, f)).join(', ')}: no test/ source (left from an earlier build)`);
const files = compiled
  .filter((f) => !stale.includes(f))
  .filter((f) => filters.length === 0 || filters.some((s) => relative(ROOT, f).includes(s)))
  .sort();
if (files.length === 0) {
  console.error(
    filters.length
      ? `no test file under dist/test has ${filters.map((s) => `"${s}"`).join(' or ')} in its path`
      : 'no test files found under dist/test (did `npm run build` run?)',
  );
  process.exit(1);
}
if (list) {
  for (const f of files) console.log(relative(ROOT, f));
  process.exit(0);
}
const args = ['--expose-gc', '--test', '--test-concurrency=1', ...files];
const env = { ...process.env };
if (env.SEMAIM_TEST_DEVICE) {
  // Through NODE_OPTIONS, so that the runner's per-file child processes load it too; the path quoted,
  // since NODE_OPTIONS splits at spaces (a checkout under a folder whose name has one).
  env.NODE_OPTIONS = `--require ${JSON.stringify(join(__dirname, 'test-device.js'))}${env.NODE_OPTIONS ? ` ${env.NODE_OPTIONS}` : ''}`;
}
const timeoutText = process.env.SEMAIM_TEST_FILE_TIMEOUT_S ?? '900';
const timeoutS = Number(timeoutText);
if (!(timeoutS > 0)) {
  console.error(`run-tests: SEMAIM_TEST_FILE_TIMEOUT_S must be a number of seconds > 0, got '${timeoutText}'`);
  process.exit(2);
}

/** Each process's parent and start time (in clock ticks since boot, telling a reused pid apart), from /proc; null without one. */
function processTable() {
  let pids;
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return null;
  }
  const table = new Map();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // fields 3.. follow the name, which is in parentheses and may hold spaces and ')'
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      table.set(Number(pid), { ppid: Number(rest[1]), start: rest[19] });
    } catch {
      /* exited meanwhile */
    }
  }
  return table;
}

function descendants(pid, table) {
  const out = [];
  for (let k = -1; k < out.length; k++) {
    const parent = k < 0 ? pid : out[k];
    for (const [p, { ppid }] of table) if (ppid === parent) out.push(p);
  }
  return out;
}

/** Kills a process and all its descendants: stopped first, until no new one appears (a stopped process starts no more), then killed. */
function killTree(pid) {
  const stopped = new Set();
  for (;;) {
    const fresh = [pid, ...descendants(pid, processTable() ?? new Map())].filter((p) => !stopped.has(p));
    if (fresh.length === 0) break;
    for (const p of fresh) {
      try {
        process.kill(p, 'SIGSTOP');
      } catch {
        /* exited meanwhile */
      }
      stopped.add(p);
    }
  }
  for (const p of stopped) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* exited meanwhile */
    }
  }
  return stopped.size;
}

// node --test runs each file in a child process of its own, with the file's path among its arguments
const running = new Map(); // pid -> { file, start, since }
const timedOut = [];
function killFilesPastTheirTime(runnerPid) {
  const table = processTable();
  if (!table) return; // no /proc (not Linux): no per-file limit
  for (const [pid, { ppid, start }] of table) {
    if (ppid !== runnerPid || running.get(pid)?.start === start) continue;
    let argv;
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const file = argv.find((a) => files.includes(a));
    if (file) running.set(pid, { file, start, since: Date.now() });
  }
  for (const [pid, { file, start, since }] of running) {
    if (table.get(pid)?.start !== start) running.delete(pid);
    else if (Date.now() - since > timeoutS * 1000) {
      running.delete(pid);
      timedOut.push(relative(ROOT, file));
      const n = killTree(pid);
      console.error(
        `run-tests: ${relative(ROOT, file)} ran longer than ${timeoutS} s (SEMAIM_TEST_FILE_TIMEOUT_S): killed it and ${n - 1} process(es) it started`,
      );
    }
  }
}

const runner = spawn(process.execPath, args, { stdio: 'inherit', env });
const watch = setInterval(() => killFilesPastTheirTime(runner.pid), Math.min(1000, (timeoutS * 1000) / 4));
// A SIGINT / SIGTERM / SIGHUP sent to this script alone (CI cancelling the job, `timeout`, `kill`) reaches the
// runner and every test process too, as a terminal's Ctrl-C does: they ran on without it, and without the
// per-file limit. What has not ended 5 s later is killed; this script then exits with 128 + the signal's number.
let stoppedBy = null;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (runner.pid === undefined) process.exit(128 + constants.signals[signal]); // (never started: no process to stop)
    stoppedBy ??= signal;
    for (const p of [runner.pid, ...descendants(runner.pid, processTable() ?? new Map())]) {
      try {
        process.kill(p, signal);
      } catch {
        /* exited meanwhile */
      }
    }
    setTimeout(() => killTree(runner.pid), 5000).unref();
  });
}
runner.on('exit', (code) => {
  clearInterval(watch);
  if (timedOut.length) console.error(`run-tests: failed, past SEMAIM_TEST_FILE_TIMEOUT_S=${timeoutS}: ${timedOut.join(', ')}`);
  process.exit(stoppedBy ? 128 + constants.signals[stoppedBy] : timedOut.length ? 1 : (code ?? 1));
});
