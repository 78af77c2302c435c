// Pre-trained weights: finds and verifies checkpoints of a run, reads their model config, and loads
// encoders (for evaluation), frozen teachers (feature targets) and exported encoders
// (`<name>.safetensors` + `<name>.json`), identified by the SHA-256 of their weights file.
import { closeSync, existsSync, fstatSync, readFileSync, statSync } from 'node:fs';
import { quotedPath } from '../util/printable';
import { basename, dirname, join, resolve } from 'node:path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { disposeAll, loadTensors, readSafetensorsHeader, type TensorInfo } from '../io';
import { checkpointWeightsSha256, listCheckpoints, refuseOtherFormatVersion, runKindOf, sha256File, verifyCheckpoint } from '../io/checkpoint';
import { EncoderConfig, SemAIMConfig, validateConfig, validateEncoder } from './config';
import { VisionTransformer } from './vit';
import { TIMM_IMAGENET_DEFAULT, encoderConfigFromJson, otherNormalization } from './timm-config';
import { isJsonObject } from '../util/json-file';
import { finishInterruptedCommits } from '../util/safe-write';
import { CheckpointError, checkpointError, withErrorKind } from '../util/errors';
import { openRegularFile } from '../util/regular-file';
import { pathExists } from '../util/path-exists';
import { stderrLine } from '../util/console-line';
import { checkDevice } from '../torch/check-device';
import { sparingGlobalRng } from '../torch/global-rng';

export { sha256File };

/** How a checkpoint folder is checked and reported when it is resolved (resolveCheckpoint, resolveEncoder, loadEncoder, loadModel). */
export interface VerifyOption {
  /** Check a checkpoint folder's files against the SHA-256 in its state.json (default true). */
  verify?: boolean;
  /** What the user can do about a corrupted checkpoint folder (default: the --no-verify of evaluation commands). */
  unusableHint?: string;
  /** Where a newer checkpoint skipped because it fails its check is reported (default: console.warn, once per process). */
  onWarning?: (line: string) => void;
}

/**
 * The newest valid checkpoint folder of a run folder, or the folder itself if it is a checkpoint
 * (verified unless `verify` is false: a corrupted one is refused).
 */
export function resolveCheckpoint(path: string, o: VerifyOption = {}): string {
  return withErrorKind(() => findCheckpoint(path, o), checkpointError);
}

/**
 * `read(dir)` of the checkpoint folder that `path` resolves to (resolveCheckpoint). A run writing to the
 * folder may prune that checkpoint before `read` is done with it: a run folder is then resolved again (to
 * the newer checkpoint the run saved), a checkpoint folder named itself is a CheckpointError 'ERR_CHECKPOINT_CHANGED'.
 */
export function readResolvedCheckpoint<T>(path: string, o: VerifyOption, read: (dir: string) => T): T {
  for (let attempt = 1; ; attempt++) {
    const dir = resolveCheckpoint(path, o);
    try {
      return read(dir);
    } catch (e) {
      if (existsSync(dir)) throw e;
      if (dir === path || attempt >= LIST_PASSES)
        throw new CheckpointError(`checkpoint ${dir} ${REMOVED_WHILE_READ}: run again, or name a checkpoint the run keeps`, 'ERR_CHECKPOINT_CHANGED', {
          cause: e,
        });
    }
  }
}

/** A command resolves its checkpoint more than once (the encoder, then its record): one warning for each skipped one. */
const warned = new Set<string>();
function warnOnce(line: string, onWarning?: (line: string) => void): void {
  if (onWarning) return onWarning(line);
  if (warned.has(line)) return;
  warned.add(line);
  stderrLine(line);
}

