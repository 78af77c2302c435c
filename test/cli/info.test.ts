// `semaim info` reports the threads the commands use by default (--threads: every core), not
// libtorch's own default, which OMP_NUM_THREADS or a container's limits can make smaller; and which
// libtorch library the process actually loaded (a $LIBTORCH build changes it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { availableParallelism, tmpdir } from 'node:os';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadedLibtorchFile } from '../../src/torch/native';

const MAIN = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

test("semaim info: the threads line is --threads' default (every core), whatever libtorch's own default", () => {
  const r = spawnSync(process.execPath, [MAIN, 'info'], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  assert.equal(r.status, 0, r.stderr);
  const m = /^threads (\d+)/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.equal(Number(m[1]), availableParallelism());
});

test('semaim info: names the libtorch library loaded (from /proc/self/maps) and the addon that loaded it', () => {
  const r = spawnSync(process.execPath, [MAIN, 'info'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const m = /^loaded (\/.*) \(through the addon (.*)\)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.match(basename(m[1]), /^libtorch_cpu\.so/);
  assert.ok(existsSync(m[1]), m[1]);
  assert.ok(existsSync(m[2]) && /semaim\.node$/.test(m[2]), m[2]);
  // the same file this test process has loaded through the same addon
  assert.equal(m[1], loadedLibtorchFile());
  assert.equal(realpathSync(m[1]), m[1]);
});

test('loadedLibtorchFile reads libtorch_cpu (else libc10) out of a maps text, a path with spaces too', () => {
  const line = (p: string) => `7f0000000000-7f0000001000 r-xp 00000000 fd:00 1234                       ${p}`;
  const maps = [line('/usr/lib/libc.so.6'), line('/opt/my torch/lib/libc10.so'), line('/opt/my torch/lib/libtorch_cpu.so'), ''].join('\n');
  assert.equal(loadedLibtorchFile(maps), '/opt/my torch/lib/libtorch_cpu.so');
  assert.equal(loadedLibtorchFile([line('/x/libc10.so.2.1'), line('/x/libc10_cuda.so')].join('\n')), '/x/libc10.so.2.1');
  assert.equal(loadedLibtorchFile(line('/x/libtorch_python.so')), null);
  // a library replaced on disk after it was mapped is still the one loaded
  assert.equal(loadedLibtorchFile(line('/x/libtorch_cpu.so (deleted)')), '/x/libtorch_cpu.so (deleted)');
});

test('SEMAIM_ADDON naming a missing file, or a file that is not an addon, is an error naming it (no stack trace): never the built addon in its place, never run as JavaScript', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-addon-env-'));
  try {
    const marker = join(dir, 'ran');
    const script = join(dir, 'not-an-addon.js');
    writeFileSync(script, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran');`);
    const run = (addon: string) => spawnSync(process.execPath, [MAIN, 'info'], { encoding: 'utf8', env: { ...process.env, SEMAIM_ADDON: addon } });
    const missing = run(join(dir, 'cuda', 'semaim.node'));
    assert.equal(missing.status, 1, missing.stdout);
    assert.equal(
      missing.stderr,
      `semaim: SEMAIM_ADDON=${join(dir, 'cuda', 'semaim.node')}: no such file (it names the semaim.node to load; unset it to use the built one)\n`,
    );
    const notAddon = run(script);
    assert.equal(notAddon.status, 1, notAddon.stdout);
    assert.match(notAddon.stderr, /^semaim: cannot load the semaim addon SEMAIM_ADDON=.*not-an-addon\.js: .*\n$/);
    assert.equal(existsSync(marker), false, 'the file was run as JavaScript');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  'an addon whose libtorch is gone, or is another build than the one it was linked with, is refused saying so and how to rebuild it',
  { skip: spawnSync('cc', ['--version']).status !== 0 && 'no C compiler' },
  () => {
    // a stand-in for semaim.node: linked (with an rpath) against a libc10.so that is then replaced or removed
    const dir = mkdtempSync(join(tmpdir(), 'semaim-addon-lib-'));
    try {
      const cc = (args: string[]) => {
        const r = spawnSync('cc', args, { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
      };
      const lib = join(dir, 'lib');
      const source = (name: string, text: string) => {
        writeFileSync(join(dir, name), text);
        return join(dir, name);
      };
      mkdirSync(lib);
      // (a soname of no real libc10, which the linker would find in the system's folders once this one is gone)
      const libc10 = (c: string) => cc(['-shared', '-fPIC', '-Wl,-soname,libc10.so.77', '-o', join(lib, 'libc10.so.77'), c]);
      libc10(source('old.c', 'int c10_version_1 = 1;\n'));
      symlinkSync('libc10.so.77', join(lib, 'libc10.so'));
      const addon = join(dir, 'semaim.node');
      cc([
        '-shared',
        '-fPIC',
        '-o',
        addon,
        source('addon.c', 'extern int c10_version_1;\nint *use(void) { return &c10_version_1; }\n'),
        `-L${lib}`,
        '-lc10',
        `-Wl,-rpath,${lib}`,
      ]);
      const run = () => spawnSync(process.execPath, [MAIN, 'info'], { encoding: 'utf8', env: { ...process.env, SEMAIM_ADDON: addon } });
      libc10(source('new.c', 'int c10_version_2 = 2;\n'));
      const other = run();
      assert.equal(other.status, 1, other.stdout);
      assert.match(other.stderr, /^semaim: cannot load the semaim addon SEMAIM_ADDON=.*semaim\.node: .*undefined symbol: c10_version_1/);
      assert.match(other.stderr, /built against another libtorch than the one it loaded now/);
      assert.match(other.stderr, /npm run install/);
      rmSync(join(lib, 'libc10.so.77'));
      const gone = run();
      assert.equal(gone.status, 1, gone.stdout);
      assert.match(gone.stderr, /libc10\.so\.77: cannot open shared object file/);
      assert.match(gone.stderr, /built against a libtorch that is not there any more/);
      assert.match(gone.stderr, /npm run install/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('an addon built before native/ops.yaml gained an op is refused when loaded, naming the missing ops, not in the middle of a run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-addon-stale-'));
  try {
    // the built addon as an older build would be: without two of the table's functions
    const preload = join(dir, 'older-addon.js');
    writeFileSync(
      preload,
      'const dlopen = process.dlopen;\n' +
        'process.dlopen = function (module, file, ...rest) {\n' +
        '  const r = dlopen.call(this, module, file, ...rest);\n' +
        '  delete module.exports.layerNorm;\n' +
        '  delete module.exports.gelu;\n' +
        '  return r;\n' +
        '};\n',
    );
    const r = spawnSync(process.execPath, ['-r', preload, MAIN, 'info'], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stdout);
    assert.match(
      r.stderr,
      /^semaim: the semaim addon .*semaim\.node is older than native\/ops\.yaml: it lacks (gelu, layerNorm|layerNorm, gelu)\. Rebuild it: `npm run install`/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
