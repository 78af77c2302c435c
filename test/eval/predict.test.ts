// `semaim predict`: a fine-tuned classifier's top-k classes per image. Its accuracy on the test split
// equals the one finetune reported for the same checkpoint (another loader, another loop); unreadable
// images are skipped and listed; names cannot become spreadsheet formulas; only fine-tuning checkpoints
// are taken, and nothing is written into the checkpoint read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands';
import { predict, type PredictList } from '../../src/eval/predict';
import { embedDataset } from '../../src/eval/embed';
import { isFinetuneFolder, loadPredictor, resolveClassifier, resolvePredictor } from '../../src/eval/classifier-source';
import { LinearProbe, ViTClassifier } from '../../src/eval/classifier';
import { extractFeatures } from '../../src/eval/features';
import { loadEncoder } from '../../src/semaim';
import { loadTensors, saveTensors } from '../../src/io';
import * as torch from '../../src/torch';
import { OptionError } from '../../src/util/options';
import { CheckpointError } from '../../src/util/errors';
import { claimOutputs, outputLockPath } from '../../src/io/outputs';
import { writerMeanwhile } from '../written-meanwhile';
import { encode, picture, withFullDiskAt } from '../data/helpers';
import { TINY, maxDiff, pretrainTinyRun, toyImages, writeEncoder } from './helpers';
import { captureStderr, printed, quiet } from '../output';

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** <root>/data/{train,test}/<class>/<i>.png: 8×8 pictures whose class k has channel k set to `value`, a colour a tiny model learns. */
async function writeColourFolders(root: string, classes: string[], counts: { train: number; test: number }, value: number): Promise<void> {
  for (const split of ['train', 'test'] as const)
    for (const [k, cls] of classes.entries())
      for (let i = 0; i < counts[split]; i++) {
        const px = picture(8, 8, 100 * k + i + (split === 'test' ? 50 : 0));
        for (let p = 0; p < 64; p++) px[3 * p + k] = value;
        mkdirSync(join(root, 'data', split, cls), { recursive: true });
        writeFileSync(join(root, 'data', split, cls, `${i}.png`), await encode(px, 8, 8, 3, 'png'));
      }
}

