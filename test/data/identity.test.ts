// datasetIdentity: what data-parallel ranks compare before they start (src/data/factories.ts). It
// names every sample below the dataset's root, so the same data under another root agrees, also for a
// seeded subset (--train-limit / --test-limit), and any other file or label disagrees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageFolder } from '../../src/data/sources/folder';
import { datasetIdentity, subsetDataset } from '../../src/data/factories';

/** An ImageFolder of empty files (listing reads names only): classes a, b, c with 6 images each. */
function tree(root: string): string {
  for (const c of ['a', 'b', 'c']) {
    mkdirSync(join(root, c), { recursive: true });
    for (let i = 0; i < 6; i++) writeFileSync(join(root, c, `${c}${i}.png`), '');
  }
  return root;
}

test('datasetIdentity: the same images under another root agree, whole and as the same seeded subset; another file disagrees', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-identity-'));
  try {
    const one = imageFolder(tree(join(dir, 'machine-1', 'train')));
    const two = imageFolder(tree(join(dir, 'mnt', 'other', 'train')));
    assert.deepEqual(datasetIdentity(one), datasetIdentity(two));
    assert.equal(datasetIdentity(one).samples, 18);
    const sub = (ds: typeof one, seed: number) => datasetIdentity(subsetDataset(ds, 7, seed));
    assert.deepEqual(sub(one, 3), sub(two, 3), 'a subset names its images below the root, not by absolute path');
    assert.notDeepEqual(sub(one, 3), sub(one, 4), 'another seed picks other images');

    renameSync(join(dir, 'mnt', 'other', 'train', 'b', 'b2.png'), join(dir, 'mnt', 'other', 'train', 'b', 'b2-renamed.png'));
    const renamed = datasetIdentity(imageFolder(join(dir, 'mnt', 'other', 'train')));
    assert.equal(renamed.samples, 18);
    assert.notEqual(renamed.digest, datasetIdentity(one).digest);
    // a renamed class folder
    renameSync(join(dir, 'mnt', 'other', 'train', 'b', 'b2-renamed.png'), join(dir, 'mnt', 'other', 'train', 'b', 'b2.png'));
    renameSync(join(dir, 'mnt', 'other', 'train', 'c'), join(dir, 'mnt', 'other', 'train', 'd'));
    const moved = datasetIdentity(imageFolder(join(dir, 'mnt', 'other', 'train')));
    assert.notEqual(moved.digest, datasetIdentity(one).digest);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
