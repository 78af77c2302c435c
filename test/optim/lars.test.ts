import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { LARS } from '../../src/optim';
import { GoldenCase, Nested, TOL, assertClose, golden, runCase, setGrad, t64 } from './helpers';

interface Degenerate {
  initial: Nested;
  grad: Nested;
  after: Nested;
}
const G = golden<{ cases: Record<string, GoldenCase> & { degenerate: { p: Degenerate; q: Degenerate; lr: number } } }>('lars.json');

for (const [name, c] of Object.entries(G.cases)) {
  if (name === 'degenerate') continue;
  test(`LARS matches MAE's util/lars.py: ${name}`, () => {
    const gc = c as GoldenCase;
    runCase(gc, (groups) => new LARS(groups, { exclude: gc.exclude }), TOL, `lars/${name}`);
  });
}

test('LARS: zero parameter or zero update gives trust ratio 1', () => {
  const d = G.cases.degenerate;
  const p = torch.keep(t64(d.p.initial, true));
  const q = torch.keep(t64(d.q.initial, true));
  const opt = new LARS(
    [
      ['p', p],
      ['q', q],
    ],
    { lr: d.lr },
  );
  setGrad(p, d.p.grad);
  setGrad(q, d.q.grad);
  opt.step();
  assertClose(p, d.p.after, TOL, 'p');
  assertClose(q, d.q.after, TOL, 'q');
  opt.dispose();
  p.dispose();
  q.dispose();
});

test('LARS: exclusion by predicate equals exclusion by name; unknown names are an error', () => {
  const run = (exclude: Iterable<string> | ((n: string) => boolean)): number[] => {
    const w = torch.keep(
      t64(
        [
          [1, 2],
          [3, 4],
        ],
        true,
      ),
    );
    const opt = new LARS([['w', w]], { lr: 0.1, weightDecay: 0.1, exclude });
    setGrad(w, [
      [0.5, -0.5],
      [1, 2],
    ]);
    opt.step();
    const out = Array.from(w.toFloat64Array());
    opt.dispose();
    w.dispose();
    return out;
  };
  const byName = run(['w']);
  assert.deepEqual(
    run((n) => n === 'w'),
    byName,
  );
  assertClose(byName, [0.95, 2.05, 2.9, 3.8], 1e-12, 'excluded = plain momentum SGD');
  const w = torch.keep(t64([1], true));
  assert.throws(() => new LARS([['w', w]], { exclude: ['nope'] }), /not parameters: nope/);
  assert.throws(() => new LARS([{ params: [['w', w]], trustCoefficient: null }]), /invalid trust coefficient null/);
  assert.throws(() => new LARS([['w', w]], { momentum: NaN }), /invalid momentum NaN/);
  w.dispose();
});