function findCheckpoint(path: string, o: VerifyOption): string {
  if (pathExists(path) && statSync(path).isFile()) {
    throw new Error(
      `${path} is a file: this needs a pre-training run folder or one of its checkpoint folders (an exported encoder has no decoder or run settings)`,
    );
  }
  if (pathExists(join(path, 'state.json'))) {
    const problem = o.verify === false ? null : verifyLive(path);
    if (problem === REMOVED)
      throw new CheckpointError(`checkpoint ${path} ${REMOVED_WHILE_CHECKED}: run again, or name a checkpoint the run keeps`, 'ERR_CHECKPOINT_CHANGED');
    if (problem) throw new Error(`checkpoint ${path} is not usable: ${problem} (${o.unusableHint ?? '--no-verify uses it anyway'})`);
    return path;
  }
  const newest = newestUsableCheckpoint(path);
  if (newest.dir) {
    for (const { dir, problem } of newest.skipped) warnOnce(`warning: skipping checkpoint ${dir}: ${problem}`, o.onWarning);
    return newest.dir;
  }
  if (newest.skipped.length) {
    const why = newest.skipped.map(({ dir, problem }) => `${basename(dir)}: ${problem}`).join('; ');
    const hint = o.unusableHint ?? 'name one of these folders with --no-verify to use it anyway';
    // 'best' is not taken in their place (it need not be the newest weights), but a good one is the way out
    const best = join(path, 'checkpoints', 'best');
    const bestUsable = existsSync(join(best, 'state.json')) && !verifyCheckpoint(best, 'weights');
    const orBest = bestUsable ? `; ${best} passes its check: name it to use it` : '';
    throw new Error(`no usable checkpoint in ${path}: every step checkpoint fails its check: ${why} (${hint}${orBest})`);
  }
  throw new Error(`no usable checkpoint in ${path} (expected a run folder with checkpoints/step-* or a checkpoint folder)`);
}

/**
 * The newest checkpoint folder of a run folder that verifies (null when none does), and the newer ones
 * skipped with why: every command that takes a run's checkpoint, and the report, pick it this way.
 */
export function newestUsableCheckpoint(runDir: string): { dir: string | null; skipped: { dir: string; problem: string }[] } {
  // a checkpoint the run writing to the folder pruned while it was checked is not a damaged one: the newer
  // ones it saved meanwhile are listed again (a few times: a run may prune faster than a big file is hashed)
  for (let pass = 1; ; pass++) {
    const skipped: { dir: string; problem: string }[] = [];
    let removed = false;
    for (const { dir } of listCheckpoints(join(runDir, 'checkpoints'))) {
      const problem = verifyLive(dir);
      if (problem === null) return { dir, skipped };
      removed = problem === REMOVED;
      if (removed && pass < LIST_PASSES) break;
      skipped.push({ dir, problem: problem === REMOVED ? REMOVED_WHILE_CHECKED : problem });
    }
    if (!removed || pass >= LIST_PASSES) return { dir: null, skipped };
  }
}

/** How often newestUsableCheckpoint lists a run's checkpoints again when the one it checked was removed meanwhile. */
const LIST_PASSES = 5;
const REMOVED = Symbol('removed');
const REMOVED_WHILE_CHECKED = 'was removed while it was being checked (a run writing to this folder prunes its checkpoints)';
const REMOVED_WHILE_READ = 'was removed while it was being read (a run writing to its folder prunes its checkpoints)';

/**
 * verifyCheckpoint of a folder a live run may remove or replace meanwhile (it prunes step folders, replaces
 * best/ by renames): REMOVED when it is gone, and checked again when it was replaced during the check,
 * whose mix of the old state.json and the new files is no damage of either.
 */
function verifyLive(dir: string): string | null | typeof REMOVED {
  let problem: string | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const before = folderIdentity(dir);
    if (before === null) return REMOVED;
    try {
      problem = verifyCheckpoint(dir, 'weights');
    } catch (e) {
      problem = (e as Error).message; // a file removed between its listing and its read (ENOENT)
    }
    if (problem === null) return null;
    const after = folderIdentity(dir);
    if (after === null) return REMOVED;
    if (after === before) return problem;
  }
  return problem;
}

/** Which folder is at `dir` now (device and inode, through a link), or null when none is. */
function folderIdentity(dir: string): string | null {
  const st = statSync(dir, { throwIfNoEntry: false });
  return st?.isDirectory() ? `${st.dev}:${st.ino}` : null;
}

