import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { AdamW, isNoWeightDecay, paramGroupsLayerDecay, paramGroupsWeightDecay, vitLayerId } from '../../src/optim';
import { disposeAll, golden } from './helpers';

interface PG {
  params: string[];
  weight_decay: number;
  lr_scale?: number;
  name?: string;
}
const G = golden<{
  params: Array<{ name: string; shape: number[]; frozen: boolean }>;
  weight_decay: { weight_decay: number; no_weight_decay_list: string[]; groups: PG[] };
  lrd: { num_blocks: number; weight_decay: number; layer_decay: number; no_weight_decay_list: string[]; groups: PG[] };
}>('param_groups.json');

function model(): Array<[string, torch.Tensor]> {
  return G.params.map(({ name, shape, frozen }) => [name, torch.keep(torch.zeros(shape, { requiresGrad: !frozen }))]);
}

const names = (ps: Iterable<[string, torch.Tensor]>): string[] => [...ps].map(([n]) => n);

test("paramGroupsWeightDecay matches timm's param_groups_weight_decay", () => {
  const named = model();
  const groups = paramGroupsWeightDecay(named, { weightDecay: G.weight_decay.weight_decay, noWeightDecay: G.weight_decay.no_weight_decay_list });
  assert.deepEqual(
    groups.map((g) => ({ params: names(g.params), weight_decay: g.weightDecay })),
    G.weight_decay.groups,
  );
  disposeAll(named.map(([, p]) => p));
});

test('the no-decay group holds exactly the biases, norm weights, 1-D params, cls_token and pos_embed', () => {
  const named = model();
  const [noDecay, decay] = paramGroupsWeightDecay(named, { weightDecay: 0.05, noWeightDecay: ['cls_token', 'pos_embed'] });
  const expected = G.params
    .filter((p) => !p.frozen)
    .filter((p) => p.name.endsWith('.bias') || /norm\d?\.weight$/.test(p.name) || p.shape.length <= 1 || p.name === 'cls_token' || p.name === 'pos_embed')
    .map((p) => p.name);
  assert.deepEqual(names(noDecay.params).sort(), expected.sort());
  assert.ok(names(noDecay.params).includes('blocks.2.norm2.weight'));
  assert.ok(!names(decay.params).includes('cls_token'));
  assert.ok(names(decay.params).includes('mask_token')); // not listed, 3-D
  assert.ok(!names([...noDecay.params, ...decay.params]).includes('frozen.weight'));
  assert.deepEqual([noDecay.weightDecay, decay.weightDecay], [0, 0.05]);
  // nested names match a listed name by their last components
  const nested = paramGroupsWeightDecay([['encoder.cls_token', named[0][1]]], { weightDecay: 1, noWeightDecay: ['cls_token'] });
  assert.deepEqual(names(nested[0].params), ['encoder.cls_token']);
  // ... by whole components only: 'my_cls_token' is not 'cls_token'
  const [suffixNo, suffixDecay] = paramGroupsWeightDecay([['encoder.my_cls_token', named[0][1]]], { weightDecay: 1, noWeightDecay: ['cls_token'] });
  assert.deepEqual([names(suffixNo.params), names(suffixDecay.params)], [[], ['encoder.my_cls_token']]);
  // a name ending in '.bias' goes without decay whatever its shape (timm)
  const bias2d = torch.keep(torch.zeros([2, 3], { requiresGrad: true }));
  assert.deepEqual(names(paramGroupsWeightDecay([['head.bias', bias2d]], { weightDecay: 1 })[0].params), ['head.bias']);
  bias2d.dispose();
  disposeAll(named.map(([, p]) => p));
});

test("a single name given as noWeightDecay (a string, which is an iterable of its letters) is refused: 'cls_token' was decayed", () => {
  const cls = torch.keep(torch.zeros([1, 1, 4], { requiresGrad: true }));
  const named: Array<[string, torch.Tensor]> = [['cls_token', cls]];
  const one = 'cls_token' as unknown as string[];
  const msg = /noWeightDecay must be a list of parameter names such as \['cls_token'\], not the string 'cls_token'/;
  assert.throws(() => paramGroupsWeightDecay(named, { weightDecay: 0.05, noWeightDecay: one }), { name: 'TypeError', message: msg });
  assert.throws(() => paramGroupsLayerDecay(named, { numLayers: 1, layerDecay: 0.75, weightDecay: 0.05, noWeightDecay: one }), msg);
  assert.throws(() => isNoWeightDecay('cls_token', cls, one), msg);
  // a list (or a Set) of names is what they take
  assert.deepEqual(names(paramGroupsWeightDecay(named, { weightDecay: 0.05, noWeightDecay: new Set(['cls_token']) })[0].params), ['cls_token']);
  cls.dispose();
});

test("paramGroupsLayerDecay matches MAE's param_groups_lrd", () => {
  const named = model();
  const l = G.lrd;
  const groups = paramGroupsLayerDecay(named, {
    numLayers: l.num_blocks,
    layerDecay: l.layer_decay,
    weightDecay: l.weight_decay,
    noWeightDecay: l.no_weight_decay_list,
  });
  assert.equal(groups.length, l.groups.length);
  groups.forEach((g, i) => {
    const e = l.groups[i];
    assert.equal(g.name, e.name);
    assert.deepEqual(names(g.params), e.params);
    assert.equal(g.weightDecay, e.weight_decay);
    assert.ok(Math.abs(g.lrScale! - e.lr_scale!) <= 1e-15, `${g.name} lrScale ${g.lrScale} vs ${e.lr_scale}`);
  });
  // the groups feed an optimiser directly; setLr scales each group
  const opt = new AdamW(groups, { weightDecay: 0.05 });
  opt.setLr(1e-3);
  const head = opt.paramGroups.find((g) => g.name === `layer_${l.num_blocks + 1}_decay`)!;
  const embed = opt.paramGroups.find((g) => g.name === 'layer_0_decay')!;
  assert.equal(head.lr, 1e-3);
  assert.ok(Math.abs(embed.lr - 1e-3 * l.layer_decay ** (l.num_blocks + 1)) < 1e-18);
  opt.dispose();
  disposeAll(named.map(([, p]) => p));
});

test("vitLayerId follows MAE's get_layer_id_for_vit", () => {
  assert.equal(vitLayerId('cls_token', 12), 0);
  assert.equal(vitLayerId('pos_embed', 12), 0);
  assert.equal(vitLayerId('patch_embed.proj.weight', 12), 0);
  assert.equal(vitLayerId('blocks.0.attn.qkv.weight', 12), 1);
  assert.equal(vitLayerId('blocks.11.mlp.fc2.bias', 12), 12);
  assert.equal(vitLayerId('fc_norm.weight', 12), 13);
  assert.equal(vitLayerId('head.weight', 12), 13);
  // a 'blocks' name without a block index is refused, not given layer NaN
  assert.throws(() => vitLayerId('blocks.norm.weight', 12), /cannot read a block index from 'blocks\.norm\.weight'/);
});
