// --decay-cls-token: the authors' pre-training (timm's add_weight_decay) decays cls_token, because
// only 1-D parameters and biases are exempt there; --no-decay-cls-token exempts it (semaim before
// the option). Runs started before the option existed resume with it off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { PRETRAIN_OPTIONS, modelConfigFrom } from '../../src/train/pretrain-options';
import { noWeightDecayNames } from '../../src/train/pretrain';
import { resolveOptions, parseArgv } from '../../src/util/options';
import { recipeChanges } from '../../src/run/recipe';
import { SemAIM } from '../../src/semaim';
import { AdamW, paramGroupsWeightDecay } from '../../src/optim';

const small = { model: 'vit_tiny', imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, decoderDepth: 2, blur: false, threads: 1 };

/** timm's add_weight_decay rule, written out independently: decay = trainable, ≥ 2-D, not a bias. */
function timmDecayed(model: SemAIM): string[] {
  return [...model.namedParameters()]
    .filter(([n, p]) => p.requiresGrad && p.ndim > 1 && !n.endsWith('.bias'))
    .map(([n]) => n)
    .sort();
}

test("--decay-cls-token (default) gives timm's add_weight_decay groups; --no-decay-cls-token exempts cls_token", () => {
  const on = resolveOptions(PRETRAIN_OPTIONS, small);
  const off = resolveOptions(PRETRAIN_OPTIONS, parseArgv(['--no-decay-cls-token'], PRETRAIN_OPTIONS).options, small);
  assert.equal(on.decayClsToken, true);
  assert.equal(off.decayClsToken, false);
  const model = new SemAIM(modelConfigFrom(on));
  try {
    const decayed = (o: typeof on) =>
      [...paramGroupsWeightDecay(model.namedParameters(), { weightDecay: 0.05, noWeightDecay: noWeightDecayNames(o) })[1].params].map(([n]) => n).sort();
    assert.deepEqual(decayed(on), timmDecayed(model));
    assert.ok(decayed(on).includes('cls_token'));
    assert.deepEqual(
      decayed(off),
      timmDecayed(model).filter((n) => n !== 'cls_token'),
    );
  } finally {
    model.dispose();
  }
});

test('AdamW with the decay group shrinks cls_token by (1 − lr·wd) per step at zero gradient; without, it stays', () => {
  for (const decay of [true, false]) {
    const model = new SemAIM(modelConfigFrom(resolveOptions(PRETRAIN_OPTIONS, small)));
    torch.manualSeed(1);
    model.initWeights();
    const before = model.cls_token.toFloat64Array();
    const groups = paramGroupsWeightDecay(model.namedParameters(), { weightDecay: 0.05, noWeightDecay: noWeightDecayNames({ decayClsToken: decay }) });
    const opt = new AdamW(groups, { lr: 0.1, betas: [0.9, 0.95], weightDecay: 0.05 });
    torch.scope(() => model.cls_token.mul(0).sum().backward()); // a zero gradient: only the decay moves it
    opt.step();
    const after = model.cls_token.toFloat64Array();
    const factor = decay ? 1 - 0.1 * 0.05 : 1;
    after.forEach((v, i) => assert.ok(Math.abs(v - before[i] * factor) < 1e-7, `decay ${decay}, [${i}]: ${v} vs ${before[i] * factor}`));
    assert.ok(before.some((v) => v !== 0));
    opt.dispose();
    model.dispose();
  }
});

test('a run stored before the option existed resumes with cls_token exempt, and refuses a switch to decaying it', () => {
  const stored = { ...resolveOptions(PRETRAIN_OPTIONS, small) } as Record<string, unknown>;
  delete stored.decayClsToken; // a config.json written before the option existed
  const keys = (now: Record<string, unknown>) => recipeChanges(PRETRAIN_OPTIONS, stored, now).map((c) => c.key);
  assert.deepEqual(keys(resolveOptions(PRETRAIN_OPTIONS, small, { decayClsToken: false })), []);
  assert.deepEqual(keys(resolveOptions(PRETRAIN_OPTIONS, small)), ['decayClsToken']);
});
