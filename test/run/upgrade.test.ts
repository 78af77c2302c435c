// A run folder written by an earlier release (test/golden/upgrade: semaim of 2026-12-02, a tiny pre-training
// stopped by --max-steps 5 of its 12 steps; scripts/make-upgrade-fixture.sh made it) resumes with this code and
// ends with the weights and optimiser state of the same run made by this code alone: the checkpoint format, the
// recipe check and the random streams an upgrade meets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands';
import { loadTensors } from '../../src/io';
import { quiet } from '../output';

const FIXTURE = join(__dirname, '..', '..', '..', 'test', 'golden', 'upgrade');

function tensorsEqual(a: string, b: string): void {
  const [x, y] = [loadTensors(a).tensors, loadTensors(b).tensors];
  try {
    assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort(), 'the same tensors');
    for (const [name, t] of x) assert.ok(t.eq(y.get(name)!).all().item() === 1, `${name} of ${a} equals the one-release run's`);
  } finally {
    for (const t of [...x.values(), ...y.values()]) t.dispose();
  }
}

test('a pre-training stopped by the 2026-12-02 release resumes to the weights and optimiser state of a run made by this one', async () => {
  const { date, args } = JSON.parse(readFileSync(join(FIXTURE, 'args.json'), 'utf8')) as { date: string; args: string[] };
  assert.equal(date, '2026-12-02');
  const dir = mkdtempSync(join(tmpdir(), 'semaim-upgrade-'));
  try {
    const old = join(dir, 'old');
    cpSync(join(FIXTURE, 'run'), old, { recursive: true });
    const now = join(dir, 'now');
    assert.equal(await quiet(() => commands.pretrain.run([...args, '--out-dir', old])), 0);
    assert.equal(await quiet(() => commands.pretrain.run([...args, '--out-dir', now])), 0);
    const last = (run: string) => join(run, 'checkpoints', 'step-00000012');
    const state = JSON.parse(readFileSync(join(last(old), 'state.json'), 'utf8')) as { step: number; epoch: number };
    assert.deepEqual([state.step, state.epoch], [12, 3]);
    tensorsEqual(join(last(old), 'model.safetensors'), join(last(now), 'model.safetensors'));
    tensorsEqual(join(last(old), 'optimizer.safetensors'), join(last(now), 'optimizer.safetensors'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
