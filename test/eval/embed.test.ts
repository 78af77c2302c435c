// `semaim embed`: on CIFAR-10 test images it writes the very features `semaim knn` computes ([CLS]
// and mean pooling); on a folder of images of assorted sizes it applies the evaluation transform
// (resize + centre crop + normalise), skips and lists a corrupt file, and its 'all' tokens agree
// with the pooled features.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as torch from '../../src/torch';
import { float16BytesToFloat32, readSafetensors, readSafetensorsHeader, saveTensors } from '../../src/io';
import { DATA_FACTORIES, Rng, defaultCifar10Archive, evalTransforms, openImage, Pipeline } from '../../src/data';
import { loadEncoder, resolveEncoder, sha256File } from '../../src/semaim';
import { parseCommand } from '../../src/cli/command';
import { embedCommand } from '../../src/cli/embed-command';
import { KNN_OPTIONS, encoderFeatures, disposeFeatures, embed, predict, type EmbedList } from '../../src/eval';
import { OptionError } from '../../src/util/options';
import { EncoderConfig, VisionTransformer } from '../../src/semaim';
import { tempDir, write, picture, encode } from '../data/helpers';
import { countingLoopTurns, runPrunedWhileDataIsMade, writeEncoder } from './helpers';
import { printed } from '../output';
import { writerMeanwhile } from '../written-meanwhile';
import { outputLockPath } from '../../src/io/outputs';
import { withProcessThreads } from '../../src/run/device';

const CFG: EncoderConfig = { imgSize: 32, patchSize: 8, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 2 };

let dir: string;
let cleanup: () => void;
let encoderPath: string;

before(() => {
  ({ dir, cleanup } = tempDir('semaim-embed-'));
  encoderPath = writeEncoder(dir, CFG, 7);
});
after(() => cleanup());

function floats(path: string, name: string): Float32Array {
  const t = readSafetensors(path).tensors.get(name)!;
  return new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
}

