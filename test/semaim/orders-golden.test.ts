// The similarity maps and orders at non-default settings (--similarity-tokens gap/self, the teacher's min-max map,
// --order similarity, --order multicenter with and without the filter) and one loss at --no-norm-pix, --blur-kernel 5
// --blur-sigma 0.7, --decoder-depth 1, raster order, against the float64 PyTorch reference of scripts/golden_orders.py.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as torch from '../../src/torch';
import { loadTensors } from '../../src/io';
import { SemAIM, encoderSimilarity, multicenterOrder, rasterOrder, similarityOrder } from '../../src/semaim';

const FILE = join(__dirname, '..', '..', '..', 'test', 'golden', 'orders', 'case.safetensors');

function maxRel(a: torch.Tensor, b: torch.Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item() / Math.max(b.abs().max().item(), 1e-300));
}

interface Meta {
  imgSize: number;
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  decoderDepth: number;
  blurKernel: number;
  blurSigma: number;
  multicenter: { k: number; minRelHeight: number; minDistance: number; lambda: number };
  centers: Record<string, number[][]>;
}

function load() {
  const { tensors: t, metadata } = loadTensors(FILE, { device: 'cpu' });
  const m = JSON.parse(metadata.config) as Meta;
  const model = new SemAIM({
    imgSize: m.imgSize,
    patchSize: m.patchSize,
    embedDim: m.embedDim,
    depth: m.depth,
    numHeads: m.numHeads,
    mlpRatio: 4,
    decoderDepth: m.decoderDepth,
    target: { type: 'pixels', normPix: false, blur: true, blurKernel: m.blurKernel, blurSigma: m.blurSigma },
    order: { type: 'raster' },
  }).to({ dtype: 'float64' });
  model.loadStateDict(new Map([...t].filter(([k]) => !/^(input|expect|grad)\./.test(k))));
  return { model, t, m };
}

test('golden orders: S of tokens cls, gap and self and the min-max map equal the float64 reference to 1e-10', () => {
  const { model, t } = load();
  const images = t.get('input.images')!;
  for (const tokens of ['cls', 'gap', 'self'] as const) {
    const S = encoderSimilarity(model, images, 'softmax', tokens);
    assert.equal(S.dtype, 'float64', `S of tokens '${tokens}' keeps the model's float64`);
    assert.ok(maxRel(S, t.get(`expect.S.${tokens}`)!) < 1e-10, `S ${tokens}: rel err ${maxRel(S, t.get(`expect.S.${tokens}`)!)}`);
  }
  const mm = encoderSimilarity(model, images, 'minmax', 'cls');
  assert.ok(maxRel(mm, t.get('expect.S.minmax')!) < 1e-10, 'min-max S');
  model.dispose();
});

test('golden orders: the similarity and multicenter orders (filter on and off) equal the float64 reference', () => {
  const { model, t, m } = load();
  const images = t.get('input.images')!;
  const noise = t.get('input.noise')!;
  for (const tokens of ['cls', 'self'] as const) {
    const S = encoderSimilarity(model, images, 'softmax', tokens);
    const sim = similarityOrder(S);
    assert.ok(maxRel(sim, t.get(`expect.similarity_order.${tokens}`)!) < 1e-10, `similarity order ${tokens}`);
    for (const filter of [true, false]) {
      const key = `${tokens}.${filter ? 'filter' : 'nofilter'}`;
      const r = multicenterOrder(S, model.grid, { ...m.multicenter, filter, noise });
      const kept = (r.centers.tolist() as number[][]).map((row, b) => row.filter((_, j) => (r.valid.tolist() as boolean[][])[b][j]));
      assert.deepEqual(kept, m.centers[key], `multicenter ${key} centres`);
      const err = maxRel(r.order, t.get(`expect.multicenter.${key}`)!);
      assert.ok(err < 1e-12, `multicenter ${key} order values: rel err ${err}`);
    }
  }
  model.dispose();
});

test('golden orders: loss, predictions, targets and every gradient at --no-norm-pix, blur 5 / 0.7, decoder depth 1', () => {
  const { model, t } = load();
  const images = t.get('input.images')!;
  const order = rasterOrder(2, model.grid).to({ dtype: 'float64' });
  for (const path of ['fast', 'reference'] as const) {
    model.zeroGrad();
    const out = model.forward(images, order, { path, outputs: 'all' });
    const want = t.get('expect.loss')!.item();
    assert.ok(Math.abs(out.loss.item() - want) < 1e-10 * want, `${path} loss ${out.loss.item()} vs ${want}`);
    assert.ok(maxRel(out.target!, t.get('expect.target')!) < 1e-10, `${path} targets`);
    assert.ok(maxRel(out.pred!, t.get('expect.pred')!) < 1e-10, `${path} predictions`);
    out.loss.backward();
    let n = 0;
    for (const [k, p] of model.namedParameters()) {
      const g = t.get('grad.' + k);
      if (!g) continue;
      n++;
      // the key bias's gradient is 0 up to rounding (a constant shift of a softmax row): compare on the weight's scale
      const scale = Math.max(g.abs().max().item(), k.endsWith('attn.k.bias') ? 1e-3 : 0);
      const err = p.grad!.sub(g).abs().max().item() / scale;
      assert.ok(err < 1e-9, `${path} grad ${k}: rel err ${err}`);
    }
    assert.equal(n, [...model.namedParameters()].length);
  }
  model.dispose();
});