test('predict: accuracy equals finetune’s for its checkpoint; top-k per image; unreadable images skipped and listed', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-'));
  try {
    // 3 classes, 6 training and 4 test images each
    await writeColourFolders(root, ['red', 'green', '=blue'], { train: 6, test: 4 }, 255);
    const encoder = writeEncoder(root);
    const data = ['--dataset', 'folder', '--data-path', join(root, 'data'), '--num-workers', '0', '--threads', '1'];
    const ft = join(root, 'ft');
    const { stdout } = await printed(() =>
      commands.finetune.run(['--checkpoint', encoder, ...data, '--epochs', '3', '--warmup-epochs', '0', '--batch-size', '6', '--blr', '0.05', '--out-dir', ft]),
    );
    assert.ok(
      stdout.endsWith(`wrote ${join(ft, 'finetune.json')} and ${join(ft, 'checkpoints')}/\n`),
      `the summary names the checkpoints predict reads: ${stdout}`,
    );
    const report = JSON.parse(readFileSync(join(ft, 'finetune.json'), 'utf8')) as { top1: number; perClass: number[]; details: { finetuneCheckpoint: string } };

    // '0-broken.png' sorts before red's readable images, in the middle of a batch of 5: the rows after it keep their own names
    writeFileSync(join(root, 'data', 'test', 'red', '0-broken.png'), 'not a png');
    const out = join(root, 'pred', 'p.json');
    await quiet(() => commands.predict.run(['--checkpoint', ft, ...data, '--top-k', '9', '--batch-size', '5', '--out', out]));
    const list = JSON.parse(readFileSync(out, 'utf8')) as PredictList;
    assert.equal(list.checkpoint.dir, report.details.finetuneCheckpoint, 'the newest checkpoint, the one finetune.json reports');
    assert.deepEqual(list.classNames, ['=blue', 'green', 'red'], 'the names the run recorded');
    assert.equal(list.count, 12);
    assert.equal(list.accuracy!.n, 12);
    assert.equal(list.accuracy!.top1, report.top1, 'the same accuracy as finetune’s own evaluation');
    assert.deepEqual(list.accuracy!.perClass, report.perClass);
    assert.deepEqual(
      list.skipped.map((s) => [s.path.endsWith('0-broken.png'), /unrecognised format/.test(s.reason)]),
      [[true, true]],
    );
    let correct = 0;
    for (const p of list.predictions) {
      assert.equal(p.top.length, 3, 'top-k at most the number of classes');
      assert.ok(Math.abs(p.top.reduce((s, t) => s + t.p, 0) - 1) < 1e-5, 'probabilities of all classes sum to 1');
      assert.ok(p.top[0].p >= p.top[1].p && p.top[1].p >= p.top[2].p, 'most probable first');
      assert.equal(p.top[0].name, list.classNames[p.top[0].index]);
      if (p.top[0].index === p.label) correct++;
    }
    assert.equal(correct / 12, report.top1, 'top-1 of the listed predictions is the reported accuracy');
    const csv = readFileSync(join(root, 'pred', 'p.csv'), 'utf8')
      .trim()
      .split('\n');
    assert.equal(csv[0], 'path,label,class1,p1,class2,p2,class3,p3');
    assert.equal(csv.length, 13);
    assert.ok(
      csv.slice(1).every((row) => !/(^|,)=/.test(row)),
      'a class named =blue is written as a name, not a formula',
    );
    assert.ok(csv.some((row) => row.includes(",'=blue,")));
    // the table's probabilities are the list's, to 6 significant digits
    list.predictions.forEach((p, i) => assert.equal(csv[i + 1].split(',')[3], p.top[0].p.toPrecision(6), csv[i + 1]));

    // batching changes no image's prediction (each row its own classes and probabilities): batch size 1, and the
    // default top-k (5, so all 3 classes)
    const one = join(root, 'pred', 'one.json');
    await quiet(() => commands.predict.run(['--checkpoint', ft, ...data, '--batch-size', '1', '--out', one]));
    const single = JSON.parse(readFileSync(one, 'utf8')) as PredictList;
    const rows = (l: PredictList) => l.predictions.map((p) => [p.path, p.label, p.top.map((t) => t.index)]);
    assert.deepEqual(rows(single), rows(list));
    assert.ok(new Set(list.predictions.map((p) => p.top[0].p.toFixed(4))).size > 3, 'the images have different probabilities');
    // --top-k below the number of classes: the k most probable of each image, in the JSON and the CSV
    const two = join(root, 'pred', 'two.json');
    await quiet(() => commands.predict.run(['--checkpoint', ft, ...data, '--top-k', '2', '--out', two]));
    const top2 = JSON.parse(readFileSync(two, 'utf8')) as PredictList;
    assert.deepEqual(
      top2.predictions.map((p) => p.top.map((t) => t.index)),
      list.predictions.map((p) => p.top.slice(0, 2).map((t) => t.index)),
    );
    assert.equal(readFileSync(join(root, 'pred', 'two.csv'), 'utf8').split('\n')[0], 'path,label,class1,p1,class2,p2');
    assert.equal(list.input.seed, 0, 'the seed is recorded (the default) even without --limit');
    assert.equal(list.input.limit, undefined);
    // --limit takes a seeded subset: the JSON records limit and seed, which name the images read
    const sub = join(root, 'pred', 'sub.json');
    await quiet(() => commands.predict.run(['--checkpoint', ft, ...data, '--limit', '6', '--seed', '3', '--out', sub]));
    const subset = JSON.parse(readFileSync(sub, 'utf8')) as PredictList;
    assert.equal(subset.input.limit, 6);
    assert.equal(subset.input.seed, 3);
    const picked = embedDataset({ dataset: 'folder', dataPath: join(root, 'data'), limit: subset.input.limit, seed: subset.input.seed }, TINY.imgSize);
    assert.deepEqual(
      [...subset.predictions.map((p) => p.path), ...subset.skipped.map((s) => s.path)].sort(),
      Array.from({ length: picked.length }, (_, i) => picked.name(i)).sort(),
      'the recorded limit and seed give back the images predicted',
    );
    list.predictions.forEach((p, i) => p.top.forEach((t, j) => assert.ok(Math.abs(t.p - single.predictions[i].top[j].p) < 1e-5, `${p.path}: ${t.p}`)));

    // the same images with the class folders renamed: label k is another class than the classifier's k
    const renamed = join(root, 'renamed');
    for (const split of ['train', 'test'])
      for (const [from, to] of [
        ['red', 'a'],
        ['green', 'b'],
        ['=blue', 'c'],
      ]) {
        mkdirSync(join(renamed, split), { recursive: true });
        renameSync(join(root, 'data', split, from), join(renamed, split, to));
      }
    await assert.rejects(
      commands.predict.run(['--checkpoint', ft, ...data, '--data-path', renamed, '--out', join(root, 'pred', 'renamed.json')]),
      /predict: class 0 is '=blue' for the classifier but 'a' in .*renamed.*: a dataset is scored only with the classes the classifier was trained on/,
    );
    for (const split of ['train', 'test'])
      for (const [from, to] of [
        ['red', 'a'],
        ['green', 'b'],
        ['=blue', 'c'],
      ])
        renameSync(join(renamed, split, to), join(root, 'data', split, from));
    // a class folder missing from the data: the message names it, not only the counts
    renameSync(join(root, 'data', 'test', '=blue'), join(root, 'blue-away'));
    await assert.rejects(
      commands.predict.run(['--checkpoint', ft, ...data, '--out', join(root, 'pred', 'missing.json')]),
      /predict: .*data.* has 2 classes, the classifier 3: '=blue' only in the classifier$/,
    );
    renameSync(join(root, 'blue-away'), join(root, 'data', 'test', '=blue'));

    // a folder of unlabelled images: no accuracy, no label column
    const unlabelled = join(root, 'pred', 'u.json');
    const r = await quiet(() =>
      predict({
        checkpoint: join(ft, 'checkpoints', 'best'),
        images: join(root, 'data', 'test', 'green'),
        out: unlabelled,
        topK: 1,
        threads: 1,
        numWorkers: 0,
      }),
    );
    assert.equal(r.count, 4);
    assert.equal(r.accuracy, null);
    assert.equal(readFileSync(join(root, 'pred', 'u.csv'), 'utf8').split('\n')[0], 'path,class1,p1');
    // again over them, top-2, on a disk that fills at u.json: u.csv is not left top-2 beside a top-1 u.json
    const pairBefore = ['u.json', 'u.csv'].map((f) => readFileSync(join(root, 'pred', f), 'utf8'));
    await withFullDiskAt(/u\.json\.tmp-/, () =>
      assert.rejects(
        quiet(() =>
          predict({
            checkpoint: join(ft, 'checkpoints', 'best'),
            images: join(root, 'data', 'test', 'green'),
            out: unlabelled,
            topK: 2,
            threads: 1,
            numWorkers: 0,
            overwrite: true,
          }),
        ),
        /cannot write .*u\.json: ENOSPC/,
      ),
    );
    assert.deepEqual(
      ['u.json', 'u.csv'].map((f) => readFileSync(join(root, 'pred', f), 'utf8')),
      pairBefore,
      'the earlier pair',
    );

    // another job writing u.json/u.csv: refused before any image is read, not after the work
    const held = claimOutputs([unlabelled, join(root, 'pred', 'u.csv')]);
    let batches = 0;
    try {
      await assert.rejects(
        predict({
          checkpoint: join(ft, 'checkpoints', 'best'),
          images: join(root, 'data', 'test', 'green'),
          out: unlabelled,
          overwrite: true,
          threads: 1,
          numWorkers: 0,
          progress: null,
          onProgress: () => batches++,
        }),
        /u\.json is being written by another job of this process/,
      );
    } finally {
      held();
    }
    assert.equal(batches, 0, 'no image was classified');

    // refused before any image is read: an encoder, a pre-training-style checkpoint, an output in the checkpoint
    assert.throws(() => resolveClassifier(encoder), /expected a fine-tuning run folder/);
    await assert.rejects(
      commands.predict.run(['--checkpoint', ft, ...data, '--out', join(ft, 'checkpoints', 'best', 'state.json'), '--overwrite']),
      (e: unknown) => e instanceof OptionError && e.key === 'out',
    );
    assert.ok(JSON.parse(readFileSync(join(ft, 'checkpoints', 'best', 'state.json'), 'utf8')).files, 'state.json untouched');
    await assert.rejects(commands.predict.run(['--checkpoint', ft, ...data, '--out', out]), /exists: choose another output, or pass --overwrite/);
    await assert.rejects(commands.predict.run(['--checkpoint', ft, ...data, '--out', join(root, 'p.csv')]), /option 'out': must end in \.json/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('predict with a linear probe: its accuracy equals linprobe’s; the encoder must be the one the probe was trained on', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-probe-'));
  try {
    await writeColourFolders(root, ['a', 'b', 'c'], { train: 8, test: 5 }, 200);
    const encoder = writeEncoder(root);
    const data = ['--dataset', 'folder', '--data-path', join(root, 'data'), '--num-workers', '0', '--threads', '1'];
    const lp = join(root, 'lp');
    const { stdout } = await printed(() =>
      commands.linprobe.run(['--checkpoint', encoder, ...data, '--pooling', 'mean', '--epochs', '5', '--batch-size', '8', '--out-dir', lp]),
    );
    assert.ok(
      stdout.endsWith(`wrote ${join(lp, 'linprobe.json')} and ${join(lp, 'probe.safetensors')}\n`),
      `the summary names the probe predict reads: ${stdout}`,
    );
    const report = JSON.parse(readFileSync(join(lp, 'linprobe.json'), 'utf8')) as { top1: number; perClass: number[] };
    const out = join(root, 'pred', 'lp.json');
    await quiet(() => commands.predict.run(['--checkpoint', lp, ...data, '--out', out]));
    const list = JSON.parse(readFileSync(out, 'utf8')) as PredictList;
    assert.equal(list.checkpoint.kind, 'linprobe');
    assert.deepEqual(list.classNames, ['a', 'b', 'c']);
    assert.equal(list.accuracy!.n, 15);
    assert.equal(list.accuracy!.top1, report.top1, 'the same accuracy as linprobe’s own evaluation');
    assert.deepEqual(list.accuracy!.perClass, report.perClass);
    assert.equal((list.model as { pooling: string }).pooling, 'mean');

    // a probe damaged since linprobe wrote it (one weight changed, still finite) is refused, naming it;
    // --no-verify takes it as it is
    const damaged = join(root, 'lp-damaged');
    cpSync(lp, damaged, { recursive: true });
    const probeFile = join(damaged, 'probe.safetensors');
    const bytes = readFileSync(probeFile);
    bytes[bytes.length - 8] ^= 0x01;
    writeFileSync(probeFile, bytes);
    assert.throws(() => resolvePredictor(damaged), /probe\.safetensors does not match the SHA-256 .*linprobe\.json records/);
    assert.equal(resolvePredictor(damaged, { verify: false }).kind, 'linprobe');

    // the encoder moved: named by --encoder; another encoder (another SHA-256) is refused
    const moved = join(root, 'moved', 'enc.safetensors');
    mkdirSync(join(root, 'moved'));
    renameSync(encoder, moved);
    renameSync(encoder.replace(/\.safetensors$/, '.json'), moved.replace(/\.safetensors$/, '.json'));
    assert.throws(() => resolvePredictor(lp), /is not there: name it with --encoder/);
    assert.equal(resolvePredictor(lp, { encoder: moved }).kind, 'linprobe');
    const other = writeEncoder(root, TINY, 2, 'other');
    assert.throws(() => resolvePredictor(lp, { encoder: other }), /is not the encoder the probe in .* was trained on/);
    await assert.rejects(
      commands.predict.run(['--checkpoint', lp, '--encoder', moved, ...data, '--out', moved.replace(/\.safetensors$/, '.json'), '--overwrite']),
      /what this command reads/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("predict with a gap probe of a pre-training run (linprobe --pooling gap): linprobe's accuracy, from the authors' global pool", async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-gap-'));
  try {
    await writeColourFolders(root, ['a', 'b', 'c'], { train: 8, test: 5 }, 200);
    const pre = join(root, 'pre');
    await pretrainTinyRun(pre);
    const data = ['--dataset', 'folder', '--data-path', join(root, 'data'), '--num-workers', '0', '--threads', '1'];
    const lp = join(root, 'lp');
    await quiet(() => commands.linprobe.run(['--checkpoint', pre, ...data, '--pooling', 'gap', '--epochs', '5', '--batch-size', '8', '--out-dir', lp]));
    const report = JSON.parse(readFileSync(join(lp, 'linprobe.json'), 'utf8')) as { top1: number; perClass: number[] };
    const out = join(root, 'pred', 'gap.json');
    await quiet(() => commands.predict.run(['--checkpoint', lp, ...data, '--out', out]));
    const list = JSON.parse(readFileSync(out, 'utf8')) as PredictList;
    assert.equal(list.checkpoint.kind, 'linprobe');
    assert.equal((list.model as { pooling: string }).pooling, 'gap');
    assert.equal(list.accuracy!.n, 15);
    assert.equal(list.accuracy!.top1, report.top1, 'the same accuracy as linprobe’s own evaluation');
    assert.deepEqual(list.accuracy!.perClass, report.perClass);

    // each image's logits are the probe's on the features linprobe computes for 'gap' (extractFeatures),
    // which differ from those of another pooling: the accuracy above could not match by chance
    const src = resolvePredictor(lp);
    assert.ok(src.kind === 'linprobe' && src.pooling === 'gap');
    const images = toyImages(6, 3, 8, 7);
    const { encoder } = loadEncoder(src.encoder);
    const features = await extractFeatures(encoder, images, { batchSize: 6, pooling: 'gap', label: null });
    const probe = new LinearProbe(16, 3);
    const { tensors } = loadTensors(src.weights);
    probe.loadStateDict(tensors);
    probe.eval();
    const predictor = loadPredictor(src, 'cpu');
    const other = loadPredictor({ ...src, pooling: 'mean' }, 'cpu');
    try {
      torch.noGrad(() =>
        torch.scope(() => {
          const x = torch.tensor(images.images, { shape: [6, 3, 8, 8] });
          const want = probe.forward(features.features).toFloat32Array();
          assert.ok(maxDiff(predictor.logits(x, 'fp32').toFloat32Array(), want) < 1e-5, 'the logits of linprobe’s gap features');
          assert.ok(maxDiff(other.logits(x, 'fp32').toFloat32Array(), want) > 1e-3, 'not those of the mean patch token');
        }),
      );
    } finally {
      for (const t of tensors.values()) t.dispose();
      features.features.dispose();
      probe.dispose();
      encoder.dispose();
      predictor.dispose();
      other.dispose();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('predict refuses the checkpoint of a pre-training run, naming what it is', () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-kind-'));
  try {
    const dir = join(root, 'run', 'checkpoints', 'step-00000001');
    mkdirSync(dir, { recursive: true });
    writeEncoder(dir, TINY, 1, 'model');
    writeFileSync(join(dir, 'state.json'), '{}');
    assert.throws(() => resolveClassifier(dir, { verify: false }), /is an unlabelled checkpoint: predict needs a fine-tuning run's/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("predict's refusal of what is no fine-tuning run also names the linear probe's folder it takes", () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-what-'));
  try {
    const dir = join(root, 'run', 'checkpoints', 'step-00000001');
    mkdirSync(dir, { recursive: true });
    writeEncoder(dir, TINY, 1, 'model');
    writeFileSync(join(dir, 'state.json'), '{}');
    const encoder = writeEncoder(root, TINY, 2);
    // an encoder file, a pre-training checkpoint: the refusal named only a fine-tuning run
    for (const path of [encoder, dir])
      assert.throws(
        () => resolvePredictor(path, { verify: false }),
        (e: unknown) =>
          e instanceof Error &&
          (e as { code?: string }).code === 'ERR_CHECKPOINT' &&
          /; or a semaim linprobe output folder \(probe\.safetensors and linprobe\.json\)$/.test(e.message),
        path,
      );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('predict of a linear-probe folder whose linprobe was stopped between the renames of its commit completes the commit: the new probe with its linprobe.json, never the old one', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-torn-'));
  const fs = require('node:fs') as typeof import('node:fs'); // a plain object: its functions are replaceable
  const rename = fs.renameSync;
  try {
    await writeColourFolders(root, ['a', 'b', 'c'], { train: 8, test: 5 }, 200);
    const encoder = writeEncoder(root);
    const data = ['--dataset', 'folder', '--data-path', join(root, 'data'), '--num-workers', '0', '--threads', '1'];
    const lp = join(root, 'lp');
    const linprobe = (...more: string[]) =>
      quiet(() => commands.linprobe.run(['--checkpoint', encoder, ...data, '--epochs', '3', '--batch-size', '8', '--out-dir', lp, ...more]));
    await linprobe('--pooling', 'cls');
    const oldProbe = sha(join(lp, 'probe.safetensors'));
    // the rerun (mean pooling) stops right after renaming linprobe.json, before probe.safetensors: as a
    // kill there, it leaves the new linprobe.json, the old probe, the new one under its temporary name and the journal
    fs.renameSync = ((from: string, to: string) => {
      if (String(to) === join(lp, 'probe.safetensors')) throw Object.assign(new Error('killed'), { code: 'EKILLED' });
      rename(from, to);
    }) as typeof fs.renameSync;
    await assert.rejects(linprobe('--pooling', 'mean'), /killed/);
    fs.renameSync = rename;
    const names = readdirSync(lp);
    assert.ok(names.includes('linprobe.json.commit'), names.join(' '));
    const newTmp = names.find((n) => n.startsWith('probe.safetensors.tmp-'));
    assert.ok(newTmp, names.join(' '));
    const newProbe = sha(join(lp, newTmp));
    assert.notEqual(newProbe, oldProbe);
    const report = JSON.parse(readFileSync(join(lp, 'linprobe.json'), 'utf8')) as { top1: number; config: { pooling: string } };
    assert.equal(report.config.pooling, 'mean', 'the new linprobe.json is in place');
    assert.equal(sha(join(lp, 'probe.safetensors')), oldProbe, 'beside the old probe');

    const out = join(root, 'pred', 'lp.json');
    const { stderr: notes } = await captureStderr(() => commands.predict.run(['--checkpoint', lp, ...data, '--out', out]));
    assert.match(notes, /completed the write of .*linprobe\.json, .*probe\.safetensors that process \d+ was killed in/);
    assert.deepEqual(readdirSync(lp).sort(), ['linprobe.json', 'probe.safetensors'], 'the journal and the temporary file are gone');
    assert.equal(sha(join(lp, 'probe.safetensors')), newProbe, 'the new probe is in place');
    const list = JSON.parse(readFileSync(out, 'utf8')) as PredictList;
    assert.equal(list.checkpoint.sha256, newProbe, 'predict used the new probe');
    assert.equal((list.model as { pooling: string }).pooling, 'mean');
    assert.equal(list.accuracy!.top1, report.top1, 'the accuracy the new linprobe reported');
  } finally {
    fs.renameSync = rename;
    rmSync(root, { recursive: true, force: true });
  }
});

test('a fine-tuning checkpoint whose config has one class is refused when resolved, before any model is built', () => {
  // (resolveClassifier took numClasses 1, which no ViTClassifier has: loadClassifier then failed building
  // it, with the weights it had read left undisposed)
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-one-class-'));
  try {
    const dir = join(root, 'run', 'checkpoints', 'step-00000001');
    mkdirSync(dir, { recursive: true });
    const cfg = { ...TINY, numClasses: 2, pool: 'avg' as const };
    const model = new ViTClassifier(cfg);
    const state = model.stateDict();
    const entries: [string, torch.Tensor][] = [...state].map(([k, t]) => [k, k.startsWith('head.') ? t.narrow(0, 0, 1).contiguous() : t]);
    saveTensors(join(dir, 'model.safetensors'), entries, { format: 'semaim.finetune/1', config: JSON.stringify({ ...cfg, numClasses: 1 }) });
    for (const [k, t] of entries) if (k.startsWith('head.')) t.dispose();
    model.dispose();
    writeFileSync(join(dir, 'state.json'), '{}');
    assert.throws(() => resolveClassifier(dir, { verify: false }), /the classifier config is not usable: numClasses 1/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a fine-tuning checkpoint whose config's encoder is not usable (numHeads not dividing embedDim, 0 heads) is refused when resolved, naming the file", () => {
  // (resolveClassifier took it: loadClassifier then failed building the model, naming neither the file nor the
  // checkpoint, with the weights it had read left undisposed)
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-bad-encoder-'));
  try {
    const dir = join(root, 'run', 'checkpoints', 'step-00000001');
    mkdirSync(dir, { recursive: true });
    const cfg = { ...TINY, numClasses: 2, pool: 'avg' as const };
    const model = new ViTClassifier(cfg);
    writeFileSync(join(dir, 'state.json'), '{}');
    const weights = join(dir, 'model.safetensors');
    for (const [bad, why] of [
      [{ numHeads: 3 }, `config 'embedDim': ${cfg.embedDim} is not divisible by numHeads 3`],
      [{ numHeads: 0 }, "config 'numHeads': must be a positive integer, got 0"],
    ] as const) {
      saveTensors(weights, model.stateDict(), { format: 'semaim.finetune/1', config: JSON.stringify({ ...cfg, ...bad }) });
      assert.throws(
        () => resolveClassifier(dir, { verify: false }),
        (e: unknown) => e instanceof CheckpointError && e.message === `${weights}: the classifier config is not usable: ${why}`,
        why,
      );
    }
    model.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a fine-tuning checkpoint a newer semaim wrote (format semaim.finetune/2) is refused as such, not as a checkpoint of another kind', () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-newer-'));
  try {
    const run = join(root, 'run');
    const dir = join(run, 'checkpoints', 'step-00000001');
    mkdirSync(dir, { recursive: true });
    const cfg = { ...TINY, numClasses: 2, pool: 'avg' as const };
    const model = new ViTClassifier(cfg);
    saveTensors(join(dir, 'model.safetensors'), model.stateDict(), { format: 'semaim.finetune/2', config: JSON.stringify(cfg) });
    model.dispose();
    writeFileSync(join(dir, 'state.json'), '{}');
    const newer = /step-00000001 was written by a newer semaim \(format 'semaim\.finetune\/2'; this one reads 'semaim\.finetune\/1'\)/;
    assert.throws(() => resolveClassifier(dir, { verify: false }), newer);
    assert.ok(isFinetuneFolder(run), 'a fine-tuning run of any version (resolveClassifier says why it cannot read it)');
    // a linear probe of a newer semaim likewise
    const probeDir = join(root, 'probe');
    mkdirSync(probeDir);
    const probe = new LinearProbe(TINY.embedDim, 2);
    saveTensors(join(probeDir, 'probe.safetensors'), probe.stateDict(), { format: 'semaim.linprobe/2' });
    probe.dispose();
    writeFileSync(join(probeDir, 'linprobe.json'), '{}');
    assert.throws(
      () => resolvePredictor(probeDir, { verify: false }),
      /probe\.safetensors was written by a newer semaim \(format 'semaim\.linprobe\/2'; this one reads 'semaim\.linprobe\/1'\)/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('predict refused by its image loader (image-input options it cannot take) frees the classifier it had loaded', async () => {
  // (the classifier was loaded before the loader checked its options, outside the job's try: each refused
  // call left the model's tensors to the garbage collector; embed makes its loader first)
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-refused-loader-'));
  try {
    const dir = join(root, 'run', 'checkpoints', 'step-00000001');
    mkdirSync(dir, { recursive: true });
    const cfg = { ...TINY, numClasses: 2, pool: 'avg' as const };
    const model = new ViTClassifier(cfg);
    saveTensors(join(dir, 'model.safetensors'), model.stateDict(), { format: 'semaim.finetune/1', config: JSON.stringify(cfg) });
    model.dispose();
    writeFileSync(join(dir, 'state.json'), '{}');
    await writeColourFolders(root, ['a', 'b'], { train: 0, test: 2 }, 200);
    const live = torch.memoryStats().liveTensors;
    await assert.rejects(
      predict({
        checkpoint: dir,
        verify: false,
        images: join(root, 'data', 'test'),
        out: join(root, 'pred', 'p.json'),
        imageInput: { maxImagePixels: -1, exifOrientation: 'ignore' },
        numWorkers: 0,
        threads: 1,
        progress: null,
        onWarning: () => {},
      }),
      /maxImagePixels must be an integer >= 0/,
    );
    assert.equal(torch.memoryStats().liveTensors, live, 'the classifier is freed');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('predict refuses (no overwrite) a list another process wrote at --out between its check and its start, keeping it', async (t) => {
  // the outputs are checked before the model is loaded and the images listed, and claimed after: another
  // predict to the same name that ran in between was replaced without --overwrite
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-meanwhile-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'run', 'checkpoints', 'step-00000001');
  mkdirSync(dir, { recursive: true });
  const cfg = { ...TINY, numClasses: 2, pool: 'avg' as const };
  const model = new ViTClassifier(cfg);
  saveTensors(join(dir, 'model.safetensors'), model.stateDict(), { format: 'semaim.finetune/1', config: JSON.stringify(cfg) });
  model.dispose();
  writeFileSync(join(dir, 'state.json'), '{}');
  await writeColourFolders(root, ['a', 'b'], { train: 0, test: 2 }, 200);
  mkdirSync(join(root, 'pred'));
  const out = join(root, 'pred', 'p.json');
  const csv = join(root, 'pred', 'p.csv');
  const other = await writerMeanwhile(t, outputLockPath(out), [
    [out, '{"theirs": true}'],
    [csv, 'theirs'],
  ]);
  await other.go();
  await assert.rejects(
    predict({ checkpoint: dir, verify: false, images: join(root, 'data', 'test'), out, numWorkers: 0, threads: 1, progress: null, onWarning: () => {} }),
    (e: unknown) =>
      e instanceof OptionError && e.code === 'ERR_OUTPUT_EXISTS' && /p\.json was written by another process while this one worked: it is kept/.test(e.message),
  );
  assert.equal(await other.exited, 0);
  assert.equal(readFileSync(out, 'utf8'), '{"theirs": true}');
  assert.equal(readFileSync(csv, 'utf8'), 'theirs');
});

test('predict that fails into a new folder (no readable image) takes back the folders it made; an existing one stays', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-predict-fresh-'));
  try {
    await writeColourFolders(root, ['a', 'b'], { train: 4, test: 2 }, 200);
    const encoder = writeEncoder(root);
    const data = ['--dataset', 'folder', '--data-path', join(root, 'data'), '--num-workers', '0', '--threads', '1'];
    const lp = join(root, 'lp');
    await quiet(() => commands.linprobe.run(['--checkpoint', encoder, ...data, '--epochs', '1', '--batch-size', '4', '--out-dir', lp]));
    const images = join(root, 'broken');
    mkdirSync(images);
    writeFileSync(join(images, 'x.png'), 'not a png');
    const fresh = join(root, 'fresh');
    const base = { checkpoint: lp, images, numWorkers: 0, progress: null, onWarning: () => {} };
    await assert.rejects(predict({ ...base, out: join(fresh, 'sub', 'p.json') }), /predict: no readable image/);
    assert.deepEqual(readdirSync(root).sort(), ['broken', 'data', 'encoder.json', 'encoder.safetensors', 'lp'], 'the folders predict made are gone');
    mkdirSync(fresh);
    await assert.rejects(predict({ ...base, out: join(fresh, 'p.json') }), /predict: no readable image/);
    assert.deepEqual(readdirSync(fresh), [], 'an existing folder stays, empty');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
