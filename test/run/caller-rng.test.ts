// A library caller's global random stream goes on after a job as if the job had not run: the jobs seed
// the global generator from their `seed` option (the weights' and probes' init) and build models whose
// constructors draw from it, and a program that seeded it for its own draws got the job's stream after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import {
  FINETUNE_OPTIONS,
  KNN_OPTIONS,
  LINPROBE_OPTIONS,
  SEGPROBE_OPTIONS,
  embed,
  predict,
  readSegprobeConfig,
  resolveOptions,
  runFinetune,
  runKnn,
  runLinprobe,
  runSegprobe,
  type data,
} from '../../src';
import { keepCallerRng } from '../../src/run/caller-rng';
import { toyImages, writeEncoder } from '../eval/helpers';
import { squares } from '../eval/seg-helpers';
import { encode, picture, write } from '../data/helpers';

/** What the global generator gives next after `between` ran, from a stream the caller seeded with 5. */
async function nextDraws(between: () => Promise<unknown>): Promise<number[]> {
  torch.manualSeed(5);
  torch.rand([3]).dispose(); // the caller's stream is under way
  await between();
  return torch.scope(() => Array.from(torch.rand([4]).toFloat32Array()));
}

const untouched = () => nextDraws(async () => {});

test('the evaluation jobs leave the caller’s global random stream where it was', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-caller-rng-'));
  try {
    const enc = writeEncoder(dir);
    const images = join(dir, 'images');
    for (let i = 0; i < 2; i++) write(join(images, `${i}.png`), await encode(picture(8, 8, i), 8, 8, 3, 'png'));
    const f: data.DataFactories = {
      makeEvalData: (r) => (r.split === 'train' ? toyImages(12, 3, 8, 1) : toyImages(6, 3, 8, 2)),
      makeTrainData: () => {
        throw new Error('not used');
      },
    };
    const seg = (r: { split: string }) => (r.split === 'train' ? squares(8, 1) : squares(4, 2));
    const common = { checkpoint: enc, threads: 1, evalBatchSize: 6 };
    const ft = join(dir, 'ft');
    const jobs: [string, () => Promise<unknown>][] = [
      ['runKnn', () => runKnn(resolveOptions(KNN_OPTIONS, { ...common, k: '3', outDir: join(dir, 'knn') }), f, { progress: null })],
      [
        'runLinprobe',
        () =>
          runLinprobe(resolveOptions(LINPROBE_OPTIONS, { ...common, epochs: 1, batchSize: 4, warmupEpochs: 0, outDir: join(dir, 'lin') }), f, {
            progress: null,
          }),
      ],
      [
        'runSegprobe',
        () => {
          const o = resolveOptions(SEGPROBE_OPTIONS, {}, { ...common, epochs: 1, batchSize: 4, warmupEpochs: 0, figureImages: 0, outDir: join(dir, 'seg') });
          return runSegprobe(readSegprobeConfig(o), o, seg, { progress: null });
        },
      ],
      [
        'runFinetune',
        () =>
          runFinetune(resolveOptions(FINETUNE_OPTIONS, { ...common, epochs: 1, batchSize: 4, warmupEpochs: 0, outDir: ft }), f, {
            progress: false,
            log: () => {},
          }),
      ],
      ['embed', () => embed({ checkpoint: enc, images, threads: 1, out: join(dir, 'e.safetensors'), progress: null })],
      ['predict', () => predict({ checkpoint: ft, images, threads: 1, out: join(dir, 'p.json'), progress: null })],
    ];
    const expected = await untouched();
    const moved: string[] = [];
    for (const [name, job] of jobs) if (JSON.stringify(await nextDraws(job)) !== JSON.stringify(expected)) moved.push(name);
    assert.deepEqual(moved, [], 'jobs after which the caller’s stream did not go on');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('jobs at once: the global stream comes back as it was before the first began, also when that one ends first', async () => {
  const expected = await untouched();
  const seeding = async (seed: number, until: Promise<void>) => {
    torch.manualSeed(seed);
    await until;
  };
  const draws = await nextDraws(async () => {
    let endA!: () => void;
    let endB!: () => void;
    const a = keepCallerRng(() => seeding(1, new Promise<void>((r) => (endA = r))));
    const b = keepCallerRng(() => seeding(2, new Promise<void>((r) => (endB = r)))); // started after a, ends after it
    endA();
    await a;
    endB();
    await b;
  });
  assert.deepEqual(draws, expected);
  const late = Promise.reject(new Error('late'));
  late.catch(() => {});
  const failed = await nextDraws(() => keepCallerRng(() => seeding(3, late)).catch(() => {}));
  assert.deepEqual(failed, expected, 'also after a job that throws');
});
