// The install step without a libtorch: native/find-libtorch.js and native/install.js stop with one
// message that says how to get one (apt-get, pip, $LIBTORCH), no stack trace and no node-gyp run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';

const ROOT = resolve(__dirname, '..', '..', '..');

interface Found {
  source: string;
  libdir: string;
  include: string[];
}
interface FindLibtorch {
  locate(o?: { env?: Record<string, string | undefined>; systemRoot?: string; pythons?: string[] }): Found;
  HOW_TO_GET_LIBTORCH: string;
}
const finder = require(join(ROOT, 'native', 'find-libtorch.js')) as FindLibtorch;

let empty: string;
before(() => {
  empty = mkdtempSync(join(tmpdir(), 'semaim-no-libtorch-'));
});
after(() => rmSync(empty, { recursive: true, force: true }));

function assertHowTo(text: string): void {
  assert.match(text, /apt-get install libtorch-dev libopenblas0-openmp/);
  assert.match(text, /pip install torch/);
  assert.match(text, /LIBTORCH=\/path\/to\/libtorch/);
  assert.doesNotMatch(text, /^\s+at /m, 'no stack trace');
}

test('locate() names every way to get libtorch when none is found', () => {
  assert.throws(
    () => finder.locate({ env: {}, systemRoot: empty, pythons: [] }),
    (e: Error) => {
      assert.equal(e.name, 'LibtorchNotFound');
      assert.match(e.message, /libtorch not found: \$LIBTORCH is not set, there is no libtorch-dev under/);
      assertHowTo(e.message);
      return true;
    },
  );
  assert.throws(() => finder.locate({ env: { LIBTORCH: empty } }), /\$LIBTORCH=.* has neither/);
});

test('this machine has a libtorch (the one the addon was built with)', () => {
  const found = finder.locate();
  assert.ok(existsSync(join(found.libdir, 'libtorch.so')), JSON.stringify(found));
});

test('the install step and the gyp helper fail with one message, before node-gyp runs', () => {
  const env: Record<string, string | undefined> = { ...process.env, LIBTORCH: empty };
  delete env.SEMAIM_PREBUILT_ADDON;
  const install = spawnSync(process.execPath, [join(ROOT, 'native', 'install.js')], { cwd: ROOT, env, encoding: 'utf8' });
  assert.equal(install.status, 1, install.stderr);
  assert.match(install.stderr, /^semaim: cannot build the native addon\.\nlibtorch not found: \$LIBTORCH=/);
  assertHowTo(install.stderr);
  assert.doesNotMatch(install.stdout + install.stderr, /gyp/);
  const gyp = spawnSync(process.execPath, [join(ROOT, 'native', 'find-libtorch.js'), 'include'], { env, encoding: 'utf8' });
  assert.equal(gyp.status, 1);
  assert.equal(gyp.stdout, '');
  assertHowTo(gyp.stderr);
});
