// Prediction orders. Each image gets order values p [B, N] (smaller = predicted earlier), computed
// in batch on the tensors' device.
import * as torch from '../torch';
import { F, Tensor, isFloating } from '../torch';
import { ConfigError, type OrderConfig } from './config';

/** The patch grid of an image: gridH rows × gridW columns, N = gridH·gridW patches in row-major order. */
export interface Grid {
  gridH: number;
  gridW: number;
}

/** Where an order's U(0,1) noise comes from: `noise` when given, else drawn from `generator` (or the global RNG). */
export interface NoiseOptions {
  /** U(0,1) noise [B, N]; drawn from `generator` (or the global RNG) when absent. */
  noise?: Tensor;
  generator?: torch.Generator;
}

/** Throws unless `g` is a grid of positive integer sizes (`fn` names the caller). */
function checkGrid(fn: string, g: Grid): void {
  if (g === null || typeof g !== 'object') throw new RangeError(`${fn}: the grid must be an object { gridH, gridW }, got ${String(g)}`);
  for (const k of ['gridH', 'gridW'] as const) {
    if (!(Number.isInteger(g[k]) && g[k] > 0)) throw new RangeError(`${fn}: grid.${k} must be a positive integer, got ${String(g[k])}`);
  }
}

/** Throws unless `B` is a batch size and `g` a grid of positive integer sizes (`fn` names the caller). */
function checkBatchAndGrid(fn: string, B: number, g: Grid): void {
  if (!(Number.isInteger(B) && B >= 0)) throw new RangeError(`${fn}: the batch size B must be an integer >= 0, got ${String(B)}`);
  checkGrid(fn, g);
}

/** A tensor's dtype and shape as messages name them: `int64 [1, 9]`. */
function described(t: Tensor): string {
  return `${t.dtype} [${t.shape.join(', ')}]`;
}

/**
 * Throws a TypeError naming `fn` and `what` unless `t` is floating-point: similarity scores and U(0,1)
 * noise are fractions, and an integer tensor of them silently gave integer orders (noise all 0, λ·noise
 * no tie-break). Reads metadata only.
 */
function checkFloating(fn: string, what: string, t: Tensor): void {
  if (!isFloating(t.dtype)) throw new TypeError(`${fn}: ${what} must be a floating-point tensor, got ${described(t)}`);
}

/** Throws unless the similarity map S is a floating-point tensor [B, gridH·gridW] (of `B` rows when given). */
function checkSimilarity(fn: string, S: Tensor, g: Grid, B?: number): void {
  checkGrid(fn, g);
  const N = g.gridH * g.gridW;
  const rows = B ?? 'B';
  if (!(S instanceof Tensor)) throw new RangeError(`${fn}: the similarity map S must be a tensor [${rows}, ${N}], got ${String(S)}`);
  const s = S.shape;
  if (s.length !== 2 || s[1] !== N || (B !== undefined && s[0] !== B))
    throw new RangeError(`${fn}: the similarity map S must be [${rows}, ${N}] for a ${g.gridH}×${g.gridW} grid, got [${s.join(', ')}]`);
  checkFloating(fn, 'the similarity map S', S);
}

/**
 * Throws (a RangeError naming `fn`) unless `o.noise`, when given, is a tensor [B, N] and `o.generator`, when given, a
 * torch.Generator; a TypeError when the noise is not floating-point (U(0,1) noise in an integer tensor is all 0).
 */
export function checkNoiseOptions(fn: string, o: NoiseOptions, B: number, N: number): void {
  if (o.noise !== undefined) {
    const s = o.noise instanceof Tensor ? o.noise.shape : null;
    if (!s || s.length !== 2 || s[0] !== B || s[1] !== N)
      throw new RangeError(`${fn}: noise must be a tensor [${B}, ${N}] (batch × patches), got ${s ? `[${s.join(', ')}]` : String(o.noise)}`);
    checkFloating(fn, 'noise', o.noise);
  }
  if (o.generator !== undefined && !(o.generator instanceof torch.Generator))
    throw new RangeError(`${fn}: generator must be a torch.Generator, got ${String(o.generator)}`);
}

