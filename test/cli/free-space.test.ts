// A disk that cannot hold what a long job will write is refused before the work: a run whose checkpoints
// cannot fit (before its first step, not at its first checkpoint), an embed whose features cannot
// (before its first image). The free space comes from statfs: injected here (a preload), and the kernel's
// own on a real small tmpfs where root can mount one. SEMAIM_NO_SPACE_CHECK=1 starts anyway.
import { tmpfsScratch } from '../tmpfs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { VisionTransformer, io } from '../../src';
import { commands } from '../../src/cli/commands';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const TINY =
  '--model vit_tiny --embed-dim 32 --depth 2 --num-heads 2 --img-size 32 --patch-size 4 --synthetic-size 64 --batch-size 16 --epochs 1 --warmup-epochs 0 --max-steps 2 --num-workers 0 --threads 1';
const EMBED = ['--dataset', 'synthetic', '--limit', '64', '--pooling', 'all', '--num-workers', '0', '--threads', '1'];

/** A preload: statfs says FREE_BYTES are free (blocks of 4 KiB), on every file system. */
const STATFS = `const fs = require('node:fs');
const statfs = fs.statfsSync;
fs.statfsSync = (p, o) => ({ ...statfs(p, o), bsize: 4096, bavail: Math.floor(Number(process.env.FREE_BYTES) / 4096) });
`;

/** A scratch folder, removed after the test once `before` (an unmount) has run. */
function scratch(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-free-space-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'statfs.js'), STATFS);
  return dir;
}

