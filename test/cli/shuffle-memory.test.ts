// `pretrain --dataset shards` and the shuffle buffers' memory budget (SEMAIM_SHUFFLE_MEMORY): a buffer
// that cannot fit is refused before the run starts (exit 2, nothing written); one that outgrows its
// share on a large image stops the run as other data errors do (exit 1, the message, the checkpoints
// written so far intact), and the run resumes from them once the budget allows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { packImageFolder, shardDataset } from '../../src/data/shards';
import { estimateShuffleMemory } from '../../src/data/shards/memory';
import { imageMemberCap } from '../../src/data/shards/tar-samples';
import { encode, picture, tempDir, write } from '../data/helpers';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const TINY =
  '--model vit_tiny --embed-dim 32 --depth 2 --num-heads 2 --img-size 32 --patch-size 4 --batch-size 4 --epochs 1 --warmup-epochs 0 --num-workers 0 --threads 1 --checkpoint-every 1 --keep-last 2 --shuffle-buffer 4';

const cli = (args: string[], budget: string) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SEMAIM_SHUFFLE_MEMORY: budget } });

test('pretrain over shards: buffers over the budget are refused before the run; a buffer over its share stops it with its checkpoints intact', async (t) => {
  const { dir, cleanup } = tempDir('semaim-shuffle-memory-');
  t.after(cleanup);
  for (let i = 0; i < 40; i++) write(join(dir, 'imgs', 'a', `${i}.jpg`), await encode(picture(32, 32, i), 32, 32, 3, 'jpeg'));
  const big = await encode(randomBytes(160 * 160 * 3), 160, 160, 3, 'png'); // noise: ~75 KiB, packed last
  write(join(dir, 'imgs', 'b', 'big.png'), big);
  const shards = join(dir, 'shards');
  await packImageFolder({ input: join(dir, 'imgs'), output: shards, shardSize: 8 });
  const args = ['pretrain', ...TINY.split(' '), '--dataset', 'shards', '--data-path', shards, '--out-dir', join(dir, 'run')];

  const refused = cli(args, '1K');
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(
    refused.stderr,
    /option --shuffle-buffer: .* would hold about .* more than their budget of 1\.0 KiB \(SEMAIM_SHUFFLE_MEMORY\)\. Use --shuffle-buffer 1 or less \(4 now\)/,
  );
  assert.ok(!existsSync(join(dir, 'run')), 'nothing written');

  // twice the estimate passes the start; the big image alone is over it
  const budget = 2 * estimateShuffleMemory(shardDataset(shards, { onWarning: () => {} }).table.entries, 4, 1, imageMemberCap(undefined)).bytes;
  assert.ok(big.length > budget);
  const stopped = cli(args, String(budget));
  assert.equal(stopped.status, 1, stopped.stderr);
  assert.match(stopped.stderr, /semaim: shards: the shuffle buffer of a loader worker holds .* after shard-000005\.tar:\S+ \(.*\), over its share of/);
  const saved = readdirSync(join(dir, 'run', 'checkpoints'))
    .filter((f) => f.startsWith('step-'))
    .sort();
  assert.ok(saved.length > 0, `the steps before the big image were checkpointed: ${stopped.stderr}`);

  const resumed = cli(args, '1M');
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr + resumed.stdout, new RegExp(`resumed from \\S*${saved[saved.length - 1]}`));
});
