// What `npm ci` and the install step run: every dependency's install script is reviewed in
// package.json's allowScripts (npm 11 warns about each one that is not, on every install), and
// scripts/run-tests.js picks test files by their path in the checkout, not by where the checkout is,
// and runs them under SEMAIM_TEST_DEVICE wherever the checkout is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { makeExecTempDir } from '../temp-dir';

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

test(
  'run-tests.js kills a test file still running after SEMAIM_TEST_FILE_TIMEOUT_S, with the processes it started, names it as failed and runs the rest',
  { skip: !existsSync('/proc/self/stat') && 'no /proc (the limit needs it)' },
  (t) => {
    // the hanging file's child holds the runner's output pipe: node --test's own --test-timeout then waits for it forever
    const dir = mkdtempSync(join(tmpdir(), 'semaim-run-tests-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'scripts'));
    copyFileSync(join(ROOT, 'scripts', 'run-tests.js'), join(dir, 'scripts', 'run-tests.js'));
    const childPid = join(dir, 'child.pid');
    const hanging =
      "const { spawn } = require('node:child_process');\n" +
      "const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'inherit' });\n" +
      `require('node:fs').writeFileSync(${JSON.stringify(childPid)}, String(child.pid));\n` +
      "require('node:test')('never ends', () => new Promise(() => {}));\n";
    const files = { 'hangs.test': hanging, 'passes.test': "require('node:test')('passes', () => {});\n" };
    mkdirSync(join(dir, 'test'));
    mkdirSync(join(dir, 'dist', 'test'), { recursive: true });
    for (const [name, js] of Object.entries(files)) {
      writeFileSync(join(dir, 'test', `${name}.ts`), '');
      writeFileSync(join(dir, 'dist', 'test', `${name}.js`), js);
    }
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const run = (timeout: string) =>
      spawnSync(process.execPath, [join(dir, 'scripts', 'run-tests.js')], {
        encoding: 'utf8',
        env: { ...env, SEMAIM_TEST_FILE_TIMEOUT_S: timeout },
        timeout: 60_000,
      });
    const r = run('1');
    assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(
      r.stderr,
      /run-tests: dist\/test\/hangs\.test\.js ran longer than 1 s \(SEMAIM_TEST_FILE_TIMEOUT_S\): killed it and 1 process\(es\) it started/,
    );
    assert.match(r.stderr, /run-tests: failed, past SEMAIM_TEST_FILE_TIMEOUT_S=1: dist\/test\/hangs\.test\.js$/m);
    assert.match(r.stdout, /^ok \d+ - passes$/m);
    // gone, or a zombie no one reaps (a container's pid 1 may not)
    const state = (pid: string) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      } catch {
        return 'gone';
      }
    };
    assert.match(state(readFileSync(childPid, 'utf8')), /^(gone|Z)$/, 'the child the hanging file started was killed');

    const bad = run('soon');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /SEMAIM_TEST_FILE_TIMEOUT_S must be a number of seconds > 0, got 'soon'/);
  },
);

test(
  'run-tests.js stopped by SIGTERM (CI cancelling the job, `timeout`, `kill`) stops the test runner and the test files too, and exits 143',
  { skip: !existsSync('/proc/self/stat') && 'no /proc (the check needs it)' },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'semaim-run-tests-'));
    const pidFile = join(dir, 'file.pid');
    let filePid = 0;
    t.after(() => {
      // (a pid read from a file is signalled only when it is a real one: 0 would be this whole process group)
      if (Number.isSafeInteger(filePid) && filePid > 1 && state(filePid) !== 'gone') process.kill(filePid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
    mkdirSync(join(dir, 'scripts'));
    copyFileSync(join(ROOT, 'scripts', 'run-tests.js'), join(dir, 'scripts', 'run-tests.js'));
    mkdirSync(join(dir, 'test'));
    mkdirSync(join(dir, 'dist', 'test'), { recursive: true });
    writeFileSync(join(dir, 'test', 'slow.test.ts'), '');
    writeFileSync(
      join(dir, 'dist', 'test', 'slow.test.js'),
      `require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));\n` +
        "require('node:test')('slow', () => new Promise((resolve) => setTimeout(resolve, 30000)));\n",
    );
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const runTests = spawn(process.execPath, [join(dir, 'scripts', 'run-tests.js')], { stdio: 'ignore', env });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => runTests.on('exit', (code, signal) => resolve([code, signal])));
    const t0 = Date.now();
    while (!(existsSync(pidFile) && readFileSync(pidFile, 'utf8') !== '') && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 50));
    filePid = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(filePid > 1, 'the test file started');
    runTests.kill('SIGTERM');
    const [code, signal] = await exited;
    assert.ok(code === 143 || signal === 'SIGTERM', `exit ${code}, signal ${signal}`);
    const t1 = Date.now();
    while (state(filePid) !== 'gone' && Date.now() - t1 < 10_000) await new Promise((r) => setTimeout(r, 50));
    // before: run-tests.js died alone; node --test and the test file ran on (without the per-file limit either)
    assert.equal(state(filePid), 'gone', 'the test file was stopped with run-tests.js');
  },
);

/** A process's state letter, or 'gone' (no such process, or a zombie: it has ended). */
function state(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const s = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return s === 'Z' ? 'gone' : s;
  } catch {
    return 'gone';
  }
}

