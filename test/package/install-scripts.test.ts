// What `npm ci` and the install step run: every dependency's install script is reviewed in
// package.json's allowScripts (npm 11 warns about each one that is not, on every install), and
// scripts/run-tests.js picks test files by their path in the checkout, not by where the checkout is,
// and runs them under SEMAIM_TEST_DEVICE wherever the checkout is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..');

interface LockEntry {
  version?: string;
  hasInstallScript?: boolean;
}

/** Whether an allowScripts key (a name, or name@v1 || v2 with exact versions) names this package. */
function covers(key: string, name: string, version: string): boolean {
  const at = key.lastIndexOf('@');
  if (at <= 0) return key === name;
  if (key.slice(0, at) !== name) return false;
  return key
    .slice(at + 1)
    .split('||')
    .map((v) => v.trim())
    .includes(version);
}

test("every dependency with an install script is reviewed in package.json's allowScripts", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const keys = Object.keys(pkg.allowScripts ?? {});
  const unreviewed = Object.entries(lock.packages)
    .filter(([path, e]) => path !== '' && e.hasInstallScript)
    .map(([path, e]) => ({ name: path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length), version: e.version ?? '' }))
    .filter(({ name, version }) => !keys.some((k) => covers(k, name, version)))
    .map(({ name, version }) => `${name}@${version}`);
  assert.deepEqual(unreviewed, [], 'npm ci warns "packages have install scripts not yet covered by allowScripts" for these');
});

test('run-tests.js matches its substrings against the path in the checkout, not the absolute path', () => {
  const list = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'scripts', 'run-tests.js'), '--list', ...args], { encoding: 'utf8' });
  const one = list('package/install-scripts');
  assert.equal(one.status, 0, one.stderr);
  assert.deepEqual(one.stdout.trim().split('\n'), [join('dist', 'test', 'package', 'install-scripts.test.js')]);
  // a folder name above the checkout that no test file's own path holds selects nothing
  const all = list().stdout.trim().split('\n');
  const outside = ROOT.split(sep).find((seg) => seg.length > 0 && !all.some((f) => f.includes(seg)));
  if (outside === undefined) return; // every folder above the checkout is named like some test path
  const none = list(outside);
  assert.equal(none.status, 1, `"${outside}" (a folder above the checkout) selected:\n${none.stdout}`);
  assert.match(none.stderr, /no test file under dist\/test has ".*" in its path/);
});

test('run-tests.js with SEMAIM_TEST_DEVICE preloads scripts/test-device.js from a checkout whose path has a space', (t) => {
  // a copy of the two scripts in "<tmp>/a checkout/", with dist/src linked to this checkout's
  const dir = mkdtempSync(join(tmpdir(), 'semaim-run-tests-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const copy = join(dir, 'a checkout');
  mkdirSync(join(copy, 'scripts'), { recursive: true });
  mkdirSync(join(copy, 'dist', 'test'), { recursive: true });
  for (const f of ['run-tests.js', 'test-device.js']) copyFileSync(join(ROOT, 'scripts', f), join(copy, 'scripts', f));
  symlinkSync(join(ROOT, 'dist', 'src'), join(copy, 'dist', 'src'));
  mkdirSync(join(copy, 'test'));
  writeFileSync(join(copy, 'test', 'preloaded.test.ts'), ''); // its source: the runner runs only tests that have one
  writeFileSync(
    join(copy, 'dist', 'test', 'preloaded.test.js'),
    "require('node:test')('preloaded', () => require('node:assert').ok(Object.keys(require.cache).some((f) => f.endsWith('test-device.js'))));\n",
  );
  // without NODE_TEST_CONTEXT, which would make the inner runner report to this one instead of in TAP
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const r = spawnSync(process.execPath, [join(copy, 'scripts', 'run-tests.js')], { encoding: 'utf8', env: { ...env, SEMAIM_TEST_DEVICE: 'cpu' } });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /# pass 1/);
});

test('run-tests.js leaves out a compiled test whose test/ source is gone, naming it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-run-tests-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'scripts'));
  copyFileSync(join(ROOT, 'scripts', 'run-tests.js'), join(dir, 'scripts', 'run-tests.js'));
  const list = () => spawnSync(process.execPath, [join(dir, 'scripts', 'run-tests.js'), '--list'], { encoding: 'utf8' });
  const none = list(); // no build yet
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no test files found under dist\/test/);
  for (const f of ['test/kept.test.ts', 'dist/test/kept.test.js', 'dist/test/moved/away.test.js']) {
    mkdirSync(join(dir, f, '..'), { recursive: true });
    writeFileSync(join(dir, f), '');
  }
  const r = list();
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), [join('dist', 'test', 'kept.test.js')]);
  assert.match(r.stderr, /not running dist\/test\/moved\/away\.test\.js: no test\/ source/);
});
