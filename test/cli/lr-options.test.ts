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

test("pretrain, finetune, linprobe and segprobe refuse an lr float32 cannot hold (AdamW's first step included), a min-lr above it, a weight decay that flips the weights and a clip norm float32 cannot hold, naming the option, before any work", async () => {
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
      // AdamW's first step is lr / (1 − beta1): 4e37 / 0.1 overflowed in the optimiser's first step
      ['pretrain', [...pretrain, '--lr', '4e37'], 'lr', /too large for AdamW: its first step is lr \/ \(1 − beta1\) = 4\.0*\d*e\+38/],
      ['pretrain', [...pretrain, '--lr', '1e36', '--beta1', '0.999'], 'lr', /too large for AdamW/],
      ['finetune', ['--checkpoint', checkpoint, '--lr', '1e38'], 'lr', /too large for AdamW/],
      ['segprobe', ['--checkpoint', checkpoint, '--lr', '1e38'], 'lr', /too large for AdamW/],
      // a clip norm float32 cannot hold stopped the first step
      ['pretrain', [...pretrain, '--clip-grad', '3.5e38'], 'clipGrad', /must be <= 3\.4028/],
      ['finetune', ['--checkpoint', checkpoint, '--clip-grad', '1e300'], 'clipGrad', /must be <= 3\.4028/],
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
