// `semaim segprobe` data-parallel: on 2 and 3 processes (cached features) and 2 (the encoder on every
// crop-flip batch) it writes one process's result, figure and head, once, by rank 0, on a folder
// whose unusable samples fall in different ranks' slices (skipped, counted once, holes in batches).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dist from '../../src/dist';
import { loadTensors } from '../../src/io';
import { maxDiff, writeEncoder } from '../eval/helpers';
import { pngEncode, write } from '../data/helpers';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const gloo = dist.distBuildInfo().gloo ? false : 'the addon was built without Gloo';
const root = mkdtempSync(join(tmpdir(), 'semaim-dp-seg-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const S = 16;
const COLOURS = [
  [40, 60, 200],
  [60, 180, 60],
  [220, 200, 40],
];

/** A 16×16 picture of three regions whose boundaries move with `i`, and its mask (a stripe of 255). */
function sample(i: number): { image: Buffer; mask: Buffer } {
  const rgb: number[] = [];
  const labels: number[] = [];
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const c = y < 3 + (i % 7) ? 0 : x < 4 + ((i * 5) % 9) ? 1 : 2;
      labels.push(x === (i * 3) % S ? 255 : c);
      for (const v of COLOURS[c]) rgb.push(Math.max(0, Math.min(255, v + (((i + 1) * (x + 3) * (y + 5) * 37) % 41) - 20)));
    }
  return { image: pngEncode(S, S, 2, 8, rgb), mask: pngEncode(S, S, 0, 8, labels) };
}

/** ROOT/{train,test}/{images,masks}: `n` samples each, those in `corrupt` truncated, one image without a mask. */
function writeFolder(dir: string): void {
  write(join(dir, 'classes.txt'), 'sky\ngrass\nsand\n');
  for (const [split, n, corrupt] of [
    ['train', 37, [2, 9, 10, 30]],
    ['test', 11, [4]],
  ] as const) {
    for (let i = 0; i < n; i++) {
      const name = `s${String(i).padStart(2, '0')}.png`;
      const { image, mask } = sample(split === 'train' ? i : 100 + i);
      write(join(dir, split, 'images', name), (corrupt as readonly number[]).includes(i) ? image.subarray(0, 40) : image);
      write(join(dir, split, 'masks', name), mask);
    }
    write(join(dir, split, 'images', 'unlabelled.png'), sample(999).image);
  }
}

function cli(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

interface SegprobeJson {
  mIoU: number;
  perClassIoU: (number | null)[];
  rows: unknown[];
  data: { train: number; test: number; skipped: { train: { count: number; byReason: Record<string, number> }; test: { count: number } } };
  details: { history: { loss: number; mIoU?: number }[] };
}

test('semaim segprobe --nproc-per-node 2 and 3 (cached, crop-flip) write one process’s result, figure and head, once', { skip: gloo }, () => {
  const data = join(root, 'folder');
  writeFolder(data);
  const encoder = writeEncoder(root, { imgSize: S, patchSize: 4, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 2 }, 5, 'seg-encoder');
  const common = ['segprobe', '--checkpoint', encoder, '--dataset', 'seg-folder', '--data-path', data, '--eval-batch-size', '4', '--epochs', '3',
    '--batch-size', '6', '--eval-every', '1', '--figure-images', '5', '--threads', '1'];
  const json = (dir: string) => JSON.parse(readFileSync(join(root, dir, 'segprobe.json'), 'utf8')) as SegprobeJson;
  const run = (dir: string, extra: string[]) => {
    const r = cli([...common, ...extra, '--out-dir', join(root, dir)]);
    assert.equal(r.code, 0, r.out);
    assert.equal((r.out.match(/wrote .*segprobe\.json/g) ?? []).length, 1, `${dir}: one segprobe.json, from rank 0`);
    return json(dir);
  };
  const same = (dir: string, ref: string, tol: number) => {
    const [a, b] = [json(ref), json(dir)];
    assert.deepEqual(b.data, a.data, `${dir}: image counts and skipped samples`);
    assert.deepEqual(b.perClassIoU.map((v) => v?.toFixed(6)), a.perClassIoU.map((v) => v?.toFixed(6)), `${dir}: per-class IoU`);
    assert.deepEqual(b.rows, a.rows, `${dir}: the table's rows (probe and majority baseline)`);
    const h = (x: SegprobeJson) => x.details.history.map((e) => [e.loss.toFixed(5), e.mIoU?.toFixed(6)]);
    assert.deepEqual(h(b), h(a), `${dir}: loss and mIoU per epoch`);
    const [p, q] = [loadTensors(join(root, ref, 'seg-head.safetensors')).tensors, loadTensors(join(root, dir, 'seg-head.safetensors')).tensors];
    assert.deepEqual([...q.keys()].sort(), [...p.keys()].sort());
    for (const [name, t] of p) {
      const d = maxDiff(q.get(name)!.toFloat32Array(), t.toFloat32Array());
      assert.ok(d <= tol, `${dir}: head ${name}: max |diff| ${d}`);
    }
    assert.ok(readFileSync(join(root, dir, 'segprobe.png')).equals(readFileSync(join(root, ref, 'segprobe.png'))), `${dir}: the same figure`);
  };

  const one = run('cached-1', []);
  assert.equal(one.data.train, 33, '37 listed, 4 truncated (the image without a mask is not listed)');
  assert.equal(one.data.test, 10);
  assert.deepEqual(one.data.skipped.train.byReason, { 'no-mask': 1, truncated: 4 });
  assert.equal(one.details.history.length, 3);
  run('cached-2', ['--nproc-per-node', '2']);
  same('cached-2', 'cached-1', 1e-5);
  run('cached-3', ['--nproc-per-node', '3']);
  same('cached-3', 'cached-1', 1e-5);

  // crop-flip: the encoder runs on every batch, each process on its slice (the truncated images leave holes)
  run('online-1', ['--augment', 'crop-flip']);
  run('online-2', ['--augment', 'crop-flip', '--nproc-per-node', '2']);
  same('online-2', 'online-1', 1e-5);

  const refused = cli([...common, '--augment', 'crop-flip', '--batch-size', '5', '--nproc-per-node', '2', '--out-dir', join(root, 'odd')]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.out, /option --batch-size: \(5\) must be divisible by the 2 processes with --augment crop-flip/);
});