function coords(g: Grid, device: torch.Device, dtype: torch.DType = 'float32'): { rows: Tensor; cols: Tensor } {
  const N = g.gridH * g.gridW;
  const idx = torch.arange(0, N, 1, { dtype, device });
  return { rows: idx.div(g.gridW).floor(), cols: idx.remainder(g.gridW) };
}

function noiseLike(B: number, N: number, device: torch.Device, o: NoiseOptions): Tensor {
  return o.noise ?? torch.rand([B, N], { device, generator: o.generator });
}

/** Row-major index (iGPT; the authors' code calls it `zigzag`). */
export function rasterOrder(B: number, g: Grid, device: torch.Device = 'cpu'): Tensor {
  checkBatchAndGrid('rasterOrder', B, g);
  const N = g.gridH * g.gridW;
  return torch.scope(() => torch.arange(0, N, 1, { dtype: 'float32', device }).unsqueeze(0).expand(B, N).contiguous());
}

/** Boustrophedon rows: even rows left→right, odd rows right→left (the authors' `raster`). */
export function snakeOrder(B: number, g: Grid, device: torch.Device = 'cpu'): Tensor {
  checkBatchAndGrid('snakeOrder', B, g);
  return torch.scope(() => {
    const { rows, cols } = coords(g, device);
    const odd = rows.remainder(2).eq(1);
    const col = torch.where(odd, cols.rsub(g.gridW - 1), cols);
    return rows
      .mul(g.gridW)
      .add(col)
      .unsqueeze(0)
      .expand(B, g.gridH * g.gridW)
      .contiguous();
  });
}

/** U(0,1) per patch, fresh every call (SAIM). */
export function stochasticOrder(B: number, g: Grid, o: NoiseOptions & { device?: torch.Device } = {}): Tensor {
  checkBatchAndGrid('stochasticOrder', B, g);
  checkNoiseOptions('stochasticOrder', o, B, g.gridH * g.gridW);
  return noiseLike(B, g.gridH * g.gridW, o.device ?? 'cpu', o).clone();
}

/** float16/bfloat16 values as float32 (a new tensor); float32 and float64 as they are (the same tensor). */
export function atLeastFloat32(t: Tensor): Tensor {
  return t.dtype === 'float16' || t.dtype === 'bfloat16' ? t.float() : t;
}

/**
 * Similarity map [B, N] from encoder tokens [B, 1+N, D] (after the final norm): 'softmax' =
 * softmax over patches of cos(z_cls, z_i) (online / EMA source); 'minmax' = the cosine min-max
 * normalised to [0, 1] per image (teacher source). `reference` 'gap' compares the patches with their
 * mean (the authors' `attention_type gap`) instead of [CLS].
 */
export function similarityMap(tokens: Tensor, mode: 'softmax' | 'minmax' = 'softmax', reference: 'cls' | 'gap' = 'cls'): Tensor {
  if (mode !== 'softmax' && mode !== 'minmax') throw new RangeError(`similarityMap: mode must be 'softmax' or 'minmax', got ${String(mode)}`);
  if (reference !== 'cls' && reference !== 'gap') throw new RangeError(`similarityMap: reference must be 'cls' or 'gap', got ${String(reference)}`);
  if (!(tokens instanceof Tensor) || tokens.shape.length !== 3 || tokens.shape[1] < 2)
    throw new RangeError(
      `similarityMap: tokens must be a tensor [B, 1 + N, D], got ${tokens instanceof Tensor ? `[${tokens.shape.join(', ')}]` : String(tokens)}`,
    );
  checkFloating('similarityMap', 'tokens', tokens);
  return torch.scope(() => {
    const N = tokens.shape[1] - 1;
    const x = atLeastFloat32(tokens); // features from a bf16/fp16 encoder pass: the map itself in float32
    const patches = F.normalize(x.narrow(1, 1, N), 2, -1);
    const ref = reference === 'gap' ? F.normalize(x.narrow(1, 1, N).mean(1, true), 2, -1) : F.normalize(x.narrow(1, 0, 1), 2, -1);
    const cos = patches.mul(ref).sum(-1);
    if (mode === 'softmax') return cos.softmax(1);
    const lo = cos.amin(1, true);
    const hi = cos.amax(1, true);
    return cos.sub(lo).div(hi.sub(lo).clamp(1e-12));
  });
}

