// `semaim demo`: a refused re-run (another seed) leaves the folder's baseline encoder as the first run
// wrote it (its k-NN results refer to that file's SHA-256); Ctrl-C in either part; what a tiny run
// reports against what it measured and the recipe it ran; its defaults and the sizes it refuses; and
// its failures (with stand-ins for the pre-training and the k-NN).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as data from '../../src/data';
import * as io from '../../src/io';
import { loadModel } from '../../src/semaim';
import { objectStartFraction } from '../../src/viz/object-start';
import { ORDER_NAMES } from '../../src/viz/maps';
import { DEMO_OPTIONS, pixelLossRow } from '../../src/cli/demo';
import { commands } from '../../src/cli/commands';
import { OptionError, resolveOptions } from '../../src/util/options';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

test('a refused demo re-run does not replace the baseline encoder it wrote', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-'));
  try {
    const out = join(dir, 'demo');
    const tiny = ['demo', '--out-dir', out, '--epochs', '0.1', '--synthetic-size', '128', '--test-size', '16', '--knn-train-size', '32', '--threads', '1'];
    const first = spawnSync(process.execPath, [CLI, ...tiny], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(first.status, 0, first.stderr);
    const sha = () =>
      createHash('sha256')
        .update(readFileSync(join(out, 'init-encoder.safetensors')))
        .digest('hex');
    const before = sha();
    assert.equal(JSON.parse(readFileSync(join(out, 'eval-init', 'knn.json'), 'utf8')).checkpoint.sha256, before);
    const again = spawnSync(process.execPath, [CLI, ...tiny, '--seed', '1'], { encoding: 'utf8', timeout: 120_000 });
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /--seed\s+0\s+1/);
    assert.match(again.stderr, /start a new run: another --out-dir\./);
    assert.doesNotMatch(again.stderr, /--no-resume/, 'demo has no --no-resume to suggest');
    // the options it says may change are the demo's (pretrain's refusal listed --device, --fused, --max-steps, ...)
    const free = /Options that may change when resuming: (.*)\./.exec(again.stderr)?.[1].split(', ');
    assert.deepEqual(free, ['--out-dir', '--epochs', '--test-size', '--knn-train-size', '--threads']);
    const table = commands.demo.options;
    for (const flag of free!) assert.ok(flag.slice(2).replace(/-(.)/g, (_, c: string) => c.toUpperCase()) in table, `${flag} is a demo option`);
    assert.equal(sha(), before, 'init-encoder.safetensors is the one the first run scored');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a demo continued with more --epochs resumes (its warmup, a quarter of the first --epochs, refused it as a --warmup-epochs change the demo has no flag for)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-more-'));
  try {
    const out = join(dir, 'demo');
    const tiny = ['demo', '--out-dir', out, '--synthetic-size', '256', '--test-size', '16', '--knn-train-size', '32', '--threads', '1'];
    const first = spawnSync(process.execPath, [CLI, ...tiny, '--epochs', '0.5'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(first.status, 0, first.stderr);
    assert.deepEqual(
      io.listCheckpoints(join(out, 'checkpoints')).map((c) => c.step),
      [2],
    );
    const more = spawnSync(process.execPath, [CLI, ...tiny, '--epochs', '0.75'], { encoding: 'utf8', timeout: 120_000 });
    assert.doesNotMatch(more.stderr, /--warmup-epochs/);
    assert.equal(more.status, 0, more.stderr);
    assert.equal(io.listCheckpoints(join(out, 'checkpoints'))[0].step, 3, 'the run went on to the 3 steps of 0.75 epochs');
    assert.equal((io.readCheckpointState(join(out, 'checkpoints', 'step-00000003')).options as { warmupEpochs: number }).warmupEpochs, 0.125);
    // cut to no more than its warmup (0.125 epochs): refused as a change of the demo's --epochs (it named --warmup-epochs)
    const shorter = spawnSync(process.execPath, [CLI, ...tiny, '--epochs', '0.1'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(shorter.status, 2, shorter.stderr);
    assert.match(shorter.stderr, /--epochs\s+0\.75\s+0\.1/);
    assert.doesNotMatch(shorter.stderr, /--warmup-epochs/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C during the demo's pre-training stops the demo with exit code 130 (it went on to evaluate the unfinished model and exited 0)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-int-'));
  try {
    const out = join(dir, 'demo');
    const args = [CLI, 'demo', '--out-dir', out, '--epochs', '20', '--synthetic-size', '256', '--test-size', '16', '--knn-train-size', '32', '--threads', '1'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const hung = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const code = await new Promise<number | null>((done) => {
      child.stderr.on('data', (b: Buffer) => {
        const first = !/pretrain \[/.test(stderr);
        stderr += b.toString();
        if (first && /pretrain \[/.test(stderr)) child.kill('SIGINT');
      });
      child.on('close', (c) => done(c));
    });
    clearTimeout(hung);
    assert.equal(code, 130, stderr.slice(-600));
    assert.match(stderr, /demo stopped during pre-training at step \d+ \(checkpoint written\); run the same command again to continue/);
    assert.ok(!existsSync(join(out, 'demo.json')), 'no results of an unfinished model');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C during the demo's evaluation stops it at the next batch with exit code 130 and a line saying so (it died silently by the signal)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-eval-int-'));
  try {
    const out = join(dir, 'demo');
    const args = [
      CLI,
      'demo',
      '--out-dir',
      out,
      '--epochs',
      '0.1',
      '--synthetic-size',
      '128',
      '--test-size',
      '16',
      '--knn-train-size',
      '128',
      '--threads',
      '1',
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const hung = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const code = await new Promise<number | null>((done) => {
      child.stderr.on('data', (b: Buffer) => {
        const first = !/demo: k-NN/.test(stderr);
        stderr += b.toString();
        if (first && /demo: k-NN/.test(stderr)) child.kill('SIGINT');
      });
      child.on('close', (c) => done(c));
    });
    clearTimeout(hung);
    assert.equal(code, 130, stderr.slice(-600));
    assert.match(stderr, /demo stopped during its evaluation \(pre-training is complete: .*step-\d+\); run the same command again to evaluate/);
    assert.ok(!existsSync(join(out, 'demo.json')), 'no summary of an unfinished demo');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the demo reports what it measured: demo.json and its table agree with the k-NN results, the object start of its checkpoint, its samples of the test set, the encoder it started from and the recipe of docs/RESULTS.md', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-report-'));
  try {
    const out = join(dir, 'demo');
    // --seed 1 and S from `self`, not the defaults: a seed or the tokens not passed on show
    const args = '--epochs 0.1 --synthetic-size 128 --test-size 16 --knn-train-size 200 --threads 1 --similarity-tokens self --seed 1'.split(' ');
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [CLI, 'demo', '--out-dir', out, ...args], { encoding: 'utf8', timeout: 120_000 });
    const wall = (Date.now() - t0) / 1000;
    assert.equal(r.status, 0, r.stderr);
    const json = (...path: string[]) => JSON.parse(readFileSync(join(out, ...path), 'utf8'));
    const summary = json('demo.json');

    // the recipe docs/RESULTS.md's demo numbers were measured with (warm-up: a quarter of the epochs, at most 1)
    const { options } = json('config.json');
    const recipe = {
      ...{ dataset: 'synthetic', syntheticSize: 128, imgSize: 32, patchSize: 4, embedDim: 128, depth: 4, numHeads: 4, decoderDepth: 4 },
      ...{ order: 'semantic', similarityTokens: 'self', blur: false, minScale: 0.5, batchSize: 64, epochs: 0.1, warmupEpochs: 0.025 },
      ...{ blr: 1.6e-2, weightDecay: 0.05, decayClsToken: false, clipGrad: 3, seed: 1, threads: 1, logEvery: 10 },
    };
    assert.deepEqual(Object.fromEntries(Object.keys(recipe).map((k) => [k, options[k]])), recipe);

    // one step, at lr 0 (the warm-up starts there): the checkpoint's encoder is still its initialisation
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      metrics.map((m) => [m.step, m.lr]),
      [[1, 0]],
    );
    const checkpoint = join(out, 'checkpoints', 'step-00000001');
    assert.deepEqual([summary.steps, summary.loss], [1, { first: metrics[0].loss, last: metrics[0].loss, drop: 0 }]);
    const init = io.readSafetensors(join(out, 'init-encoder.safetensors'));
    const model = io.readSafetensors(join(checkpoint, 'model.safetensors'));
    const encoderNames = [...model.tensors.keys()].filter((k) => !k.startsWith('query_blocks.') && !k.startsWith('prediction_head.'));
    assert.deepEqual([...init.tensors.keys()].sort(), encoderNames.sort(), "the model's encoder, without the decoder's tensors");
    for (const [k, t] of init.tensors)
      assert.ok(Buffer.from(t.data).equals(Buffer.from(model.tensors.get(k)!.data)), `${k}: the weights pre-training started from`);
    assert.deepEqual(JSON.parse(init.metadata.config), json('init-encoder.json'), 'the config beside the weights is theirs');

    // each k-NN number is the top-1 of its knn.json: the checkpoint, the pooling, k = 20, the first 128 training images (all there are), 16 test images
    for (const [folder, encoder, pooling, top1] of [
      ['eval-init', join(out, 'init-encoder.safetensors'), 'cls', summary.knnTop1.init],
      ['eval', out, 'cls', summary.knnTop1.trained],
      ['eval-init-mean', join(out, 'init-encoder.safetensors'), 'mean', summary.knnTop1Mean.init],
      ['eval-mean', out, 'mean', summary.knnTop1Mean.trained],
    ]) {
      const knn = json(folder, 'knn.json');
      assert.deepEqual(
        [knn.checkpoint.path, knn.config.pooling, knn.config.k, knn.config.seed, knn.data.train, knn.data.test, knn.top1],
        [encoder, pooling, '20', 1, 128, 16, top1],
        folder,
      );
    }

    // the object start is what the checkpoint scores on the 16 test images, S from its own tokens and from each
    const test = data.openDataset('synthetic', { split: 'test', imgSize: 32, syntheticSize: 16, seed: 1 });
    const batch = async (o: Partial<data.LoaderOptions>) => {
      const loader = new data.DataLoader(test, { batchSize: 16, shuffle: false, workers: 0, ...o });
      try {
        for await (const b of loader.iterate(0)) return b;
        throw new Error('no test images');
      } finally {
        await loader.close();
      }
    };
    const b = await batch({ masks: true, transforms: [data.normalize()] });
    const loaded = loadModel(out);
    let scores: Record<'own' | 'cls' | 'gap' | 'self', ReturnType<typeof objectStartFraction>>;
    try {
      const score = (tokens?: 'cls' | 'gap' | 'self') =>
        objectStartFraction(loaded.model, { images: b.images as Float32Array, masks: b.masks! }, { seed: 1, ema: loaded.ema, tokens });
      scores = { own: score(), cls: score('cls'), gap: score('gap'), self: score('self') };
    } finally {
      loaded.dispose();
    }
    const { own } = scores;
    assert.deepEqual(summary.objectStart, {
      similarityTokens: 'self',
      fraction: own.fraction,
      stdErr: own.stdErr,
      randomCentreBaseline: own.baselineExpected,
      n: 16,
      byTokens: Object.fromEntries((['cls', 'gap', 'self'] as const).map((t) => [t, { fraction: scores[t].fraction, stdErr: scores[t].stdErr }])),
    });

    // the samples the order maps are drawn on: the first 8 test images, named by their class
    const u8 = await batch({ uint8: true });
    const samples = readdirSync(join(out, 'samples')).sort();
    assert.deepEqual(
      samples,
      Array.from({ length: 8 }, (_, i) => `sample-0${i}-${test.classes[u8.labels[i]]}.png`),
    );
    for (const [i, name] of samples.entries()) {
      const { data: hwc, info } = await sharp(join(out, 'samples', name))
        .raw()
        .toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height, info.channels], [32, 32, 3]);
      const chw = Array.from({ length: 3 * 32 * 32 }, (_, j) => hwc[(j % 1024) * 3 + Math.floor(j / 1024)]);
      assert.deepEqual(chw, Array.from(u8.images.subarray(i * 3072, (i + 1) * 3072)), name);
    }
    const viz = json('viz', 'visualize.json');
    assert.deepEqual(
      viz.images.map((x: { name: string }) => x.name),
      samples,
    );
    for (const order of ORDER_NAMES) assert.ok(viz.columns.includes(`order ${order}`), `the grid shows the ${order} order`);
    assert.match(readFileSync(join(out, 'report.html'), 'utf8'), /<title>semaim demo<\/title>/);

    const outputs = { run: out, checkpoint, metrics: join(out, 'metrics.jsonl'), grid: join(out, 'viz', 'grid.png'), report: join(out, 'report.html') };
    assert.deepEqual(summary.outputs, outputs);
    for (const p of Object.values(outputs)) assert.ok(existsSync(p), p);
    assert.ok(summary.seconds > 0 && summary.seconds <= wall, `${summary.seconds} s, within the ${wall} s the command took`);

    const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
    const row = (t: 'cls' | 'gap') =>
      `| … with S from ${t === 'cls' ? 'cos to [CLS], the paper' : "cos to the mean patch token, authors' gap"} instead | ${pct(scores[t].fraction)} ± ${pct(scores[t].stdErr)} |`;
    assert.equal(
      r.stdout,
      [
        '',
        '| measure | value |',
        '|---|---|',
        pixelLossRow(metrics[0].loss, metrics[0].loss),
        `| k-NN top-1, [CLS], k=20 | ${pct(summary.knnTop1.init)} at init → ${pct(summary.knnTop1.trained)} pre-trained |`,
        `| k-NN top-1, mean of patch tokens, k=20 | ${pct(summary.knnTop1Mean.init)} at init → ${pct(summary.knnTop1Mean.trained)} pre-trained |`,
        `| semantic order starts on the object (S from the last block's [CLS] attention, authors' self, as trained) | ${pct(own.fraction)} ± ${pct(own.stdErr)} of 16 test images (random centre: ${pct(own.baselineExpected)}) |`,
        row('cls'),
        row('gap'),
        '',
        `outputs in ${out}:`,
        `  report        ${outputs.report}`,
        `  order maps    ${outputs.grid}`,
        `  checkpoint    ${checkpoint}`,
        `  metrics       ${outputs.metrics}`,
        `  summary       ${join(out, 'demo.json')}`,
        '',
      ].join('\n'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the demo's defaults are the run docs/RESULTS.md reports (4,096 training and 1,000 test images, 3 epochs, S from [CLS], seed 0); sizes it cannot use are refused before pre-training", async () => {
  const d = resolveOptions(DEMO_OPTIONS, {});
  assert.deepEqual([d.outDir, d.epochs, d.syntheticSize, d.testSize, d.knnTrainSize, d.similarityTokens, d.seed], ['runs/demo', 3, 4096, 1000, 4096, 'cls', 0]);
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-sizes-'));
  try {
    // under a file: a size let through fails at once on the folder (in this process, not minutes of pre-training)
    writeFileSync(join(dir, 'file'), '');
    const out = join(dir, 'file', 'demo');
    for (const [flag, value, key] of [
      ['--synthetic-size', '63', 'syntheticSize'], // less than one batch of 64
      ['--test-size', '9', 'testSize'],
      ['--knn-train-size', '19', 'knnTrainSize'], // fewer neighbours than k = 20
      ['--epochs', '0.05', 'epochs'],
    ])
      await assert.rejects(commands.demo.run(['--out-dir', out, flag, value]), (e: unknown) => e instanceof OptionError && e.key === key, `${flag} ${value}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a diverged pre-training stops the demo naming the step and metrics.jsonl, before its baseline is written; an error in its evaluation is reported as itself (exit 1), not as a stop by a signal', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-demo-fails-'));
  try {
    // stand-ins for the pre-training (none runs) and, when asked, for a k-NN that fails
    const preload = join(dir, 'stand-ins.js');
    const src = JSON.stringify(join(__dirname, '..', '..', 'src'));
    writeFileSync(
      preload,
      `const { join } = require('node:path');
       const diverged = process.env.STAND_IN === 'diverged';
       require(join(${src}, 'train', 'pretrain')).pretrain = async (o) => ({
         outDir: o.outDir, steps: 7, firstLoss: 1.2, lastLoss: diverged ? NaN : 1.1, stoppedBy: diverged ? 'nonfinite' : 'finished',
         checkpoint: diverged ? null : join(o.outDir, 'checkpoints', 'step-00000007'), best: null, seconds: 1,
       });
       if (process.env.STAND_IN === 'knn-fails') require(join(${src}, 'eval', 'run')).runKnn = async () => { throw new Error('stand-in: the k-NN bank cannot be read'); };`,
    );
    const demo = (mode: string, out: string) =>
      spawnSync(process.execPath, ['-r', preload, CLI, 'demo', '--out-dir', out, '--threads', '1'], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, STAND_IN: mode },
      });

    const diverged = demo('diverged', join(dir, 'diverged'));
    assert.equal(diverged.status, 1, diverged.stderr);
    const said = `semaim: demo: pre-training diverged (NaN/Inf loss) at step 7; see ${join(dir, 'diverged', 'metrics.jsonl')}\n`;
    assert.ok(diverged.stderr.includes(said), diverged.stderr);
    assert.ok(!existsSync(join(dir, 'diverged', 'init-encoder.safetensors')), 'no baseline, k-NN or summary of a diverged model');

    const failed = demo('knn-fails', join(dir, 'knn-fails'));
    assert.equal(failed.status, 1, failed.stderr);
    assert.match(failed.stderr, /semaim: stand-in: the k-NN bank cannot be read\n/);
    assert.doesNotMatch(failed.stderr, /stopped/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
