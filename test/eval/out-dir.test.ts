// knn, linprobe and segprobe learn that their --out-dir cannot be written before any work: they made it
// only for the result file at the very end, after the whole extraction and training (hours for a
// 90-epoch probe), then failed with EROFS. The folder is made at the start and a file staged there;
// its error is the one the final write gave. Read-only by permission needs a user other than root (root
// writes through chmod 0555); as root a read-only tmpfs is mounted, else that case is skipped.
import { mountTmpfs } from '../tmpfs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KNN_OPTIONS, LINPROBE_OPTIONS, SEGPROBE_OPTIONS, readSegprobeConfig, resolveOptions, runKnn, runLinprobe, runSegprobe, type data } from '../../src';
import { toyImages, writeEncoder } from './helpers';
import { squares } from './seg-helpers';

/** The three jobs into `outDir`, each counting the data it asked for in `asked`. */
function jobs(enc: string, outDir: string, asked: string[]): [string, () => Promise<unknown>][] {
  const f: data.DataFactories = {
    makeEvalData: (r) => {
      asked.push(r.split);
      return r.split === 'train' ? toyImages(16, 3, 8, 1) : toyImages(8, 3, 8, 2);
    },
    makeTrainData: () => {
      throw new Error('not used');
    },
  };
  const seg = (r: { split: string }) => {
    asked.push(r.split);
    return r.split === 'train' ? squares(8, 1) : squares(4, 2);
  };
  const common = { checkpoint: enc, outDir, threads: 1, evalBatchSize: 8 };
  return [
    ['knn', () => runKnn(resolveOptions(KNN_OPTIONS, { ...common, k: '5' }), f, { progress: null })],
    ['linprobe', () => runLinprobe(resolveOptions(LINPROBE_OPTIONS, { ...common, epochs: 1, batchSize: 4, warmupEpochs: 0 }), f, { progress: null })],
    [
      'segprobe',
      () => {
        const o = resolveOptions(SEGPROBE_OPTIONS, {}, { ...common, epochs: 1, batchSize: 4, warmupEpochs: 0, figureImages: 0 });
        return runSegprobe(readSegprobeConfig(o), o, seg, { progress: null });
      },
    ],
  ];
}

/** Each job rejects before it reads any data, with `pattern`. */
async function refusedBeforeWork(enc: string, outDir: string, pattern: (command: string) => RegExp): Promise<void> {
  const asked: string[] = [];
  for (const [command, run] of jobs(enc, outDir, asked)) {
    await assert.rejects(run(), (e: Error) => {
      assert.match(e.message, pattern(command), command);
      return true;
    });
    assert.deepEqual(asked, [], `${command}: no data opened`);
  }
}

test("knn, linprobe and segprobe refuse an --out-dir in a checkpoint folder or a run's checkpoints/ (pruning would delete their results) before opening any data", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-outdir-ckpt-'));
  try {
    const enc = writeEncoder(dir);
    const run = join(dir, 'run');
    const ckpt = join(run, 'checkpoints', 'step-00000004');
    mkdirSync(ckpt, { recursive: true });
    writeFileSync(join(ckpt, 'state.json'), '{}');
    writeFileSync(join(run, 'metrics.jsonl'), '');
    for (const outDir of [ckpt, join(ckpt, 'eval'), join(run, 'checkpoints')])
      await refusedBeforeWork(enc, outDir, () => /cannot hold the (knn|linprobe|segprobe) results: it lies in the checkpoints? folder/);
    assert.deepEqual(readdirSync(ckpt), ['state.json'], 'nothing written into the checkpoint');
    assert.deepEqual(readdirSync(join(run, 'checkpoints')), ['step-00000004']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('knn, linprobe and segprobe refuse an --out-dir under a file before opening any data', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-outdir-'));
  try {
    const enc = writeEncoder(dir);
    writeFileSync(join(dir, 'file'), 'x');
    await refusedBeforeWork(enc, join(dir, 'file', 'out'), () => /ENOTDIR|EEXIST|not a directory|file already exists/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('knn, linprobe and segprobe refuse a read-only --out-dir, or one under a read-only folder, before opening any data', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-outdir-ro-'));
  const ro = join(dir, 'ro');
  mkdirSync(ro);
  let mounted = false;
  t.after(() => {
    if (mounted) spawnSync('umount', [ro]);
    chmodSync(ro, 0o755);
    rmSync(dir, { recursive: true, force: true });
  });
  const enc = writeEncoder(dir);
  if (process.getuid?.() === 0) {
    const unmounted = mountTmpfs(ro, 'ro,size=1m');
    if (unmounted) {
      t.skip(`as root chmod does not stop writes, and no read-only tmpfs can be mounted here (${unmounted})`);
      return;
    }
    mounted = true;
  } else chmodSync(ro, 0o555);
  const code = mounted ? 'EROFS' : 'EACCES';
  // the folder itself: the result file cannot be written there (the error the final write gave)
  await refusedBeforeWork(enc, ro, (command) => new RegExp(`cannot write .*ro/${command}\\.json: ${code}`));
  // a folder under it: it cannot be made
  await refusedBeforeWork(enc, join(ro, 'a', 'b'), () => new RegExp(`${code}.*mkdir`));
  assert.deepEqual(readdirSync(ro), [], 'nothing left there');
  assert.ok(!existsSync(join(ro, 'a')));
});

test('a job that fails after making its --out-dir removes that folder again; a run that succeeds writes there', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-outdir-made-'));
  try {
    const enc = writeEncoder(dir);
    const out = join(dir, 'new', 'knn');
    const f: data.DataFactories = {
      makeEvalData: () => {
        throw new Error('no data here');
      },
      makeTrainData: () => {
        throw new Error('not used');
      },
    };
    await assert.rejects(runKnn(resolveOptions(KNN_OPTIONS, { checkpoint: enc, outDir: out, k: '5', threads: 1 }), f, { progress: null }), /no data here/);
    assert.ok(!existsSync(join(dir, 'new')), 'the folders it made are gone');
    const asked: string[] = [];
    const [, knn] = jobs(enc, out, asked)[0];
    await knn();
    assert.deepEqual(readdirSync(out), ['knn.json'], 'no staged file left beside it');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