/** Paper Table 1's "similarity" order: p = 1 − S (S a floating-point tensor [B, N]; p in float32 at least). */
export function similarityOrder(S: Tensor): Tensor {
  if (!(S instanceof Tensor) || S.shape.length !== 2)
    throw new RangeError(`similarityOrder: the similarity map S must be a tensor [B, N], got ${S instanceof Tensor ? `[${S.shape.join(', ')}]` : String(S)}`);
  checkFloating('similarityOrder', 'the similarity map S', S);
  // in float32 at least: near 1 bf16 steps by 2⁻⁸, which tied softmax values of ~1/N that S itself tells apart
  return torch.scope(() => atLeastFloat32(S).rsub(1));
}

/** 3×3 mean filter over the patch grid (border windows average only the patches inside); S is a floating-point tensor [B, gridH·gridW]. */
export function meanFilter3x3(S: Tensor, g: Grid): Tensor {
  // a map [B, H, W] was filtered as if it were [B, H·W] (the same numbers reshape to both)
  checkSimilarity('meanFilter3x3', S, g);
  return torch.scope(() => {
    const B = S.shape[0];
    const m = F.avgPool2d(S.reshape(B, 1, g.gridH, g.gridW), 3, { stride: 1, padding: 1, countIncludePad: false });
    return m.reshape(B, g.gridH * g.gridW);
  });
}

/** Euclidean distance of every patch to each centre index: centres [B, K] -> [B, K, N]. */
function distances(centres: Tensor, g: Grid, dtype: torch.DType): Tensor {
  return torch.scope(() => {
    const { rows, cols } = coords(g, centres.device, dtype);
    const c = centres.to({ dtype });
    const cy = c.div(g.gridW).floor().unsqueeze(-1);
    const cx = c.remainder(g.gridW).unsqueeze(-1);
    return cy.sub(rows).square().add(cx.sub(cols).square()).sqrt();
  });
}

/** Options of {@link semanticOrder}: the 3×3 filter, λ and the noise source. */
export interface SemanticOptions extends NoiseOptions {
  /** Paper: 3×3 mean filter before the argmax (true); the authors' code: none. */
  filter: boolean;
  /** Noise scale: paper 0.01, authors' code 1e-3. */
  lambda: number;
}

/** Throws unless the options of the semantic or multicenter order are there and in range (`fn` names the caller). */
function checkSemanticOptions(fn: string, o: SemanticOptions): void {
  if (o === null || typeof o !== 'object') throw new RangeError(`${fn}: options { filter, lambda } are required, got ${String(o)}`);
  if (typeof o.filter !== 'boolean') throw new RangeError(`${fn}: filter must be true or false, got ${String(o.filter)}`);
  // the bounds of the config's order.lambda
  if (!(typeof o.lambda === 'number' && o.lambda >= 0 && o.lambda <= 1e6)) throw new RangeError(`${fn}: lambda must be in [0, 1e6], got ${String(o.lambda)}`);
}

/**
 * SemAIM's semantic order: distance to the semantic centre (argmax of the optionally filtered
 * similarity map) plus λ·U(0,1), which only reorders patches within one distance ring.
 */
export function semanticOrder(S: Tensor, g: Grid, o: SemanticOptions): { order: Tensor; center: Tensor } {
  checkSemanticOptions('semanticOrder', o);
  checkSimilarity('semanticOrder', S, g);
  checkNoiseOptions('semanticOrder', o, S.shape[0], S.shape[1]);
  return torch.scope(() => {
    const [B, N] = S.shape;
    const s = atLeastFloat32(S); // bf16 holds integers only to 256: patch coordinates and distances need float32
    const map = o.filter ? meanFilter3x3(s, g) : s;
    const center = map.argmax(1);
    const d = distances(center.unsqueeze(1), g, s.dtype).squeeze(1);
    const order = d.add(noiseLike(B, N, S.device, o).mul(o.lambda));
    return { order, center };
  });
}

