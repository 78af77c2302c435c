// `finetune` and `linprobe --no-cache-features` over shards and the shuffle buffers' memory budget
// (SEMAIM_SHUFFLE_MEMORY): buffers of their training pass that cannot fit are refused at launch, as
// pretrain's are (exit 2, the message), before the fine-tuning run's folder is made or the probe's test
// features are extracted. The cached probe shuffles features, not shards: the budget does not stop it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packImageFolder } from '../../src/data/shards';
import { encode, picture, tempDir, write } from '../data/helpers';
import { writeEncoder } from '../eval/helpers';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
let dir = '';
let cleanup = () => {};
let common: string[] = [];

before(async () => {
  ({ dir, cleanup } = tempDir('semaim-eval-shuffle-memory-'));
  for (const split of ['train', 'test'])
    for (let i = 0; i < 8; i++) write(join(dir, 'imgs', split, `c${i % 2}`, `${i}.jpg`), await encode(picture(8, 8, i), 8, 8, 3, 'jpeg'));
  for (const split of ['train', 'test']) await packImageFolder({ input: join(dir, 'imgs', split), output: join(dir, 'shards', split), shardSize: 4 });
  common = [
    ...['--checkpoint', writeEncoder(dir), '--dataset', 'shards', '--data-path', join(dir, 'shards', '{split}')],
    ...['--batch-size', '4', '--eval-batch-size', '4', '--epochs', '1', '--warmup-epochs', '0', '--num-workers', '0', '--threads', '1'],
  ];
});
after(() => cleanup());

const cli = (args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SEMAIM_SHUFFLE_MEMORY: '1K' } });
const REFUSED =
  /option --num-workers: \S*shards\S*: the shuffle buffers would hold about .* more than their budget of 1\.0 KiB \(SEMAIM_SHUFFLE_MEMORY\)\. Use a larger SEMAIM_SHUFFLE_MEMORY/;

test('finetune over shards: buffers over the budget are refused before its run folder is made', () => {
  const out = join(dir, 'finetune');
  const r = cli(['finetune', ...common, '--out-dir', out]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, REFUSED);
  assert.ok(!existsSync(out), 'nothing written');
});

test('linprobe --no-cache-features over shards: refused before the test features are extracted; the cached probe runs under the same budget', () => {
  const out = join(dir, 'linprobe');
  const r = cli(['linprobe', ...common, '--no-cache-features', '--out-dir', out]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, REFUSED);
  assert.doesNotMatch(r.stderr, /features \(test\)/, 'no features extracted');
  assert.ok(!existsSync(out), 'nothing written');

  const cached = cli(['linprobe', ...common, '--out-dir', out]);
  assert.equal(cached.status, 0, cached.stderr);
  assert.ok(existsSync(join(out, 'probe.safetensors')));
});
