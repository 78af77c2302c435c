// Tensors <-> safetensors files. Reading streams one tensor at a time; writing produces each
// tensor's bytes only when the writer reaches it, so a model is never held twice in host memory.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { native } from '../torch/native';
import { wrap } from '../torch/tensor';
import { SafetensorsReader, writeSafetensors, stageSafetensors, serializeSafetensors, LazyTensorEntry } from './safetensors';
import type { StagedFile } from '../util/safe-write';
import { CheckpointError } from '../util/errors';

/** A floating-point tensor holds NaN or ±Inf where `finite` was asked for ('ERR_CHECKPOINT'). */
export class NonFiniteTensorError extends CheckpointError {}

/**
 * Loads every tensor (or those whose name passes `filter`) from a safetensors file. `finite`: refuse a
 * floating-point tensor that holds NaN or ±Inf (weights a model is to use: every result from them would be
 * NaN, or quietly at chance level). `sha256`: the file's SHA-256 when it was checked (verified, or recorded
 * in a result); a file removed or replaced since, as a run writing to its folder rotates its checkpoints
 * and replaces best/, is a CheckpointError 'ERR_CHECKPOINT_CHANGED', never read in the checked one's place.
 */
export function loadTensors(
  path: string,
  opts: { device?: torch.Device; dtype?: torch.DType; filter?: (name: string) => boolean; finite?: boolean; sha256?: string } = {},
): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  using reader = openChecked(path, opts.sha256);
  const tensors = new Map<string, Tensor>();
  try {
    for (const name of reader.keys()) {
      if (opts.filter && !opts.filter(name)) continue;
      const e = reader.read(name); // a torch.save storage whose CRC-32 fails throws here
      let t: Tensor;
      try {
        t = wrap(native.fromBuffer(e.data, e.shape, e.dtype, opts.device ?? null));
      } catch (err) {
        throw new Error(`${path}: tensor '${name}': ${(err as Error).message}`, { cause: err });
      }
      try {
        const nonFinite = opts.finite && torch.isFloating(e.dtype) ? countNonFinite(t) : 0;
        if (nonFinite > 0) {
          throw new NonFiniteTensorError(
            `${path}: tensor '${name}' holds ${nonFinite.toLocaleString('en-US')} NaN/Inf value(s) of ${t.numel.toLocaleString('en-US')}: ` +
              'these weights are not usable (a run that diverged, or a damaged file)',
          );
        }
        if (opts.dtype && torch.isFloating(e.dtype) && e.dtype !== opts.dtype) {
          const cast = t.to({ dtype: opts.dtype });
          t.dispose();
          t = cast;
        }
      } catch (err) {
        t.dispose();
        throw err;
      }
      tensors.set(name, t);
    }
  } catch (err) {
    disposeAll(tensors); // every tensor read before the one that failed
    throw err;
  }
  return { tensors, metadata: reader.metadata };
}

/** A reader of `path`, whose bytes (hashed on the reader's own descriptor) must be those of `sha256` when given. */
function openChecked(path: string, sha256: string | undefined): SafetensorsReader {
  const changed = (what: string) =>
    new CheckpointError(
      `${path} ${what} after it was checked (a run writing to its folder rotates its checkpoints and replaces best/): ` +
        'run again to take what is there then, or copy the checkpoint folder out of the run to read a fixed one',
      'ERR_CHECKPOINT_CHANGED',
    );
  let reader: SafetensorsReader;
  try {
    reader = new SafetensorsReader(path);
  } catch (e) {
    if (sha256 !== undefined && (e as { cause?: { code?: string } }).cause?.code === 'ENOENT') throw changed('was removed');
    throw e;
  }
  if (sha256 !== undefined && reader.sha256() !== sha256) {
    reader.close();
    throw changed('was replaced by other bytes');
  }
  return reader;
}

function countNonFinite(t: Tensor): number {
  return torch.scope(() => t.isfinite().logicalNot().sum().item());
}

/**
 * Writes tensors atomically (temp file + rename); values are copied to the host one at a time (a
 * contiguous CPU tensor's bytes are written from its own memory). Returns the file's sha256.
 */
export function saveTensors(path: string, tensors: Map<string, Tensor> | [string, Tensor][], metadata: Record<string, string> = {}): string {
  return writeSafetensors(path, lazyEntries(tensors), metadata).sha256;
}

/** The bytes of the tensors' data (what a safetensors file of them holds, less its header). */
export function tensorsBytes(tensors: Iterable<Tensor>): number {
  let n = 0;
  for (const t of tensors) n += t.numel * torch.dtypeBytes(t.dtype);
  return n;
}

/** The bytes saveTensors would write, in memory: for a small file whose SHA-256 must be known before it is written. */
export function serializeTensors(tensors: Map<string, Tensor> | [string, Tensor][], metadata: Record<string, string> = {}): Uint8Array {
  return serializeSafetensors(lazyEntries(tensors), metadata);
}

/** saveTensors up to the rename: the file complete under a temporary name, to commit beside others (commitFiles). */
export function stageTensors(path: string, tensors: Map<string, Tensor> | [string, Tensor][], metadata: Record<string, string> = {}): StagedFile {
  return stageSafetensors(path, lazyEntries(tensors), metadata);
}

function lazyEntries(tensors: Map<string, Tensor> | [string, Tensor][]): [string, LazyTensorEntry][] {
  const entries: [string, LazyTensorEntry][] = [];
  for (const [name, t] of tensors) {
    // a copy only where the bytes are not in host memory in order (a GPU tensor, a view)
    const bytes = () => (t.device === 'cpu' && t.isContiguous ? native.sharedBuffer(t.h) : native.toBuffer(t.h));
    entries.push([name, { dtype: t.dtype, shape: t.shape, data: () => new Uint8Array(bytes()) }]);
  }
  return entries;
}

/** Disposes every tensor of a map (such as the one {@link loadTensors} returns). */
export function disposeAll(tensors: Map<string, Tensor>): void {
  for (const t of tensors.values()) t.dispose();
}
