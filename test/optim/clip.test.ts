import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { clipGradNorm, gradNorm, readNorm } from '../../src/optim';
import { Linear } from '../../src/nn';
import { Nested, TOL, assertClose, disposeAll, golden, setGrad, shapeOf } from './helpers';

const G = golden<{ cases: Record<string, { max_norm: number; grads: Nested[]; total: number; clipped: Nested[] }> }>('clip.json');

function paramsWithGrads(grads: Nested[]): torch.Tensor[] {
  return grads.map((g) => {
    const p = torch.keep(torch.zeros(shapeOf(g), { dtype: 'float64', requiresGrad: true }));
    setGrad(p, g);
    return p;
  });
}

for (const [name, c] of Object.entries(G.cases)) {
  test(`clipGradNorm matches clip_grad_norm_: ${name}`, () => {
    const ps = paramsWithGrads(c.grads);
    const norm = clipGradNorm(
      ps.map((p, i) => [`p${i}`, p] as [string, torch.Tensor]),
      c.max_norm,
    );
    assert.deepEqual(norm.shape, []);
    assertClose(readNorm(norm), c.total, TOL, 'total');
    assert.ok(norm.isDisposed, 'readNorm disposes by default');
    ps.forEach((p, i) => {
      const g = p.grad!;
      assertClose(g, c.clipped[i], TOL, `grad ${i}`);
      g.dispose();
    });
    disposeAll(ps);
  });
}

test('gradNorm measures without changing gradients; parameters without gradients are ignored', () => {
  const c = G.cases.clips;
  const ps = paramsWithGrads(c.grads);
  const extra = torch.keep(torch.zeros([2], { dtype: 'float64', requiresGrad: true }));
  const norm = gradNorm([...ps, extra]);
  assertClose(readNorm(norm, { dispose: false }), c.total, TOL, 'total');
  assert.ok(!norm.isDisposed);
  norm.dispose();
  ps.forEach((p, i) => {
    const g = p.grad!;
    assertClose(g, c.grads[i], 0, `grad ${i}`);
    g.dispose();
  });
  // however large the norm: 3e30 is left as it is
  const huge = paramsWithGrads([[3e30, 0]]);
  assertClose(readNorm(gradNorm(huge)), 3e30, TOL, 'huge total');
  assertClose(huge[0].grad!, [3e30, 0], 0, 'huge grad');
  disposeAll(huge);
  // an infinite norm too (the clip factor inf / inf would be NaN): GradScaler reads it to skip the step
  const inf = paramsWithGrads([[Infinity, 1]]);
  assert.equal(readNorm(gradNorm(inf)), Infinity);
  assert.deepEqual(inf[0].grad!.tolist(), [Infinity, 1]);
  disposeAll(inf);
  const none = clipGradNorm([extra], 1);
  assert.equal(readNorm(none), 0);
  assert.throws(() => clipGradNorm(ps, 0), /maxNorm must be positive/);
  // a module itself failed with 'params is not iterable'
  assert.throws(() => clipGradNorm(new Linear(2, 2) as unknown as torch.Tensor[], 1), {
    name: 'TypeError',
    message: 'clipGradNorm: pass tensors or [name, tensor] pairs such as module.parameters(), not a Linear',
  });
  assert.throws(() => clipGradNorm([{}] as torch.Tensor[], 1), /not an Object among them/);
  disposeAll([...ps, extra]);
});
