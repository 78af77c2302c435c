// Issue 19's target for the pre-training benchmark (bench/pretrain.ts): ViT-B/16 at batch 256 at least
// 3.0× the authors'-style reference's img/s (milestone 2.6×) within 37.8 GiB of peak GPU memory (what
// `torch.compile` needs for the same step, docs/METHOD.md). Both conditions make the verdict.

export const ISSUE19 = { ratio: 3.0, milestone: 2.6, peakGpuGiB: 37.8 };

/** 'met', 'milestone met' or 'NOT met' for a speed ratio against the authors' reference and a side's peak GPU memory (unknown memory: not met). */
export function issue19Verdict(ratio: number, peakGpuBytes: number | undefined): string {
  const memoryOk = peakGpuBytes !== undefined && peakGpuBytes <= ISSUE19.peakGpuGiB * 2 ** 30;
  const speed = ratio >= ISSUE19.ratio ? 'met' : ratio >= ISSUE19.milestone ? 'milestone met' : 'NOT met';
  if (speed === 'NOT met' || memoryOk) return speed;
  return `NOT met: ${speed === 'met' ? 'the speed' : 'the milestone speed'} within ${peakGpuBytes === undefined ? 'an unknown' : 'more than the'} ${ISSUE19.peakGpuGiB} GiB of GPU memory`;
}
