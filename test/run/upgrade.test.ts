// A run folder written by an earlier release (test/golden/upgrade: semaim of 2026-12-02, a tiny pre-training
// stopped by --max-steps 5 of its 12 steps; scripts/make-upgrade-fixture.sh made it) resumes with this code and
// ends with the weights and optimiser state of the same run made by this code alone (to the last bits a machine's kernels round): the checkpoint format, the
// recipe check and the random streams an upgrade meets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTensors } from '../../src/io';
import * as torch from '../../src/torch';
import { version } from '../../src/torch';
import { isFloating } from '../../src/torch/dtype';

const ROOT = join(__dirname, '..', '..', '..');
const FIXTURE = join(ROOT, 'test', 'golden', 'upgrade');

/**
 * `semaim pretrain` in a process of its own with OpenBLAS's Haswell (AVX2) kernels, the ones the fixture's
 * first steps were computed with: on a CPU with AVX-512 OpenBLAS picks its SkylakeX kernels, whose sums
 * round differently, and the steps computed here would not be bit for bit those of the fixture's machine.
 */
function pretrain(args: string[]): number | null {
  const cli = join(ROOT, 'dist', 'src', 'cli', 'main.js');
  const r = spawnSync(process.execPath, [cli, 'pretrain', ...args], { env: { ...process.env, OPENBLAS_CORETYPE: 'Haswell' }, encoding: 'utf8' });
  if (r.status !== 0) process.stderr.write(r.stderr);
  return r.status;
}

/**
 * The tensors of `a` are those of `b`: integers (steps, random states) bit for bit; floating-point ones to well
 * within how far the run moved them after `from` (the fixture's checkpoint it resumed from). The fixture's first
 * steps were computed on another machine, whose CPU kernels (AVX-512 or AVX2) round sums otherwise: the steps after
 * the resume then differ in the last bits, growing to ~0.1 % of the run's movement in 7 steps; a resume that read
 * another batch, drew another random stream or restored another optimiser state differs by a share of the movement itself.
 */
function tensorsMatch(a: string, b: string, from: string, except: string[] = []): void {
  const [x, y, start] = [loadTensors(a).tensors, loadTensors(b).tensors, loadTensors(from).tensors];
  try {
    assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort(), 'the same tensors');
    let [apart, moved] = [0, 0];
    for (const [name, t] of x) {
      if (except.includes(name)) continue;
      const u = y.get(name)!;
      if (!isFloating(t.dtype)) {
        assert.ok(t.eq(u).all().item() === 1, `${name} of ${a} equals the one-release run's`);
        continue;
      }
      assert.ok(start.has(name), `${name} is in ${from}`);
      apart += torch.scope(() => t.sub(u).square().sum().item());
      moved += torch.scope(() => u.sub(start.get(name)!).square().sum().item());
    }
    const ratio = Math.sqrt(apart / moved);
    assert.ok(ratio < 0.01, `${a} is ${ratio.toPrecision(3)} of the run's movement since ${from} away from the one-release run's (at most 0.01)`);
  } finally {
    for (const t of [...x.values(), ...y.values(), ...start.values()]) t.dispose();
  }
}

const fixture = JSON.parse(readFileSync(join(FIXTURE, 'args.json'), 'utf8')) as { date: string; libtorch: string; args: string[] };
// Another libtorch's kernels round the steps after the resume differently (check-libtorch2.sh runs 2.x here).
const otherLibtorch =
  version().torch === fixture.libtorch ? false : `the fixture's steps were computed by libtorch ${fixture.libtorch}, this is ${version().torch}`;

test('a pre-training stopped by the 2026-12-02 release resumes to the weights and optimiser state of a run made by this one', { skip: otherLibtorch }, () => {
  const { date, args } = fixture;
  assert.equal(date, '2026-12-02');
  const dir = mkdtempSync(join(tmpdir(), 'semaim-upgrade-'));
  try {
    const old = join(dir, 'old');
    cpSync(join(FIXTURE, 'run'), old, { recursive: true });
    const now = join(dir, 'now');
    assert.equal(pretrain([...args, '--out-dir', old]), 0);
    assert.equal(pretrain([...args, '--out-dir', now]), 0);
    const last = (run: string) => join(run, 'checkpoints', 'step-00000012');
    const state = JSON.parse(readFileSync(join(last(old), 'state.json'), 'utf8')) as { step: number; epoch: number };
    assert.deepEqual([state.step, state.epoch], [12, 3]);
    const resumedFrom = join(FIXTURE, 'run', 'checkpoints', 'step-00000005');
    tensorsMatch(join(last(old), 'model.safetensors'), join(last(now), 'model.safetensors'), join(resumedFrom, 'model.safetensors'));
    // (the drop-path stream: a run begun before it had a stream of its own continues it from its global
    // one, as that release drew the masks, so its state is not a fresh run's; this run draws no mask)
    tensorsMatch(join(last(old), 'optimizer.safetensors'), join(last(now), 'optimizer.safetensors'), join(resumedFrom, 'optimizer.safetensors'), [
      'rng.dropPath',
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
