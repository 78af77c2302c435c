// Reader and writer for the safetensors format, independent of the tensor engine.
//
// Layout: u64 little-endian header length N, N bytes of JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the data section; offsets are relative to the start of the data section.
import * as fs from 'node:fs';
import { checkpointError, withErrorKind } from '../util/errors';
import * as nodePath from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { isJsonObject, jsonBrief } from '../util/json-file';
import { StagedFile, fsyncPath, removeDeadTemps, stagedAt, writeError } from '../util/safe-write';
import { MAX_IO_BYTES, readAt as readFully } from './read-at';
import { checkStorage, isZipMagic, readPytorchHeaderFd, refuseLegacyTorchSave, type StorageChecksum } from './pytorch-file';
import { openRegularFile } from '../util/regular-file';
import { sha256OfOpenFile } from './file-sha256';
import { DTYPES, type DType } from '../torch/dtype';
import { tensorByteLength } from './tensor-bytes';

export type { DType } from '../torch/dtype';
export { dtypeByteSize, tensorByteLength } from './tensor-bytes';

/** One tensor as bytes: dtype, shape and its data; what SafetensorsReader.read returns and the writers take. */
export interface TensorEntry {
  dtype: DType;
  shape: number[];
  /** Raw little-endian bytes, row-major. */
  data: Uint8Array;
}

/** A tensor whose dtype and shape are known up front but whose bytes are produced on demand. */
export interface LazyTensorEntry {
  dtype: DType;
  shape: number[];
  data: () => Uint8Array;
}

/**
 * One tensor for the safetensors writers: its bytes, a {@link LazyTensorEntry}, or a function that makes the
 * whole entry (shapes then unknown until it is called, so the data are staged in a second file first).
 */
export type TensorSourceItem = TensorEntry | LazyTensorEntry | (() => TensorEntry);
/** The tensors to write (writeSafetensors, stageSafetensors, serializeSafetensors), as [name, item] pairs or a record by name; written sorted by name. */
export type TensorSource = Iterable<[string, TensorSourceItem]> | Record<string, TensorSourceItem>;

/** Where one tensor lies in a file, from its header alone (readSafetensorsHeader, SafetensorsReader.info). */
export interface TensorInfo {
  dtype: DType;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file (or buffer). */
  offset: number;
  byteLength: number;
  /** A torch.save file's zip entry holding the tensor's storage, with the CRC-32 its bytes must match. */
  storage?: StorageChecksum;
}

/** What {@link readSafetensorsHeader} returns: the `__metadata__` strings and each tensor's {@link TensorInfo}, by name. */
export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
}

/** A whole file in memory (readSafetensors, deserializeSafetensors): the `__metadata__` strings and every tensor by name. */
export interface SafetensorsContents {
  metadata: Record<string, string>;
  tensors: Map<string, TensorEntry>;
}

/** The safetensors dtype string of each semaim dtype ('F32', 'BF16', 'I64', 'BOOL', ...), written into headers. */
export const DTYPE_TO_SAFETENSORS: Readonly<Record<DType, string>> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

/** The inverse of {@link DTYPE_TO_SAFETENSORS}, used to read headers; any other safetensors dtype is refused as unknown. */
export const SAFETENSORS_TO_DTYPE: Readonly<Record<string, DType>> = Object.fromEntries(Object.entries(DTYPE_TO_SAFETENSORS).map(([k, v]) => [v, k as DType]));

const MAX_HEADER_BYTES = 100_000_000; // same limit as the reference implementation

// ---------------------------------------------------------------- writing

interface Spec {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
}

function normalizeSource(tensors: TensorSource): [string, TensorSourceItem][] {
  const items: [string, TensorSourceItem][] =
    Symbol.iterator in (tensors as object)
      ? [...(tensors as Iterable<[string, TensorSourceItem]>)]
      : Object.entries(tensors as Record<string, TensorSourceItem>);
  const seen = new Set<string>();
  for (const [name] of items) {
    if (typeof name !== 'string' || name.length === 0) throw new Error('tensor names must be non-empty strings');
    if (name === '__metadata__') throw new Error(`'__metadata__' is reserved and cannot be a tensor name`);
    if (seen.has(name)) throw new Error(`duplicate tensor name '${name}'`);
    seen.add(name);
  }
  return items.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function checkMetadata(metadata: Record<string, string> | undefined): void {
  if (metadata === undefined) return;
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new Error(`metadata value for '${k}' must be a string, got ${typeof v}`);
  }
}

