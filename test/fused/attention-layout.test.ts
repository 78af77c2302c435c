// Attention without copies: the encoder's q, k, v are views of the one qkv projection in cuDNN's packed
// QKV layout (the flash and cuDNN kernels read it as it is), and the backend libtorch picks is reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { F } from '../../src/torch';
import { native } from '../../src/torch/native';
import { Attention } from '../../src/semaim/vit';
import { rnd } from '../torch/helpers';
import { parseProfile } from '../../bench/kernel-profile';

test("the encoder attention's q, k, v are views of one qkv projection in the packed [B, T, 3, H, hd] layout", () => {
  torch.scope(() => {
    const [B, T, D, H] = [2, 5, 24, 3];
    const hd = D / H;
    const attn = new Attention(D, H);
    const x = rnd([B, T, D], { dtype: 'float32' });
    const [q, k, v] = attn.heads(x);
    for (const [name, t] of [
      ['q', q],
      ['k', k],
      ['v', v],
    ] as const) {
      assert.deepEqual(t.shape, [B, H, T, hd], name);
      assert.deepEqual(t.strides, [T * 3 * D, hd, 3 * D, 1], `${name}: cuDNN's packed QKV strides`);
    }
    const storage = (t: torch.Tensor): number => native.storageId(t.h);
    assert.equal(storage(q), storage(k));
    assert.equal(storage(k), storage(v));
    // The views give what the copies would.
    const qkv = attn.qkv.forward(x).view(B, T, 3, H, hd);
    assert.equal(k.sub(qkv.select(2, 1).transpose(1, 2).contiguous()).abs().max().item(), 0);
    attn.dispose();
  });
});

test("the backward of the encoder's q, k, v views assembles qkv's gradient with one copy, not two", () => {
  // Counts the copies libtorch makes in the backward (its profiler's aten::clone/cat calls). The three
  // gradients come back [B, H, T, hd]; split along the packed dimension, they are stacked straight into
  // qkv's [B, T, 3, H, hd] output (one cat); split after a permute, the cat was followed by a clone (the
  // reshape back to the Linear's output).
  const copiesInBackward = (run: () => torch.Tensor): number =>
    torch.scope(() => {
      const loss = run();
      native.profilerStart(false);
      let text: string;
      try {
        loss.backward();
      } finally {
        text = native.profilerStop();
      }
      return parseProfile(text, 1)
        .filter((r) => ['aten::clone', 'aten::cat', 'aten::contiguous'].includes(r.name))
        .reduce((n, r) => n + r.perStep, 0);
    });
  torch.scope(() => {
    const [B, T, D, H] = [2, 5, 24, 3];
    const attn = new Attention(D, H);
    const x = rnd([B, T, D], { dtype: 'float32' });
    const g = [0, 1, 2].map((i) => rnd([B, H, T, D / H], { dtype: 'float32', seed: 10 + i }));
    const linearAlone = copiesInBackward(() => attn.qkv.forward(x.detach().requiresGrad_()).mul(1.5).sum());
    const heads = copiesInBackward(() => {
      const [q, k, v] = attn.heads(x.detach().requiresGrad_());
      return q.mul(g[0]).add(k.mul(g[1])).add(v.mul(g[2])).sum();
    });
    assert.equal(heads - linearAlone, 1, `copies in the backward: ${heads} with the heads, ${linearAlone} for the Linear alone`);
    attn.dispose();
  });
});

test('the attention backend libtorch picks is reported; choosing one needs libtorch 2.6', () => {
  torch.scope(() => {
    const q = rnd([1, 2, 4, 8], { dtype: 'float32' });
    const choice = F.sdpaBackend(q, q, q, { causal: true });
    assert.ok(['flash', 'efficient', 'cudnn', 'math', 'semaim-math'].includes(choice), choice);
    const { major, minor } = torch.version();
    if (major < 2 || (major === 2 && minor < 6)) {
      assert.equal(F.sdpaPriority(), '');
      assert.throws(() => F.sdpaPriority('cudnn,flash'), /needs libtorch >= 2.6/);
      return;
    }
    const before = F.sdpaPriority();
    // each backend once (2.6's default order read 'flash,efficient,math,cudnn,math'), so that it can be set back
    assert.equal(new Set(before.split(',')).size, before.split(',').length, before);
    try {
      assert.equal(F.sdpaPriority('math'), 'math');
      assert.equal(F.sdpaBackend(q, q, q, { causal: true }), 'math');
      assert.throws(() => F.sdpaPriority('cudnn,fast'), /unknown backend 'fast'/);
      // a repeated name made the list longer than libtorch's array of 5 backends, which it wrote past
      assert.throws(() => F.sdpaPriority('flash,math,flash'), /backend 'flash' is listed twice/);
      assert.equal(F.sdpaPriority(), 'math');
    } finally {
      F.sdpaPriority(before);
    }
  });
});
