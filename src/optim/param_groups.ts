// Parameter-group builders: no weight decay on biases / norms / 1-D / named parameters (timm's
// param_groups_weight_decay) and layer-wise lr decay for ViTs (MAE's param_groups_lrd).
import type { Tensor } from '../torch';
import type { NamedParams, ParamGroupSpec } from './optimizer';

/**
 * Whether a parameter goes without weight decay: every parameter with ndim ≤ 1 (biases, LayerNorm /
 * BatchNorm weights and biases), every name ending in '.bias', and every name in `noWeightDecay`
 * given either exactly ('cls_token') or as the last component(s) of a nested name
 * ('encoder.cls_token' matches 'cls_token'). `noWeightDecay` is a list or set of names; a lone string is a TypeError.
 */
export function isNoWeightDecay(name: string, param: Tensor, noWeightDecay: Iterable<string> = []): boolean {
  const listed = noWeightDecayNames(noWeightDecay);
  if (param.ndim <= 1 || name.endsWith('.bias')) return true;
  for (const n of listed) if (name === n || name.endsWith(`.${n}`)) return true;
  return false;
}

/**
 * The names of a noWeightDecay option as a list. A string is refused (a TypeError): it is an iterable of its
 * letters, so noWeightDecay: 'cls_token' matched no parameter and cls_token was decayed, silently.
 */
function noWeightDecayNames(noWeightDecay: Iterable<string>): string[] {
  if (typeof noWeightDecay === 'string')
    throw new TypeError(`noWeightDecay must be a list of parameter names such as ['${noWeightDecay}'], not the string '${noWeightDecay}'`);
  return [...noWeightDecay];
}

/**
 * Two groups, as timm's param_groups_weight_decay: [{ no decay, weightDecay 0 }, { decay, weightDecay }].
 * Parameters with requiresGrad false are left out. Names like 'cls_token', 'pos_embed', 'mask_token'
 * go in `noWeightDecay` (a model's noWeightDecay() list).
 */
export function paramGroupsWeightDecay(params: NamedParams, o: { weightDecay: number; noWeightDecay?: Iterable<string> }): ParamGroupSpec[] {
  const skip = noWeightDecayNames(o.noWeightDecay ?? []);
  const decay: Array<[string, Tensor]> = [];
  const noDecay: Array<[string, Tensor]> = [];
  for (const [name, p] of params) {
    if (!p.requiresGrad) continue;
    (isNoWeightDecay(name, p, skip) ? noDecay : decay).push([name, p]);
  }
  return [
    { name: 'no_decay', params: noDecay, weightDecay: 0 },
    { name: 'decay', params: decay, weightDecay: o.weightDecay },
  ];
}

/**
 * MAE's get_layer_id_for_vit with numLayers = number of blocks: 0 for 'cls_token', 'pos_embed' and
 * 'patch_embed.*'; i + 1 for 'blocks.i.*'; numLayers + 1 for everything else (final norm, head, ...).
 */
export function vitLayerId(name: string, numLayers: number): number {
  if (name === 'cls_token' || name === 'pos_embed' || name.startsWith('patch_embed')) return 0;
  if (name.startsWith('blocks')) {
    const i = Number(name.split('.')[1]);
    if (!Number.isInteger(i)) throw new Error(`vitLayerId: cannot read a block index from '${name}'`);
    return i + 1;
  }
  return numLayers + 1;
}

/** Options of {@link paramGroupsLayerDecay} (MAE's param_groups_lrd arguments). */
export interface LayerDecayOptions {
  /** Number of transformer blocks. */
  numLayers: number;
  /** Per-layer factor (MAE fine-tuning: 0.75; SemAIM ViT-B: 0.65). */
  layerDecay: number;
  weightDecay: number;
  /** Names without weight decay besides ndim ≤ 1 (e.g. ['cls_token', 'pos_embed']). */
  noWeightDecay?: Iterable<string>;
  /** Layer id of a parameter (default vitLayerId). */
  layerId?: (name: string, numLayers: number) => number;
}

/**
 * MAE's param_groups_lrd: one group per (layer id, decay / no decay), named 'layer_<id>_decay' or
 * 'layer_<id>_no_decay', in order of first appearance, with lrScale = layerDecay^(numLayers + 1 − id)
 * (so the head gets scale 1 and the embeddings layerDecay^(numLayers + 1)). Use optimizer.setLr(lr) so
 * that each group gets lr × lrScale. Parameters with requiresGrad false are left out.
 */
export function paramGroupsLayerDecay(params: NamedParams, o: LayerDecayOptions): ParamGroupSpec[] {
  const skip = noWeightDecayNames(o.noWeightDecay ?? []);
  const layerId = o.layerId ?? vitLayerId;
  const groups = new Map<string, ParamGroupSpec & { params: Array<[string, Tensor]> }>();
  for (const [name, p] of params) {
    if (!p.requiresGrad) continue;
    const noDecay = isNoWeightDecay(name, p, skip);
    const id = layerId(name, o.numLayers);
    if (!(Number.isInteger(id) && id >= 0 && id <= o.numLayers + 1))
      throw new RangeError(`paramGroupsLayerDecay: layer id ${id} of '${name}' is outside 0..${o.numLayers + 1}`);
    const key = `layer_${id}_${noDecay ? 'no_decay' : 'decay'}`;
    let g = groups.get(key);
    if (!g) {
      g = { name: key, params: [], weightDecay: noDecay ? 0 : o.weightDecay, lrScale: o.layerDecay ** (o.numLayers + 1 - id) };
      groups.set(key, g);
    }
    g.params.push([name, p]);
  }
  return [...groups.values()];
}
