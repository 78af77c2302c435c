import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { AdamW, GradScaler, LARS, Optimizer, BaseHyper, SGD, clipGradNorm, readNorm, paramGroupsWeightDecay } from '../../src/optim';

/** A tiny model: y = tanh(x·W1 + b1)·W2, loss = mean(y²). */
function model(): Array<[string, torch.Tensor]> {
  torch.manualSeed(0);
  return [
    ['fc1.weight', torch.keep(torch.randn([8, 16]).mul_(0.3).requiresGrad_())],
    ['fc1.bias', torch.keep(torch.zeros([16], { requiresGrad: true }))],
    ['fc2.weight', torch.keep(torch.randn([16, 4]).mul_(0.3).requiresGrad_())],
  ];
}

function train(named: Array<[string, torch.Tensor]>, opt: Optimizer<BaseHyper>, scaler: GradScaler, steps: number): number[] {
  const [w1, b1, w2] = named.map(([, p]) => p);
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    const loss = torch.scope(() => {
      opt.setLr(0.01 * (1 - i / steps));
      opt.zeroGrad();
      const x = torch.randn([32, 8]);
      const y = x.matmul(w1).add(b1).tanh().matmul(w2);
      const l = y.square().mean();
      scaler.scale(l).backward();
      scaler.unscale_(opt);
      const norm = clipGradNorm(opt.parameters(), 1.0);
      scaler.step(opt);
      scaler.update();
      norm.dispose();
      return l.detach();
    });
    if (i % 50 === 0) losses.push(readNorm(loss));
    else loss.dispose();
  }
  return losses;
}

for (const [label, make] of [
  ['AdamW', (n: Array<[string, torch.Tensor]>) => new AdamW(paramGroupsWeightDecay(n, { weightDecay: 0.05 }), { betas: [0.9, 0.95] })],
  ['SGD', (n: Array<[string, torch.Tensor]>) => new SGD(n, { momentum: 0.9, nesterov: true, weightDecay: 1e-4 })],
  ['LARS', (n: Array<[string, torch.Tensor]>) => new LARS(n, { weightDecay: 0.01 })],
] as const) {
  test(`${label}: no tensor leak over 200 steps with clipping and loss scaling`, () => {
    const named = model();
    const opt = make(named);
    const scaler = new GradScaler({ initScale: 1024 });
    train(named, opt, scaler, 2); // state is created lazily on the first step
    const live = torch.memoryStats().liveTensors;
    const losses = train(named, opt, scaler, 200);
    opt.zeroGrad();
    const after = torch.memoryStats().liveTensors;
    assert.equal(after, live, `live tensors ${live} → ${after}`);
    assert.ok(losses.every(Number.isFinite));
    opt.dispose();
    scaler.dispose();
    for (const [, p] of named) p.dispose();
  });
}
