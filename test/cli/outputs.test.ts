// Outputs of export, embed, report and visualize never land in a checkpoint folder or on a run's own
// files, not even with --overwrite (`export --out RUN/checkpoints/best/model --overwrite` replaced the
// weights knn then found with a wrong SHA-256), and a figure folder is refused before the model runs
// when it is a file or lies among the images it reads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lossChange } from '../../src/cli/commands';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const TINY =
  '--model vit_tiny --embed-dim 32 --depth 2 --num-heads 2 --img-size 32 --patch-size 4 --synthetic-size 64 --batch-size 16 --epochs 2 --warmup-epochs 0 --max-steps 2 --num-workers 0 --threads 1';

let dir: string;
let run: string;
const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'semaim-outputs-'));
  run = join(dir, 'run');
  const r = cli('pretrain', ...TINY.split(' '), '--out-dir', run);
  assert.equal(r.status, 0, r.stderr);
  // 2 steps under --log-every's default are one metrics line: one loss, not "loss x → x"
  assert.match(r.stdout, /^pretrain stopped at --max-steps after 2 steps; loss \d+\.\d{4}\n/);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("export, embed and report refuse a checkpoint's files and a run's own files even with --overwrite", () => {
  const best = join(run, 'checkpoints', 'best');
  const files = [
    join(best, 'model.safetensors'),
    join(best, 'optimizer.safetensors'),
    join(best, 'state.json'),
    join(run, 'config.json'),
    join(run, 'metrics.jsonl'),
  ];
  const before = files.map(sha);
  const images = join(dir, 'images');
  mkdirSync(images);
  // results other commands wrote (predict reads a probe, report the evaluations): the command's own folder only
  const results = join(dir, 'results');
  mkdirSync(results);
  for (const f of ['finetune.json', 'probe.safetensors', 'knn.json']) writeFileSync(join(results, f), 'a result');
  for (const [args, message] of [
    [
      ['export', '--checkpoint', run, '--out', join(best, 'model')],
      /model\.safetensors cannot be written, not even with --overwrite: it lies in the checkpoint folder/,
    ],
    [['export', '--checkpoint', run, '--out', join(run, 'config')], /config\.json cannot be written.*: it is the config\.json of the run/],
    [['export', '--checkpoint', run, '--out', best, '--format', 'onnx'], /it lies in the checkpoint folder/],
    [['embed', '--checkpoint', run, '--images', images, '--out', join(best, 'optimizer.safetensors')], /optimizer\.safetensors cannot be written/],
    [['report', run, '--out', join(run, 'config.json')], /it is the config\.json of the run/],
    [['report', run, '--out', join(run, 'metrics.jsonl')], /it is the metrics\.jsonl of the run/],
    [['report', run, '--out', join(results, 'finetune.json')], /it is a result another command wrote \(finetune\.json in /],
    [
      ['embed', '--checkpoint', run, '--images', images, '--out', join(results, 'probe.safetensors')],
      /it is a result another command wrote \(probe\.safetensors/,
    ],
    [['export', '--checkpoint', run, '--out', join(results, 'knn')], /knn\.json cannot be written.*: it is a result another command wrote/],
    [['export', '--checkpoint', run, '--out', join(run, 'checkpoints', 'encoder')], /it lies in the checkpoints folder of the run/],
    [
      ['export', '--checkpoint', run, '--out', join(results, 'knn.json'), '--format', 'onnx'],
      /knn\.json cannot be the output folder: .*knn\.json exists and is not a folder/,
    ],
  ] as const) {
    const r = cli(...args, '--overwrite');
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`option --out: .*${message.source}`), args.join(' '));
  }
  assert.deepEqual(files.map(sha), before, 'nothing of the run changed');
  for (const f of readdirSync(results)) assert.equal(readFileSync(join(results, f), 'utf8'), 'a result', f);
  const ok = cli('export', '--checkpoint', run, '--out', join(run, 'encoder'));
  assert.equal(ok.status, 0, 'a new file beside the run is fine');
});