/**
 * A copy of scripts/setup.sh in a checkout whose node_modules is installed, run with a PATH of only
 * `tools` (links to the real ones) plus a logging npm and npx: no apt-get, no dpkg-query, as off Debian.
 * `finder`: the native/find-libtorch.js the copy gets.
 */
function setupOffDebian(dir: string, finder: string, env: Record<string, string | undefined> = {}) {
  const copy = join(dir, 'checkout');
  const bin = join(dir, 'bin');
  for (const d of [join(copy, 'scripts'), join(copy, 'native'), join(copy, 'node_modules', 'node-addon-api'), bin]) mkdirSync(d, { recursive: true });
  copyFileSync(join(ROOT, 'scripts', 'setup.sh'), join(copy, 'scripts', 'setup.sh'));
  writeFileSync(join(copy, 'native', 'find-libtorch.js'), finder);
  writeFileSync(join(copy, 'native', 'gen-ops.js'), '');
  writeFileSync(join(copy, 'package-lock.json'), '{}');
  writeFileSync(join(copy, 'node_modules', '.package-lock.json'), '{}'); // not older than package-lock.json
  const log = join(dir, 'calls.log');
  const quotedLog = `'${log.replace(/'/g, `'\\''`)}'`; // (a $TMPDIR with a quote in it ended the script's quoted word)
  for (const tool of ['npm', 'npx']) writeFileSync(join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> ${quotedLog}\n`, { mode: 0o755 });
  for (const tool of ['bash', 'sh', 'dirname', 'id', 'cat']) {
    const real = ['/usr/bin', '/bin'].map((d) => join(d, tool)).find((p) => existsSync(p));
    if (real) symlinkSync(real, join(bin, tool));
  }
  symlinkSync(process.execPath, join(bin, 'node'));
  const { LIBTORCH: _, ...base } = process.env;
  const r = spawnSync(join(bin, 'bash'), [join(copy, 'scripts', 'setup.sh')], { encoding: 'utf8', env: { ...base, ...env, PATH: bin } });
  return { ...r, calls: existsSync(log) ? readFileSync(log, 'utf8') : '' };
}

test('setup.sh off Debian (no apt-get) builds against the libtorch the addon build finds (a pip PyTorch), else stops with its message', (t) => {
  const dir = makeExecTempDir('semaim-setup-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // a pip PyTorch, as the real find-libtorch.js reports one
  const found = setupOffDebian(join(dir, 'pip'), "console.log('/venv/torch/lib');\n");
  assert.equal(found.status, 0, `${found.stdout}\n${found.stderr}`);
  assert.match(found.stdout, /setup: no apt-get here: skipping the Debian packages \(libtorch-dev .*\); the addon is built against \/venv\/torch\/lib/);
  assert.equal(found.calls, 'npm run --silent install\nnpx tsc -p tsconfig.json\n');
  // none: find-libtorch's own message (how to get one), before npm runs
  const none = setupOffDebian(join(dir, 'none'), "console.error('libtorch not found: ... Get one of: pip install torch');\nprocess.exit(1);\n");
  assert.equal(none.status, 1, none.stdout);
  assert.match(none.stderr, /libtorch not found: .*pip install torch/);
  assert.doesNotMatch(none.stderr, /apt-get/);
  assert.equal(none.calls, '');
});

test(
  "the install step gives node-gyp the node headers installed beside node when npm's nodedir is not set (no download from nodejs.org)",
  { skip: !existsSync(join(process.execPath, '..', '..', 'include', 'node', 'node_api.h')) && 'no node headers beside this node' },
  (t) => {
    // native/install.js with a stand-in libtorch finder, op generator and node-gyp that records its arguments
    const dir = mkdtempSync(join(tmpdir(), 'semaim-install-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'native'));
    mkdirSync(join(dir, 'node_modules', 'node-gyp', 'bin'), { recursive: true });
    copyFileSync(join(ROOT, 'native', 'install.js'), join(dir, 'native', 'install.js'));
    writeFileSync(
      join(dir, 'native', 'find-libtorch.js'),
      "module.exports = { locate: () => ({ libdir: '/fake/libtorch/lib', source: 'test' }), LibtorchNotFound: class extends Error {} };\n",
    );
    writeFileSync(join(dir, 'native', 'gen-ops.js'), '');
    const log = join(dir, 'node-gyp.log');
    writeFileSync(
      join(dir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
      `require('fs').appendFileSync(${JSON.stringify(log)}, JSON.stringify(process.argv.slice(2)) + '\\n');\n`,
    );
    const { npm_config_nodedir: _, SEMAIM_PREBUILT_ADDON: __, ...base } = process.env;
    const install = (env: Record<string, string>) => {
      rmSync(log, { force: true });
      const r = spawnSync(process.execPath, [join(dir, 'native', 'install.js')], { cwd: dir, encoding: 'utf8', env: { ...base, ...env } });
      assert.equal(r.status, 0, r.stderr);
      return readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as string[]);
    };
    const prefix = resolve(process.execPath, '..', '..');
    const [configure, build] = install({});
    assert.deepEqual(configure, ['configure', `--nodedir=${prefix}`, '--loglevel=warn']);
    assert.deepEqual(build, ['build', '-j', '2', '--loglevel=warn']);
    // npm's own nodedir (npm_config_nodedir, which node-gyp reads) is left to apply
    assert.deepEqual(install({ npm_config_nodedir: '/opt/node' })[0], ['configure', '--loglevel=warn']);
  },
);