/** Options of {@link multicenterOrder}: those of the semantic order plus how centres are picked (docs/METHOD.md §3.4). */
export interface MulticenterOptions extends SemanticOptions {
  /** At most k centres per image. */
  k: number;
  /** A peak counts only if its height is at least this fraction of the image's highest peak (which always counts). */
  minRelHeight: number;
  /** Centres closer than this (in patches) to a higher centre that is still kept are dropped (a dropped centre suppresses none). */
  minDistance: number;
}

/**
 * Beyond the paper: up to k semantic centres from local maxima (3×3 non-maximum suppression) of
 * the (filtered) similarity map; p = distance to the nearest centre + λ·U(0,1).
 */
export function multicenterOrder(S: Tensor, g: Grid, o: MulticenterOptions): { order: Tensor; centers: Tensor; valid: Tensor } {
  checkSemanticOptions('multicenterOrder', o);
  if (!(Number.isInteger(o.k) && o.k > 0)) throw new RangeError(`multicenterOrder: k must be a positive integer, got ${String(o.k)}`);
  if (!(typeof o.minRelHeight === 'number' && o.minRelHeight >= 0 && o.minRelHeight <= 1))
    throw new RangeError(`multicenterOrder: minRelHeight must be in [0, 1], got ${String(o.minRelHeight)}`);
  if (!(typeof o.minDistance === 'number' && o.minDistance >= 0 && Number.isFinite(o.minDistance)))
    throw new RangeError(`multicenterOrder: minDistance must be a finite number >= 0, got ${String(o.minDistance)}`);
  checkSimilarity('multicenterOrder', S, g);
  checkNoiseOptions('multicenterOrder', o, S.shape[0], S.shape[1]);
  return torch.scope(() => {
    const [B, N] = S.shape;
    const s = atLeastFloat32(S); // as semanticOrder: coordinates and distances in float32 at least
    const map = o.filter ? meanFilter3x3(s, g) : s;
    const pooled = F.maxPool2d(map.reshape(B, 1, g.gridH, g.gridW), 3, { stride: 1, padding: 1 }).reshape(B, N);
    const isPeak = map.ge(pooled);
    const k = Math.min(o.k, N);
    const [heights, centers] = map.maskedFill(isPeak.logicalNot(), -Infinity).topk(k, 1);
    const top = heights.narrow(1, 0, 1);
    // The highest peak always counts: in a map of negative values it fell below its own fraction, every
    // centre was dropped and p came back all Infinity.
    let valid = heights.gt(-Infinity).logicalAnd(heights.ge(top.mul(o.minRelHeight)).logicalOr(heights.ge(top)));
    // Greedy suppression by distance to every higher, still-valid centre (k is small).
    if (o.minDistance > 0 && k > 1) {
      const cc = distances(centers, g, s.dtype); // [B, K, N]
      const pair = cc.gather(2, centers.unsqueeze(1).expand(B, k, k)); // [B, K, K]: distance centre i -> centre j
      const keep: Tensor[] = [valid.narrow(1, 0, 1)];
      for (let j = 1; j < k; j++) {
        const prev = torch.cat(keep, 1); // [B, j]
        const near = pair.select(2, j).narrow(1, 0, j).lt(o.minDistance).logicalAnd(prev).any(1, true);
        keep.push(valid.narrow(1, j, 1).logicalAnd(near.logicalNot()));
      }
      valid = torch.cat(keep, 1);
    }
    const d = distances(centers, g, s.dtype).maskedFill(valid.logicalNot().unsqueeze(-1), Infinity);
    const nearest = d.amin(1);
    const order = nearest.add(noiseLike(B, N, S.device, o).mul(o.lambda));
    return { order, centers, valid };
  });
}

/**
 * Makes any order values strict (distinct): p becomes its stable rank, so ties keep patch-index
 * order — the order both forward paths follow. Ties do happen: distance + λ·U in float32 leaves
 * only ~2,000 distinct noise levels per distance ring at λ = 1e-3 (the authors' setting).
 */
export function strictOrder(p: Tensor): Tensor {
  // order values [B, gridH, gridW] were ranked within each grid column, not over the image, silently
  if (!(p instanceof Tensor) || p.shape.length !== 2)
    throw new RangeError(`strictOrder: order values p must be a tensor [B, N], got ${p instanceof Tensor ? `[${p.shape.join(', ')}]` : String(p)}`);
  checkOrderDtype('strictOrder', p);
  return torch.scope(() => p.argsort(1, false, true).argsort(1, false, true).float());
}