function cli(dir: string, args: string[], env: Record<string, string> = {}) {
  const preload = env.FREE_BYTES ? ['-r', join(dir, 'statfs.js')] : [];
  return spawnSync(process.execPath, [...preload, CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
}

const KIB = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as const;
const bytesOf = (n: string, unit: string) => Number(n) * KIB[unit as keyof typeof KIB];
const folderBytes = (dir: string) => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

test('pretrain and embed on a disk that cannot hold their output are refused before the work, saying how much is needed and free; SEMAIM_NO_SPACE_CHECK=1 starts anyway', (t) => {
  const dir = scratch(t);
  const run = join(dir, 'run');
  // a checkpoint at each of its 2 steps: both kept (--keep-last 2), 'best' and the copy that replaces it
  const EVERY_STEP = [...TINY.split(' '), '--checkpoint-every', '1', '--keep-last', '2'];
  const refused = cli(dir, ['pretrain', ...EVERY_STEP, '--out-dir', run], { FREE_BYTES: String(2 << 20) });
  assert.equal(refused.status, 1, refused.stderr);
  const m =
    /^semaim: not enough free space in (.*) for the checkpoints of this run: needs about ([\d.]+) (\w+) \((\d) × ([\d.]+) (\w+): 2 step folders at once \(this run writes 2 checkpoints; up to --keep-last 2 kept, the next one written before the oldest is removed\), and 'best' and the copy that replaces it\), 2\.0 MiB free\. Free space, lower --keep-last, or use another --out-dir; or set SEMAIM_NO_SPACE_CHECK=1 to start anyway if the estimate is wrong$/m.exec(
      refused.stderr,
    );
  assert.ok(m, refused.stderr);
  assert.equal(m[1], run);
  assert.equal(Number(m[4]), 2 + 2, 'the 2 step folders, best and its replacement');
  assert.equal(existsSync(join(run, 'metrics.jsonl')), false, 'refused before the first step');
  assert.equal(existsSync(join(run, 'checkpoints')), false);

  // started anyway (the estimate could be wrong): it runs; one checkpoint is no larger than the estimate, nor much smaller
  const ran = cli(dir, ['pretrain', ...EVERY_STEP, '--out-dir', run], { FREE_BYTES: String(2 << 20), SEMAIM_NO_SPACE_CHECK: '1' });
  assert.equal(ran.status, 0, ran.stderr);
  const step = folderBytes(join(run, 'checkpoints', 'step-00000002'));
  const estimate = bytesOf(m[5], m[6]);
  assert.ok(estimate >= step && estimate < step * 1.5, `estimate ${estimate} B for a checkpoint of ${step} B`);
  // finished: started again it does nothing, as before, even on a disk with no room for one checkpoint (it writes none)
  const again = cli(dir, ['pretrain', ...EVERY_STEP, '--out-dir', run], { FREE_BYTES: String(16 << 10) });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout + again.stderr, /nothing to do/);

  // the same with room: no refusal, nothing to override
  assert.equal(cli(dir, ['pretrain', ...TINY.split(' '), '--out-dir', join(dir, 'roomy')], { FREE_BYTES: String(64 << 20) }).status, 0);

  // embed: 64 × [65, 32] float32 rows (532 KiB) with 256 KiB free
  const out = join(dir, 'em', 'f.safetensors');
  const embed = cli(dir, ['embed', '--checkpoint', run, ...EMBED, '--out', out], { FREE_BYTES: String(256 << 10) });
  assert.equal(embed.status, 1, embed.stderr);
  assert.match(
    embed.stderr,
    /not enough free space in .*em for the features of 64 images: needs about [\d.]+ KiB \(64 × \[65, 32\] float32 and the image list\), 256\.0 KiB free\. Free space, write --out elsewhere/,
  );
  assert.doesNotMatch(embed.stderr, /embed \[#/, 'no image embedded');
  assert.equal(existsSync(join(dir, 'em')), false, 'no partial file, no lock, and the folder it made taken back');
  assert.equal(cli(dir, ['embed', '--checkpoint', run, ...EMBED, '--out', out], { FREE_BYTES: String(256 << 10), SEMAIM_NO_SPACE_CHECK: '1' }).status, 0);
});

test('a short run needs room for the checkpoints it writes, not for --keep-last more: accepted where they fit, refused where they do not (pretrain, finetune)', (t) => {
  const dir = scratch(t);
  const estimate = (stderr: string) => {
    const m = /needs about [\d.]+ \w+ \((\d+) × ([\d.]+) (\w+): (.*?)\), [\d.]+ \w+ free/.exec(stderr);
    assert.ok(m, stderr);
    return { copies: Number(m[1]), each: bytesOf(m[2], m[3]), how: m[4] };
  };
  // more checkpoints than --keep-last: the ones kept and the next, written before the oldest is removed
  const over = cli(dir, ['pretrain', ...TINY.split(' '), '--checkpoint-every', '1', '--keep-last', '1', '--out-dir', join(dir, 'over')], {
    FREE_BYTES: String(1 << 20),
  });
  assert.equal(over.status, 1, over.stderr);
  const o = estimate(over.stderr);
  assert.match(o.how, /^2 step folders at once \(this run writes 2 checkpoints; up to --keep-last 1 kept, /);
  assert.equal(o.copies, 2 + 2, 'the 2 step folders, best and its replacement');
  // 2 steps with --checkpoint-every 500 and 4 steps an epoch: one checkpoint (the last), and its copy as 'best'
  const run = join(dir, 'run');
  const small = cli(dir, ['pretrain', ...TINY.split(' '), '--keep-last', '3', '--out-dir', run], { FREE_BYTES: String(1 << 20) });
  assert.equal(small.status, 1, small.stderr);
  const e = estimate(small.stderr);
  assert.equal(e.copies, 2, e.how);
  assert.match(e.how, /^1 step folder at once \(this run writes 1 checkpoint; up to --keep-last 3 kept, .*\), and 'best'$/);
  // room for those two but not for --keep-last 3 + 3: it runs, and writes what was counted
  const fits = cli(dir, ['pretrain', ...TINY.split(' '), '--keep-last', '3', '--out-dir', run], { FREE_BYTES: String(Math.ceil(2.5 * e.each)) });
  assert.equal(fits.status, 0, fits.stderr);
  assert.deepEqual(readdirSync(join(run, 'checkpoints')), ['best', 'step-00000002']);
  assert.ok(folderBytes(join(run, 'checkpoints', 'step-00000002')) <= e.each, 'the estimate covers what was written');
  // resumed for 2 more steps, a checkpoint at each, --keep-last 1: its step folder there counts as kept, so one
  // more at once (the next written before the oldest is removed), and the copy that replaces 'best'
  const longer = TINY.replace('--max-steps 2', '--max-steps 4').split(' ');
  const resumed = cli(dir, ['pretrain', ...longer, '--checkpoint-every', '1', '--keep-last', '1', '--out-dir', run], { FREE_BYTES: String(16 << 10) });
  assert.equal(resumed.status, 1, resumed.stderr);
  const r = estimate(resumed.stderr);
  assert.equal(r.copies, 2, r.how);
  assert.match(r.how, /^1 step folder at once \(this run writes 2 checkpoints; up to --keep-last 1 kept, .*\), and the copy that replaces 'best'$/);

  // finetune: the same policy (its steps, its --checkpoint-every and epochs)
  const FT = ['--checkpoint', run, '--dataset', 'synthetic', '--train-limit', '64', '--test-limit', '16', '--batch-size', '16'];
  const ft = [...FT, '--epochs', '1', '--warmup-epochs', '0', '--max-steps', '2', '--num-workers', '0', '--threads', '1', '--out-dir', join(dir, 'ft')];
  const ftSmall = cli(dir, ['finetune', ...ft], { FREE_BYTES: String(256 << 10) });
  assert.equal(ftSmall.status, 1, ftSmall.stderr);
  const f = estimate(ftSmall.stderr);
  assert.equal(f.copies, 2, f.how);
  assert.equal(existsSync(join(dir, 'ft', 'metrics.jsonl')), false, 'refused before the first step');
  const ftFits = cli(dir, ['finetune', ...ft], { FREE_BYTES: String(Math.ceil(2.5 * f.each)) });
  assert.equal(ftFits.status, 0, ftFits.stderr);
  assert.ok(existsSync(join(dir, 'ft', 'checkpoints', 'step-00000002')));
});

test('export (safetensors, onnx, web) to a disk that cannot hold it is refused before any file is written, saying how much is needed; SEMAIM_NO_SPACE_CHECK=1 writes it', (t) => {
  const dir = scratch(t);
  const cfg = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2 };
  const model = new VisionTransformer(cfg).initWeights();
  const enc = join(dir, 'enc.safetensors');
  io.saveTensors(enc, model.stateDict(), { config: JSON.stringify(cfg) });
  writeFileSync(join(dir, 'enc.json'), JSON.stringify(cfg));
  model.dispose();
  const treeBytes = (p: string): number => (statSync(p).isDirectory() ? readdirSync(p).reduce((n, f) => n + treeBytes(join(p, f)), 0) : statSync(p).size);
  for (const [format, how] of [
    ['safetensors', /\(\d+ tensors of [\d.]+ KiB and the config\)/],
    ['onnx', /\(model [\d.]+ KiB and its two JSON files\)/],
    ['web', /\(model [\d.]+ KiB, the page and onnxruntime-web [\d.]+ MiB\)/],
  ] as const) {
    const out = join(dir, format, 'out');
    const args = ['export', '--checkpoint', enc, '--format', format, '--out', out];
    const refused = cli(dir, args, { FREE_BYTES: String(16 << 10) });
    assert.equal(refused.status, 1, refused.stderr);
    const m =
      /^semaim: not enough free space in (.*) for the export to (.*): needs about ([\d.]+) (\w+) \((.*)\), 16\.0 KiB free\. Free space, or write --out elsewhere; or set SEMAIM_NO_SPACE_CHECK=1 to start anyway if the estimate is wrong$/m.exec(
        refused.stderr,
      );
    assert.ok(m, refused.stderr);
    assert.match(refused.stderr, how);
    assert.equal(existsSync(join(dir, format)), false, `${format}: nothing written, no folder made`);
    const ran = cli(dir, args, { FREE_BYTES: String(16 << 10), SEMAIM_NO_SPACE_CHECK: '1' });
    assert.equal(ran.status, 0, ran.stderr);
    // the estimate covers what was written, and is not much more
    const written = treeBytes(join(dir, format));
    const needed = bytesOf(m[3], m[4]);
    assert.ok(needed >= written * 0.99 && needed < written + (96 << 10), `${format}: estimate ${needed} B for ${written} B written`);
  }
});

test('on a real 1 MiB tmpfs: pretrain and embed are refused before the work (the kernel’s statfs)', (t) => {
  const where = tmpfsScratch(t, 'semaim-free-space-', 'size=1m');
  if (!where) return;
  const { dir, mnt } = where;
  const run = join(dir, 'run');
  assert.equal(cli(dir, ['pretrain', ...TINY.split(' '), '--out-dir', run]).status, 0);
  const pretrain = cli(dir, ['pretrain', ...TINY.split(' '), '--out-dir', join(mnt, 'run')]);
  assert.equal(pretrain.status, 1);
  assert.match(pretrain.stderr, /not enough free space in .*mnt\/run for the checkpoints of this run: needs about .* 1020\.0 KiB free/);
  const embed = cli(dir, ['embed', '--checkpoint', run, ...EMBED, '--limit', '256', '--out', join(mnt, 'f.safetensors')]);
  assert.equal(embed.status, 1);
  assert.match(embed.stderr, /not enough free space in .*mnt for the features of 256 images/);
  assert.deepEqual(readdirSync(mnt).sort(), ['run'], 'nothing written but the run folder the refused pretrain took its lock in');
});

test('demo on a disk that cannot hold its checkpoints is refused with advice it can follow (it named --keep-last, which the demo does not take)', (t) => {
  const dir = scratch(t);
  const out = join(dir, 'demo');
  const args = ['demo', '--out-dir', out, '--epochs', '0.1', '--synthetic-size', '128', '--test-size', '16', '--knn-train-size', '32', '--threads', '1'];
  const refused = cli(dir, args, { FREE_BYTES: String(4 << 20) });
  assert.equal(refused.status, 1, refused.stderr);
  assert.match(
    refused.stderr,
    /not enough free space in .* for the checkpoints of this run: .*\. Free space, or use another --out-dir; or set SEMAIM_NO_SPACE_CHECK=1/,
  );
  const advised = refused.stderr.slice(refused.stderr.indexOf('Free space'));
  for (const [, flag] of advised.matchAll(/--([a-z-]+)/g))
    assert.ok(flag.replace(/-(.)/g, (_, c: string) => c.toUpperCase()) in commands.demo.options, `--${flag} is a demo option`);
  assert.equal(existsSync(join(out, 'checkpoints')), false, 'refused before the first step');
});
