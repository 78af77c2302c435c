// The install step without a libtorch: native/find-libtorch.js and native/install.js stop with one
// message that says how to get one (apt-get, pip, $LIBTORCH), no stack trace and no node-gyp run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { spawnSync } from 'node:child_process';

const ROOT = resolve(__dirname, '..', '..', '..');

interface Found {
  source: string;
  libdir: string;
  include: string[];
  extraRpath?: string[];
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

/** A fake libtorch folder under `root`: the header locate() looks for, and libtorch.so when `libs`. */
function fakeLibtorch(root: string, libs: boolean): string {
  mkdirSync(join(root, 'include', 'torch', 'csrc', 'api', 'include', 'torch'), { recursive: true });
  writeFileSync(join(root, 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'torch.h'), '');
  if (libs) {
    mkdirSync(join(root, 'lib'), { recursive: true });
    writeFileSync(join(root, 'lib', 'libtorch.so'), '');
  }
  return root;
}

test('a $LIBTORCH with headers but no libraries is refused, naming the missing library', () => {
  const root = fakeLibtorch(join(empty, 'headers-only'), false);
  assert.throws(
    () => finder.locate({ env: { LIBTORCH: root } }),
    (e: Error) => {
      assert.equal(e.name, 'LibtorchNotFound');
      assert.match(e.message, /has libtorch's headers \(include\/torch\/...\) but no libraries: neither .*headers-only\/lib\/libtorch\.so/);
      assertHowTo(e.message);
      return true;
    },
  );
  // the gyp helper prints no -L/-rpath to a lib folder that is not there
  const ld = spawnSync(process.execPath, [join(ROOT, 'native', 'find-libtorch.js'), 'ldflags'], {
    env: { ...process.env, LIBTORCH: root },
    encoding: 'utf8',
  });
  assert.equal(ld.status, 1);
  assert.equal(ld.stdout, '');
  assert.match(ld.stderr, /but no libraries/);
  // with the library it is found
  fakeLibtorch(root, true);
  assert.equal(finder.locate({ env: { LIBTORCH: root } }).libdir, join(root, 'lib'));
});

test('a libtorch whose path has a space is refused up front (gyp would split it), with the symlink way out', () => {
  const root = fakeLibtorch(join(empty, 'my libtorch'), true);
  assert.throws(
    () => finder.locate({ env: { LIBTORCH: root } }),
    (e: Error) => {
      assert.equal(e.name, 'LibtorchNotFound');
      assert.match(e.message, /cannot be used: its path ".*my libtorch\/include" contains whitespace/);
      assert.match(e.message, /ln -s '.*my libtorch' \/tmp\/libtorch && LIBTORCH=\/tmp\/libtorch/);
      return true;
    },
  );
});

test('a tab in the path is refused like a space', () => {
  const root = fakeLibtorch(join(empty, 'tab\tlibtorch'), true);
  assert.throws(() => finder.locate({ env: { LIBTORCH: root } }), /cannot be used: its path ".*tab\tlibtorch\/include" contains whitespace/);
});

test('a Debian libtorch-dev tree (usr/include, usr/lib/<multiarch>) is found before a pip PyTorch, its OpenMP OpenBLAS on the rpath', () => {
  const root = join(empty, 'debian-root');
  const header = join(root, 'usr', 'include', 'torch', 'csrc', 'api', 'include', 'torch');
  mkdirSync(header, { recursive: true });
  writeFileSync(join(header, 'torch.h'), '');
  const lib = join(root, 'usr', 'lib', 'x86_64-linux-gnu');
  mkdirSync(join(lib, 'openblas-openmp'), { recursive: true });
  writeFileSync(join(lib, 'libtorch.so'), '');
  // python3 may have a torch (a pip PyTorch): the Debian tree still comes first.
  const found = finder.locate({ env: {}, systemRoot: root, pythons: ['python3'] });
  assert.equal(found.source, 'debian');
  assert.equal(found.libdir, lib);
  assert.deepEqual(found.include, [join(root, 'usr', 'include'), join(root, 'usr', 'include', 'torch', 'csrc', 'api', 'include')]);
  assert.deepEqual(found.extraRpath, [join(lib, 'openblas-openmp')]);
});

test("the include folders the gyp helper prints survive gyp's split at whitespace in a checkout whose path has a space", () => {
  // binding.gyp's <!@(node native/find-libtorch.js include) runs in the checkout and is split at
  // whitespace: each word must be a folder (the checkout's own native/compat named relative to it).
  const checkout = join(empty, 'my checkout');
  mkdirSync(join(checkout, 'native'), { recursive: true });
  cpSync(join(ROOT, 'native', 'find-libtorch.js'), join(checkout, 'native', 'find-libtorch.js'));
  cpSync(join(ROOT, 'native', 'compat'), join(checkout, 'native', 'compat'), { recursive: true });
  const words = execFileSync(process.execPath, ['native/find-libtorch.js', 'include'], { cwd: checkout, encoding: 'utf8' }).trim().split(/\s+/);
  for (const w of words) assert.ok(existsSync(resolve(checkout, w)), `"${w}" (of ${JSON.stringify(words)}) is not a folder seen from ${checkout}`);
});

test('a relative $LIBTORCH is made absolute: the addon is linked from build/ and loaded from anywhere', () => {
  // binding.gyp passes -L and -rpath on to the linker as written (run in build/, not where LIBTORCH was
  // set), and a relative rpath is looked up from the process's working folder at every start.
  fakeLibtorch(join(empty, 'relative-libtorch'), true);
  const env = { ...process.env, LIBTORCH: 'relative-libtorch' };
  const ld = spawnSync(process.execPath, [join(ROOT, 'native', 'find-libtorch.js'), 'ldflags'], { cwd: empty, env, encoding: 'utf8' });
  assert.equal(ld.status, 0, ld.stderr);
  const lib = join(empty, 'relative-libtorch', 'lib');
  assert.match(ld.stdout, new RegExp(`-L${lib} `));
  assert.match(ld.stdout, new RegExp(`-Wl,-rpath,${lib}$`, 'm'));
  const include = spawnSync(process.execPath, [join(ROOT, 'native', 'find-libtorch.js'), 'include'], { cwd: empty, env, encoding: 'utf8' });
  assert.equal(include.status, 0, include.stderr);
  assert.equal(include.stdout.trim().split(' ')[0], join(empty, 'relative-libtorch', 'include'));
});