/**
 * Reads the model config stored in a checkpoint's model.safetensors metadata, checked (bounds, and
 * against the shapes of the file's tensors) before any model of that size is built.
 */
export function checkpointConfig(checkpointDir: string): SemAIMConfig {
  return withErrorKind(() => readCheckpointConfig(checkpointDir), checkpointError);
}

function readCheckpointConfig(checkpointDir: string): SemAIMConfig {
  const file = join(checkpointDir, 'model.safetensors');
  const { metadata, tensors } = readSafetensorsHeader(file);
  if (!metadata.config) throw new Error(`${file} has no model config in its metadata`);
  refuseOtherFormatVersion(metadata.format, checkpointDir);
  if (metadata.format && metadata.format !== 'semaim.pretrain/1')
    throw new Error(
      `${checkpointDir} is a '${metadata.format}' checkpoint, not a pre-training run's: the SemAIM model (with its decoder) comes from semaim pretrain`,
    );
  let cfg: SemAIMConfig;
  try {
    cfg = JSON.parse(metadata.config) as SemAIMConfig;
    validateConfig(cfg);
  } catch (e) {
    throw new Error(`${file}: the model config is not usable: ${(e as Error).message}`, { cause: e });
  }
  checkEncoderShapes(cfg, tensors, file);
  return cfg;
}

/** Weights that do not fit the model their config describes. */
const mismatch = (message: string) => new CheckpointError(message, 'ERR_CHECKPOINT_MISMATCH');

/** How a file lays out its encoder tensors, beyond timm's defaults. */
export interface EncoderLayout {
  /** What every name carries in front ('module.' of DDP, 'model.', '_orig_mod.' of torch.compile); '' for timm's own names. */
  prefix: string;
  /** pos_embed has no row for [CLS] (timm's no_embed_class): [CLS] gets no position, as a zero row gives it. */
  noEmbedClass: boolean;
  /** The final norm is timm's fc_norm of global_pool='avg' models (there is no `norm`). */
  fcNorm: boolean;
}

/** Parts of timm ViTs that semaim's ViT does not compute: a file with them is refused, not loaded into another network. */
const UNSUPPORTED: [RegExp, string][] = [
  [/^norm_pre\./, "timm's pre_norm=True ViT (a LayerNorm before the blocks, as CLIP's)"],
  [/^reg_token$/, 'register tokens'],
  [/^(dist_token$|head_dist\.)/, "DeiT's distillation token"],
  [/^attn_pool\./, "attention pooling (global_pool='map')"],
  [/^blocks\.\d+\.ls[12]\./, 'LayerScale (init_values)'],
  [/^blocks\.\d+\.attn\.[qk]_norm\./, 'q/k normalisation (qk_norm)'],
];

/**
 * The prefix in front of a file's encoder names: '' or a run of 'module.' / 'model.' / '_orig_mod.' before cls_token
 * (a torch.compile'd model's state dict names every weight '_orig_mod.<name>': it was refused as no ViT encoder).
 */
function encoderPrefix(names: Iterable<string>): string {
  for (const n of names) {
    const m = /^((?:module\.|model\.|_orig_mod\.)*)cls_token$/.exec(n);
    if (m) return m[1];
  }
  return '';
}

/**
 * Refuses a config that the weights' shapes contradict (width, channels, patch, MLP, depth, patches)
 * and weights of a network semaim's ViT does not compute, from the file's header alone: a wrong
 * config fails here, not after a model of its size is built. Returns how the file lays them out.
 */
