// The ablation's report: per-order statistics over seeds (mean ± sample std) and ablation.md's table and text.
import { markdownTable, pct } from '../eval/result';
import { codeFence } from '../util/printable';
import type { AblationResult, AblationRun, DivergedRun } from './ablate';

/** The file a diverged run records itself in (its folder); deleting it trains the run again. */
export const DIVERGED_FILE = 'ablation-diverged.json';

export interface Stat {
  mean: number;
  /** The sample std; NaN (null in the JSON files) for fewer than two values, which have no spread to give. */
  std: number;
  n: number;
}

export interface AblationSummary {
  order: string;
  runs: number;
  /** Its pre-trainings that diverged (not in `runs`). */
  diverged: number;
  /** Per pooling: k-NN top-1 at the headline k and linear-probe top-1/top-5. */
  scores: Record<string, { knnTop1: Stat; linTop1: Stat; linTop5: Stat }>;
  lastLoss: Stat;
  pretrainSeconds: Stat;
  /** With --eval segprobe: the probe's mIoU. */
  segMIoU?: Stat;
}

export function stat(values: number[]): Stat {
  const v = values.filter((x) => Number.isFinite(x));
  const n = v.length;
  if (!n) return { mean: NaN, std: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  // one value's std of 0 read as a measured "no spread at all" in ablation.json (the tables already leave it out)
  const std = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : NaN;
  return { mean, std, n };
}

function fmtStat(s: Stat, asPct = true, digits = 2): string {
  if (!s.n) return '–';
  const f = (x: number) => (asPct ? pct(x, digits) : x.toFixed(digits));
  return s.n > 1 ? `${f(s.mean)} ± ${f(s.std)}` : f(s.mean);
}

export function summarise(runs: AblationRun[], orders: string[], poolings: string[], headlineK: number, diverged: DivergedRun[] = []): AblationSummary[] {
  return orders.map((order) => {
    const rs = runs.filter((r) => r.order === order);
    const scores: AblationSummary['scores'] = {};
    for (const p of poolings) {
      scores[p] = {
        knnTop1: stat(rs.map((r) => r.eval[p]?.knn.find((k) => k.k === headlineK)?.top1 ?? NaN)),
        linTop1: stat(rs.map((r) => r.eval[p]?.linprobe.top1 ?? NaN)),
        linTop5: stat(rs.map((r) => r.eval[p]?.linprobe.top5 ?? NaN)),
      };
    }
    return {
      order,
      runs: rs.length,
      diverged: diverged.filter((d) => d.order === order).length,
      scores,
      lastLoss: stat(rs.map((r) => r.pretrain.lastLoss ?? NaN)),
      pretrainSeconds: stat(rs.map((r) => r.pretrain.seconds ?? NaN)),
      ...(rs.some((r) => r.segprobe) ? { segMIoU: stat(rs.map((r) => r.segprobe?.mIoU ?? NaN)) } : {}),
    };
  });
}

/** Images per pre-training epoch as the runs had them (' of 5000 images'), else the limit asked for. */
function pretrainImagesText(r: Omit<AblationResult, 'markdown'>): string {
  const used = r.runs.find((x) => x.pretrain.imagesPerEpoch)?.pretrain.imagesPerEpoch;
  if (used) return ` of ${used} images`;
  return r.recipe.pretrainLimit ? ` of at most ${r.recipe.pretrainLimit} images` : '';
}

/** The evaluation sets as the runs used them ('5000 train / 1000 test images'), else the limits asked for. */
function evalImagesText(r: Omit<AblationResult, 'markdown'>): string {
  const used = r.runs.find((x) => x.evalImages)?.evalImages;
  if (used) return `, ${used.train} train / ${used.test} test images`;
  const train = r.options.trainLimit ?? r.recipe.trainLimit;
  const test = r.options.testLimit ?? r.recipe.testLimit;
  const limits = [...(train ? [`at most ${train} train`] : []), ...(test ? [`at most ${test} test`] : [])];
  return limits.length ? `, ${limits.join(' / ')} images` : '';
}

/**
 * The batch the linear probe trained with: its batch, or all the training features when they are fewer
 * (linprobeOnFeatures takes one batch of them per epoch, the lr scaled to it), as the runs had them.
 */
function probeBatchText(r: Omit<AblationResult, 'markdown'>): string {
  const asked = r.recipe.linprobe.batchSize;
  const train = r.runs.find((x) => x.evalImages)?.evalImages?.train;
  return train !== undefined && train < asked ? `${train} (every training feature, fewer than ${asked})` : String(asked);
}

export function ablationMarkdown(r: Omit<AblationResult, 'markdown'>): string {
  const poolings = r.recipe.poolings;
  const name = (p: string) => (p === 'cls' ? '[CLS]' : 'mean');
  const header = [
    'order',
    'runs',
    ...poolings.map((p) => `k-NN top-1 % (k=${r.headlineK}, ${name(p)})`),
    ...poolings.map((p) => `linear top-1 % (${name(p)})`),
    ...(r.segprobe ? ['seg mIoU %'] : []),
    'final pre-train loss',
    'pre-train min',
  ];
  const rows = r.summary.map((s) => [
    s.order,
    s.diverged ? `${s.runs} (${s.diverged} diverged)` : String(s.runs),
    ...poolings.map((p) => fmtStat(s.scores[p].knnTop1)),
    ...poolings.map((p) => fmtStat(s.scores[p].linTop1)),
    ...(r.segprobe ? [s.segMIoU ? fmtStat(s.segMIoU) : '–'] : []),
    fmtStat(s.lastLoss, false, 4),
    fmtStat({ ...s.pretrainSeconds, mean: s.pretrainSeconds.mean / 60, std: s.pretrainSeconds.std / 60 }, false, 1),
  ]);
  const po = r.pretrainOptions;
  const lp = r.recipe.linprobe;
  const lines = [
    `# Order ablation (${r.budget} budget)`,
    '',
    ...(r.command ? [codeFence(r.command), r.command, codeFence(r.command), ''] : []),
    markdownTable(header, rows, ['l', 'r', ...header.slice(2).map(() => 'r' as const)]),
    `Pre-training (identical for every order; seeds ${r.options.seed}..${Number(r.options.seed) + Number(r.options.seeds) - 1}): ViT ${po.embedDim}×${po.depth} (${po.numHeads} heads), ` +
      `patch ${po.patchSize} at ${po.imgSize}², decoder ${po.decoderDepth}, ${po.epochs} epochs` +
      pretrainImagesText(r) +
      `${po.maxSteps ? ` (at most ${po.maxSteps} steps)` : ''}, ` +
      `batch ${po.batchSize}, blr ${po.blr}, warm-up ${po.warmupEpochs}, pixel targets (norm-pix ${po.normPix}, blur ${po.blur}), ` +
      `weight decay ${po.weightDecay}${po.decayClsToken ? ' (cls_token too)' : ' (not on cls_token)'}, ${po.precision}, device ${po.device}` +
      (r.plan ? `; length planned for --budget-minutes ${r.plan.inputs.budgetMinutes}: ${r.plan.steps} steps per run` : '') +
      '.',
    `Evaluation on ${r.options.dataset}: features of the final encoder (unmasked, eval mode); k-NN: DINO weighted vote, T = 0.07; ` +
      `linear probe: BatchNorm (no affine) + Linear, ${(lp.optimizer ?? 'sgd').toUpperCase()} momentum ${lp.momentum}, batch ${probeBatchText(r)}, blr ${lp.blr}, ${lp.epochs} epochs on cached features` +
      evalImagesText(r) +
      '.',
    ...(r.segprobe ? [`seg mIoU: ${r.segprobe}.`] : []),
    `Wall time of this call ${(r.seconds / 60).toFixed(1)} min; pre-training and evaluation summed over the runs ` +
      `${(r.runs.reduce((t, x) => t + (Number.isFinite(x.pretrain.seconds ?? NaN) ? x.pretrain.seconds! : 0) + x.evalSeconds, 0) / 60).toFixed(1)} min. ` +
      'Mean ± sample std over seeds where runs > 1.',
    ...(r.diverged.length
      ? [
          '',
          `**Diverged (NaN/Inf loss), not evaluated: ${r.diverged.map((d) => `${d.order} seed ${d.seed} (by step ${d.step})`).join(', ')}. ` +
            `Runs are deterministic, so the same command diverges again; lower --blr${r.options.precision !== 'fp32' ? ' or use --precision fp32' : ''} in a new --out-dir ` +
            `(or delete a run's ${DIVERGED_FILE} to train it again).**`,
        ]
      : []),
    ...(r.complete
      ? []
      : [
          '',
          `**Partial: ${r.runs.length} of ${r.planned} runs done` +
            (r.runs.length + r.diverged.length < r.planned ? '; run the same command again to continue' : '') +
            '.**',
        ]),
    '',
  ];
  return lines.join('\n');
}