function ints(path: string, name: string): Int32Array {
  const t = readSafetensors(path).tensors.get(name)!;
  return new Int32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const archive = defaultCifar10Archive();

test(
  'semaim embed on CIFAR-10 test images writes the features semaim knn uses ([CLS] and mean)',
  { skip: existsSync(archive) ? false : `no CIFAR-10 archive at ${archive} (set SEMAIM_CIFAR10_TAR)` },
  async () => {
    for (const pooling of ['cls', 'mean'] as const) {
      const out = join(dir, `cifar-${pooling}.safetensors`);
      const code = await embedCommand.run([
        '--checkpoint',
        encoderPath,
        '--dataset',
        'cifar10',
        '--split',
        'test',
        '--limit',
        '200',
        '--pooling',
        pooling,
        '--num-workers',
        '1',
        '--out',
        out,
      ]);
      assert.equal(code, 0);

      // What `semaim knn` computes: its options, its feature extraction over its data factories.
      const knn = parseCommand(
        ['--checkpoint', encoderPath, '--dataset', 'cifar10', '--test-limit', '200', '--train-limit', '10', '--pooling', pooling, '--num-workers', '1'],
        '',
        '',
        KNN_OPTIONS,
      )!.o;
      // under the knn job's thread count, as embed's: OpenBLAS's float32 sums differ in the last bits with
      // the thread count, and libtorch's own default need not be the cores (1 on the 2-core VM of 2026-12-04)
      const ft = await withProcessThreads(knn.threads, () => encoderFeatures(knn, DATA_FACTORIES, resolveEncoder(encoderPath)));
      try {
        const want = ft.test.features.toFloat32Array();
        const got = floats(out, 'features');
        assert.deepEqual(readSafetensorsHeader(out).tensors.get('features')!.shape, [200, CFG.embedDim]);
        assert.equal(maxDiff(got, want), 0, `${pooling}: features differ from k-NN's`);
        assert.deepEqual(Array.from(ints(out, 'labels')), Array.from(ft.test.labels));
        const list = JSON.parse(readFileSync(out.replace(/\.safetensors$/, '.json'), 'utf8')) as EmbedList;
        assert.equal(list.count, 200);
        assert.equal(list.images.length, 200);
        assert.equal(list.classNames?.length, 10);
        assert.deepEqual(
          list.images.map((i) => i.label),
          Array.from(ft.test.labels),
        );
        assert.ok(list.images.every((i) => i.path.endsWith('.jpg')));
      } finally {
        disposeFeatures(ft.train, ft.test);
        ft.loaded.encoder.dispose();
      }
    }
  },
);

test('semaim embed of a folder: evaluation transform, a corrupt image skipped and listed, all tokens agree with the pooled features', async () => {
  const images = join(dir, 'photos');
  const sizes: [number, number][] = [
    [40, 30],
    [64, 48],
    [30, 50],
    [32, 32],
    [100, 80],
    [33, 47],
  ];
  for (let i = 0; i < sizes.length; i++) {
    const [w, h] = sizes[i];
    const fmt = i % 2 ? 'png' : 'jpeg';
    write(join(images, i < 3 ? '' : 'more', `img${i}.${fmt === 'png' ? 'png' : 'jpg'}`), await encode(picture(w, h, i * 5), w, h, 3, fmt));
  }
  write(join(images, 'broken.jpg'), 'this is a text file, not a JPEG\n');
  const warnings: string[] = [];
  const base = { checkpoint: encoderPath, images, batchSize: 4, numWorkers: 0, progress: null, onWarning: (l: string) => warnings.push(l) };
  const listening = () => ['SIGINT', 'SIGTERM'].map((s) => process.listenerCount(s));
  const before = listening();
  const all = await embed({ ...base, pooling: 'all', out: join(dir, 'photos-all.safetensors') });
  const cls = await embed({ ...base, out: join(dir, 'photos-cls.safetensors') }); // the default pooling: [CLS]
  const mean = await embed({ ...base, pooling: 'mean', dtype: 'float16', out: join(dir, 'photos-mean.safetensors') });
  assert.deepEqual(listening(), before, 'each embed removes the stop-signal listeners its writer added');

  const T = 1 + (CFG.imgSize / CFG.patchSize) ** 2;
  const D = CFG.embedDim;
  assert.deepEqual([all.count, all.skipped], [6, 1]);
  assert.deepEqual(all.shape, [6, T, D]);
  assert.ok(
    warnings.some((l) => l.includes('broken.jpg')),
    warnings.join('\n'),
  );
  assert.ok(warnings.some((l) => /embed: skipped 1 unreadable image/.test(l)));
  assert.ok(!warnings.some((l) => l.includes('replaced by another sample')), 'the loader summary about replacements is not shown');

  const list = JSON.parse(readFileSync(all.listPath, 'utf8')) as EmbedList;
  assert.equal(list.skipped.length, 1);
  assert.ok(list.skipped[0].path.endsWith('broken.jpg'));
  assert.match(list.skipped[0].reason, /not an image|unknown|format/i);
  assert.equal(list.images.length, 6);
  assert.ok(list.images.every((i) => !i.path.endsWith('broken.jpg') && i.label === undefined));
  assert.equal(list.classNames, null);
  assert.deepEqual(list.preprocessing, JSON.parse(JSON.stringify(evalTransforms(CFG.imgSize))));
  assert.equal(readSafetensorsHeader(all.path).tensors.has('labels'), false);
  const idx = Array.from(ints(all.path, 'indices'));
  assert.equal(idx.length, 6);
  assert.equal(new Set(idx).size, 6);
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.endsWith('.partial')),
    [],
    'no partial files left',
  );

  // The same rows from the evaluation transform run by hand, one image at a time.
  const tokens = floats(all.path, 'features');
  const { encoder } = loadEncoder(encoderPath);
  try {
    const pipe = new Pipeline(evalTransforms(CFG.imgSize));
    const S = CFG.imgSize;
    const pixels = new Float32Array(6 * 3 * S * S);
    for (let k = 0; k < 6; k++) {
      const handle = await openImage(readFileSync(list.images[k].path), { background: 255 });
      pipe.run(handle, new Rng(0), pixels, k * 3 * S * S, S, S, null, 0);
    }
    const ref = torch.scope(() => encoder.features(torch.tensor(pixels, { shape: [6, 3, S, S] }), 'all').toFloat32Array());
    assert.ok(maxDiff(tokens, ref) < 1e-5, `all tokens differ from the hand-run transform by ${maxDiff(tokens, ref)}`);
  } finally {
    encoder.dispose();
  }

  // [CLS] (the default) is token 0; the mean is the mean of the patch tokens (stored as float16 here).
  const c = floats(cls.path, 'features');
  const m = readSafetensors(mean.path).tensors.get('features')!;
  assert.equal(m.dtype, 'float16');
  const mf = float16BytesToFloat32(m.data);
  for (let r = 0; r < 6; r++) {
    for (let d = 0; d < D; d++) {
      assert.equal(c[r * D + d], tokens[r * T * D + d]);
      let s = 0;
      for (let t = 1; t < T; t++) s += tokens[(r * T + t) * D + d];
      assert.ok(Math.abs(mf[r * D + d] - s / (T - 1)) < 2e-3 * Math.max(1, Math.abs(s / (T - 1))), `mean row ${r} dim ${d}`);
    }
  }
});

