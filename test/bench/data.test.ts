// bench/data.ts's command line: what it refuses before measuring (it runs as a script: dist/bench/data.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const SCRIPT = path.join(__dirname, '..', '..', 'bench', 'data.js');

const refused = (args: string[]): { status: number | null; stderr: string; stdout: string } =>
  // a short limit: before, these ran the whole benchmark
  spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });

test('bench:data: an --interp torchvision is not given is refused (the reference would run bilinear beside it)', () => {
  // data_torchvision.py maps anything but 'bicubic' to BILINEAR: --interp=nearest compared our nearest
  // crops with torchvision's bilinear ones, and a typo ran an unknown filter on our side.
  for (const interp of ['nearest', 'bicbic']) {
    const r = refused(['--quick', '--only=cifar', `--interp=${interp}`]);
    assert.equal(r.status, 2, `--interp=${interp}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`--interp=${interp}: bilinear or bicubic`));
    assert.equal(r.stdout, '');
  }
});
