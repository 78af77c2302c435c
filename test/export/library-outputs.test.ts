// The library's exports keep the checks the CLI makes: they never write into a checkpoint folder or
// over the encoder they read (export --out RUN/checkpoints/best/model replaced its weights).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encoderExportFiles, exportEncoder } from '../../src/export/safetensors';
import { encoderFiles, guardOutputs, outputLockPath } from '../../src/io/outputs';
import { writerMeanwhile } from '../written-meanwhile';
import { exportOnnx } from '../../src/export/onnx-export';
import { verifyCheckpoint } from '../../src/io/checkpoint';
import { disposeAll, loadTensors, readSafetensorsHeader, saveTensors } from '../../src/io';
import { ENCODER_KEY } from '../../src/semaim';
import * as torch from '../../src/torch';
import { tinyModel, writeRunCheckpoint } from '../viz/helpers';
import { encode, picture } from '../data/helpers';
import * as lib from '../../src';
import { commands } from '../../src/cli/commands';

test('exportEncoder and exportOnnx refuse outputs in a checkpoint folder; the checkpoint stays intact', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-lib-out-'));
  try {
    const model = tinyModel();
    const ckpt = writeRunCheckpoint(run, model);
    model.dispose();
    const before = readFileSync(join(ckpt, 'model.safetensors'));
    await assert.rejects(() => exportEncoder(ckpt, join(ckpt, 'model')), /model\.safetensors is what this command reads/);
    await assert.rejects(
      () => exportEncoder(run, join(ckpt, 'encoder')),
      /cannot be written, not even with \{ overwrite: true \}: it lies in the checkpoint folder/,
    );
    await assert.rejects(() => exportOnnx(run, ckpt, { dtype: 'float32', attention: true }), /it lies in the checkpoint folder/);
    assert.ok(readFileSync(join(ckpt, 'model.safetensors')).equals(before));
    assert.equal(verifyCheckpoint(ckpt, 'weights'), null);
    // an AbortController as the signal made an export no signal could stop; a warning sink not a function failed at its first warning
    const refused = (key: string) => (e: unknown) => e instanceof lib.OptionError && e.key === key && /expected /.test(e.detail);
    const controller = new AbortController() as unknown as AbortSignal;
    await assert.rejects(() => exportEncoder(run, join(run, 'export', 'encoder'), { signal: controller }), refused('signal'));
    await assert.rejects(() => exportEncoder(run, join(run, 'export', 'encoder'), { onWarning: 'stderr' as never }), refused('onWarning'));
    await assert.rejects(() => exportOnnx(run, join(run, 'export', 'onnx'), { signal: controller }), refused('signal'));
    assert.equal(existsSync(join(run, 'export')), false);
    const ok = await exportEncoder(run, join(run, 'export', 'encoder'));
    assert.equal(ok.tensors > 0, true);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('an export never replaces the encoder it reads through a symbolic link, not even when asked (overwrite: true)', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-lib-link-'));
  try {
    const model = tinyModel();
    writeRunCheckpoint(run, model);
    model.dispose();
    const enc = join(run, 'out', 'enc');
    await lib.exportEncoder(run, enc);
    // the encoder read as link.safetensors (its config as link.json), the output named by its real path
    symlinkSync('enc.safetensors', join(run, 'out', 'link.safetensors'));
    symlinkSync('enc.json', join(run, 'out', 'link.json'));
    const before = [readFileSync(`${enc}.safetensors`), readFileSync(`${enc}.json`)];
    await assert.rejects(
      () => lib.exportEncoder(join(run, 'out', 'link.safetensors'), enc, { overwrite: true }),
      /enc\.safetensors is what this command reads/,
    );
    assert.ok(readFileSync(`${enc}.safetensors`).equals(before[0]) && readFileSync(`${enc}.json`).equals(before[1]), 'the encoder read is unchanged');
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('the library refuses to replace an earlier export or embed unless asked (overwrite: true), as the command without --overwrite', async () => {
  const run = mkdtempSync(join(tmpdir(), 'semaim-lib-overwrite-'));
  try {
    const model = tinyModel();
    writeRunCheckpoint(run, model);
    model.dispose();
    const refused = (files: string[]) => (e: unknown) => {
      assert.ok(e instanceof lib.OptionError, String(e));
      assert.equal(e.code, 'ERR_OUTPUT_EXISTS');
      assert.equal(e.key, 'out');
      // named as the library caller asks for it (`pass --overwrite` is the command's)
      assert.match(e.message, /exists: choose another output, or pass \{ overwrite: true \} to replace it/);
      assert.ok(files.some((f) => e.message.includes(f)));
      return true;
    };
    const snapshot = (files: string[]) => files.map((f) => readFileSync(f).toString('base64'));
    // exportEncoder: the second export, of another encoder, would replace the pair
    const enc = join(run, 'out', 'enc');
    await lib.exportEncoder(run, enc);
    const encFiles = [`${enc}.safetensors`, `${enc}.json`];
    const encBefore = snapshot(encFiles);
    await assert.rejects(() => lib.exportEncoder(run, enc), refused(encFiles));
    assert.deepEqual(snapshot(encFiles), encBefore);
    await lib.exportEncoder(run, enc, { overwrite: true });
    // converting an encoder file: the same refusal, and never over the file it reads, not even when asked
    const converted = join(run, 'out', 'converted');
    const convertedFiles = [`${converted}.safetensors`, `${converted}.json`];
    await lib.exportEncoder(encFiles[0], converted);
    const convertedBefore = snapshot(convertedFiles);
    await assert.rejects(() => lib.exportEncoder(encFiles[0], converted), refused(convertedFiles));
    assert.deepEqual(snapshot(convertedFiles), convertedBefore);
    const source = snapshot(encFiles);
    await assert.rejects(() => lib.exportEncoder(encFiles[0], enc, { overwrite: true }), /enc\.safetensors is what this command reads/);
    assert.deepEqual(snapshot(encFiles), source);
    // exportOnnx into a folder holding an earlier export
    const onnx = join(run, 'out', 'onnx');
    await lib.exportOnnx(run, onnx); // the defaults: float32, no cls_attention output
    const onnxFiles = ['onnx/model.onnx', 'config.json', 'preprocessor_config.json'].map((f) => join(onnx, f));
    const recorded = (JSON.parse(readFileSync(onnxFiles[1], 'utf8')) as { semaim: { dtype: string; outputs: string[] } }).semaim;
    assert.equal(recorded.dtype, 'float32');
    assert.deepEqual(recorded.outputs, ['last_hidden_state', 'pooler_output']);
    const onnxBefore = snapshot(onnxFiles);
    await assert.rejects(() => lib.exportOnnx(run, onnx, { dtype: 'float32', attention: true }), refused(onnxFiles));
    assert.deepEqual(snapshot(onnxFiles), onnxBefore);
    const again = await lib.exportOnnx(run, onnx, { dtype: 'float32', attention: true, overwrite: true });
    assert.notDeepEqual(snapshot(onnxFiles), onnxBefore, 'replaced when asked');
    assert.equal(again.model, onnxFiles[0]);
    // exportWeb into a folder holding a page
    const web = join(run, 'out', 'web');
    await lib.exportWeb(run, web, { dtype: 'float32' });
    const page = snapshot([join(web, 'model.onnx'), join(web, 'index.html')]);
    await assert.rejects(() => lib.exportWeb(run, web, { dtype: 'float32' }), refused([join(web, 'model.onnx')]));
    assert.deepEqual(snapshot([join(web, 'model.onnx'), join(web, 'index.html')]), page);
    await lib.exportWeb(run, web, { dtype: 'float32', overwrite: true });
    // embed over earlier features: refused before any image is read
    const images = join(run, 'images');
    mkdirSync(images);
    writeFileSync(join(images, 'a.png'), await encode(picture(16, 16, 1), 16, 16, 3, 'png'));
    const out = join(run, 'out', 'f.safetensors');
    const base = { checkpoint: run, images, out, numWorkers: 0, progress: null, threads: 1 };
    await lib.embed(base);
    const embedFiles = [out, join(run, 'out', 'f.json')];
    const features = snapshot(embedFiles);
    await assert.rejects(lib.embed({ ...base, pooling: 'mean' }), refused(embedFiles));
    assert.deepEqual(snapshot(embedFiles), features);
    const r = await lib.embed({ ...base, pooling: 'mean', overwrite: true });
    assert.equal(r.count, 1);
  } finally {
    rmSync(run, { recursive: true, force: true });
  }
});

test('an export refuses (no overwrite) outputs another process wrote between its check and its commit, keeping them', async (t) => {
  // the check is made before the conversion (a ViT-B checkpoint: seconds of hashing and loading) and the outputs'
  // lock taken at the commit: another export to the same name that ran in between was replaced without --overwrite
  const run = mkdtempSync(join(tmpdir(), 'semaim-lib-meanwhile-'));
  t.after(() => rmSync(run, { recursive: true, force: true }));
  const model = tinyModel();
  writeRunCheckpoint(run, model);
  model.dispose();
  mkdirSync(join(run, 'out'));
  const [weights, config] = encoderExportFiles(join(run, 'out', 'enc'));
  const lock = outputLockPath(weights);
  const other = await writerMeanwhile(t, lock, [
    [weights, 'theirs'],
    [config, '{"theirs": true}'],
  ]);
  await other.go();
  await assert.rejects(
    () => lib.exportEncoder(run, join(run, 'out', 'enc')),
    (e: unknown) =>
      e instanceof lib.OptionError &&
      e.code === 'ERR_OUTPUT_EXISTS' &&
      /enc\.safetensors was written by another process while this one worked: it is kept/.test(e.message),
  );
  assert.equal(await other.exited, 0);
  assert.equal(readFileSync(weights, 'utf8'), 'theirs', "the other process's export is kept");
  assert.equal(readFileSync(config, 'utf8'), '{"theirs": true}');
  assert.ok(!existsSync(lock), 'the lock is given up');
  // asked to (overwrite: true), it replaces them
  await lib.exportEncoder(run, join(run, 'out', 'enc'), { overwrite: true });
  assert.equal(readSafetensorsHeader(weights).tensors.size > 0, true);
});

test('an exported encoder names its source by the SHA-256 of the weights read, not their path: the same weights give the same file from anywhere', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-lib-same-'));
  try {
    const model = tinyModel();
    const ckpt = writeRunCheckpoint(join(root, 'run'), model);
    model.dispose();
    cpSync(join(root, 'run'), join(root, 'copy'), { recursive: true });
    const a = await exportEncoder(join(root, 'run'), join(root, 'a'));
    const b = await exportEncoder(join(root, 'copy'), join(root, 'b'));
    assert.ok(readFileSync(a.weights).equals(readFileSync(b.weights)), 'the same bytes from the run and from its copy');
    const state = JSON.parse(readFileSync(join(ckpt, 'state.json'), 'utf8')) as { files: Record<string, string> };
    const { metadata } = readSafetensorsHeader(a.weights);
    assert.equal(metadata.sourceSha256, state.files['model.safetensors']);
    assert.equal(JSON.stringify(metadata).includes(root), false, `no path in the metadata: ${JSON.stringify(metadata)}`);
    // an exported file exported again (to float32 timm names) names the file it read
    const c = await exportEncoder(a.weights, join(root, 'c'));
    assert.equal(readSafetensorsHeader(c.weights).metadata.sourceSha256, createHash('sha256').update(readFileSync(a.weights)).digest('hex'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("an exported encoder holds the run's encoder alone (timm's names, no decoder), in float32, and refuses weights that are not finite", async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-lib-enc-'));
  try {
    const model = tinyModel();
    const own = torch.scope(() => new Map([...model.stateDict()].filter(([k]) => ENCODER_KEY.test(k)).map(([k, t]) => [k, t.toFloat32Array()])));
    assert.ok(
      [...model.stateDict().keys()].some((k) => !ENCODER_KEY.test(k)),
      'the run also holds a decoder',
    );
    writeRunCheckpoint(join(root, 'run'), model);
    const a = await exportEncoder(join(root, 'run'), join(root, 'a'));
    const header = readSafetensorsHeader(a.weights);
    assert.deepEqual([...header.tensors.keys()].sort(), [...own.keys()].sort());
    const { tensors } = loadTensors(a.weights);
    for (const [k, t] of tensors)
      assert.deepEqual(
        torch.scope(() => t.toFloat32Array()),
        own.get(k),
        k,
      );
    disposeAll(tensors);
    // a float16 encoder file is converted to float32, with its values
    const half = new Map(torch.scope(() => [...loadTensors(a.weights).tensors].map(([k, t]) => [k, t.to({ dtype: 'float16' })] as [string, torch.Tensor])));
    saveTensors(join(root, 'half.safetensors'), half);
    cpSync(a.config, join(root, 'half.json'));
    const h = await exportEncoder(join(root, 'half.safetensors'), join(root, 'h'));
    for (const [k, info] of readSafetensorsHeader(h.weights).tensors) assert.equal(info.dtype, 'float32', k);
    const back = loadTensors(h.weights).tensors;
    for (const [k, t] of back)
      assert.deepEqual(
        torch.scope(() => t.toFloat32Array()),
        torch.scope(() => half.get(k)!.float().toFloat32Array()),
        k,
      );
    disposeAll(back);
    disposeAll(half);
    // a run whose weights went NaN exports nothing
    torch.noGrad(() => model.stateDict().get('blocks.0.mlp.fc1.weight')!.fill_(Number.NaN));
    writeRunCheckpoint(join(root, 'nan'), model);
    model.dispose();
    await assert.rejects(exportEncoder(join(root, 'nan'), join(root, 'n')), /NaN|finite/);
    assert.equal(existsSync(join(root, 'n.safetensors')), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('an export writes <out>.safetensors and <out>.json whether --out ends in neither, .safetensors or .json', () => {
  for (const out of ['d/enc', 'd/enc.safetensors', 'd/enc.json']) assert.deepEqual(encoderExportFiles(out), ['d/enc.safetensors', 'd/enc.json'], out);
  assert.deepEqual(encoderExportFiles('d/enc.v2'), ['d/enc.v2.safetensors', 'd/enc.v2.json']);
  // the extension in any case ('enc.SAFETENSORS' wrote enc.SAFETENSORS.safetensors and enc.SAFETENSORS.json)
  for (const out of ['d/enc.SAFETENSORS', 'd/enc.SafeTensors', 'd/enc.JSON'])
    assert.deepEqual(encoderExportFiles(out), ['d/enc.safetensors', 'd/enc.json'], out);
});

test("an encoder's files are its weights and the config JSON beside them; no output may replace that config", () => {
  for (const ext of ['safetensors', 'pth', 'pt', 'bin']) assert.deepEqual(encoderFiles(`d/enc.${ext}`), [`d/enc.${ext}`, 'd/enc.json'], ext);
  const root = mkdtempSync(join(tmpdir(), 'semaim-encoder-files-'));
  try {
    const weights = join(root, 'config.safetensors');
    // an ONNX export of it into its own folder writes config.json: the encoder's own config
    assert.throws(() => guardOutputs([join(root, 'model.onnx'), join(root, 'config.json')], weights, true), /config\.json is what this command reads/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a safetensors export's --out that has no file name (a folder's path 'dir/', '.', '.safetensors') is refused before any work, not written as hidden files 'dir/.safetensors' and 'dir/.json'", async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-lib-noname-'));
  try {
    const model = tinyModel();
    writeRunCheckpoint(join(root, 'run'), model);
    model.dispose();
    const out = join(root, 'exports');
    mkdirSync(out);
    for (const given of [`${out}/`, `${out}/.safetensors`, `${out}/.json`, `${out}/.`, `${out}/..`]) {
      await assert.rejects(
        () => exportEncoder(join(root, 'run'), given),
        (e: unknown) => e instanceof lib.OptionError && e.key === 'out' && /has no file name/.test(e.message),
        given,
      );
      // the command refuses it as it reads its options, before it looks at any file
      assert.throws(
        () => commands.export.parse(['--checkpoint', join(root, 'run'), '--out', given]),
        (e: unknown) => e instanceof lib.OptionError && e.key === 'out' && /has no file name/.test(e.message),
        given,
      );
    }
    assert.deepEqual(readdirSync(out), []);
    assert.deepEqual(readdirSync(root).sort(), ['exports', 'run']);
    // a folder's path is fine for the formats that write a folder
    assert.ok(commands.export.parse(['--checkpoint', join(root, 'run'), '--out', `${out}/`, '--format', 'onnx']));
    assert.equal((await exportEncoder(join(root, 'run'), join(out, 'encoder'))).tensors > 0, true);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("export's --out naming the other format's file (x.onnx without --format onnx, x.safetensors with it) is refused as it reads its options: a forgotten --format", () => {
  for (const [argv, why] of [
    [['--out', 'enc.onnx'], /names an ONNX file but --format is safetensors .*add --format onnx/],
    [['--out', 'ENC.ONNX', '--format', 'safetensors'], /names an ONNX file/],
    [['--out', 'enc.safetensors', '--format', 'onnx'], /names a safetensors file but --format onnx writes a folder/],
    [['--out', 'page.SafeTensors', '--format', 'web'], /names a safetensors file but --format web writes a folder/],
  ] as const) {
    assert.throws(
      () => commands.export.parse(['--checkpoint', 'run', ...argv]),
      (e: unknown) => e instanceof lib.OptionError && e.key === 'out' && why.test(e.message),
      argv.join(' '),
    );
  }
  // what each format writes is accepted
  for (const argv of [
    ['--out', 'enc'],
    ['--out', 'enc.safetensors'],
    ['--out', 'enc-onnx', '--format', 'onnx'],
    ['--out', 'page', '--format', 'web'],
  ])
    assert.ok(commands.export.parse(['--checkpoint', 'run', ...argv]), argv.join(' '));
});