export function checkEncoderShapes(c: EncoderConfig, fileShapes: Map<string, TensorInfo>, file: string): EncoderLayout {
  const prefix = encoderPrefix(fileShapes.keys());
  const shapes = new Map([...fileShapes].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
  for (const name of shapes.keys()) {
    const part = UNSUPPORTED.find(([re]) => re.test(name));
    if (part) throw mismatch(`${file} holds '${prefix}${name}': ${part[1]}, which semaim's ViT does not compute (its features would differ)`);
  }
  const D = c.embedDim;
  const patches = (c.imgSize / c.patchSize) ** 2;
  const noEmbedClass = shapes.get('pos_embed')?.shape.join() === [1, patches, D].join();
  const want: [string, number[]][] = [
    ['cls_token', [1, 1, D]],
    ['patch_embed.proj.weight', [D, c.inChans ?? 3, c.patchSize, c.patchSize]],
    ['blocks.0.attn.qkv.weight', [3 * D, D]],
    ['blocks.0.mlp.fc1.weight', [Math.floor(D * (c.mlpRatio ?? 4)), D]],
    ['pos_embed', [1, noEmbedClass ? patches : patches + 1, D]],
  ];
  for (const [name, shape] of want) {
    const got = shapes.get(name);
    if (!got) throw mismatch(`${file} has no tensor '${prefix}${name}': not the weights of a ViT encoder`);
    if (got.shape.join() !== shape.join()) {
      const grid =
        name === 'pos_embed' ? ` (positions for ${c.imgSize}² images of ${c.patchSize}² patches; semaim does not resample a table made for another size)` : '';
      throw mismatch(`${file}: '${prefix}${name}' is [${got.shape}], its model config implies [${shape}]${grid}: the config does not describe these weights`);
    }
  }
  const blocks = new Set([...shapes.keys()].map((k) => /^blocks\.(\d+)\./.exec(k)?.[1]).filter((b) => b !== undefined));
  if (blocks.size !== c.depth) throw mismatch(`${file} holds ${blocks.size} encoder blocks, its model config says depth ${c.depth}`);
  // every name under the encoder's prefixes must be a parameter of this ViT, checked before any tensor is
  // read: 1,500 'blocks.0.junk<i>' views of one storage in a 1.2 MB .pth were each loaded and exported
  const params = vitParameterShapes(c, noEmbedClass);
  const unknown = [...shapes.keys()].filter((k) => ENCODER_KEY.test(k) && !params.has(k));
  if (unknown.length) {
    const named = unknown.slice(0, 3).map((k) => `'${prefix}${k}'`);
    throw mismatch(
      `${file} holds ${unknown.length} tensor(s) under the encoder's names that the ViT its config describes does not have (${named.join(', ')}${unknown.length > 3 ? ', ...' : ''}): parts of another network`,
    );
  }
  const integer = [...params.keys()].filter((k) => shapes.has(k) && !torch.isFloating(shapes.get(k)!.dtype));
  if (integer.length) {
    const named = integer.slice(0, 3).map((k) => `'${prefix}${k}' (${shapes.get(k)!.dtype})`);
    throw mismatch(
      `${file} holds ${integer.length} encoder weight(s) as integers (${named.join(', ')}${integer.length > 3 ? ', ...' : ''}): ` +
        'weights are read from float16, bfloat16, float32 or float64 tensors (a quantised file needs its scales applied first)',
    );
  }
  for (const [k, shape] of params) {
    const got = shapes.get(k)?.shape;
    if (got && got.join() !== shape.join())
      throw mismatch(`${file}: '${prefix}${k}' is [${got}], its model config implies [${shape}]: the config does not describe these weights`);
  }
  return { prefix, noEmbedClass, fcNorm: !shapes.has('norm.weight') && shapes.has('fc_norm.weight') };
}

/**
 * The parameters of the ViT `c` describes (timm's names) that a file whose tensors are `names` lacks, `prefix`
 * (its layout's) removed: the header check reads the shapes of the tensors there, not whether every one is.
 */
export function missingEncoderWeights(c: EncoderConfig, names: Iterable<string>, layout: Pick<EncoderLayout, 'prefix' | 'noEmbedClass'>): string[] {
  const have = new Set([...names].filter((k) => k.startsWith(layout.prefix)).map((k) => k.slice(layout.prefix.length)));
  return [...vitParameterShapes(c, layout.noEmbedClass).keys()].filter((k) => !have.has(k));
}

/** The parameters of the ViT `c` describes, by timm's name (pos_embed without the [CLS] row when `noEmbedClass`). */
function vitParameterShapes(c: EncoderConfig, noEmbedClass: boolean): Map<string, number[]> {
  const D = c.embedDim;
  const H = Math.floor(D * (c.mlpRatio ?? 4));
  const patches = (c.imgSize / c.patchSize) ** 2;
  const p = new Map<string, number[]>([
    ['cls_token', [1, 1, D]],
    ['pos_embed', [1, noEmbedClass ? patches : patches + 1, D]],
    ['patch_embed.proj.weight', [D, c.inChans ?? 3, c.patchSize, c.patchSize]],
    ['patch_embed.proj.bias', [D]],
    ['norm.weight', [D]],
    ['norm.bias', [D]],
  ]);
  for (let i = 0; i < c.depth; i++) {
    for (const [k, shape] of [
      ['norm1.weight', [D]],
      ['norm1.bias', [D]],
      ['attn.qkv.weight', [3 * D, D]],
      ['attn.qkv.bias', [3 * D]],
      ['attn.proj.weight', [D, D]],
      ['attn.proj.bias', [D]],
      ['norm2.weight', [D]],
      ['norm2.bias', [D]],
      ['mlp.fc1.weight', [H, D]],
      ['mlp.fc1.bias', [H]],
      ['mlp.fc2.weight', [D, H]],
      ['mlp.fc2.bias', [D]],
    ] as [string, number[]][]) {
      p.set(`blocks.${i}.${k}`, shape);
    }
  }
  return p;
}

/** The encoder part of a SemAIM config. */
export function encoderConfigOf(c: EncoderConfig): EncoderConfig {
  return {
    imgSize: c.imgSize,
    patchSize: c.patchSize,
    inChans: c.inChans ?? 3,
    embedDim: c.embedDim,
    depth: c.depth,
    numHeads: c.numHeads,
    mlpRatio: c.mlpRatio ?? 4,
  };
}

/**
 * Loads a frozen teacher encoder (feature targets / teacher similarity source); null for pixel
 * targets. It is read as any outside encoder is (timm names, prefixes, extra tensors left out) and
 * must still have the sizes the run recorded when it started.
 */
export function loadTeacher(cfg: SemAIMConfig, device: torch.Device): VisionTransformer | null {
  if (cfg.target.type !== 'features') return null;
  const { teacher, teacherConfig } = cfg.target;
  let source: EncoderSource;
  try {
    source = resolveEncoder(teacher);
  } catch (e) {
    throw new Error(`cannot load the teacher ${teacher}: ${(e as Error).message}`, { cause: e });
  }
  if (JSON.stringify(encoderConfigOf(source.config)) !== JSON.stringify(encoderConfigOf(teacherConfig))) {
    throw new Error(`the teacher ${teacher} is now ${JSON.stringify(source.config)}; the run was started with ${JSON.stringify(teacherConfig)}`);
  }
  return loadEncoder(source, { device }).encoder;
}

/** Tensors of a pre-training checkpoint that belong to the encoder (timm names). */
export const ENCODER_KEY = /^(patch_embed\.|cls_token$|pos_embed$|blocks\.|norm\.)/;

/** An encoder found by {@link resolveEncoder} but not loaded: its weights file, their SHA-256, its config and tensor layout. */
export interface EncoderSource {
  /** What the user gave. */
  path: string;
  /** The weights file actually read (a checkpoint's model.safetensors or the exported file). */
  weights: string;
  /** SHA-256 of `weights`. */
  sha256: string;
  /** 'checkpoint': a pre-training checkpoint's model.safetensors; 'exported': a weights file (semaim export, timm, a torch.save file). */
  kind: 'checkpoint' | 'exported';
  config: EncoderConfig;
  layout: EncoderLayout;
}

function configFromMetadata(text: string, where: string, o: VerifyOption = {}): EncoderConfig {
  let c: unknown;
  try {
    c = JSON.parse(text);
  } catch (e) {
    throw new Error(`${where}: the model config is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  let cfg: EncoderConfig;
  try {
    if (!isJsonObject(c)) throw new Error('not a JSON object');
    cfg = encoderConfigOf(encoderConfigFromJson(c) as unknown as EncoderConfig);
    validateEncoder(cfg);
  } catch (e) {
    throw new Error(`${where}: the model config is not usable: ${(e as Error).message}`, { cause: e });
  }
  const norm = otherNormalization(c);
  if (norm) {
    // not refused: fine-tuning adapts to it; but the features differ from timm's, and no number should look like timm's silently
    warnOnce(
      `warning: ${where} says the encoder was trained on images normalised with mean ${JSON.stringify(norm.mean)} and std ` +
        `${JSON.stringify(norm.std)}; semaim normalises with ImageNet's (mean ${JSON.stringify(TIMM_IMAGENET_DEFAULT.mean)}, std ${JSON.stringify(TIMM_IMAGENET_DEFAULT.std)}), ` +
        `so its features differ from timm's with these weights (k-NN and linear-probe accuracy below timm's), and an export of it states ImageNet's`,
      o.onWarning,
    );
  }
  return cfg;
}

/** What a config JSON beside a weights file may say, for messages. */
const CONFIG_JSON_HELP =
  "semaim's { imgSize, patchSize, embedDim, depth, numHeads } (inChans 3 and mlpRatio 4 by default), timm's model arguments " +
  "{ img_size, patch_size, embed_dim, depth, num_heads }, or timm's hub config { architecture: 'vit_base_patch16_224', model_args }";

/**
 * The largest config JSON read beside an encoder (kilobytes of sizes, more with a hub config's label names):
 * a larger one is refused unread, not read whole into memory.
 */
export const MAX_ENCODER_CONFIG_BYTES = 64 << 20;

/** The text of an encoder's config JSON, refused unread (naming it) when it is larger than {@link MAX_ENCODER_CONFIG_BYTES}. */
function readConfigJson(path: string): string {
  const fd = openRegularFile(path);
  try {
    const { size } = fstatSync(fd);
    if (size > MAX_ENCODER_CONFIG_BYTES)
      throw new Error(`${path} is ${size} bytes: a model config holds at most ${MAX_ENCODER_CONFIG_BYTES >> 20} MiB (is it the JSON of these weights?)`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** Weights files an encoder is read from: safetensors, or PyTorch's torch.save (read without running its pickle). */
const WEIGHTS_FILE = /\.(safetensors|pth|pt|bin)$/i; // (any case: a file copied from a case-insensitive disk, `ENCODER.PTH`)
/** The weights files of a Hugging Face hub folder, whose sizes are in config.json beside them. */
const HUB_WEIGHTS = ['model.safetensors', 'pytorch_model.bin'];

/** Finds the weights and config of an encoder without loading any tensor. */
export function resolveEncoder(path: string, o: VerifyOption = {}): EncoderSource {
  // an export killed between renaming its weights and its config: completed, so the two read belong together
  if (!existsSync(path) || !statSync(path).isDirectory()) finishInterruptedCommits(dirname(resolve(path)));
  return withErrorKind(() => findEncoder(path, o), checkpointError);
}

function findEncoder(path: string, o: VerifyOption): EncoderSource {
  if (!pathExists(path))
    throw new Error(`encoder ${quotedPath(path)} does not exist (give a run folder, a checkpoint folder, an exported .safetensors or a torch.save .pth)`);
  if (statSync(path).isDirectory()) {
    const hubWeights = hubFolderWeights(path);
    if (hubWeights) return findEncoder(hubWeights, o);
    return readResolvedCheckpoint(path, o, (dir): EncoderSource => {
      const weights = join(dir, 'model.safetensors');
      const { metadata, tensors } = readSafetensorsHeader(weights);
      if (!metadata.config) throw new Error(`${weights} has no model config in its metadata`);
      refuseOtherFormatVersion(metadata.format, dir);
      if (metadata.format && metadata.format !== 'semaim.pretrain/1') {
        throw new Error(`${dir} is a '${metadata.format}' checkpoint; an encoder comes from a pre-training run (or an exported encoder)`);
      }
      const config = configFromMetadata(metadata.config, weights);
      const layout = checkEncoderShapes(config, tensors, weights);
      const sha256 = checkpointWeightsSha256(dir, o.verify !== false);
      return { path, weights, sha256, kind: 'checkpoint', config, layout };
    });
  }
  if (!WEIGHTS_FILE.test(path)) throw new Error(`encoder '${path}': expected a folder, a .safetensors file or a torch.save file (.pth, .pt, .bin)`);
  const jsonPath = path.replace(WEIGHTS_FILE, '.json');
  const { metadata, tensors } = readSafetensorsHeader(path);
  refuseOtherFormatVersion(metadata.format, path);
  const kind = runKindOf(metadata.format);
  if (kind && kind !== 'pretrain') {
    throw new Error(
      `${path} holds the weights of a ${kind} run, not a pre-trained encoder: give a pre-training run folder, a checkpoint folder of one, or an exported encoder`,
    );
  }
  // the config: <name>.json beside the file, else the file's metadata, else timm's hub layout (model.safetensors + config.json)
  const hubConfig = join(dirname(path), 'config.json');
  let where: string;
  let text: string;
  if (existsSync(jsonPath)) {
    [where, text] = [jsonPath, readConfigJson(jsonPath)];
  } else if (metadata.config) {
    [where, text] = [path, metadata.config];
  } else if (HUB_WEIGHTS.includes(basename(path)) && existsSync(hubConfig)) {
    [where, text] = [hubConfig, readConfigJson(hubConfig)];
  } else {
    throw new Error(
      `encoder '${path}': its sizes are not known: no ${jsonPath} beside it and no config in its metadata. Write ${jsonPath} with ${CONFIG_JSON_HELP}`,
    );
  }
  const config = configFromMetadata(text, where, o);
  const layout = checkEncoderShapes(config, tensors, path);
  return { path, weights: path, sha256: sha256File(path), kind: 'exported', config, layout };
}

/**
 * The weights file of a downloaded hub folder (timm's model.safetensors, else pytorch_model.bin; no run or checkpoint
 * in the folder), read as if given: the folder was called one with no usable checkpoint, though it holds an encoder.
 */
function hubFolderWeights(dir: string): string | undefined {
  if (pathExists(join(dir, 'state.json')) || pathExists(join(dir, 'checkpoints'))) return undefined;
  return HUB_WEIGHTS.map((name) => join(dir, name)).find((file) => pathExists(file));
}

/** Tensors of an encoder file that a classifier may take besides the encoder's (timm's global_pool='avg' norm). */
const FC_NORM_KEY = /^fc_norm\./;

/**
 * The encoder's weights as a state dict under timm's names (the file's prefix removed, a
 * no_embed_class pos_embed given a zero row for [CLS]), with `fc_norm` too when `withFcNorm` (a
 * classifier's) and the file has one. The caller disposes them.
 */
export function loadEncoderTensors(src: EncoderSource, o: { device?: torch.Device; withFcNorm?: boolean } = {}): Map<string, Tensor> {
  const { prefix, noEmbedClass } = src.layout;
  const ours = (name: string): boolean => ENCODER_KEY.test(name) || (!!o.withFcNorm && FC_NORM_KEY.test(name));
  const wanted = (k: string): boolean => k.startsWith(prefix) && ours(k.slice(prefix.length));
  // the bytes its SHA-256 names: a file a run replaced or removed since it was resolved is refused, not read in its place
  const loaded = loadTensors(src.weights, { filter: wanted, device: o.device, finite: true, sha256: src.sha256 }).tensors;
  const tensors = new Map([...loaded].map(([k, t]) => [k.slice(prefix.length), t]));
  const pos = tensors.get('pos_embed');
  if (noEmbedClass && pos) {
    // (in a scope: the zero row is freed with the file's table, not left to the garbage collector)
    tensors.set(
      'pos_embed',
      torch.scope(() => torch.cat([torch.zeros([1, 1, pos.shape[2]], { dtype: pos.dtype, device: pos.device }), pos], 1)),
    );
    pos.dispose();
  }
  return tensors;
}

/** What {@link loadEncoder} returns: the frozen encoder and the source it was read from. */
export interface LoadedEncoder {
  encoder: VisionTransformer;
  source: EncoderSource;
}

/** Whether {@link loadEncoder} and {@link loadResolvedEncoder} may read a newer checkpoint than the source's. */
export interface NewerIfPrunedOption {
  /**
   * A source resolved from a run folder whose checkpoint the run writing to it pruned before the weights were
   * read: read the run's newest usable checkpoint instead (default false: 'ERR_CHECKPOINT_CHANGED'). Only where
   * nothing depends on the first source's SHA-256 (data-parallel ranks that agreed on it, a probe trained on it).
   */
  newerIfPruned?: boolean;
}

/**
 * `load(source)`; with `newerIfPruned`, a source taken from a run folder (not a checkpoint folder named itself)
 * whose checkpoint the run pruned since it was resolved is resolved again from the run folder, and the run's
 * newest usable checkpoint loaded. Returns what `load` returned and the source it loaded, to be recorded in
 * place of the one given. A newer checkpoint of another encoder config is not taken (the caller's model and
 * data are sized by the first).
 */
export function loadResolvedEncoder<T>(
  source: EncoderSource,
  o: VerifyOption & NewerIfPrunedOption,
  load: (source: EncoderSource) => T,
): { value: T; source: EncoderSource } {
  for (let attempt = 1; ; attempt++) {
    let firstError: unknown;
    try {
      return { value: load(source), source };
    } catch (e) {
      if (!o.newerIfPruned || attempt >= LIST_PASSES || !prunedFromRun(source, e)) throw e;
      firstError = e;
    }
    const newer = resolveEncoder(source.path, o);
    if (JSON.stringify([newer.config, newer.layout]) !== JSON.stringify([source.config, source.layout])) throw firstError;
    warnOnce(`note: ${source.weights} was pruned by the run before it was read: reading its newest checkpoint, ${newer.weights}`, o.onWarning);
    source = newer;
  }
}

/** Whether `e` is the error of reading a run folder's checkpoint that the run removed since `source` was resolved. */
function prunedFromRun(source: EncoderSource, e: unknown): boolean {
  return (
    e instanceof CheckpointError &&
    e.code === 'ERR_CHECKPOINT_CHANGED' &&
    source.kind === 'checkpoint' &&
    resolve(dirname(source.weights)) !== resolve(source.path) &&
    !existsSync(source.weights)
  );
}

/**
 * A frozen encoder in eval mode on `device` (parameters do not require gradients), and the source it was read
 * from (with `newerIfPruned`, a newer checkpoint of the run than the source given: {@link loadResolvedEncoder}).
 */
export function loadEncoder(from: string | EncoderSource, o: { device?: torch.Device } & VerifyOption & NewerIfPrunedOption = {}): LoadedEncoder {
  const device = checkDevice(o.device ?? 'cpu'); // a device this machine lacks is not the file's fault
  return withErrorKind(() => loadFrozenEncoder(from, { ...o, device }), checkpointError);
}

function loadFrozenEncoder(from: string | EncoderSource, o: { device?: torch.Device } & VerifyOption & NewerIfPrunedOption): LoadedEncoder {
  const resolved = typeof from === 'string' ? resolveEncoder(from, o) : from;
  if (resolved.layout.fcNorm) {
    throw new Error(
      `${resolved.weights} is a timm global_pool='avg' model (fc_norm over the mean of the patch tokens, no final norm): ` +
        'its features are not those of an encoder with a final norm; fine-tuning can start from it, evaluation of features cannot',
    );
  }
  const { value: tensors, source } = loadResolvedEncoder(resolved, o, (s) => loadEncoderTensors(s));
  const encoder = sparingGlobalRng(() => new VisionTransformer(source.config));
  try {
    encoder.loadStateDict(tensors, { strict: true });
  } catch (e) {
    encoder.dispose();
    throw new CheckpointError(`cannot load the encoder from ${source.weights}: ${(e as Error).message}`, 'ERR_CHECKPOINT_MISMATCH', { cause: e });
  } finally {
    disposeAll(tensors);
  }
  for (const p of encoder.parameters()) p.requiresGrad = false;
  try {
    encoder.to({ device: o.device ?? 'cpu' }).eval();
  } catch (e) {
    encoder.dispose();
    throw e;
  }
  return { encoder, source };
}