test('embed of one image file (--images FILE) writes the row that image has in its folder, named by its path', async () => {
  const images = join(dir, 'single');
  for (let i = 0; i < 3; i++) write(join(images, `s${i}.png`), await encode(picture(40, 30, 7 + i), 40, 30, 3, 'png'));
  // no image extension: files are identified by their content
  write(join(dir, 'single-copy.bin'), readFileSync(join(images, 's1.png')));
  // batch 1 for the folder too: a batch's size may change the last bits of its rows (the CPU's kernels sum otherwise)
  const base = { checkpoint: encoderPath, batchSize: 1, numWorkers: 0, progress: null, onWarning: () => {} };
  const folder = await embed({ ...base, images, out: join(dir, 'single-folder.safetensors') });
  const folderList = JSON.parse(readFileSync(folder.listPath, 'utf8')) as EmbedList;
  const row = folderList.images.findIndex((i) => i.path === join(images, 's1.png'));
  assert.ok(row >= 0);
  const D = CFG.embedDim;
  for (const file of [join(images, 's1.png'), join(dir, 'single-copy.bin')]) {
    const one = await embed({ ...base, images: file, out: join(dir, 'single-file.safetensors'), overwrite: true });
    assert.deepEqual([one.count, one.skipped, one.shape], [1, 0, [1, D]]);
    const list = JSON.parse(readFileSync(one.listPath, 'utf8')) as EmbedList;
    assert.deepEqual(
      list.images.map((i) => i.path),
      [file],
    );
    assert.deepEqual(floats(one.path, 'features'), floats(folder.path, 'features').slice(row * D, (row + 1) * D));
  }
});

test('embed refuses bad options before any work', async () => {
  await assert.rejects(embed({ checkpoint: encoderPath, out: join(dir, 'x.bin'), images: dir }), /must end in \.safetensors/);
  // neither source is one missing ('give either ..., not both' said so of both), both are one too many
  await assert.rejects(
    embed({ checkpoint: encoderPath, out: join(dir, 'x.safetensors') }),
    /needs a folder of images or an image file \(images\) or a dataset \(dataset\): give one/,
  );
  await assert.rejects(embed({ checkpoint: encoderPath, out: join(dir, 'x.safetensors'), images: dir, dataset: 'synthetic' }), /not both/);
  await assert.rejects(embedCommand.run(['--checkpoint', encoderPath, '--out', join(dir, 'y.safetensors')]), /--images DIR\|FILE/);
  await assert.rejects(embedCommand.run(['--checkpoint', encoderPath, '--images', join(dir, 'nope'), '--out', join(dir, 'y.safetensors')]), /does not exist/);
  assert.equal(existsSync(join(dir, 'y.safetensors')), false);
});