function specOf(name: string, dtype: DType, shape: number[]): Spec {
  if (!DTYPES.includes(dtype)) throw new Error(`tensor '${name}': unknown dtype '${String(dtype)}'`);
  if (!Array.isArray(shape)) throw new Error(`tensor '${name}': shape must be an array`);
  try {
    return { name, dtype, shape: [...shape], byteLength: tensorByteLength(dtype, shape) };
  } catch (e) {
    throw new Error(`tensor '${name}': ${(e as Error).message}`, { cause: e });
  }
}

function checkData(spec: Spec, data: Uint8Array): void {
  if (!(data instanceof Uint8Array)) throw new Error(`tensor '${spec.name}': data must be a Uint8Array`);
  if (data.byteLength !== spec.byteLength) {
    throw new Error(`tensor '${spec.name}': ${spec.dtype} [${spec.shape.join(', ')}] needs ${spec.byteLength} bytes, got ${data.byteLength}`);
  }
}

/** Resolves an item to its bytes, checking them against `spec` if it is already known. */
function resolve(name: string, item: TensorSourceItem, spec?: Spec): { spec: Spec; data: Uint8Array } {
  let entry: TensorEntry;
  if (typeof item === 'function') entry = item();
  else if (typeof item.data === 'function') entry = { dtype: item.dtype, shape: item.shape, data: item.data() };
  else entry = item as TensorEntry;
  if (entry === null || typeof entry !== 'object') throw new Error(`tensor '${name}': producer returned no entry`);
  const actual = specOf(name, entry.dtype, entry.shape);
  if (spec && (spec.dtype !== actual.dtype || spec.byteLength !== actual.byteLength)) {
    throw new Error(`tensor '${name}': produced ${actual.dtype} [${actual.shape}] but declared ${spec.dtype} [${spec.shape}]`);
  }
  checkData(actual, entry.data);
  return { spec: actual, data: entry.data };
}

/** Header bytes (length prefix + JSON padded with spaces so the data section is 8-aligned). */
function encodeHeader(specs: Spec[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = Object.create(null); // a tensor may be named '__proto__' (a .pth's key, say)
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const s of specs) {
    header[s.name] = { dtype: DTYPE_TO_SAFETENSORS[s.dtype], shape: s.shape, data_offsets: [offset, offset + s.byteLength] };
    offset += s.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const n = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + n, 0x20);
  out.writeBigUInt64LE(BigInt(n), 0);
  json.copy(out, 8);
  return out;
}

function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.byteLength) done += fs.writeSync(fd, data, done, Math.min(data.byteLength - done, MAX_IO_BYTES));
}

function readAt(fd: number, into: Uint8Array, position: number, label: string): void {
  readFully(fd, into, position, () => new Error(`${label}: unexpected end of file`));
}

/**
 * Writes a safetensors file atomically: the bytes go to a temporary file next to `path`,
 * which is fsynced and renamed over `path` only once complete. Tensors are sorted by name
 * and written one at a time; lazy producers are called one at a time, in that order.
 *
 * Prefer `{dtype, shape, data: () => bytes}` for lazy tensors: the header can then be
 * written first. With bare `() => TensorEntry` producers the shapes are unknown until
 * called, so the data section is staged in a second temporary file and copied after
 * the header (memory stays bounded, at the cost of writing the data twice).
 */
export function writeSafetensors(path: string, tensors: TensorSource, metadata?: Record<string, string>): { sha256: string } {
  const staged = stageSafetensors(path, tensors, metadata);
  staged.commit();
  // Make the rename itself durable; not possible on every platform, so best effort.
  fsyncPath(nodePath.dirname(path));
  return { sha256: staged.sha256 };
}

