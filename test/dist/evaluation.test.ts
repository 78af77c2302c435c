// Data-parallel evaluation: features extracted by 2 and 3 ranks (each its slices of the batches, the
// last global batch padded) and gathered equal one process's, as do the shards the ranks keep; k-NN and
// the linear probe on shards of the training features give one process's results, as does a classifier
// scored on the ranks' slices of the test set; `semaim knn` and `semaim linprobe` (cached and online)
// with --nproc-per-node 2 give one process's results, written once, by rank 0; `semaim embed` on 2 and 3
// processes writes one process's file. Over tar shards (each rank a contiguous range of the stream, cut
// among its loader workers), 3 and 4 ranks give one process's features, shards and accuracy too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import * as dist from '../../src/dist';
import { loadTensors, saveTensors } from '../../src/io';
import { makeEvalData, packImageFolder } from '../../src/data';
import { extractPooledFeatures, FeaturePooling, FeatureSet } from '../../src/eval/features';
import { runWorkers, workerScript } from './helpers';
import { FEATURE_ENCODER, featureClassifier, featureEncoder } from './workers/features-case';
import { evaluateClassifier } from '../../src/eval/finetune';
import { CASE, PROBE, shardPositions, shardedCase } from './workers/sharded-case';
import { knnClassify } from '../../src/eval/knn';
import { linprobeOnFeatures } from '../../src/eval/linprobe';
import { maxDiff, writeEncoder } from '../eval/helpers';
import { encode, picture, write } from '../data/helpers';
import type { EmbedList } from '../../src/eval/embed';
import { VisionTransformer } from '../../src/semaim';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const gloo = dist.distBuildInfo().gloo ? false : 'the addon was built without Gloo';
const root = mkdtempSync(join(tmpdir(), 'semaim-dp-eval-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const IMAGES = 203; // not a multiple of 2 × 16 or 3 × 16: the last global batch is split and padded
const BATCH = 16;

/** [CLS] and mean features of the IMAGES synthetic training images, one process (what every comparison is against). */
async function oneProcessFeatures(): Promise<Map<FeaturePooling, FeatureSet>> {
  torch.setNumThreads(1);
  const encoder = featureEncoder();
  const data = makeEvalData({ split: 'train', dataset: 'synthetic', imgSize: FEATURE_ENCODER.imgSize, limit: IMAGES, seed: 0, numWorkers: 0 });
  try {
    return await extractPooledFeatures(encoder, data, ['cls', 'mean'], { batchSize: BATCH, label: null });
  } finally {
    await data.close();
    encoder.dispose();
  }
}

test('features from 2 and 3 ranks, gathered on every rank or on rank 0, equal one process’s, in dataset order', { skip: gloo }, async () => {
  const one = await oneProcessFeatures();
  for (const [W, to] of [[2, 'all'], [3, 'all'], [3, 'rank0']] as const) {
    const out = join(root, `features-${W}-${to}.safetensors`);
    const runs = await runWorkers(workerScript('features'), W, [out, String(IMAGES), String(BATCH), to]);
    for (const r of runs) {
      assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
      const rows = to === 'all' || r.rank === 0 ? IMAGES : 0;
      assert.deepEqual(r.lines[0], { rank: r.rank, rows, sameLabels: true }, `${to}: rank ${r.rank} holds ${rows} features`);
    }
    const got = loadTensors(out).tensors;
    for (const k of ['cls', 'mean'] as const) {
      assert.deepEqual(got.get(k)!.shape, one.get(k)!.features.shape);
      const d = maxDiff(got.get(k)!.toFloat32Array(), one.get(k)!.features.toFloat32Array());
      assert.ok(d <= 1e-5, `${W} ranks, ${k}: max |diff| ${d}`);
    }
    assert.deepEqual(Array.from(got.get('labels')!.data() as Int32Array), Array.from(one.get('cls')!.labels), `${W} ranks: labels in dataset order`);
    for (const t of got.values()) t.dispose();
  }
  for (const s of one.values()) s.features.dispose();
});

test('features kept as shards by 2 and 3 ranks: every image once, padding dropped, equal to one process’s rows', { skip: gloo }, async () => {
  const one = await oneProcessFeatures();
  for (const W of [2, 3]) {
    const out = join(root, `shards-${W}.safetensors`);
    const runs = await runWorkers(workerScript('features'), W, [out, String(IMAGES), String(BATCH), 'shard']);
    const seen = new Int32Array(IMAGES);
    for (const r of runs) {
      assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
      const got = loadTensors(`${out}.rank${r.rank}`).tensors;
      const positions = Array.from(got.get('positions')!.data() as Int32Array);
      assert.deepEqual(r.lines[0], { rank: r.rank, rows: positions.length, sameLabels: true });
      for (const p of positions) seen[p]++;
      const at = torch.tensor(Int32Array.from(positions), { dtype: 'int64' });
      for (const k of ['cls', 'mean'] as const) {
        const want = one.get(k)!.features.indexSelect(0, at);
        const d = maxDiff(got.get(k)!.toFloat32Array(), want.toFloat32Array());
        assert.ok(d <= 1e-5, `${W} ranks, rank ${r.rank}, ${k}: max |diff| ${d}`);
        want.dispose();
      }
      assert.deepEqual(Array.from(got.get('labels')!.data() as Int32Array), positions.map((p) => one.get('cls')!.labels[p]));
      at.dispose();
      for (const t of got.values()) t.dispose();
    }
    assert.deepEqual([...seen].filter((c) => c !== 1), [], `${W} ranks: every image in exactly one shard`);
  }
  for (const s of one.values()) s.features.dispose();
});

test('k-NN and the linear probe on shards of the training features (one shard smaller than k) give one process’s results on every rank', { skip: gloo }, async () => {
  torch.setNumThreads(1);
  const { train, test: testSet } = shardedCase();
  const knn = knnClassify(train, testSet, { ks: CASE.ks, numClasses: CASE.classes, chunkSize: 16, label: null });
  const probe = await linprobeOnFeatures(train, testSet, CASE.classes, PROBE);
  const tensors = Object.fromEntries([...probe.probe.stateDict()].map(([k, t]) => [k, Array.from(t.toFloat32Array())]));
  for (const W of [2, 3]) {
    assert.ok(shardPositions(W - 1, W).length < Math.max(...CASE.ks), 'a shard holds fewer rows than the largest k');
    const runs = await runWorkers(workerScript('sharded-eval'), W);
    for (const r of runs) {
      assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
      const got = r.lines[0] as { rows: number; knn: unknown; probe: { top1: number; history: unknown; tensors: Record<string, number[]> } };
      assert.equal(got.rows, shardPositions(r.rank, W).length);
      assert.deepEqual(got.knn, JSON.parse(JSON.stringify(knn)), `${W} ranks, rank ${r.rank}: k-NN accuracies`);
      assert.deepEqual(got.probe.history, JSON.parse(JSON.stringify(probe.history)), `${W} ranks, rank ${r.rank}: probe losses per epoch`);
      assert.equal(got.probe.top1, probe.accuracy.top1);
      for (const [k, v] of Object.entries(tensors)) assert.deepEqual(got.probe.tensors[k], v, `${W} ranks, rank ${r.rank}: probe ${k}`);
    }
  }
  probe.probe.dispose();
  train.features.dispose();
  testSet.features.dispose();
});

test('a classifier scored on 2 and 3 ranks’ slices of the test set (padding not counted) gets one process’s accuracy on every rank', { skip: gloo }, async () => {
  torch.setNumThreads(1);
  const model = featureClassifier();
  const data = makeEvalData({ split: 'test', dataset: 'synthetic', imgSize: FEATURE_ENCODER.imgSize, limit: IMAGES, seed: 0, numWorkers: 0 });
  const one = await evaluateClassifier(model, data, { batchSize: BATCH });
  await data.close();
  model.dispose();
  assert.equal(one.n, IMAGES);
  for (const W of [2, 3]) {
    const runs = await runWorkers(workerScript('classifier-eval'), W, [String(IMAGES), String(BATCH)]);
    for (const r of runs) {
      assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
      assert.deepEqual(r.lines[0], { rank: r.rank, accuracy: JSON.parse(JSON.stringify(one)) }, `${W} ranks, rank ${r.rank}`);
    }
  }
});

test('over tar shards, 3 and 4 ranks with 2 loader workers each give one process’s features (gathered and kept as shards) and accuracy', { skip: gloo }, async () => {
  torch.setNumThreads(1);
  const folder = join(root, 'shard-src');
  const N = 22; // 22 = 3·8 − 2 = 4·6 − 2: the last ranks' ranges wrap to the stream's start
  for (let i = 0; i < N; i++) write(join(folder, 'train', `c${i % 3}`, `${String(i).padStart(2, '0')}.png`), await encode(picture(20, 18, i), 20, 18, 3, 'png'));
  const { pattern } = await packImageFolder({ input: join(folder, 'train'), output: join(root, 'shard-out'), shardSize: 5 });
  const source = ['shards', pattern, '2'];
  const encoder = featureEncoder();
  const model = featureClassifier();
  const one = makeEvalData({ split: 'train', dataset: 'folder', dataPath: folder, imgSize: FEATURE_ENCODER.imgSize, seed: 0, numWorkers: 0 });
  const want = await extractPooledFeatures(encoder, one, ['cls', 'mean'], { batchSize: 3, label: null });
  const accuracy = JSON.parse(JSON.stringify(await evaluateClassifier(model, one, { batchSize: 3 })));
  await one.close();
  encoder.dispose();
  model.dispose();
  assert.equal(want.get('cls')!.labels.length, N);
  for (const W of [3, 4]) {
    const out = join(root, `shard-features-${W}.safetensors`);
    for (const r of await runWorkers(workerScript('features'), W, [out, '0', '3', 'all', ...source])) assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
    const got = loadTensors(out).tensors;
    assert.deepEqual(Array.from(got.get('labels')!.data() as Int32Array), Array.from(want.get('cls')!.labels), `${W} ranks: labels in dataset order`);
    for (const k of ['cls', 'mean'] as const) {
      const d = maxDiff(got.get(k)!.toFloat32Array(), want.get(k)!.features.toFloat32Array());
      assert.ok(got.get(k)!.shape[0] === N && d <= 1e-5, `${W} ranks, ${k}: ${got.get(k)!.shape[0]} rows, max |diff| ${d}`);
    }
    for (const t of got.values()) t.dispose();

    const seen = new Int32Array(N);
    for (const r of await runWorkers(workerScript('features'), W, [out, '0', '3', 'shard', ...source])) {
      assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
      const mine = loadTensors(`${out}.rank${r.rank}`).tensors;
      const positions = Array.from(mine.get('positions')!.data() as Int32Array);
      assert.deepEqual(positions, [...positions].sort((a, b) => a - b), `${W} ranks, rank ${r.rank}: positions increasing`);
      for (const p of positions) seen[p]++;
      torch.scope(() => {
        const rows = want.get('cls')!.features.indexSelect(0, torch.tensor(Int32Array.from(positions), { dtype: 'int64' }));
        assert.ok(maxDiff(mine.get('cls')!.toFloat32Array(), rows.toFloat32Array()) <= 1e-5, `${W} ranks, rank ${r.rank}: its rows`);
      });
      for (const t of mine.values()) t.dispose();
    }
    assert.deepEqual([...seen].filter((c) => c !== 1), [], `${W} ranks: every image in exactly one shard`);

    for (const r of await runWorkers(workerScript('classifier-eval'), W, ['0', '3', ...source])) {
      assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
      assert.deepEqual(r.lines[0], { rank: r.rank, accuracy }, `${W} ranks, rank ${r.rank}: accuracy`);
    }
  }
  for (const s of want.values()) s.features.dispose();
});

function cli(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

test('semaim knn and linprobe (cached and online) --nproc-per-node 2 give one process’s results, written once by rank 0', { skip: gloo }, () => {
  const encoder = writeEncoder(root);
  const common = ['--checkpoint', encoder, '--dataset', 'synthetic', '--train-limit', String(IMAGES), '--test-limit', '61',
    '--eval-batch-size', String(BATCH), '--num-workers', '0', '--threads', '1'];
  const json = (dir: string, name: string) => JSON.parse(readFileSync(join(root, dir, name), 'utf8'));

  const k1 = cli(['knn', ...common, '--out-dir', join(root, 'knn-1')]);
  assert.equal(k1.code, 0, k1.out);
  const k2 = cli(['knn', ...common, '--nproc-per-node', '2', '--out-dir', join(root, 'knn-2')]);
  assert.equal(k2.code, 0, k2.out);
  assert.equal((k2.out.match(/wrote .*knn\.json/g) ?? []).length, 1, 'one knn.json, from rank 0');
  const [a, b] = [json('knn-1', 'knn.json'), json('knn-2', 'knn.json')];
  assert.deepEqual(b.data, { train: IMAGES, test: 61, numClasses: 10 });
  assert.deepEqual([a.config.nprocPerNode, b.config.nprocPerNode, b.config.nnodes, b.config.nodeRank], [1, 2, 1, 0], 'the world the job ran on');
  assert.deepEqual(b.details.perK, a.details.perK, 'k-NN accuracies per k');
  assert.deepEqual(b.perClass, a.perClass);

  const lp = ['linprobe', ...common, '--epochs', '3', '--batch-size', '32'];
  const l1 = cli([...lp, '--out-dir', join(root, 'lp-1')]);
  assert.equal(l1.code, 0, l1.out);
  const l2 = cli([...lp, '--nproc-per-node', '2', '--out-dir', join(root, 'lp-2')]);
  assert.equal(l2.code, 0, l2.out);
  assert.equal((l2.out.match(/wrote .*linprobe\.json/g) ?? []).length, 1, 'one linprobe.json, from rank 0');
  const [p1, p2] = [loadTensors(join(root, 'lp-1', 'probe.safetensors')).tensors, loadTensors(join(root, 'lp-2', 'probe.safetensors')).tensors];
  assert.deepEqual([...p2.keys()].sort(), [...p1.keys()].sort());
  for (const [name, t] of p1) {
    const d = maxDiff(p2.get(name)!.toFloat32Array(), t.toFloat32Array());
    assert.ok(d <= 1e-4, `probe ${name}: max |diff| ${d}`);
  }
  assert.equal(json('lp-2', 'linprobe.json').top1, json('lp-1', 'linprobe.json').top1);

  // online (the encoder on every crop-flip batch): each rank encodes half of every batch
  const o1 = cli([...lp, '--no-cache-features', '--out-dir', join(root, 'lp-online-1')]);
  assert.equal(o1.code, 0, o1.out);
  const o2 = cli([...lp, '--no-cache-features', '--nproc-per-node', '2', '--out-dir', join(root, 'lp-online-2')]);
  assert.equal(o2.code, 0, o2.out);
  assert.equal((o2.out.match(/wrote .*linprobe\.json/g) ?? []).length, 1, 'one linprobe.json, from rank 0');
  const [q1, q2] = [loadTensors(join(root, 'lp-online-1', 'probe.safetensors')).tensors, loadTensors(join(root, 'lp-online-2', 'probe.safetensors')).tensors];
  for (const [name, t] of q1) {
    const d = maxDiff(q2.get(name)!.toFloat32Array(), t.toFloat32Array());
    assert.ok(d <= 1e-4, `online probe ${name}: max |diff| ${d}`);
  }
  const history = (dir: string) => (json(dir, 'linprobe.json') as { details: { history: { loss: number }[] } }).details.history.map((h) => h.loss);
  assert.deepEqual(history('lp-online-2').map((l) => l.toFixed(4)), history('lp-online-1').map((l) => l.toFixed(4)), 'online probe: losses per epoch');
  assert.equal(json('lp-online-2', 'linprobe.json').top1, json('lp-online-1', 'linprobe.json').top1);

  const refused = cli([...lp, '--no-cache-features', '--batch-size', '33', '--nproc-per-node', '2', '--out-dir', join(root, 'lp-online-odd')]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.out, /option --batch-size: \(33\) must be divisible by the 2 processes with --no-cache-features/);
});

test('semaim embed --nproc-per-node 2 and 3 write the file one process writes (skipped images listed, padding dropped)', { skip: gloo }, async () => {
  const encoder = writeEncoder(root, { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2 }, 3, 'embed-encoder');
  const images = join(root, 'photos');
  for (let i = 0; i < 13; i++) {
    const [w, h] = [20 + 3 * i, 18 + 2 * i];
    write(join(images, `img${String(i).padStart(2, '0')}.png`), await encode(picture(w, h, i), w, h, 3, 'png'));
  }
  // two unreadable files, at positions that fall to different ranks
  write(join(images, 'img03b.jpg'), 'not a JPEG\n');
  write(join(images, 'img10b.png'), 'not a PNG either\n');
  const run = (n: number, pooling = 'all', batch = 2) => {
    const out = join(root, `embed-${n}-${pooling}.safetensors`);
    const r = cli(['embed', '--checkpoint', encoder, '--images', images, '--batch-size', String(batch), '--num-workers', '0', '--threads', '1',
      '--pooling', pooling, '--out', out, ...(n > 1 ? ['--nproc-per-node', String(n)] : [])]);
    assert.equal(r.code, 0, r.out);
    assert.equal((r.out.match(/embedded 13 images \(2 skipped\)/g) ?? []).length, 1, `${n} processes: one report, from rank 0\n${r.out}`);
    return { tensors: loadTensors(out).tensors, list: JSON.parse(readFileSync(out.replace(/safetensors$/, 'json'), 'utf8')) as EmbedList };
  };
  const one = run(1);
  assert.deepEqual(one.tensors.get('features')!.shape, [13, 17, 16]);
  for (const n of [2, 3]) {
    const many = run(n);
    const d = maxDiff(many.tensors.get('features')!.toFloat32Array(), one.tensors.get('features')!.toFloat32Array());
    assert.ok(d <= 1e-5, `${n} processes: features max |diff| ${d}`);
    assert.deepEqual(Array.from(many.tensors.get('indices')!.data() as Int32Array), Array.from(one.tensors.get('indices')!.data() as Int32Array));
    assert.deepEqual(many.list.images, one.list.images);
    assert.deepEqual(many.list.skipped.map((s) => s.path), one.list.skipped.map((s) => s.path));
    for (const t of many.tensors.values()) t.dispose();
  }
  // [CLS] rows, several per rank and batch: gathered from a strided column of the tokens they were
  const cls = [run(1, 'cls', 4), run(2, 'cls', 4)].map((r) => r.tensors.get('features')!.toFloat32Array());
  assert.ok(maxDiff(cls[1], cls[0]) <= 1e-5, `[CLS] on 2 processes: max |diff| ${maxDiff(cls[1], cls[0])}`);
});

test('semaim embed --dtype float16 --nproc-per-node 2 refuses features beyond float16 once, from rank 0, after every rank gathered its rows, and writes nothing', { skip: gloo }, async () => {
  // an encoder whose [CLS] feature is its final norm's bias, one channel beyond float16's largest value
  const cfg = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2 };
  const vit = new VisionTransformer(cfg).initWeights();
  const bias = new Float32Array(cfg.embedDim).fill(1);
  bias[3] = 70000;
  torch.noGrad(() => {
    vit.norm.weight!.fill_(0);
    vit.norm.bias!.copy_(torch.tensor(bias));
  });
  const encoder = join(root, 'wide-encoder.safetensors');
  saveTensors(encoder, vit.stateDict(), { config: JSON.stringify(cfg) });
  writeFileSync(join(root, 'wide-encoder.json'), JSON.stringify(cfg));
  vit.dispose();
  const images = join(root, 'wide-photos');
  for (let i = 0; i < 5; i++) write(join(images, `p${i}.png`), await encode(picture(16, 16, i), 16, 16, 3, 'png'));
  const out = join(root, 'wide-out');
  const r = cli(['embed', '--checkpoint', encoder, '--images', images, '--batch-size', '2', '--num-workers', '0', '--threads', '1',
    '--dtype', 'float16', '--out', join(out, 'f.safetensors'), '--nproc-per-node', '2']);
  assert.notEqual(r.code, 0, r.out);
  assert.equal((r.out.match(/^semaim: option --dtype: float16 cannot store these features: .*p\d\.png has a feature of 70000\.0/gm) ?? []).length, 1, r.out);
  assert.equal(existsSync(out), false, 'no features, list or partial file: the folder it made is taken back');
});

test('with unreadable training images, semaim knn and linprobe --nproc-per-node 2 give one process’s results (each rank’s shard leaves the stand-ins out)', { skip: gloo }, async () => {
  const encoder = writeEncoder(root, undefined, 5, 'unusable-encoder');
  const data = join(root, 'unusable-data');
  for (const [split, per] of [['train', 11], ['test', 4]] as const)
    for (const [k, cls] of ['a', 'b', 'c'].entries())
      for (let i = 0; i < per; i++) {
        const file = join(data, split, cls, `${i}.png`);
        if (split === 'train' && i === 2 * k + 1) write(file, 'not a png'); // 3 unreadable, one per class, in different batches
        else write(file, await encode(picture(8, 8, 31 * k + i + (split === 'test' ? 500 : 0)), 8, 8, 3, 'png'));
      }
  const common = ['--checkpoint', encoder, '--dataset', 'folder', '--data-path', data, '--eval-batch-size', '4', '--num-workers', '0', '--threads', '1'];
  const json = (dir: string, name: string) => JSON.parse(readFileSync(join(root, dir, name), 'utf8'));
  for (const [cmd, extra] of [['knn', ['--k', '3,5']], ['linprobe', ['--epochs', '3', '--batch-size', '6']]] as const) {
    const one = cli([cmd, ...common, ...extra, '--out-dir', join(root, `${cmd}-unusable-1`)]);
    assert.equal(one.code, 0, one.out);
    const two = cli([cmd, ...common, ...extra, '--nproc-per-node', '2', '--out-dir', join(root, `${cmd}-unusable-2`)]);
    assert.equal(two.code, 0, two.out);
    const [a, b] = [json(`${cmd}-unusable-1`, `${cmd}.json`), json(`${cmd}-unusable-2`, `${cmd}.json`)];
    assert.deepEqual(a.data, { train: 30, test: 12, numClasses: 3 }, `${cmd}: the 30 readable training images`);
    assert.deepEqual(b.data, a.data, `${cmd}: the same images counted`);
    assert.deepEqual(b.rows, a.rows, `${cmd}: the same accuracies`);
  }
  const [p1, p2] = [loadTensors(join(root, 'linprobe-unusable-1', 'probe.safetensors')).tensors, loadTensors(join(root, 'linprobe-unusable-2', 'probe.safetensors')).tensors];
  for (const [name, t] of p1) {
    const d = maxDiff(p2.get(name)!.toFloat32Array(), t.toFloat32Array());
    assert.ok(d <= 1e-4, `probe ${name}: max |diff| ${d}`);
  }
});
