// Where the similarity map of the semantic order comes from by default: the authors' engine orders
// by the teacher's map whenever the targets are the teacher's features (engines/engine_pretrain.py:179-190,
// calculate_similarity) and by the online model's map for pixel targets (:153-162); SPEC §2 and
// docs/METHOD.md §3.2 say the same. An explicit --similarity-source still wins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveTensors } from '../../src/io';
import { EncoderConfig, VisionTransformer } from '../../src/semaim';
import { PRETRAIN_OPTIONS, modelConfigFrom } from '../../src/train/pretrain-options';
import { OptionError, resolveOptions } from '../../src/util/options';

const ENC: EncoderConfig = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4 };
const TINY = { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, decoderDepth: 1 };

function withTeacher(run: (teacher: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-simsource-'));
  try {
    const teacher = join(dir, 'teacher.safetensors');
    const model = new VisionTransformer(ENC).initWeights(3);
    saveTensors(teacher, model.stateDict());
    model.dispose();
    writeFileSync(join(dir, 'teacher.json'), JSON.stringify(ENC));
    run(teacher);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const sourceOf = (extra: Record<string, unknown>) => {
  const o = resolveOptions(PRETRAIN_OPTIONS, TINY, extra);
  const order = modelConfigFrom(o).order as { source?: string };
  return { option: o.similaritySource, config: order.source };
};

test('similarity source by default: the teacher with feature targets, the online model with pixel targets', () => {
  assert.deepEqual(sourceOf({}), { option: 'online', config: 'online' });
  assert.deepEqual(sourceOf({ order: 'similarity' }), { option: 'online', config: 'online' });
  withTeacher((teacher) => {
    assert.deepEqual(sourceOf({ target: 'features', teacher }), { option: 'teacher', config: 'teacher' });
    assert.deepEqual(sourceOf({ target: 'features', teacher, order: 'multicenter' }), { option: 'teacher', config: 'teacher' });
    // written as 'auto' (a config file) it resolves the same way
    assert.deepEqual(sourceOf({ target: 'features', teacher, similaritySource: 'auto' }), { option: 'teacher', config: 'teacher' });
    // an explicit choice wins
    assert.deepEqual(sourceOf({ target: 'features', teacher, similaritySource: 'online' }), { option: 'online', config: 'online' });
    // the teacher's map is [CLS]-only: other tokens need an explicit source, and the error says which
    assert.throws(
      () => sourceOf({ target: 'features', teacher, similarityTokens: 'gap' }),
      (e: unknown) => e instanceof OptionError && e.key === 'similarityTokens' && /--similarity-source online or ema/.test(e.message),
    );
    assert.deepEqual(sourceOf({ target: 'features', teacher, similarityTokens: 'gap', similaritySource: 'online' }), { option: 'online', config: 'online' });
  });
});
