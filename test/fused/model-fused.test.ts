// SemAIM with every fused path on equals SemAIM without: the similarity pass, the order, the loss and every
// parameter's gradient. On the CPU (setFused's onCpu) the fused functions run their libtorch arithmetic,
// which checks the model's wiring of the fused ops (blocks, decoder, MLPs, final norm, targets) and their
// backward; on a GPU the same test compares the kernels. Also: the phase marks the model emits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { fused } from '../../src/torch';
import { SemAIM, makeConfig } from '../../src/semaim';
import { setPhaseProbe, type Phase } from '../../src/semaim/phases';
import { rnd } from '../torch/helpers';
import { native } from '../../src/torch/native';

function tinyModel(dtype: torch.DType): SemAIM {
  torch.manualSeed(3);
  const cfg = makeConfig('vit_tiny', {
    imgSize: 32,
    patchSize: 8,
    embedDim: 48,
    depth: 3,
    numHeads: 3,
    decoderDepth: 2,
    target: { type: 'pixels', normPix: true, blur: true, blurKernel: 9, blurSigma: 1 },
    order: { type: 'semantic', source: 'online', filter: true, lambda: 0.01 },
  });
  const model = new SemAIM(cfg).initWeights();
  // LayerNorms and biases away from their 1 / 0 init, so that swapping one for another shows.
  torch.noGrad(() => {
    let seed = 100;
    for (const [name, p] of model.namedParameters()) {
      if (/norm\d?\.(weight|bias)$|\.bias$/.test(name)) p.copy_(rnd(p.shape, { dtype: 'float32', lo: 0.5, hi: 1.5, seed: seed++ }));
    }
  });
  return model.to({ dtype });
}

function step(model: SemAIM, images: torch.Tensor, noise: torch.Tensor): { order: number[]; loss: number; grads: Map<string, torch.Tensor> } {
  model.zeroGrad();
  return torch.scope(() => {
    const { order } = model.makeOrder(images, { noise });
    const out = model.forward(images, order);
    out.loss.backward();
    const grads = new Map([...model.namedParameters()].map(([k, p]) => [k, torch.keep(p.grad!.clone())]));
    return { order: Array.from(order.toFloat64Array()), loss: out.loss.item(), grads };
  });
}

test('SemAIM with every fused path (LayerNorm, GELU and q/k/v backward, targets, patch embedding) equals the unfused model (float64 and float32)', () => {
  for (const [dtype, tol] of [
    ['float64', 1e-10],
    ['float32', 2e-4],
  ] as const) {
    torch.scope(() => {
      const model = tinyModel(dtype);
      const images = rnd([2, 3, 32, 32], { dtype, lo: -2, hi: 2 });
      const noise = rnd([2, 16], { dtype, lo: 0, hi: 1, seed: 5 });
      const plain = step(model, images, noise);
      fused.setFused('all', { onCpu: true });
      let fast: ReturnType<typeof step>;
      try {
        fast = step(model, images, noise);
      } finally {
        fused.setFused('none');
      }
      assert.deepEqual(
        fast.order.map((v) => v.toFixed(6)),
        plain.order.map((v) => v.toFixed(6)),
        `${dtype} order`,
      );
      assert.ok(Math.abs(fast.loss - plain.loss) <= tol * Math.abs(plain.loss), `${dtype} loss ${fast.loss} vs ${plain.loss}`);
      // A key bias's gradient is zero up to rounding (softmax ignores a shift shared by all keys), so two
      // correct evaluations differ in it by their rounding alone (on the H200: 1.8e-6 of a ~1e-17 gradient in
      // float64, 1e-2 relative in float32). It is checked to be that small against the largest gradient (here
      // ~1e-17 and ~1e-9 of it); every other gradient is compared relative to its own size.
      const largest = Math.max(...[...plain.grads.values()].map((g) => g.abs().max().item()));
      for (const [name, g] of plain.grads) {
        const f = fast.grads.get(name)!;
        if (/\.attn\.k\.bias$/.test(name)) {
          for (const grad of [g, f]) assert.ok(grad.abs().max().item() <= 10 * tol * largest, `${dtype} grad ${name} is not ~0: ${grad.abs().max().item()}`);
          continue;
        }
        const rel = f.sub(g).abs().max().item() / Math.max(g.abs().max().item(), 1e-12);
        assert.ok(rel <= 10 * tol, `${dtype} grad ${name}: relative difference ${rel}`);
      }
      for (const m of [plain.grads, fast.grads]) for (const g of m.values()) g.dispose();
      model.dispose();
    });
  }
});

