import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import * as torch from '../../src/torch';
import { SemAIM, VisionTransformer, encoderSimilarity, makeConfig, meanFilter3x3, pixelTargets, rasterOrder, sha256File } from '../../src/semaim';
import {
  captions,
  figureLayout,
  loadImages,
  readRgb,
  orderEarliness,
  TURBO,
  colorize,
  Canvas,
  glyphRows,
  textWidth,
  computeMaps,
  denormalizeImage,
  NO_GLYPH,
  orderConfigFor,
  imageSeed,
  visualizeModel,
  firstPatches,
  visualizeCheckpoint,
} from '../../src/viz';
import { vizCommands } from '../../src/cli/viz-commands';
import { OptionError } from '../../src/util/options';
import { claimOutputs } from '../../src/io/outputs';
import { argmax, liveTensors, readOverlay, tinyConfig, tinyModel, writeCheckpointFolder, writeTestImages } from './helpers';
import { captureStderr } from '../output';

test('font: every printable ASCII glyph has ink except space; text width', () => {
  for (let c = 33; c < 127; c++)
    assert.ok(
      glyphRows(String.fromCharCode(c)).some((r) => r > 0),
      `glyph ${String.fromCharCode(c)}`,
    );
  assert.deepEqual(glyphRows(' '), [0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(glyphRows('\u00e9'), glyphRows(NO_GLYPH), 'a character outside the font is a box, not a ? (figure text goes through fontText first)');
  assert.equal(textWidth('ab', 2), 22);
  const c = new Canvas(20, 10);
  c.drawText('I', 0, 0);
  assert.deepEqual(c.get(2, 3), [0, 0, 0]);
  assert.deepEqual(c.get(0, 3), [255, 255, 255]);
});

test('colour map and order earliness: the first patch is the warm end', () => {
  assert.equal(TURBO.length, 256);
  assert.ok(TURBO[255][0] > TURBO[255][2] && TURBO[64][2] > TURBO[64][0], 'turbo: red at 1, blue at 0.25');
  const e = orderEarliness([0.3, 0.1, 0.9, 0.5]);
  assert.deepEqual(Array.from(e), [2 / 3, 1, 0, 1 / 3].map(Math.fround));
  assert.deepEqual(colorize(1), TURBO[255]);
});

test('visualize: grid and rows have the laid-out size; order maps start where the orders say', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-'));
  try {
    const model = tinyModel(3);
    const ckpt = writeCheckpointFolder(join(root, 'ckpt'), model);
    const files = await writeTestImages(join(root, 'imgs'), 3);
    const out = join(root, 'out');
    const { result: rc, stderr } = await captureStderr(() =>
      vizCommands.visualize.run(['--checkpoint', ckpt, '--images', files[0], files[1], files[2], '--out', out, '--threads', '2']),
    );
    assert.equal(rc, 0);
    // it says what it does before the silent work (seconds on ViT-B)
    assert.ok(stderr.startsWith(`visualize: drawing the maps of ${ckpt} (`), stderr);
    const summary = JSON.parse(readFileSync(join(out, 'visualize.json'), 'utf8'));
    // what drew it and from which files: a report beside an older grid can say so
    assert.deepEqual(summary.checkpoint, { path: ckpt, step: summary.checkpoint.step, sha256: sha256File(join(ckpt, 'model.safetensors')) });
    assert.deepEqual(
      summary.images.map((i: { path: string }) => i.path),
      files.slice(0, 3),
    );
    const cols: string[] = summary.columns;
    assert.deepEqual(cols, [
      'input',
      'order raster',
      'order snake',
      'order stochastic',
      'order similarity',
      'order semantic',
      'order multicenter',
      '[CLS] attention',
      'similarity S',
      'loss (semantic)',
      'reconstruction',
    ]);
    const L = figureLayout(3, cols.length, 16);
    assert.equal(L.cell, 128);
    const grid = await readRgb(join(out, 'grid.png'));
    assert.equal(grid.width, L.width);
    assert.equal(grid.height, L.height);
    const rows = readdirSync(out)
      .filter((f) => f.startsWith('row-'))
      .sort();
    assert.equal(rows.length, 3);
    const row0 = await readRgb(join(out, rows[0]));
    const L1 = figureLayout(1, cols.length, 16);
    assert.deepEqual([row0.width, row0.height], [L1.width, L1.height]);

    // Independent expectations from the model: S, its filtered argmax (semantic centre), S's argmax.
    const imgs = await loadImages(files, 16);
    const x = torch.tensor(imgs.tensor, { shape: [3, 3, 16, 16] });
    const S = encoderSimilarity(model, x);
    const centre = Array.from(meanFilter3x3(S, model.grid).argmax(1).toFloat64Array(), Number);
    const sMax = Array.from(S.argmax(1).toFloat64Array(), Number);
    x.dispose();
    S.dispose();
    const col = (name: string) => cols.indexOf(name);
    for (let i = 0; i < 3; i++) {
      const read = (name: string) => readOverlay(grid, L.cellX(0), L.cellX(col(name)), L.cellY(i), L.cell, 4);
      const raster = read('order raster');
      // Rank-exact for raster: patch k is the k-th predicted, colour index 255·(1 − k/15).
      raster.forEach((v, k) => assert.ok(Math.abs(v - 255 * (1 - k / 15)) <= 3, `image ${i} raster patch ${k}: colour index ${v}`));
      assert.equal(argmax(read('order snake')), 0);
      const snake = read('order snake');
      assert.ok(snake[7] > snake[4], 'snake: the second row runs right to left');
      assert.equal(argmax(read('order semantic')), centre[i], `image ${i}: semantic order starts at the semantic centre`);
      assert.equal(argmax(read('order similarity')), sMax[i], `image ${i}: similarity order starts at argmax S`);
      assert.equal(summary.images[i].firstPatch.semantic, centre[i]);
      assert.equal(argmax(read('similarity S')), sMax[i], 'S overlay is warmest at argmax S');
    }
    // computeMaps frees everything it creates.
    const before = liveTensors();
    const maps = computeMaps(model, imgs.tensor, { orders: ['raster', 'semantic'], lossOrder: 'stochastic', batchSize: 2 });
    assert.equal(liveTensors(), before);
    assert.equal(maps.length, 3);
    // it leaves the model in the mode it found it in (eval here; train below)
    assert.equal(model.training, false);
    model.train();
    computeMaps(model, imgs.tensor.slice(0, imgs.tensor.length / 3), { orders: ['raster'], lossOrder: 'raster' });
    assert.equal(model.training, true);
    model.eval();
    assert.deepEqual(Object.keys(maps[0].orders), ['raster', 'semantic']);
    assert.equal(maps[0].recon!.width, 16);
    // an image's maps (its random order, the loss in that order) do not depend on the other images or the batch size
    const per = imgs.tensor.length / 3;
    const alone = computeMaps(model, imgs.tensor.slice(per, 2 * per), { orders: ['stochastic', 'semantic'], lossOrder: 'stochastic', batchSize: 1 })[0];
    const inBatch = computeMaps(model, imgs.tensor, { orders: ['stochastic', 'semantic'], lossOrder: 'stochastic', batchSize: 3 });
    assert.deepEqual(alone.orders, inBatch[1].orders);
    assert.ok(
      alone.patchLoss.every((v, i) => Math.abs(v - inBatch[1].patchLoss[i]) < 1e-5),
      'loss map',
    );
    assert.notDeepEqual(inBatch[0].orders.stochastic, inBatch[1].orders.stochastic, 'two images, two random orders');
    // batches after the first read their own images: batch size 2 (the third image alone in the second batch) gives batch 3's maps
    const inTwos = computeMaps(model, imgs.tensor, { orders: ['stochastic'], lossOrder: 'stochastic', batchSize: 2 });
    inTwos.forEach((m, k) => {
      assert.deepEqual(m.orders.stochastic, inBatch[k].orders.stochastic, `image ${k}: order`);
      assert.ok(
        m.attention.every((v, i) => Math.abs(v - inBatch[k].attention[i]) < 1e-5),
        `image ${k}: attention`,
      );
      assert.ok(
        m.patchLoss.every((v, i) => Math.abs(v - inBatch[k].patchLoss[i]) < 1e-5),
        `image ${k}: loss map`,
      );
    });
    // Again into the same folder with fewer images: the rows it no longer writes go; other files stay.
    writeFileSync(join(out, 'notes.txt'), 'mine');
    assert.equal(await vizCommands.visualize.run(['--checkpoint', ckpt, '--images', files[1], '--out', out, '--threads', '2']), 0);
    const again = readdirSync(out).filter((f) => f.startsWith('row-'));
    assert.deepEqual(again, [basename(JSON.parse(readFileSync(join(out, 'visualize.json'), 'utf8')).images[0].file)]);
    assert.ok(existsSync(join(out, 'notes.txt')));
    model.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('visualize: an image whose name is 60 letters of four UTF-8 bytes each gets its row written (the row and its temporary name fit the 255-byte limit)', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-longname-'));
  try {
    const [file] = await writeTestImages(join(root, 'imgs'), 1);
    const named = join(root, 'imgs', `${'\u{20000}'.repeat(60)}.png`); // 244 bytes: a name the file system takes
    renameSync(file, named);
    const imgs = await loadImages([named], 16);
    const model = tinyModel(3);
    const r = await visualizeModel(model, imgs, join(root, 'out'), { orders: ['raster'], lossOrder: 'raster' });
    model.dispose();
    assert.equal(r.rows.length, 1);
    assert.ok(existsSync(r.rows[0]));
    assert.ok(Buffer.byteLength(basename(r.rows[0])) + '.tmp-4194304-99999'.length <= 255, basename(r.rows[0]));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('visualize: rows an earlier visualisation of over 1000 images listed (row-1000-…, four digits) are removed as the others are', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-rows1000-'));
  try {
    const imgs = await loadImages(await writeTestImages(join(root, 'imgs'), 1), 16);
    const out = join(root, 'out');
    mkdirSync(out);
    // an earlier visualisation's list: rows 999 and 1000 (row files are numbered with at least 3 digits)
    const earlier = ['row-999-a.png', 'row-1000-b.png'].map((f) => join(out, f));
    for (const f of earlier) writeFileSync(f, 'png');
    writeFileSync(join(out, 'visualize.json'), JSON.stringify({ images: earlier.map((file) => ({ file })) }));
    const model = tinyModel(3);
    const r = await visualizeModel(model, imgs, out, { orders: ['raster'], lossOrder: 'raster' });
    model.dispose();
    assert.deepEqual(
      readdirSync(out).filter((f) => f.startsWith('row-')),
      r.rows.map((f) => basename(f)),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('visualize: rows a visualisation killed between its commit and their removal left are removed by the next one here', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-killed-cleanup-'));
  try {
    const imgs = await loadImages(await writeTestImages(join(root, 'imgs'), 3), 16);
    const one = await loadImages(await writeTestImages(join(root, 'one'), 1), 16);
    const out = join(root, 'out');
    const model = tinyModel(3);
    const o = () => ({ orders: ['raster' as const], lossOrder: 'raster' as const });
    const first = await visualizeModel(model, imgs, out, o());
    const firstRows = new Map(first.rows.map((f) => [f, readFileSync(f)]));
    // the second committed its list and rows, then was killed before removing the first one's other rows
    const second = await visualizeModel(model, one, out, o());
    for (const [f, bytes] of firstRows) if (!second.rows.includes(f)) writeFileSync(f, bytes);
    const third = await visualizeModel(model, one, out, o());
    model.dispose();
    assert.deepEqual(
      readdirSync(out).filter((f) => f.startsWith('row-')),
      third.rows.map((f) => basename(f)),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('visualize: rows an earlier visualisation listed from another working directory, or before its folder was moved, are removed as the others are', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-moved-'));
  const cwd = process.cwd();
  try {
    const imgs = await loadImages(await writeTestImages(join(root, 'imgs'), 3), 16);
    const one = await loadImages(await writeTestImages(join(root, 'one'), 1), 16);
    const model = tinyModel(3);
    const o = () => ({ orders: ['raster' as const], lossOrder: 'raster' as const });
    const onlyRows = (dir: string, rows: string[]) =>
      assert.deepEqual(
        readdirSync(dir).filter((f) => f.startsWith('row-')),
        rows.map((f) => basename(f)),
      );
    // the folder named relatively from one working directory, then visualised again from another
    mkdirSync(join(root, 'a'));
    process.chdir(join(root, 'a'));
    await visualizeModel(model, imgs, 'out', o());
    process.chdir(root);
    onlyRows(join(root, 'a', 'out'), (await visualizeModel(model, one, join('a', 'out'), o())).rows);
    // the folder moved with its list and rows (which the list names by their old absolute paths)
    await visualizeModel(model, imgs, join(root, 'b'), o());
    renameSync(join(root, 'b'), join(root, 'c'));
    onlyRows(join(root, 'c'), (await visualizeModel(model, one, join(root, 'c'), o())).rows);
    model.dispose();
  } finally {
    process.chdir(cwd);
    rmSync(root, { recursive: true, force: true });
  }
});

test('visualize: a second visualisation of the same images into the same folder, named relatively this time, keeps the rows it has just written', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-relout-'));
  try {
    const imgs = await loadImages(await writeTestImages(join(root, 'imgs'), 2), 16);
    const out = join(root, 'out');
    const model = tinyModel(3);
    const o = { orders: ['raster'] as const, lossOrder: 'raster' as const };
    await visualizeModel(model, imgs, out, { ...o, orders: [...o.orders] }); // lists its rows by absolute path
    // the folder named from the working directory: its list names the same rows, spelt another way
    const r = await visualizeModel(model, imgs, relative(process.cwd(), out), { ...o, orders: [...o.orders] });
    model.dispose();
    for (const f of r.rows) assert.ok(existsSync(f), `${f} was written and is listed, but removed as an earlier visualisation's row`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("computeMaps: the reconstruction is the prediction with each patch's normalisation undone (its blurred pixels' mean and unbiased std); a teacher's S is min-max", async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-recon-'));
  try {
    const imgs = await loadImages(await writeTestImages(join(root, 'imgs'), 2), 16);
    const model = tinyModel(3);
    const t = model.config.target;
    assert.ok(t.type === 'pixels' && t.normPix && t.blur, 'the default target: blurred, per-patch normalised pixels');
    const maps = computeMaps(model, imgs.tensor, { orders: [], lossOrder: 'raster' });
    const [P, C, side, g] = [4, 3, 16, 4];
    const D = P * P * C;
    const { pred, raw } = torch.noGrad(() =>
      torch.scope(() => {
        const x = torch.tensor(imgs.tensor, { shape: [2, C, side, side] });
        const fwd = model.forward(x, rasterOrder(2, model.grid), { outputs: 'all' });
        return { pred: fwd.pred!.toFloat32Array(), raw: pixelTargets(x, { ...t, patchSize: P, normPix: false }).toFloat32Array() };
      }),
    );
    for (let b = 0; b < 2; b++) {
      // by hand: x̂ = pred · √(var + 1e-6) + mean per patch, written back at (channel, row, column) of the image
      const chw = new Float32Array(C * side * side);
      for (let n = 0; n < g * g; n++) {
        const at = (b * g * g + n) * D;
        const values = raw.subarray(at, at + D);
        const mean = values.reduce((a, v) => a + v, 0) / D;
        const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (D - 1) + 1e-6);
        for (let p = 0; p < P; p++)
          for (let q = 0; q < P; q++)
            for (let c = 0; c < C; c++) {
              const y = Math.floor(n / g) * P + p;
              const xx = (n % g) * P + q;
              chw[c * side * side + y * side + xx] = pred[at + (p * P + q) * C + c] * std + mean;
            }
      }
      const want = denormalizeImage(chw, side).data;
      const got = maps[b].recon!.data;
      let off = 0;
      want.forEach((v, i) => {
        assert.ok(Math.abs(v - got[i]) <= 1, `image ${b} value ${i}: ${got[i]}, by hand ${v}`);
        if (v !== got[i]) off++;
      });
      assert.ok(off <= want.length / 100, `image ${b}: ${off} of ${want.length} values off by one (rounding only)`);
    }
    model.dispose();

    // the teacher source: S min-max normalised per image (0 at its least similar patch, 1 at its most)
    const tcfg = { imgSize: 16, patchSize: 4, depth: 1, embedDim: 16, numHeads: 2 };
    const withTeacher = new SemAIM(
      makeConfig('vit_tiny', {
        ...tinyConfig(),
        target: { type: 'features', teacher: 'x.safetensors', teacherConfig: tcfg },
        order: { type: 'similarity', source: 'teacher' },
      }),
    ).initWeights(1);
    withTeacher.teacher = new VisionTransformer(tcfg).initWeights(3);
    for (const m of computeMaps(withTeacher, imgs.tensor, { orders: ['similarity'], lossOrder: 'raster' })) {
      assert.ok(
        Math.abs(Math.min(...m.similarity)) < 1e-6 && Math.abs(Math.max(...m.similarity) - 1) < 1e-6,
        `S from ${Math.min(...m.similarity)} to ${Math.max(...m.similarity)}`,
      );
      assert.equal(m.recon, null, 'feature targets: no picture to reconstruct');
    }
    withTeacher.teacher.dispose();
    withTeacher.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('computeMaps of a model that is not RGB: every map, and no reconstruction (a 1-channel one failed in denormalizeImage, a 4-channel one drew its first 3 channels as ImageNet RGB)', () => {
  for (const inChans of [1, 4]) {
    const model = new SemAIM(makeConfig('vit_tiny', { ...tinyConfig(), inChans })).initWeights(1);
    try {
      const images = new Float32Array(2 * inChans * 16 * 16).map((_, i) => Math.sin(i));
      const maps = computeMaps(model, images, { orders: ['raster', 'semantic'], lossOrder: 'raster' });
      assert.equal(maps.length, 2);
      for (const m of maps) {
        assert.equal(m.recon, null, `${inChans} channels: no RGB picture to reconstruct`);
        assert.equal(m.attention.length, 16);
        assert.equal(m.patchLoss.length, 16);
      }
    } finally {
      model.dispose();
    }
  }
});

test('computeMaps and firstPatches: a model whose S comes from its EMA encoder needs that encoder; without it S is refused, not drawn from the online model', () => {
  const model = new SemAIM(makeConfig('vit_tiny', { ...tinyConfig(), order: { type: 'semantic', source: 'ema', filter: true, lambda: 0.01 } })).initWeights(1);
  const ema = new VisionTransformer(model.config).initWeights(2);
  try {
    const images = new Float32Array(2 * 3 * 16 * 16).map((_, i) => Math.sin(i));
    // with the EMA encoder: S is the EMA's (as training's makeOrder), not the online model's
    const withEma = computeMaps(model, images, { orders: ['semantic'], lossOrder: 'raster', ema });
    const want = torch.noGrad(() => torch.scope(() => encoderSimilarity(ema, torch.tensor(images, { shape: [2, 3, 16, 16] })).toFloat32Array()));
    withEma.forEach((m, b) => m.similarity.forEach((v, i) => assert.ok(Math.abs(v - want[b * 16 + i]) < 1e-6, `image ${b} patch ${i}`)));
    // without it: the online model's S was drawn under the EMA's caption, silently
    const needsEma = (e: unknown) => e instanceof Error && /similarity source 'ema' needs the EMA encoder \(ema\)/.test(e.message);
    assert.throws(() => computeMaps(model, images, { orders: ['semantic'], lossOrder: 'raster' }), needsEma);
    assert.throws(() => computeMaps(model, images, { orders: ['raster'], lossOrder: 'raster', ema: null }), needsEma);
    assert.throws(() => firstPatches(model, images, { order: 'semantic' }), needsEma);
    assert.equal(firstPatches(model, images, { order: 'semantic', ema }).length, 2);
  } finally {
    ema.dispose();
    model.dispose();
  }
});

test('visualize: clear errors for unknown orders and missing images', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-'));
  try {
    const model = tinyModel(3);
    const ckpt = writeCheckpointFolder(join(root, 'ckpt'), model);
    model.dispose();
    await assert.rejects(
      vizCommands.visualize.run(['--checkpoint', ckpt, '--images', root, '--out', root, '--orders', 'raster,spiral']),
      (e: Error) => e instanceof OptionError && /spiral/.test(e.message),
    );
    // before the model loads, as the other commands' --images (an option error: exit 2)
    await assert.rejects(
      vizCommands.visualize.run(['--checkpoint', ckpt, '--images', join(root, 'nope'), '--out', root]),
      (e: Error) => e instanceof OptionError && e.key === 'images' && /nope does not exist/.test(e.message),
    );
    await assert.rejects(vizCommands.visualize.run(['--checkpoint', ckpt, '--images', ckpt, '--out', root]), /no image files/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("computeMaps checks its options as a job does: an OptionError names an unknown key (and the key it is a typo of), a bad value's key and why", () => {
  const model = tinyModel(3);
  try {
    const images = new Float32Array(2 * 3 * 16 * 16);
    const cases: [Record<string, unknown>, string, RegExp][] = [
      // a typo of a key was ignored: the loss map was the semantic order's
      [{ orders: ['raster'], lossorder: 'raster' }, 'lossorder', /unknown option; did you mean 'lossOrder'\?/],
      [{ orders: ['raster'], lossOrder: 'spiral' }, 'lossOrder', /must be one of raster, snake, stochastic, similarity, semantic, multicenter, got 'spiral'/],
      // read letter by letter: 'r' is no order type
      [{ orders: 'raster' }, 'orders', /expected a list of order types \(raster,snake,stochastic,similarity,semantic,multicenter\), got "raster"/],
      [{ orders: ['raster', 'spiral'] }, 'orders', /unknown order type 'spiral'/],
      [{ orders: ['raster'], seed: 1.5 }, 'seed', /expected an integer, got 1\.5/],
      [{ orders: ['raster'], batchSize: -1 }, 'batchSize', /must be >= 1, got -1/],
      // a batch size of 0 looped forever
      [{ orders: ['raster'], batchSize: 0 }, 'batchSize', /must be >= 1, got 0/],
      [{ orders: ['raster'], ema: {} }, 'ema', /expected the EMA encoder \(a VisionTransformer\), got \[object Object\]/],
    ];
    for (const [opts, key, message] of cases)
      assert.throws(
        () => computeMaps(model, images, opts as never),
        (e) => e instanceof OptionError && e.key === key && message.test(e.message),
        `${JSON.stringify(opts)}: ${message.source}`,
      );
    // undefined is no value, as in a job's options: the defaults
    assert.equal(computeMaps(model, images, { orders: ['raster'], lossOrder: undefined, seed: undefined, batchSize: undefined, ema: null }).length, 2);
  } finally {
    model.dispose();
  }
});

test("orderConfigFor refuses an unknown order type (it returned undefined) and gives the model's own config for its type", () => {
  const cfg = tinyConfig();
  assert.throws(
    () => orderConfigFor('spiral' as never, cfg),
    (e) =>
      e instanceof RangeError && e.message === "orderConfigFor: unknown order type 'spiral' (known: raster,snake,stochastic,similarity,semantic,multicenter)",
  );
  assert.equal(orderConfigFor(cfg.order.type, cfg), cfg.order);
  assert.deepEqual(orderConfigFor('raster', cfg), { type: 'raster' });
  // a type the model did not train with: the paper's defaults, with the model's similarity source
  const raster = { ...cfg, order: { type: 'raster' as const } };
  assert.deepEqual(orderConfigFor('semantic', raster), { type: 'semantic', source: 'online', filter: true, lambda: 0.01 });
  assert.deepEqual(orderConfigFor('multicenter', raster), {
    type: 'multicenter',
    source: 'online',
    k: 3,
    minRelHeight: 0.5,
    minDistance: 2,
    filter: true,
    lambda: 0.01,
  });
});

test("imageSeed: each image's order noise depends on the run's seed, the image's pixels and the order type", () => {
  const pixels = Float32Array.from([0.25, -1, 3]);
  const seed = imageSeed(0, pixels, 'semantic');
  assert.equal(imageSeed(0, Float32Array.from(pixels), 'semantic'), seed);
  assert.notEqual(imageSeed(1, pixels, 'semantic'), seed, 'another --seed draws other noise');
  assert.notEqual(imageSeed(0, pixels, 'stochastic'), seed);
  assert.notEqual(imageSeed(0, Float32Array.from([0.25, -1, 2]), 'semantic'), seed);
  assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 31);
});

test('visualizeModel checks its options as a job does before drawing: an unknown key (did you mean?), a minCell out of range', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-'));
  const model = tinyModel(3);
  try {
    await writeTestImages(join(root, 'in'), 1);
    const images = await loadImages([join(root, 'in')], 16);
    const out = join(root, 'out');
    const cases: [Record<string, unknown>, string, RegExp][] = [
      // ignored before: the cells were drawn at the default 128 pixels
      [{ orders: ['raster'], mincell: 32 }, 'mincell', /unknown option; did you mean 'minCell'\?/],
      [{ orders: ['raster'], minCell: 0 }, 'minCell', /must be >= 1, got 0/],
      // a canvas of terabytes
      [{ orders: ['raster'], minCell: 1e6 }, 'minCell', /must be <= 1024, got 1000000/],
    ];
    for (const [o, key, message] of cases)
      await assert.rejects(
        visualizeModel(model, images, out, o as never),
        (e) => e instanceof OptionError && e.key === key && message.test(e.message),
        message.source,
      );
    assert.equal(existsSync(out), false, 'nothing written');
    const r = await visualizeModel(model, images, out, { orders: ['raster'], minCell: 32 });
    assert.equal(r.layout.cell, 32);
  } finally {
    model.dispose();
    rmSync(root, { recursive: true, force: true });
  }
});

test('captions: a file name, with as many parent folders as tell it apart from another file of that name', () => {
  assert.deepEqual(captions(['/x/a/1.png', '/x/b/1.png', '/x/c/2.png']), ['a/1.png', 'b/1.png', '2.png']);
  assert.deepEqual(captions(['p/q/a/1.png', 'r/q/a/1.png', 'q/b/1.png']), ['p/q/a/1.png', 'r/q/a/1.png', 'b/1.png']);
  assert.deepEqual(captions(['a/1.png', 'a/1.png']), ['a/1.png', 'a/1.png'], 'the same file twice');
});

test("visualize leaves figure files no visualisation wrote (a user's grid.png) unless --overwrite; an earlier visualisation is replaced without it", async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-own-'));
  try {
    const model = tinyModel(3);
    const ckpt = writeCheckpointFolder(join(root, 'ckpt'), model);
    model.dispose();
    const images = join(root, 'imgs');
    await writeTestImages(images, 2);
    const out = join(root, 'mine');
    const run = (...more: string[]) => vizCommands.visualize.run(['--checkpoint', ckpt, '--images', images, '--out', out, '--threads', '1', ...more]);
    mkdirSync(out);
    writeFileSync(join(out, 'grid.png'), 'my precious');
    await assert.rejects(
      run(),
      (e: Error) => e instanceof OptionError && e.key === 'out' && /holds grid\.png, which no earlier semaim visualisation wrote/.test(e.message),
    );
    assert.equal(readFileSync(join(out, 'grid.png'), 'utf8'), 'my precious');
    await run('--overwrite');
    assert.notEqual(readFileSync(join(out, 'grid.png'), 'utf8'), 'my precious');
    await run(); // its own earlier figures: replaced
    // an order named twice is drawn once
    await run('--orders', 'raster,semantic,raster');
    const { columns } = JSON.parse(readFileSync(join(out, 'visualize.json'), 'utf8')) as { columns: string[] };
    assert.deepEqual([...new Set(columns)], columns, columns.join(' | '));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("viz.visualizeCheckpoint refuses the figure folders the command refuses, before the model is loaded: a user's grid.png (unless overwrite: true), a checkpoint folder, a folder among the images", async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-lib-out-'));
  try {
    const model = tinyModel(3);
    const ckpt = writeCheckpointFolder(join(root, 'ckpt'), model);
    model.dispose();
    const images = join(root, 'imgs');
    await writeTestImages(images, 2);
    const ckptFiles = readdirSync(ckpt).sort();
    const job = { checkpoint: ckpt, images: [images], orders: ['raster' as const] };
    const refused = (detail: RegExp) => (e: unknown) => e instanceof OptionError && e.key === 'out' && detail.test(e.detail);
    const out = join(root, 'mine');
    mkdirSync(out);
    writeFileSync(join(out, 'grid.png'), 'my precious');
    // each was written: the user's grid replaced, figures beside the weights, rows among the images (inputs next time)
    await assert.rejects(visualizeCheckpoint({ ...job, out }), refused(/holds grid\.png, which no earlier semaim visualisation wrote .*add overwrite: true/));
    assert.equal(readFileSync(join(out, 'grid.png'), 'utf8'), 'my precious');
    await assert.rejects(visualizeCheckpoint({ ...job, out: ckpt, overwrite: true }), refused(/checkpoint folder/));
    assert.deepEqual(readdirSync(ckpt).sort(), ckptFiles);
    await assert.rejects(visualizeCheckpoint({ ...job, out: join(images, 'viz'), overwrite: true }), refused(/lies in .*imgs.*which this command reads/));
    assert.deepEqual(readdirSync(images).length, 2);
    await visualizeCheckpoint({ ...job, out, overwrite: true });
    assert.notEqual(readFileSync(join(out, 'grid.png'), 'utf8'), 'my precious');
    await visualizeCheckpoint({ ...job, out }); // its own earlier figures: replaced without overwrite
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('two visualisations into one folder at once: the one that commits while the other is between reading the earlier list and committing is refused, never leaving its rows beside the other list', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-viz-'));
  const model = tinyModel(3);
  const fs = require('node:fs') as typeof import('node:fs');
  const open = fs.openSync;
  try {
    await writeTestImages(join(root, 'in'), 3);
    const images = await loadImages([join(root, 'in', 'img0.png')], 16);
    const out = join(root, 'out');
    const [summary, grid] = [join(out, 'visualize.json'), join(out, 'grid.png')];
    const others = [0, 1, 2].map((i) => join(out, `row-00${i}-img${i}.png`));
    // another visualisation of three images commits (as visualizeModel does: claimed, then written) when
    // this one stages its first file, after it has read the earlier list
    let other: string | null = null;
    fs.openSync = ((path: string, ...rest: Parameters<typeof open> extends [unknown, ...infer R] ? R : never) => {
      if (other === null && String(path).startsWith(out) && String(path).includes('.tmp')) {
        other = 'refused';
        let release: (() => void) | undefined;
        try {
          release = claimOutputs([summary, grid, ...others]);
        } catch (e) {
          if (!(e instanceof OptionError && /is being written by another job/.test(e.message))) throw e;
        }
        if (release) {
          for (const f of [grid, ...others]) writeFileSync(f, 'png');
          writeFileSync(summary, JSON.stringify({ images: others.map((file) => ({ file })) }));
          release();
          other = 'committed';
        }
      }
      return open(path, ...rest);
    }) as typeof fs.openSync;
    await visualizeModel(model, images, out, { orders: ['raster'], minCell: 16 });
    fs.openSync = open;
    const listed = (JSON.parse(readFileSync(summary, 'utf8')) as { images: { file: string }[] }).images.map((i) => basename(i.file));
    const rows = readdirSync(out).filter((n) => n.startsWith('row-'));
    assert.deepEqual(rows, listed, 'the row files are those the list names');
    assert.equal(other, 'refused');
  } finally {
    fs.openSync = open;
    model.dispose();
    rmSync(root, { recursive: true, force: true });
  }
});