test('embed and predict check their callbacks, signal, progress and imageInput before any work, naming the key', async () => {
  const out = join(dir, 'kinds', 'x.safetensors');
  const base = { checkpoint: encoderPath, dataset: 'synthetic' as const, limit: 4, out, batchSize: 2, numWorkers: 0 };
  for (const [extra, key, detail] of [
    // a bar labelled 'false' was drawn
    [{ progress: false }, 'progress', /expected a string or null, got false/],
    // the job could not be stopped: the controller has no `aborted` of its own
    [{ signal: new AbortController() }, 'signal', /expected an AbortSignal \(an AbortController's \.signal\), got an object \(AbortController\)/],
    // a TypeError after the first batch
    [{ onProgress: 'log' }, 'onProgress', /expected a function, got "log"/],
    [{ onWarning: 5 }, 'onWarning', /expected a function, got 5/],
    // 'option '0': unknown option' (the string's characters read as keys)
    [{ imageInput: 'none' }, 'imageInput', /expected an object, got "none"/],
  ] as const) {
    const refused = (e: unknown) => e instanceof OptionError && e.key === key && detail.test(e.detail);
    await assert.rejects(embed({ ...base, ...(extra as object) }), refused);
    await assert.rejects(predict({ ...base, checkpoint: join(dir, 'no-such-run'), out: join(dir, 'kinds', 'p.json'), ...(extra as object) }), refused);
  }
  await assert.rejects(embed({ ...base, group: 3 as never }), (e: unknown) => e instanceof OptionError && e.key === 'group');
  assert.equal(existsSync(join(dir, 'kinds')), false, 'nothing written');
});

test('embed replaces an existing output only with --overwrite, and never the encoder it reads', async () => {
  const images = join(dir, 'two');
  for (let i = 0; i < 2; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  const { copyFileSync } = await import('node:fs');
  const own = join(dir, 'own.safetensors');
  copyFileSync(encoderPath, own);
  copyFileSync(encoderPath.replace(/\.safetensors$/, '.json'), join(dir, 'own.json'));
  const before = readFileSync(own);
  const run = (out: string, ...extra: string[]) => embedCommand.run(['--checkpoint', own, '--images', images, '--num-workers', '0', '--out', out, ...extra]);
  for (const extra of [[], ['--overwrite']]) {
    await assert.rejects(run(own, ...extra), /option 'out': .*own\.safetensors is what this command reads/, `--out = the encoder ${extra}`);
    await assert.rejects(run(join(dir, 'own.safetensors.d', '..', 'own.safetensors'), ...extra), /is what this command reads/, 'the same file by another path');
  }
  assert.ok(readFileSync(own).equals(before), 'the encoder is untouched');
  const out = join(dir, 'features.safetensors');
  await printed(async () => {
    assert.equal(await run(out), 0);
    const first = readFileSync(out);
    await assert.rejects(run(out), /option 'out': .*features\.safetensors exists: choose another output, or pass --overwrite/);
    assert.ok(readFileSync(out).equals(first), 'the first file is untouched');
    assert.equal(await run(out, '--overwrite'), 0);
    // --dtype reaches the file: float16 features, half the bytes of the float32 ones
    const half = join(dir, 'features-f16.safetensors');
    assert.equal(await run(half, '--dtype', 'float16'), 0);
    const f32 = readSafetensors(out).tensors.get('features')!;
    const f16 = readSafetensors(half).tensors.get('features')!;
    assert.deepEqual([f32.dtype, f16.dtype], ['float32', 'float16']);
    assert.equal(f16.data.length * 2, f32.data.length);
  });
});

test('an embed that fails after loading the encoder frees its tensors and leaves no partial file', async () => {
  const images = join(dir, 'fail-two');
  for (let i = 0; i < 2; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  const base = { checkpoint: encoderPath, images, batchSize: 2, numWorkers: 0, progress: null, onWarning: () => {} };
  const live = () => torch.memoryStats().liveTensors;
  const start = live();
  // the output folder cannot be made (a file stands where it should be): fails after the encoder is loaded
  write(join(dir, 'a-file'), 'not a folder\n');
  for (let i = 0; i < 3; i++) await assert.rejects(embed({ ...base, out: join(dir, 'a-file', 'sub', 'x.safetensors') }), /ENOTDIR/);
  assert.equal(live(), start, 'the encoder of each failed embed is disposed, not left to the garbage collector');
  // the last renames fail (a folder made where the features or the list go once the checks passed, as
  // the partial file is opened): every row was written to a partial file
  const out = join(dir, 'blocked');
  mkdirSync(out, { recursive: true });
  const mfs = require('node:fs') as typeof import('node:fs');
  const open0 = mfs.openSync;
  mfs.openSync = ((path: string, ...rest: unknown[]) => {
    if (String(path) === join(out, 'list.safetensors.partial')) mkdirSync(join(out, 'list.json'), { recursive: true });
    if (String(path) === join(out, 'rows.safetensors.partial')) mkdirSync(join(out, 'rows.safetensors'), { recursive: true });
    return (open0 as (...a: unknown[]) => number)(path, ...rest);
  }) as typeof mfs.openSync;
  try {
    await assert.rejects(embed({ ...base, out: join(out, 'list.safetensors'), overwrite: true }), /EISDIR|ENOTEMPTY|EEXIST/);
    await assert.rejects(embed({ ...base, out: join(out, 'rows.safetensors'), overwrite: true }), /EISDIR|ENOTEMPTY|EEXIST/);
  } finally {
    mfs.openSync = open0;
  }
  assert.ok(existsSync(join(out, 'list.json')) && existsSync(join(out, 'rows.safetensors')), 'the folders were in the way');
  assert.deepEqual(
    readdirSync(out).filter((f) => f.includes('.partial') || f.includes('.tmp')),
    [],
  );
  assert.equal(live(), start);
});

test('a folder standing at --out or at its list is refused before any image is read, even with overwrite: no rename can replace it', async () => {
  const images = join(dir, 'folder-at-out');
  for (let i = 0; i < 2; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  const out = join(dir, 'folder-at-out-dest');
  mkdirSync(join(out, 'a.safetensors'), { recursive: true });
  mkdirSync(join(out, 'b.json'), { recursive: true });
  // (an option error of the checks before the work: the renames at the end failed with EISDIR, after every image)
  for (const name of ['a.safetensors', 'b.safetensors'])
    await assert.rejects(
      embed({ checkpoint: encoderPath, images, out: join(out, name), overwrite: true, numWorkers: 0, progress: null }),
      (e: Error & { key?: string }) => e.key === 'out' && /\.(safetensors|json) is a folder/.test(e.message),
    );
  assert.deepEqual(readdirSync(out).sort(), ['a.safetensors', 'b.json']);
});

test('embed lets the event loop turn after every batch of images, also with its loader on the main thread (--num-workers 0)', async () => {
  const images = join(dir, 'turns');
  for (let i = 0; i < 8; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  const out = join(dir, 'turns-out', 'x.safetensors');
  // 8 batches of one image, each decoded on this thread: a server's timers and requests waited for all of them
  const { turns } = await countingLoopTurns(() => embed({ checkpoint: encoderPath, images, out, batchSize: 1, numWorkers: 0, threads: 1, progress: null }));
  assert.ok(turns >= 7, `the event loop turned ${turns} times during 8 batches`);
});

test('an aborted embed stops before its next batch, rejects with an AbortError (the signal’s reason as its cause) and leaves no output files', async () => {
  const images = join(dir, 'abort-six');
  for (let i = 0; i < 6; i++) write(join(images, `p${i}.png`), i === 2 ? 'not a png\n' : await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  const out = join(dir, 'aborted', 'x.safetensors');
  const base = { checkpoint: encoderPath, images, out, batchSize: 2, numWorkers: 0, progress: null };
  const live = torch.memoryStats().liveTensors;
  await assert.rejects(embed({ ...base, onWarning: () => {}, signal: AbortSignal.abort() }), { name: 'AbortError', code: 'ERR_ABORTED' });
  // aborted before it starts: no work at all (it loaded the encoder, made the output folder and read a batch first)
  assert.equal(existsSync(join(dir, 'aborted')), false, 'no output folder');
  await assert.rejects(embed({ ...base, checkpoint: join(dir, 'no-such-encoder.safetensors'), signal: AbortSignal.abort() }), { name: 'AbortError' });
  // aborted while it runs: the loader's warning about p2 (read for the second batch) aborts the job
  const controller = new AbortController();
  const warnings: string[] = [];
  const job = embed({
    ...base,
    signal: controller.signal,
    onWarning: (line) => {
      warnings.push(line);
      controller.abort(new Error('request cancelled'));
    },
  });
  await assert.rejects(job, /request cancelled/);
  assert.equal(warnings.length, 1, warnings.join('\n'));
  const left = existsSync(join(dir, 'aborted')) ? readdirSync(join(dir, 'aborted')) : [];
  assert.deepEqual(left, [], 'no features, list or partial file');
  assert.equal(torch.memoryStats().liveTensors, live, 'the encoder is disposed');
});

test('embed --dtype float16 refuses features beyond float16 (they would be stored as Inf), naming the largest, and writes nothing', async () => {
  const images = join(dir, 'half-range');
  for (let i = 0; i < 4; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  // an encoder whose [CLS] feature is its final norm's bias: 1000 everywhere, -80000 in one channel
  torch.manualSeed(3);
  const vit = new VisionTransformer(CFG).initWeights();
  const bias = new Float32Array(CFG.embedDim).fill(1000);
  bias[5] = -80000;
  torch.noGrad(() => {
    vit.norm.weight!.fill_(0);
    vit.norm.bias!.copy_(torch.tensor(bias));
  });
  const weights = join(dir, 'wide.safetensors');
  saveTensors(weights, vit.stateDict(), { config: JSON.stringify(CFG) });
  writeFileSync(join(dir, 'wide.json'), JSON.stringify(CFG));
  vit.dispose();
  const out = join(dir, 'half-range-out', 'f.safetensors');
  const base = { checkpoint: weights, images, out, batchSize: 2, numWorkers: 0, progress: null, onWarning: () => {} };
  await assert.rejects(embed({ ...base, dtype: 'float16' }), {
    name: 'OptionError',
    message:
      /^option 'dtype': float16 cannot store these features: .*half-range\/p[01]\.png has a feature of 80000\.0, beyond float16's largest value \(65504\), so it would be written as Inf\. Nothing was written: use float32$/,
  });
  assert.ok(!existsSync(join(dir, 'half-range-out')), 'no features, list or partial file, nor the folder embed made');
  // float32 holds them
  const r = await embed({ ...base, dtype: 'float32' });
  assert.equal(r.count, 4);
  assert.equal(floats(out, 'features')[5], -80000);
});

test('embed gives libtorch back the thread count it had (a process-wide setting), also when it fails', async () => {
  const images = join(dir, 'threads-two');
  for (let i = 0; i < 2; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  const before = torch.getNumThreads();
  try {
    torch.setNumThreads(1);
    await embed({ checkpoint: encoderPath, images, out: join(dir, 'threads', 'x.safetensors'), threads: 2, progress: null });
    assert.equal(torch.getNumThreads(), 1);
    write(join(dir, 'threads-file'), 'not a folder\n');
    await assert.rejects(
      embed({ checkpoint: encoderPath, images, out: join(dir, 'threads-file', 'sub', 'x.safetensors'), threads: 2, progress: null }),
      /ENOTDIR/,
    );
    assert.equal(torch.getNumThreads(), 1);
  } finally {
    torch.setNumThreads(before);
  }
});

test('embed reports its progress to a program (onProgress) after every batch', async () => {
  const images = join(dir, 'progress-five');
  for (let i = 0; i < 5; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  const calls: [number, number][] = [];
  await embed({
    checkpoint: encoderPath,
    images,
    out: join(dir, 'progress', 'x.safetensors'),
    batchSize: 2,
    progress: null,
    onProgress: (d, t) => calls.push([d, t]),
  });
  assert.deepEqual(calls, [
    [2, 5],
    [4, 5],
    [5, 5],
  ]);
});

test('two embeds of one process into the same file at once: the second is refused, the first writes a whole file', async () => {
  const images = join(dir, 'same-four');
  for (let i = 0; i < 4; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  const out = join(dir, 'same', 'x.safetensors');
  const base = { checkpoint: encoderPath, images, out, batchSize: 1, numWorkers: 0, progress: null };
  const [all, cls] = await Promise.allSettled([embed({ ...base, pooling: 'all' }), embed({ ...base, pooling: 'cls' })]);
  assert.equal(all.status, 'fulfilled');
  assert.equal(cls.status, 'rejected');
  assert.match(String((cls as PromiseRejectedResult).reason), /is being written by another job of this process/);
  const list = JSON.parse(readFileSync(join(dir, 'same', 'x.json'), 'utf8')) as EmbedList;
  assert.deepEqual(readSafetensorsHeader(out).tensors.get('features')?.shape, list.shape);
  assert.deepEqual(list.shape, [4, 1 + 16, 16]);
  // the claim ends with the job: the same output again is written
  await embed({ ...base, pooling: 'cls', overwrite: true });
  assert.deepEqual(readSafetensorsHeader(out).tensors.get('features')?.shape, [4, 16]);
});

test('embed refuses (no overwrite) features another process wrote at --out between its check and its start, keeping them', async (t) => {
  // the outputs are checked before the images are listed (a large folder: seconds) and claimed after: another
  // embed to the same name that ran in between was replaced without --overwrite
  const images = join(dir, 'meanwhile-two');
  for (let i = 0; i < 2; i++) write(join(images, `p${i}.png`), await encode(picture(32, 32, i), 32, 32, 3, 'png'));
  mkdirSync(join(dir, 'meanwhile'));
  const out = join(dir, 'meanwhile', 'x.safetensors');
  const list = join(dir, 'meanwhile', 'x.json');
  const other = await writerMeanwhile(t, outputLockPath(out), [
    [out, 'theirs'],
    [list, '{"theirs": true}'],
  ]);
  await other.go();
  await assert.rejects(
    embed({ checkpoint: encoderPath, images, out, numWorkers: 0, progress: null }),
    (e: unknown) =>
      e instanceof OptionError &&
      e.code === 'ERR_OUTPUT_EXISTS' &&
      /x\.safetensors was written by another process while this one worked: it is kept/.test(e.message),
  );
  assert.equal(await other.exited, 0);
  assert.equal(readFileSync(out, 'utf8'), 'theirs');
  assert.equal(readFileSync(list, 'utf8'), '{"theirs": true}');
  assert.ok(!existsSync(outputLockPath(out)), 'the lock is given up');
});

test('a skipped file whose name has a control character is listed with its reason, not as merely unreadable', async () => {
  const images = join(dir, 'odd-names');
  write(join(images, 'fine.png'), await encode(picture(8, 8, 3), 8, 8, 3, 'png'));
  // the loader's warning escapes the name (bell\x07.png), so a lookup by the warning text missed it
  write(join(images, 'bell\u0007.png'), 'not a png');
  const r = await embed({ checkpoint: encoderPath, images, numWorkers: 0, progress: null, onWarning: () => {}, out: join(dir, 'odd.safetensors') });
  const list = JSON.parse(readFileSync(r.listPath, 'utf8')) as EmbedList;
  assert.equal(list.skipped.length, 1);
  assert.ok(list.skipped[0].path.endsWith('bell\u0007.png'));
  assert.match(list.skipped[0].reason, /format/, 'the decoder’s reason');
});

test('embed of a folder where most files are unusable writes the readable ones and lists the rest (it stopped: 50 samples in a row could not be used)', async () => {
  const images = join(dir, 'mostly-bad');
  write(join(images, 'good.png'), await encode(picture(8, 8, 1), 8, 8, 3, 'png'));
  const rng = new Rng(3);
  for (let i = 0; i < 30; i++)
    write(
      join(images, `bad${String(i).padStart(2, '0')}.png`),
      Uint8Array.from({ length: 200 }, () => rng.int(256)),
    );
  const warnings: string[] = [];
  const r = await embed({
    checkpoint: encoderPath,
    images,
    batchSize: 8,
    numWorkers: 0,
    progress: null,
    onWarning: (l) => warnings.push(l),
    out: join(dir, 'mostly-bad.safetensors'),
  });
  assert.deepEqual([r.count, r.skipped], [1, 30]);
  const list = JSON.parse(readFileSync(r.listPath, 'utf8')) as EmbedList;
  assert.deepEqual(
    list.images.map((i) => i.path.slice(images.length + 1)),
    ['good.png'],
  );
  assert.equal(list.skipped.length, 30);
  assert.ok(list.skipped.every((s) => /bad\d\d\.png$/.test(s.path)));
  assert.ok(!warnings.some((l) => /in a row|replaced/.test(l)), warnings.join('\n'));
});

test('a labelled folder with an unreadable image: every row keeps the label of its own class folder', async () => {
  const root = join(dir, 'labelled');
  const classes: [string, string[]][] = [
    ['a', ['a0.png', 'a1.png']],
    ['b', ['b0.png', 'b1.png', 'b2.png']],
  ];
  for (const [c, names] of classes)
    for (const [k, n] of names.entries()) write(join(root, 'test', c, n), await encode(picture(32, 32, k * 7 + c.charCodeAt(0)), 32, 32, 3, 'png'));
  write(join(root, 'test', 'a', 'a00-broken.png'), 'not a png'); // between a0 and a1: the rows after it shift by one
  const r = await embed({
    checkpoint: encoderPath,
    dataset: 'folder',
    dataPath: root,
    split: 'test',
    batchSize: 4,
    numWorkers: 0,
    progress: null,
    onWarning: () => {},
    out: join(dir, 'labelled.safetensors'),
  });
  assert.deepEqual([r.count, r.skipped], [5, 1]);
  const list = JSON.parse(readFileSync(r.listPath, 'utf8')) as EmbedList;
  assert.deepEqual(list.classNames, ['a', 'b']);
  const labels = Array.from(ints(r.path, 'labels'));
  assert.deepEqual(
    labels,
    list.images.map((i) => i.label),
  );
  assert.deepEqual(
    list.images.map((i) => [basename(i.path), list.classNames![i.label!]]),
    [
      ['a0.png', 'a'],
      ['a1.png', 'a'],
      ['b0.png', 'b'],
      ['b1.png', 'b'],
      ['b2.png', 'b'],
    ],
  );
});

test("embed of a run folder whose checkpoint the run prunes while the images are listed reads the run's newest checkpoint and records it", async () => {
  const images = join(dir, 'pruned-two');
  for (let i = 0; i < 2; i++) write(join(images, `p${i}.png`), await encode(picture(8, 8, i), 8, 8, 3, 'png'));
  const { run, newest, prune } = await runPrunedWhileDataIsMade(join(dir, 'pruned'), DATA_FACTORIES);
  const fs = require('node:fs') as typeof import('node:fs');
  const readdir = fs.readdirSync;
  fs.readdirSync = ((...args: Parameters<typeof readdir>) => {
    if (String(args[0]).startsWith(images)) prune(); // the run prunes after embed resolved its encoder, before it loads it
    return readdir(...args);
  }) as typeof fs.readdirSync;
  let r;
  try {
    r = await embed({ checkpoint: run, images, out: join(dir, 'pruned.safetensors'), numWorkers: 0, progress: null, onWarning: () => {} });
  } finally {
    fs.readdirSync = readdir;
  }
  assert.ok(r);
  const list = JSON.parse(readFileSync(r.listPath, 'utf8')) as EmbedList;
  assert.equal(list.encoder.weights, join(newest, 'model.safetensors'), 'the checkpoint it read, not the pruned one it resolved first');
  assert.equal(list.encoder.sha256, sha256File(join(newest, 'model.safetensors')));
  assert.equal(readSafetensorsHeader(r.path).metadata.encoder_sha256, list.encoder.sha256);
});

test('embed that fails into a new folder (no readable image, a stop) takes back the folders it made; an existing one stays', async () => {
  const images = join(dir, 'all-broken');
  write(join(images, 'broken.png'), 'not a png');
  const fresh = join(dir, 'fresh-embed');
  const base = { checkpoint: encoderPath, images, batchSize: 4, numWorkers: 0, progress: null, onWarning: () => {} };
  await assert.rejects(embed({ ...base, out: join(fresh, 'sub', 'f.safetensors') }), /embed: no readable image/);
  assert.ok(!existsSync(fresh), 'the folders embed made are gone');
  const stop = new AbortController();
  stop.abort();
  await assert.rejects(embed({ ...base, out: join(fresh, 'f.safetensors'), signal: stop.signal }));
  assert.ok(!existsSync(fresh), 'the folder of a stopped embed is gone');
  mkdirSync(fresh);
  await assert.rejects(embed({ ...base, out: join(fresh, 'f.safetensors') }), /embed: no readable image/);
  assert.deepEqual(readdirSync(fresh), [], 'an existing folder stays, empty');
});
