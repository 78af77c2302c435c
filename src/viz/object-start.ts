// Does the semantic order start on the object? For images with object masks: the fraction of
// images whose first predicted patch lies inside the object (a patch counts as inside when at
// least `threshold` of its pixels are object), against a random-centre baseline: the expected
// fraction (mean share of object patches) and an empirical draw of uniformly random first patches.
import { mulberry32 as prng } from '../util/prng';
import * as torch from '../torch';
import { SemAIM, SimilarityTokens, VisionTransformer, needsSimilarity, orderFromConfig } from '../semaim';
import { ORDER_NAMES, OrderName, checkEmaOption, imageBuffer, orderConfigFor, similarityFor } from './maps';
import { defineOptions, jobFields, SEED_RANGE } from '../util/options';

/** The input of {@link objectStartFraction}: images with one object mask each. */
export interface ObjectData {
  /** Normalised images, NCHW float32 at the model's image size. */
  images: Float32Array;
  /** Object masks, N×H×W, nonzero = object. */
  masks: Uint8Array;
}

/**
 * What {@link objectStartFraction} and {@link scoreFirstPatches} return: how often the first predicted patch lies
 * on the object, with the random-centre baseline; fractions are in [0, 1].
 */
export interface ObjectStartScore {
  /** Images scored. */
  n: number;
  /** Images whose first patch is inside the object / n. */
  fraction: number;
  /** Binomial standard error of `fraction`. */
  stdErr: number;
  /** Per image: whether its first patch is inside the object. */
  inside: boolean[];
  /** Per image: the index of its first patch (row-major). */
  firstPatch: number[];
  /** Per image: share of patches that count as object. */
  objectPatchFraction: number[];
  /** Random-centre baseline, expected value: mean of objectPatchFraction. */
  baselineExpected: number;
  /** Random-centre baseline, measured: uniformly random first patches (`draws` per image). */
  baselineEmpirical: number;
  /** Random first patches drawn per image for `baselineEmpirical`. */
  draws: number;
  /** Images whose mask covers no patch (their first patch can never be inside). */
  emptyMasks: number;
}

/** Options of {@link objectStartFraction} and {@link firstPatches}. */
export interface ObjectStartOptions {
  /** Order type to score (default 'semantic', with the model's own order settings when it trained with it). */
  order?: OrderName;
  /** Share of a patch's pixels that must be object for the patch to count as inside (default 0.5). */
  threshold?: number;
  /** Random first patches per image for the empirical baseline (default 100). */
  draws?: number;
  /** Seed of the order's generator and of the baseline's draws (default 0). */
  seed?: number;
  /** Images per forward pass (default 64). */
  batchSize?: number;
  /** EMA encoder, for models whose similarity source is 'ema'. */
  ema?: VisionTransformer | null;
  /** Tokens that give S, overriding the model's order (default: the model's own, [CLS] unless set); a teacher's S takes [CLS] only. */
  tokens?: SimilarityTokens;
}

const OBJECT_START_FIELDS = defineOptions({
  order: { type: 'string', default: 'semantic', choices: ORDER_NAMES, help: 'order type to score' },
  threshold: { type: 'number', default: 0.5, above: 0, max: 1, help: "share (> 0) of a patch's pixels that must be object" },
  draws: { type: 'int', default: 100, min: 0, help: 'random first patches per image' },
  seed: { type: 'int', ...SEED_RANGE, default: 0, help: 'seed of the order and of the draws' },
  batchSize: { type: 'int', default: 64, min: 1, help: 'images per forward pass' },
  tokens: { type: 'string', choices: ['cls', 'gap', 'self'], help: 'tokens that give S' },
});

type CheckedObjectStartOptions = ObjectStartOptions & { order: OrderName; threshold: number; draws: number; seed: number; batchSize: number };

/**
 * The options checked as a job checks its own (an OptionError naming the key), defaults filled in: a batch size
 * of 0 looped forever, and a threshold of 50 (meant as percent) counted no patch as inside, silently.
 */
function objectStartOptions(o: ObjectStartOptions): CheckedObjectStartOptions {
  const j = jobFields(o, OBJECT_START_FIELDS, { ema: true });
  checkEmaOption(j.ema);
  return j;
}

/**
 * Per patch (row-major): does ≥ threshold (0 < threshold ≤ 1) of its pixels belong to the object? mask: H×W at `offset`;
 * a RangeError unless the mask holds those H×W bytes (bytes past its end were read as background).
 */
