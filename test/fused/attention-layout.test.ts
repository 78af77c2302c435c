// Attention without copies: the encoder's q, k, v are views of the one qkv projection in cuDNN's packed
// QKV layout (the flash and cuDNN kernels read it as it is), and the backend libtorch picks is reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { F } from '../../src/torch';
import { native } from '../../src/torch/native';
import { Attention } from '../../src/semaim/vit';
import { rnd } from '../torch/helpers';

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
    try {
      assert.equal(F.sdpaPriority('math'), 'math');
      assert.equal(F.sdpaBackend(q, q, q, { causal: true }), 'math');
      assert.throws(() => F.sdpaPriority('cudnn,fast'), /unknown backend 'fast'/);
    } finally {
      F.sdpaPriority(before);
    }
  });
});
