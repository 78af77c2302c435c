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

test('bench:data: an --only naming no dataset, or an --need that is not a number, is refused', () => {
  // Before: --only=cfar measured nothing and printed an empty table with exit 0; --need=1,470 parsed
  // as NaN and the 'keeps up' verdict the GPU session asks for was left out in silence.
  for (const [args, message] of [
    [['--only=cfar'], /--only=cfar: cifar or large/],
    [['--only=cifar', '--need=1,470'], /--need=1,470: a number of images per second/],
  ] as const) {
    const r = refused(['--quick', ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, '');
  }
});
