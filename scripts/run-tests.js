#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's built-in test runner.
// Node 20's `--test` does not expand globs, so the list is built here.
// Pass substrings to run a subset: `node scripts/run-tests.js tensor optim` (files whose path in the
// checkout, e.g. dist/test/torch/tensor.test.js, holds any of them).
// SEMAIM_TEST_DEVICE=cuda runs them with tensors created without a device on that device
// (scripts/test-device.js); tests of CPU-only behaviour skip themselves then.
'use strict';
const { existsSync, readdirSync, statSync } = require('node:fs');
const { join, relative } = require('node:path');
const { spawnSync } = require('node:child_process');

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
const r = spawnSync(process.execPath, args, { stdio: 'inherit', env });
process.exit(r.status ?? 1);
