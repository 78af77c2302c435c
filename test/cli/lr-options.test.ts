// An lr that float32 cannot hold (given, or from --blr × batch / 256) and a --min-lr above the peak lr are
// option errors of every training command before any work: they used to stop the optimiser in its first
// step ("value cannot be converted to type float without overflow"), or the probes only after their features.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { commands } from '../../src/cli/commands';

test('pretrain, finetune, linprobe and segprobe refuse an lr float32 cannot hold, and a min-lr above it, naming the option, before any work', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-lr-options-'));
  const out = join(root, 'out');
  const checkpoint = join(root, 'no-run'); // never read: the options are refused first
  try {
    // (a small model and data set: without the checks these ran until the optimiser's first step)
    const pretrain = (
      '--model vit_tiny --img-size 16 --patch-size 8 --depth 1 --embed-dim 32 --num-heads 2 ' +
      '--dataset synthetic --synthetic-size 16 --batch-size 8 --epochs 1 --warmup-epochs 0 --num-workers 0 --threads 1'
    ).split(' ');
    const cases: [string, string[], string, RegExp][] = [
      ['pretrain', [...pretrain, '--lr', '1e39'], 'lr', /1e\+39 is above the largest float32/],
      ['pretrain', [...pretrain, '--blr', '2e38', '--batch-size', '512'], 'blr', /gives lr = 2e\+38 × 512 \/ 256 = 4e\+38, above the largest float32/],
      ['finetune', ['--checkpoint', checkpoint, '--lr', '1e39'], 'lr', /above the largest float32/],
      ['linprobe', ['--checkpoint', checkpoint, '--lr', '1e300'], 'lr', /above the largest float32/],
      ['linprobe', ['--checkpoint', checkpoint, '--blr', '1e38', '--batch-size', '1024'], 'blr', /= 4e\+38, above the largest float32/],
      ['linprobe', ['--checkpoint', checkpoint, '--lr', '0.1', '--min-lr', '1'], 'minLr', /\(1\) is above the peak lr \(0\.1\)/],
      ['segprobe', ['--checkpoint', checkpoint, '--lr', '1e39'], 'lr', /above the largest float32/],
      ['segprobe', ['--checkpoint', checkpoint, '--lr', '0.1', '--min-lr', '1'], 'minLr', /above the peak lr/],
    ];
    for (const [command, args, key, message] of cases) {
      await assert.rejects(commands[command].run([...args, '--out-dir', out]), { name: 'OptionError', key, message }, `${command} ${args.join(' ')}`);
      assert.equal(existsSync(out), false, `${command} ${args.join(' ')}: nothing written`);
    }
    const r = spawnSync(process.execPath, [join(__dirname, '..', '..', 'src', 'cli', 'main.js'), 'linprobe', '--checkpoint', checkpoint, '--lr', '1e300'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /option --lr: 1e\+300 is above the largest float32/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
