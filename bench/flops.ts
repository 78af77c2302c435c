// Model FLOPs of one SemAIM pre-training step, per image, and the measured peak matmul rate they are
// compared with: MFU = FLOPs per image × img/s ÷ peak (issue #8). Counting convention: 2 FLOPs per
// multiply-add, matmuls only (norms, softmax, GELU, the optimiser are left out); causal attention counts
// the half of the score and value products it needs; backward = 2 × forward; plus the no-grad unmasked
// encoder pass of the semantic order (full attention). Every side of the benchmark gets the same count,
// so MFU ratios equal speed ratios, whatever a side computes and throws away (e.g. masked logits).
import * as torch from '../src/torch';

export interface StepShape {
  embedDim: number;
  depth: number;
  decoderDepth: number;
  img: number;
  patch: number;
  mlpRatio?: number;
}

/** Forward FLOPs per image of the pieces of one step. */
export function stepFlopsPerImage(s: StepShape): { encoderCausal: number; encoderFull: number; decoder: number; head: number; total: number } {
  const D = s.embedDim;
  const N = (s.img / s.patch) ** 2;
  const T = N + 1;
  const hidden = (s.mlpRatio ?? 4) * D;
  const patchEmbed = 2 * N * 3 * s.patch * s.patch * D;
  const dense = (tokens: number) => tokens * (2 * D * 3 * D + 2 * D * D + 2 * 2 * D * hidden); // qkv, proj, MLP
  const attention = (q: number, k: number, causal: boolean) => (causal ? 0.5 : 1) * 2 * 2 * q * k * D; // scores + values
  const encoderCausal = patchEmbed + s.depth * (dense(T) + attention(T, T, true));
  const encoderFull = patchEmbed + s.depth * (dense(T) + attention(T, T, false));
  // Decoder block: q and proj on N queries, k and v on the T encoder tokens, causal cross-attention, MLP on N.
  const decoder = s.decoderDepth * (N * 2 * D * D * 2 + T * 2 * D * D * 2 + attention(N, T, true) + N * 2 * 2 * D * hidden);
  const head = N * (2 * D * hidden + 2 * hidden * s.patch * s.patch * 3);
  const trained = encoderCausal + decoder + head;
  return { encoderCausal, encoderFull, decoder, head, total: 3 * trained + encoderFull };
}

/** Best matmul rate (FLOP/s) of n×n × n×n products on the device: bfloat16 on CUDA, float32 on the CPU. */
export function peakMatmulFlops(
  device: torch.Device,
  n = device.startsWith('cuda') ? 8192 : 2048,
  reps = device.startsWith('cuda') ? 20 : 3,
): { flops: number; dtype: string; n: number } {
  const cuda = device.startsWith('cuda');
  const dtype = cuda ? 'bfloat16' : 'float32';
  const sync = () => {
    if (cuda) torch.cuda.synchronize();
  };
  return torch.scope(() => {
    const a = torch.randn([n, n], { dtype, device });
    const b = torch.randn([n, n], { dtype, device });
    for (let i = 0; i < 3; i++) a.matmul(b).dispose();
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      sync();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) a.matmul(b).dispose();
      sync();
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9 / reps);
    }
    return { flops: (2 * n ** 3) / best, dtype, n };
  });
}