test('the model marks its phases in order: similarity pass, order, targets, then encoder and decoder blocks, head, loss', () => {
  torch.scope(() => {
    const model = tinyModel('float32');
    const images = rnd([1, 3, 32, 32], { dtype: 'float32' });
    const marks: Phase[] = [];
    setPhaseProbe({ mark: (p) => marks.push(p) });
    try {
      const { order } = model.makeOrder(images, { noise: rnd([1, 16], { dtype: 'float32', lo: 0, hi: 1 }) });
      model.forward(images, order);
    } finally {
      setPhaseProbe(null);
    }
    // depth 3, decoder depth 2: decoder taps after encoder blocks 1 and 3. A decoder block runs once the
    // stream it reads is summed: by the next encoder block's first norm, or after the last block.
    assert.deepEqual(marks, ['similarity', 'order', 'targets', 'encoder', 'encoder', 'encoder', 'decoder', 'encoder', 'decoder', 'head', 'loss']);
    assert.deepEqual(model.taps, [1, 3]);
    model.dispose();
  });
});

test('the fused step does every residual add in a norm: all but the first norm of each stream sum base + branch in one call', () => {
  const n = native as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved = n.fusedLayerNorm;
  let withResidual = 0;
  let without = 0;
  n.fusedLayerNorm = function (this: unknown, ...args: unknown[]) {
    if (args[1]) withResidual++;
    else without++;
    return saved.apply(this, args);
  };
  fused.setFused(['layernorm'], { onCpu: true });
  try {
    torch.scope(() => {
      const model = tinyModel('float32');
      const images = rnd([1, 3, 32, 32], { dtype: 'float32' });
      withResidual = without = 0;
      const { order } = model.makeOrder(images, { noise: rnd([1, 16], { dtype: 'float32', lo: 0, hi: 1 }) });
      // the similarity pass (unmasked encoder, depth 3): norm1 of blocks 2-3 and every norm2 sum the stream
      assert.deepEqual([withResidual, without], [2 + 3, 1]);
      withResidual = without = 0;
      model.forward(images, order).loss.backward();
      // depth 3, decoder depth 2. Encoder: norm1 of blocks 2-3 and norm2 of each block; decoder: norm1 of
      // query block 2 and norm2 of each; the head's norm. Without a residual: the first norm1 of each stream
      // and the decoder's norm of the encoder stream it reads (once per query block).
      assert.equal(withResidual, 2 + 3 + 1 + 2 + 1);
      assert.equal(without, 1 + 1 + 2);
      model.dispose();
    });
  } finally {
    fused.setFused('none');
    n.fusedLayerNorm = saved;
  }
});

// The kinds whose op gives a Linear's bias its gradient: one call per Linear they serve, and that bias
// still gets a gradient (the Linear adds it detached).
for (const [kind, op, perPass, bias] of [
  ['gelu', 'fusedGeluAfterBias', { similarity: 0, step: 3 + 2 + 1 }, /mlp\.fc1\.bias$/],
  ['qkv', 'fusedQkvHeads', { similarity: 0, step: 3 }, /attn\.qkv\.bias$/],
] as const) {
  test(`with the ${kind} kind, ${op} runs once per Linear it serves where there is a backward, and that Linear's bias gets its gradient`, () => {
    const n = native as unknown as Record<string, (...a: unknown[]) => unknown>;
    const saved = n[op];
    let calls = 0;
    n[op] = function (this: unknown, ...args: unknown[]) {
      calls++;
      return saved.apply(this, args);
    };
    fused.setFused([kind], { onCpu: true });
    try {
      torch.scope(() => {
        const model = tinyModel('float32');
        const images = rnd([1, 3, 32, 32], { dtype: 'float32' });
        const { order } = model.makeOrder(images, { noise: rnd([1, 16], { dtype: 'float32', lo: 0, hi: 1 }) });
        // depth 3, decoder depth 2; gelu: every MLP (encoder and decoder blocks, the prediction head); qkv: encoder
        // blocks; none in the similarity pass, which has no backward
        assert.equal(calls, perPass.similarity, 'the similarity pass');
        calls = 0;
        model.forward(images, order).loss.backward();
        assert.equal(calls, perPass.step, 'the step');
        let served = 0;
        for (const [name, p] of model.namedParameters()) {
          if (!bias.test(name)) continue;
          served++;
          assert.ok(p.grad && p.grad.abs().max().item() > 0, `${name} has a gradient`);
        }
        assert.ok(served > 0);
        model.dispose();
      });
    } finally {
      fused.setFused('none');
      n[op] = saved;
    }
  });
}
