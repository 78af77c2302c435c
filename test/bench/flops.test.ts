// The benchmark's FLOP count (bench/flops.ts), checked against published and hand-derived numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stepFlopsPerImage } from '../../bench/flops';

test('flops: the unmasked ViT-B/16 and ViT-L/16 encoders match timm/fvcore counts (17.6 / 61.6 GMACs at 224²)', () => {
  const b = stepFlopsPerImage({ embedDim: 768, depth: 12, decoderDepth: 12, img: 224, patch: 16 });
  const l = stepFlopsPerImage({ embedDim: 1024, depth: 24, decoderDepth: 12, img: 224, patch: 16 });
  // fvcore counts one multiply-add as one FLOP; here 2. Their counts leave out the classifier head.
  assert.ok(Math.abs(b.encoderFull / 2 / 17.56e9 - 1) < 0.01, `ViT-B/16 ${b.encoderFull / 2e9} GMACs`);
  assert.ok(Math.abs(l.encoderFull / 2 / 61.6e9 - 1) < 0.01, `ViT-L/16 ${l.encoderFull / 2e9} GMACs`);
});

test('flops: a step is 3 × the trained forward plus one unmasked encoder pass; causal attention costs less', () => {
  const s = stepFlopsPerImage({ embedDim: 64, depth: 2, decoderDepth: 1, img: 16, patch: 4 });
  assert.equal(s.total, 3 * (s.encoderCausal + s.decoder + s.head) + s.encoderFull);
  assert.ok(s.encoderCausal < s.encoderFull);
  // By hand: N = 16, T = 17, D = 64; per block dense 17·(2·64·192 + 2·64·64 + 4·64·256) = 1,671,168 and
  // attention (full) 4·17·17·64 = 73,984; patch embedding 2·16·48·64 = 98,304.
  assert.equal(s.encoderFull, 98304 + 2 * (1671168 + 73984));
});