/**
 * writeSafetensors up to the rename: the complete, fsynced file under a temporary name beside `path`, to
 * commit (with commitFiles, beside other files) or abort; with the sha256 of its bytes, hashed as they
 * were written (reading a 2 GB checkpoint back to hash it took a quarter of its save).
 */
export function stageSafetensors(path: string, tensors: TensorSource, metadata?: Record<string, string>): StagedFile & { sha256: string } {
  checkMetadata(metadata);
  const items = normalizeSource(tensors);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const staging = `${tmp}.data`;
  let fd: number | undefined;
  let sfd: number | undefined;
  const hash = createHash('sha256');
  const out = (data: Uint8Array): void => {
    writeAll(fd!, data);
    // (in pieces: Node's hash refuses 2 GiB or more at once)
    for (let at = 0; at < data.byteLength; at += MAX_IO_BYTES) hash.update(data.subarray(at, at + MAX_IO_BYTES));
  };
  try {
    removeDeadTemps(path);
    fd = fs.openSync(tmp, 'wx');
    if (items.every(([, item]) => typeof item !== 'function')) {
      const specs = items.map(([name, item]) => {
        const e = item as TensorEntry | LazyTensorEntry;
        return specOf(name, e.dtype, e.shape);
      });
      out(encodeHeader(specs, metadata));
      items.forEach(([name, item], i) => out(resolve(name, item, specs[i]).data));
    } else {
      sfd = fs.openSync(staging, 'wx+');
      const specs: Spec[] = [];
      for (const [name, item] of items) {
        const r = resolve(name, item);
        specs.push(r.spec);
        writeAll(sfd, r.data);
      }
      out(encodeHeader(specs, metadata));
      const total = specs.reduce((a, s) => a + s.byteLength, 0);
      const chunk = new Uint8Array(Math.min(total, 16 << 20));
      for (let pos = 0; pos < total; pos += chunk.byteLength) {
        const part = chunk.subarray(0, Math.min(chunk.byteLength, total - pos));
        readAt(sfd, part, pos, staging);
        out(part);
      }
      fs.closeSync(sfd);
      sfd = undefined;
      fs.unlinkSync(staging);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    if (sfd !== undefined) fs.closeSync(sfd);
    fs.rmSync(tmp, { force: true });
    fs.rmSync(staging, { force: true });
    throw writeError(path, e);
  }
  return { ...stagedAt(path, tmp), sha256: hash.digest('hex') };
}

/** In-memory variant of writeSafetensors. */
export function serializeSafetensors(tensors: TensorSource, metadata?: Record<string, string>): Uint8Array {
  checkMetadata(metadata);
  const resolved = normalizeSource(tensors).map(([name, item]) => resolve(name, item));
  const header = encodeHeader(
    resolved.map((r) => r.spec),
    metadata,
  );
  const out = new Uint8Array(header.byteLength + resolved.reduce((a, r) => a + r.data.byteLength, 0));
  out.set(header, 0);
  let pos = header.byteLength;
  for (const r of resolved) {
    out.set(r.data, pos);
    pos += r.data.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------- reading

/** Header length from the 8-byte prefix, checked against the total size. */
function headerLength(prefix: Uint8Array, totalSize: number, label: string): number {
  if (totalSize < 8) throw new Error(`${label}: truncated file (${totalSize} bytes, need at least 8 for the header length)`);
  const n = Buffer.from(prefix.buffer, prefix.byteOffset, 8).readBigUInt64LE(0);
  if (n > BigInt(totalSize - 8)) {
    throw new Error(`${label}: header length ${n} is larger than the file (${totalSize} bytes); file truncated or not safetensors`);
  }
  if (n > BigInt(MAX_HEADER_BYTES)) throw new Error(`${label}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  return Number(n);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The first key that appears twice in one object of a valid JSON text (JSON.parse silently keeps the last), or null. */
function firstDuplicateKey(text: string): string | null {
  const objects: (Set<string> | null)[] = []; // null: an array
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{') objects.push(new Set());
    else if (c === '[') objects.push(null);
    else if (c === '}' || c === ']') objects.pop();
    else if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const keys = objects[objects.length - 1];
      let next = end + 1;
      while (' \t\n\r'.includes(text[next])) next++;
      if (keys && text[next] === ':') {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (keys.has(key)) return key;
        keys.add(key);
      }
      i = end;
    }
  }
  return null;
}

function parseHeader(json: Uint8Array, headerLen: number, totalSize: number, label: string): SafetensorsHeader {
  let raw: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${label}: header is not valid UTF-8 JSON (${(e as Error).message})`, { cause: e });
  }
  if (!isJsonObject(raw)) throw new Error(`${label}: header must be a JSON object`);
  const twice = firstDuplicateKey(text);
  if (twice !== null) throw new Error(`${label}: header lists '${twice}' twice in one object (which one is meant is unknown)`);

  const metadata: Record<string, string> = {};
  const rawMeta = raw.__metadata__;
  if (rawMeta !== undefined && rawMeta !== null) {
    if (!isJsonObject(rawMeta)) throw new Error(`${label}: __metadata__ must be an object`);
    for (const [k, v] of Object.entries(rawMeta)) {
      if (typeof v !== 'string') throw new Error(`${label}: __metadata__ value for '${k}' is not a string`);
      metadata[k] = v;
    }
  }

  const dataStart = 8 + headerLen;
  const dataSize = totalSize - dataStart;
  const ranges: { name: string; begin: number; end: number }[] = [];
  const tensors = new Map<string, TensorInfo>();
  for (const [name, v] of Object.entries(raw)) {
    if (name === '__metadata__') continue;
    const where = `${label}: tensor '${name}'`;
    if (!isJsonObject(v)) throw new Error(`${where}: entry must be an object`);
    const dtype = typeof v.dtype === 'string' && Object.hasOwn(SAFETENSORS_TO_DTYPE, v.dtype) ? SAFETENSORS_TO_DTYPE[v.dtype] : undefined;
    if (dtype === undefined) throw new Error(`${where}: unknown dtype ${jsonBrief(v.dtype)}`);
    const shape = v.shape;
    if (!Array.isArray(shape) || !shape.every(isIndex)) throw new Error(`${where}: invalid shape ${jsonBrief(shape)}`);
    const off = v.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !isIndex(off[0]) || !isIndex(off[1]) || off[0] > off[1]) {
      throw new Error(`${where}: invalid data_offsets ${jsonBrief(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end > dataSize) {
      throw new Error(`${where}: data_offsets [${begin}, ${end}] out of range (data section is ${dataSize} bytes; file truncated?)`);
    }
    let expected: number;
    try {
      expected = tensorByteLength(dtype, shape);
    } catch (e) {
      throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
    }
    if (end - begin !== expected) {
      throw new Error(`${where}: ${v.dtype} [${shape.join(', ')}] needs ${expected} bytes but data_offsets span ${end - begin}`);
    }
    ranges.push({ name, begin, end });
    tensors.set(name, { dtype, shape: shape as number[], offset: dataStart + begin, byteLength: end - begin });
  }

  // Tensors must tile the data section exactly: no overlaps, no gaps, nothing left over.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev = '';
  for (const r of ranges) {
    if (r.begin < pos) throw new Error(`${label}: tensor '${r.name}' overlaps tensor '${prev}' (offset ${r.begin} < ${pos})`);
    if (r.begin > pos) throw new Error(`${label}: gap in data section before tensor '${r.name}' (bytes ${pos}..${r.begin} unused)`);
    pos = r.end;
    prev = r.name;
  }
  if (pos !== dataSize) {
    throw new Error(`${label}: data section is ${dataSize} bytes but tensors cover only ${pos}`);
  }
  return { metadata, tensors };
}

/** Reads and validates just the header of a safetensors file. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openWeightsFile(path);
  try {
    return readHeaderFd(fd, path);
  } finally {
    fs.closeSync(fd);
  }
}

/** The file's descriptor; a path that is missing or not a regular file is a CheckpointError too. */
function openWeightsFile(path: string): number {
  return withErrorKind(() => openRegularFile(path), checkpointError);
}

function readHeaderFd(fd: number, label: string): SafetensorsHeader {
  // a file that opens but is not a readable safetensors or torch.save file: CheckpointError (code ERR_CHECKPOINT)
  return withErrorKind(() => parseHeaderFd(fd, label), checkpointError);
}

function parseHeaderFd(fd: number, label: string): SafetensorsHeader {
  const size = fs.fstatSync(fd).size;
  const prefix = new Uint8Array(8);
  if (size >= 8) readAt(fd, prefix, 0, label);
  if (isZipMagic(prefix)) return readPytorchHeaderFd(fd, label); // a torch.save file: read in place, the same way
  refuseLegacyTorchSave(prefix, label);
  let n: number;
  try {
    n = headerLength(prefix, size, label);
  } catch (e) {
    // a .pth/.pt/.bin name promises a torch.save file: say that it is not one, rather than only that the header is bad
    if (/\.(pth|pt|bin)$/i.test(label))
      throw new Error(`${label}: neither a torch.save file (a zip archive since PyTorch 1.6) nor safetensors (${(e as Error).message})`, { cause: e });
    throw e;
  }
  const json = new Uint8Array(n);
  readAt(fd, json, 8, label);
  return parseHeader(json, n, size, label);
}

/** Random access to the tensors of a file, reading one tensor at a time. */
export class SafetensorsReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly tensors: Map<string, TensorInfo>;
  private fd: number | undefined;
  /** The storages (torch.save files) whose CRC-32 has been checked, by their start in the file. */
  private readonly checked = new Set<number>();

  constructor(path: string) {
    this.path = path;
    this.fd = openWeightsFile(path);
    try {
      const h = readHeaderFd(this.fd, path);
      this.metadata = h.metadata;
      this.tensors = h.tensors;
    } catch (e) {
      fs.closeSync(this.fd);
      this.fd = undefined;
      throw e;
    }
  }

  /** Tensor names, sorted. */
  keys(): string[] {
    return [...this.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor named '${name}'`);
    return { ...t, shape: [...t.shape] };
  }

  /** Reads one tensor's bytes into a fresh (hence suitably aligned) buffer. */
  read(name: string): TensorEntry {
    if (this.fd === undefined) throw new Error(`${this.path}: reader is closed`);
    const t = this.info(name);
    const data = new Uint8Array(t.byteLength);
    readAt(this.fd, data, t.offset, this.path);
    if (t.storage && !this.checked.has(t.storage.start)) {
      checkStorage(this.fd, t.storage, t.offset === t.storage.start && t.byteLength === t.storage.size ? data : null, `${this.path}: tensor '${name}'`);
      this.checked.add(t.storage.start);
    }
    return { dtype: t.dtype, shape: t.shape, data };
  }

  /** The SHA-256 of the file this reader reads (hashed on its descriptor: the bytes it reads, whatever the path names now). */
  sha256(): string {
    if (this.fd === undefined) throw new Error(`${this.path}: reader is closed`);
    return sha256OfOpenFile(this.fd);
  }

  close(): void {
    if (this.fd !== undefined) {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Reads a whole file into memory. */
export function readSafetensors(path: string): SafetensorsContents {
  const r = new SafetensorsReader(path);
  try {
    return { metadata: r.metadata, tensors: new Map(r.keys().map((k) => [k, r.read(k)])) };
  } finally {
    r.close();
  }
}

/** In-memory variant of readSafetensors; tensor data are copies, not views of `buf`. */
export function deserializeSafetensors(buf: Uint8Array, label = '<buffer>'): SafetensorsContents {
  const h = withErrorKind(() => {
    const n = headerLength(buf.subarray(0, 8), buf.byteLength, label);
    return parseHeader(buf.subarray(8, 8 + n), n, buf.byteLength, label);
  }, checkpointError);
  const tensors = new Map<string, TensorEntry>();
  for (const k of [...h.tensors.keys()].sort()) {
    const t = h.tensors.get(k)!;
    // copied into a Uint8Array of its own: a Buffer's slice() would be a view of `buf`
    tensors.set(k, { dtype: t.dtype, shape: t.shape, data: new Uint8Array(buf.subarray(t.offset, t.offset + t.byteLength)) });
  }
  return { metadata: h.metadata, tensors };
}