/** A user order: a function from images [B, C, H, W] to order values [B, N]. */
export type OrderFunction = (images: Tensor) => Tensor;

/**
 * Throws a TypeError (naming `fn`) unless order values are floating-point or integer: a bool tensor is a
 * mask, not an order (its ranks put every false patch before every true one).
 */
function checkOrderDtype(fn: string, p: Tensor): void {
  if (p.dtype === 'bool') throw new TypeError(`${fn}: order values must be a floating-point or integer tensor, got ${described(p)}`);
}

/**
 * Throws unless `p` is a tensor of order values [B, N] of a floating-point or integer dtype (a TypeError when it is
 * not a tensor or of another dtype); finiteness is checked for CPU tensors only (reading a GPU tensor back would
 * stall every step). `fn`, when given, names the caller in the message.
 */
export function checkOrder(p: Tensor, B: number, N: number, fn?: string): void {
  const by = fn ? `${fn}: ` : '';
  // SemAIM#forward(images) from plain JS: 'Cannot read properties of undefined (reading 'shape')'
  if (!(p instanceof Tensor)) throw new TypeError(`${by}order values must be a tensor [${B}, ${N}] (model.makeOrder(images).order), got ${String(p)}`);
  const s = p.shape;
  if (s.length !== 2 || s[0] !== B || s[1] !== N) throw new Error(`${by}order values must have shape [${B}, ${N}], got [${s.join(', ')}]`);
  checkOrderDtype(fn ?? 'checkOrder', p);
  // The value check reads the tensor back; on a GPU that would stall every training step, so it runs
  // for CPU tensors only (orders made by makeOrder are finite by construction).
  if (p.device === 'cpu' && !p.isfinite().all().item()) throw new Error(`${by}order values must be finite`);
}

/** True where the config needs a similarity map. */
export function needsSimilarity(o: OrderConfig): boolean {
  return o.type === 'similarity' || o.type === 'semantic' || o.type === 'multicenter';
}

/** Whether the order draws U(0,1) noise [B, N] (data-parallel ranks then take their rows of one global draw). */
export function orderUsesNoise(o: OrderConfig): boolean {
  return o.type === 'stochastic' || o.type === 'semantic' || o.type === 'multicenter';
}

/** Order values for a batch from a config; S is the similarity map when the order needs one. */
export function orderFromConfig(o: OrderConfig, B: number, g: Grid, S: Tensor | null, opts: NoiseOptions & { device?: torch.Device } = {}): Tensor {
  const device = opts.device ?? S?.device ?? 'cpu';
  checkBatchAndGrid('orderFromConfig', B, g);
  checkNoiseOptions('orderFromConfig', opts, B, g.gridH * g.gridW);
  switch (o.type) {
    case 'raster':
      return rasterOrder(B, g, device);
    case 'snake':
      return snakeOrder(B, g, device);
    case 'stochastic':
      return stochasticOrder(B, g, { ...opts, device });
    case 'similarity':
    case 'semantic':
    case 'multicenter': {
      if (!S) throw new Error(`order '${o.type}' needs a similarity map`);
      // B was not compared with S: the similarity order of a map [N] or [1, N] came back for B images
      checkSimilarity('orderFromConfig', S, g, B);
      if (o.type === 'similarity') return similarityOrder(S);
      if (o.type === 'semantic') {
        const r = semanticOrder(S, g, { ...opts, filter: o.filter, lambda: o.lambda });
        r.center.dispose();
        return r.order;
      }
      const r = multicenterOrder(S, g, { ...opts, k: o.k, minRelHeight: o.minRelHeight, minDistance: o.minDistance, filter: o.filter, lambda: o.lambda });
      r.centers.dispose();
      r.valid.dispose();
      return r.order;
    }
    default:
      throw new ConfigError(
        'order.type',
        `must be one of raster, snake, stochastic, similarity, semantic, multicenter, got ${JSON.stringify((o as { type: unknown }).type)}`,
      );
  }
}