test('visualize refuses, before the model runs, an --out among its images, an existing file, or in a checkpoint', () => {
  const images = join(dir, 'pics');
  mkdirSync(images, { recursive: true });
  writeFileSync(join(dir, 'file.txt'), 'x');
  symlinkSync(join(dir, 'nowhere'), join(dir, 'gone'));
  symlinkSync(images, join(dir, 'pics-link'));
  for (const [out, message] of [
    [join(images, 'viz'), /pics\/viz lies in .*pics, which this command reads/],
    [images, /pics lies in .*pics, which this command reads/],
    // the images' folder through a link to it: its grid and rows were listed as images by the next visualisation
    [join(dir, 'pics-link'), /pics-link lies in .*pics, which this command reads/],
    [join(dir, 'pics-link', 'new', 'viz'), /pics-link\/new\/viz lies in .*pics, which this command reads/],
    [join(dir, 'file.txt'), /file\.txt exists and is not a folder/],
    // a file or a dangling link on the way: the model ran first, then mkdir failed (exit 1)
    [join(dir, 'file.txt', 'viz'), /file\.txt exists and is not a folder/],
    [join(dir, 'gone', 'viz'), /gone is a symbolic link to .*nowhere, which does not exist/],
    [join(run, 'checkpoints', 'best', 'viz'), /grid\.png cannot be written.*lies in the checkpoint folder/],
  ] as const) {
    const r = cli('visualize', '--checkpoint', run, '--images', images, '--out', out);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`option --out: .*${message.source}`));
  }
  assert.deepEqual(readdirSync(images), [], 'nothing was written among the images');
  assert.equal(existsSync(join(dir, 'nowhere')), false, 'nothing made through the dangling link');
  const r = cli('report', run, '--images', images, '--viz-out', join(images, 'v'));
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /option --viz-out: .*lies in .*pics, which this command reads/);
});

test("knn, linprobe, segprobe and finetune refuse an --out-dir in a checkpoint folder or a run's checkpoints/, which the run's rotation deletes, before any work", () => {
  const checkpoints = join(run, 'checkpoints');
  const step = join(checkpoints, readdirSync(checkpoints).filter((n) => n.startsWith('step-'))[0]);
  const best = join(checkpoints, 'best');
  const listing = () => [checkpoints, step, best].map((d) => readdirSync(d).sort().join());
  const before = listing();
  const data = ['--train-limit', '16', '--test-limit', '8', '--threads', '1'];
  const labelled = ['--dataset', 'synthetic', '--num-workers', '0', ...data];
  // (each was written there: knn.json in a step folder the run prunes, a probe in the best/ it replaces)
  for (const [args, out, message] of [
    [['knn', ...labelled], step, /it lies in the checkpoint folder .*step-/],
    [['linprobe', ...labelled, '--epochs', '1'], best, /it lies in the checkpoint folder .*best/],
    [['segprobe', ...data, '--epochs', '1'], join(step, 'seg'), /it lies in the checkpoint folder .*step-/],
    [['finetune', ...labelled, '--epochs', '1', '--warmup-epochs', '0'], join(checkpoints, 'ft'), /it lies in the checkpoints folder of the run/],
  ] as const) {
    const r = cli(...args, '--checkpoint', run, '--out-dir', out);
    assert.equal(r.status, 2, `${args[0]}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`option --out-dir: .*cannot be the output folder: ${message.source}`), args[0]);
  }
  assert.deepEqual(listing(), before, 'nothing written among the checkpoints');
});

test("pretrain's summary gives the logged loss's change, one number for one metrics line, and says when none was logged", () => {
  assert.equal(lossChange(0.91234, 0.5), 'loss 0.9123 → 0.5000');
  assert.equal(lossChange(0.91234, 0.91234), 'loss 0.9123');
  assert.equal(lossChange(NaN, NaN), 'no loss logged');
  assert.equal(lossChange(NaN, Infinity), 'loss Infinity');
});

test("export --format web: the command it suggests for serving the page gives the shell the folder's path, spaces, quotes and a leading '-' included", () => {
  for (const name of [`web page 'it's' $HOME`, '-web']) {
    const r = spawnSync(process.execPath, [CLI, 'export', '--checkpoint', run, '--format', 'web', '--out', name], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const m = /python3 -m http\.server -d (.*?) {2}\(then open/.exec(r.stdout);
    assert.ok(m, r.stdout);
    // the shell reads the argument back as one word, the folder's absolute path (python3 would take '-web' for an option)
    const word = spawnSync('sh', ['-c', `printf '%s' ${m[1]}`], { encoding: 'utf8' });
    assert.equal(word.stdout, join(dir, name));
  }
});
