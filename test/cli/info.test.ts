// `semaim info` reports the threads the commands use by default (--threads: every core), not
// libtorch's own default, which OMP_NUM_THREADS or a container's limits can make smaller; and which
// libtorch library the process actually loaded (a $LIBTORCH build changes it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { availableParallelism, tmpdir } from 'node:os';
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
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