export function patchesInside(mask: Uint8Array, imgSize: number, patchSize: number, threshold = 0.5, offset = 0): boolean[] {
  if (!(Number.isInteger(imgSize) && Number.isInteger(patchSize) && imgSize > 0 && patchSize > 0 && imgSize % patchSize === 0))
    throw new RangeError(`image size ${imgSize} is not divisible by patch size ${patchSize}`);
  if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`threshold must be a share of a patch's pixels in (0, 1], got ${threshold}`);
  if (!(Number.isInteger(offset) && offset >= 0 && offset + imgSize * imgSize <= mask.length))
    throw new RangeError(`a ${imgSize}×${imgSize} mask at offset ${offset} does not fit in ${mask.length} mask bytes`);
  const g = imgSize / patchSize;
  const out: boolean[] = [];
  for (let pr = 0; pr < g; pr++) {
    for (let pc = 0; pc < g; pc++) {
      let on = 0;
      for (let y = pr * patchSize; y < (pr + 1) * patchSize; y++) {
        for (let x = pc * patchSize; x < (pc + 1) * patchSize; x++) if (mask[offset + y * imgSize + x]) on++;
      }
      // the share compared, not threshold × pixels: 0.07 × 100 rounds to 7.000000000000001, and 7 of 100 pixels fell short
      out.push(on / (patchSize * patchSize) >= threshold);
    }
  }
  return out;
}

/** Scores given first patches against per-image inside-patch flags (the model-free part). */
export function scoreFirstPatches(firstPatch: number[], inside: boolean[][], o: { draws?: number; seed?: number } = {}): ObjectStartScore {
  const n = firstPatch.length;
  if (inside.length !== n) throw new RangeError(`${n} first patches but ${inside.length} masks`);
  if (n === 0) throw new RangeError('no images to score');
  const draws = o.draws ?? 100;
  if (!(Number.isInteger(draws) && draws >= 0)) throw new RangeError(`draws must be an integer >= 0, got ${draws}`);
  const rand = prng(o.seed ?? 0);
  const hit = firstPatch.map((p, i) => {
    // a fractional first patch (1.5) read inside[i][1.5], undefined: outside the object
    if (!(Number.isInteger(p) && p >= 0 && p < inside[i].length)) throw new RangeError(`image ${i}: first patch ${p} is outside 0..${inside[i].length - 1}`);
    return inside[i][p];
  });
  const share = inside.map((m) => m.filter(Boolean).length / m.length);
  let randomHits = 0;
  for (const m of inside) for (let d = 0; d < draws; d++) if (m[Math.floor(rand() * m.length)]) randomHits++;
  const fraction = hit.filter(Boolean).length / n;
  return {
    n,
    fraction,
    stdErr: Math.sqrt((fraction * (1 - fraction)) / n),
    inside: hit,
    firstPatch,
    objectPatchFraction: share,
    baselineExpected: share.reduce((a, b) => a + b, 0) / n,
    baselineEmpirical: draws > 0 ? randomHits / (n * draws) : NaN,
    draws,
    emptyMasks: share.filter((s) => s === 0).length,
  };
}

/** The first patch (argmin of the order values) of the chosen order for every image; a bad option is an OptionError naming it. */
export function firstPatches(model: SemAIM, images: Float32Array, options: ObjectStartOptions = {}): number[] {
  const o = objectStartOptions(options);
  const { C, imgSize, per, total } = imageBuffer(model, images);
  const bs = o.batchSize;
  const oc = orderConfigFor(o.order, model.config);
  const generator = new torch.Generator(o.seed);
  const device = model.cls_token.device;
  const out: number[] = [];
  for (let s = 0; s < total; s += bs) {
    const B = Math.min(bs, total - s);
    torch.noGrad(() =>
      torch.scope(() => {
        const x = torch.tensor(images.subarray(s * per, (s + B) * per), { shape: [B, C, imgSize, imgSize], device });
        const S = needsSimilarity(oc) ? similarityFor(model, x, o.ema, o.tokens) : null;
        const p = orderFromConfig(oc, B, model.grid, S, { generator, device });
        const first = p.argmin(1).cpu().toFloat64Array();
        out.push(...Array.from(first, Number));
      }),
    );
  }
  return out;
}

/** The measurement: a model's order start vs. object masks, with the random-centre baseline; a bad option is an OptionError naming it. */
export function objectStartFraction(model: SemAIM, data: ObjectData, options: ObjectStartOptions = {}): ObjectStartScore {
  const o = objectStartOptions(options);
  const { imgSize, patchSize } = model.config;
  const hw = imgSize * imgSize;
  const n = data.masks.length / hw;
  if (!Number.isInteger(n) || n === 0) throw new RangeError(`masks of ${data.masks.length} bytes are not a whole number of ${imgSize}×${imgSize} masks`);
  const nImages = data.images.length / ((model.config.inChans ?? 3) * hw);
  if (nImages !== n) throw new RangeError(`${nImages} images but ${n} masks`);
  const wasTraining = model.training;
  model.eval();
  try {
    const first = firstPatches(model, data.images, o);
    const inside = Array.from({ length: n }, (_, i) => patchesInside(data.masks, imgSize, patchSize, o.threshold, i * hw));
    return scoreFirstPatches(first, inside, { draws: o.draws, seed: o.seed });
  } finally {
    model.train(wasTraining);
  }
}

/** One Markdown table row: | images | first patch on object | random centre (expected / drawn) |. */
export function formatObjectStart(s: ObjectStartScore, label = 'semantic order'): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  return `| ${label} | ${s.n} | ${pct(s.fraction)} ± ${pct(s.stdErr)} | ${pct(s.baselineExpected)} / ${pct(s.baselineEmpirical)} (${s.draws} draws per image) |`;
}
