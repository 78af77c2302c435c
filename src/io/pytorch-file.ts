// PyTorch's torch.save files (.pth, .pt, pytorch_model.bin): a zip archive whose data.pkl pickles the
// object and whose data/N entries hold the tensors' storages, stored uncompressed. Read here without
// running the pickle: a small unpickler knows the few calls torch.save writes (tensor rebuilds,
// OrderedDict) and keeps anything else (argparse.Namespace, numpy scalars) as an inert record, so a
// hostile file can name any Python function and none is called. The result is the same header a
// safetensors file gives (name → dtype, shape, absolute byte offset), so the tensors are read in place.
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { dtypeBytes, type DType } from '../torch/dtype';
import type { SafetensorsHeader, TensorInfo } from './safetensors';
import { tensorByteLength } from './tensor-bytes';
import { readAt } from './read-at';
import { Global, Opaque, unpickle } from './pickle';
import { printable } from '../util/printable';

const STORAGE_DTYPE: Record<string, DType> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/** The keys under which training scripts (MAE, SemAIM, DeiT, timm's train.py) keep the weights in a checkpoint. */
const STATE_DICT_KEYS = ['model', 'state_dict', 'model_state_dict', 'module'];

/** torch.save's format before PyTorch 1.6 starts with its pickled magic number 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46];

/** Throws, naming the file, when it is a torch.save file in the format before PyTorch 1.6 (not a zip archive). */
export function refuseLegacyTorchSave(prefix: Uint8Array, label: string): void {
  if (prefix.length >= 8 && LEGACY_MAGIC.every((b, i) => prefix[i] === b)) {
    throw new Error(
      `${label}: a torch.save file in the format before PyTorch 1.6 (not a zip archive), which semaim does not read: ` +
        'load it and save it again with PyTorch >= 1.6 (torch.save(torch.load(f), f2)), or save its tensors as safetensors',
    );
  }
}

/** True when the file starts as a zip archive (a torch.save file since PyTorch 1.6). */
export function isZipMagic(prefix: Uint8Array): boolean {
  return prefix.length >= 4 && prefix[0] === 0x50 && prefix[1] === 0x4b && prefix[2] === 0x03 && prefix[3] === 0x04;
}

// ---------------------------------------------------------------- zip

interface ZipEntry {
  method: number;
  crc32: number;
  size: number;
  headerOffset: number;
}

function readBytes(fd: number, position: number, length: number, label: string): Buffer {
  const buf = Buffer.alloc(length);
  readAt(fd, buf, position, () => new Error(`${label}: the file ends early (a truncated torch.save archive)`));
  return buf;
}

function u64(b: Buffer, at: number, label: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${label}: a zip size or offset beyond 2^53`);
  return Number(v);
}

/** The central directory: entry name → compression method, size and local header offset (zip64 aware). */
function zipEntries(fd: number, fileSize: number, label: string): Map<string, ZipEntry> {
  const tailLength = Math.min(fileSize, 22 + 65535);
  const tail = readBytes(fd, fileSize - tailLength, tailLength, label);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${label}: not a complete zip archive (no end of central directory): a truncated torch.save file?`);
  let count = tail.readUInt16LE(eocd + 10);
  let dirSize = tail.readUInt32LE(eocd + 12);
  let dirOffset = tail.readUInt32LE(eocd + 16);
  const locator = eocd - 20;
  if (locator >= 0 && tail.readUInt32LE(locator) === 0x07064b50) {
    const z64 = readBytes(fd, u64(tail, locator + 8, label), 56, label);
    if (z64.readUInt32LE(0) !== 0x06064b50) throw new Error(`${label}: a broken zip64 end of central directory`);
    count = u64(z64, 32, label);
    dirSize = u64(z64, 40, label);
    dirOffset = u64(z64, 48, label);
  }
  if (dirOffset + dirSize > fileSize || count > dirSize / 46) throw new Error(`${label}: the zip central directory lies outside the file`);
  const dir = readBytes(fd, dirOffset, dirSize, label);
  const entries = new Map<string, ZipEntry>();
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > dir.length || dir.readUInt32LE(at) !== 0x02014b50) throw new Error(`${label}: a broken zip central directory entry`);
    const method = dir.readUInt16LE(at + 10);
    let size = dir.readUInt32LE(at + 24);
    const uncompressed = dir.readUInt32LE(at + 24);
    let headerOffset = dir.readUInt32LE(at + 42);
    const nameLength = dir.readUInt16LE(at + 28);
    const extraLength = dir.readUInt16LE(at + 30);
    const commentLength = dir.readUInt16LE(at + 32);
    if (at + 46 + nameLength + extraLength > dir.length) throw new Error(`${label}: a broken zip central directory entry`);
    const name = dir.toString('utf8', at + 46, at + 46 + nameLength);
    // zip64: the sizes and offset that overflowed 32 bits follow in the extra field, in this order
    for (let x = at + 46 + nameLength; x + 4 <= at + 46 + nameLength + extraLength;) {
      const id = dir.readUInt16LE(x);
      const len = dir.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let p = x + 4;
        const end = x + 4 + len;
        const u64In = (): number => {
          if (p + 8 > end || end > dir.length) throw new Error(`${label}: a broken zip64 field of ${name}`);
          return u64(dir, (p += 8) - 8, label);
        };
        if (uncompressed === 0xffffffff) size = u64In();
        if (dir.readUInt32LE(at + 20) === 0xffffffff) u64In();
        if (headerOffset === 0xffffffff) headerOffset = u64In();
      }
      x += 4 + len;
    }
    // (readers differ on which of two is meant: Python's zipfile takes the last, a binary search any)
    if (entries.has(name)) throw new Error(`${label}: the zip archive lists the entry ${printable(name)} twice; which one is meant is unknown`);
    entries.set(name, { method, crc32: dir.readUInt32LE(at + 16), size, headerOffset });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** Where an entry's bytes start (after its local header); refused when its size runs past the file's end (a zip64 size can claim any). */
function dataStart(fd: number, e: ZipEntry, name: string, label: string): number {
  const h = readBytes(fd, e.headerOffset, 30, label);
  if (h.readUInt32LE(0) !== 0x04034b50) throw new Error(`${label}: entry ${name} has a broken local header`);
  if (e.method !== 0) throw new Error(`${label}: entry ${name} is compressed (method ${e.method}); torch.save stores its entries uncompressed`);
  const start = e.headerOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
  if (start + e.size > fs.fstatSync(fd).size)
    throw new Error(`${label}: entry ${name} (${e.size} bytes from byte ${start}) runs past the end of the file: a truncated or damaged torch.save archive`);
  return start;
}

/** Where a storage's bytes lie in the archive, and the CRC-32 its zip entry records for them. */
export interface StorageChecksum {
  entry: string;
  start: number;
  size: number;
  crc32: number;
}

/**
 * Checks a storage's bytes against its CRC-32 (a damaged or partly downloaded file would otherwise
 * load as wrong weights): from `whole` when the caller has read exactly those bytes, else read in chunks.
 */
export function checkStorage(fd: number, s: StorageChecksum, whole: Uint8Array | null, label: string): void {
  let crc = 0;
  if (whole) crc = crc32(whole);
  else for (let at = 0; at < s.size; at += CRC_CHUNK) crc = crc32(readBytes(fd, s.start + at, Math.min(CRC_CHUNK, s.size - at), label), crc);
  if (crc !== s.crc32) throw new Error(`${label}: its storage ${s.entry} does not match its CRC-32: the file is damaged`);
}

const CRC_CHUNK = 16 << 20;

// ---------------------------------------------------------------- tensor references in the pickle

interface StorageRef {
  kind: 'storage';
  dtype: DType | null;
  storageType: string;
  key: string;
  numel: number;
}
interface TensorRef {
  kind: 'tensor';
  storage: StorageRef;
  offset: number;
  shape: number[];
  stride: number[];
}

/** A short, safe description of a pickled value for a message (never recursing into it). */
function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (Array.isArray(v)) return `a tuple of ${v.length}`;
  if (v instanceof Map) return `a dict of ${v.size}`;
  if (v instanceof Opaque) return `a ${v.global.slice(0, 80)}`;
  return typeof v;
}

function isTensorRef(v: unknown): v is TensorRef {
  return typeof v === 'object' && v !== null && (v as TensorRef).kind === 'tensor';
}

function asInts(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x) && x >= 0)) throw new Error(`${what} is not a tuple of sizes`);
  return v as number[];
}

function storageOf(pid: unknown): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) throw new Error(`an unknown persistent id (${describe(pid)})`);
  const type = pid[1] instanceof Global ? pid[1].name : typeof pid[1] === 'string' ? pid[1] : describe(pid[1]);
  const short = type.replace(/^torch\./, '');
  if (typeof pid[2] !== 'string' || !Number.isSafeInteger(pid[4])) throw new Error('a storage reference without a key or size');
  return {
    kind: 'storage',
    storageType: short,
    dtype: Object.hasOwn(STORAGE_DTYPE, short) ? STORAGE_DTYPE[short] : null,
    key: pid[2],
    numel: pid[4] as number,
  };
}

/** Calls a global: the tensor rebuilds and the containers torch.save writes are understood, anything else is recorded. */
function call(fn: unknown, args: unknown[]): unknown {
  const name = fn instanceof Global ? fn.name : '?';
  if (name === 'torch._utils._rebuild_tensor_v2' || name === 'torch._utils._rebuild_tensor') {
    const [storage, offset, size, stride] = args;
    if (!(typeof storage === 'object' && storage && (storage as StorageRef).kind === 'storage')) throw new Error(`${name} without a storage`);
    if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw new Error(`${name}: a bad storage offset`);
    return { kind: 'tensor', storage, offset, shape: asInts(size, 'a tensor size'), stride: asInts(stride, 'a tensor stride') } as TensorRef;
  }
  if (name === 'torch._utils._rebuild_parameter' || name === 'torch._utils._rebuild_parameter_with_state') return args[0];
  // a tensor of a subclass (or with Python state): (rebuild function, class, its arguments, state); the
  // data is what the rebuild function gives, the class and the state are Python's
  // (one level: a pickle can make its own arguments hold this call again, which would recurse without end)
  const inner = args[0] instanceof Global ? args[0].name : '';
  if (name === 'torch._tensor._rebuild_from_type_v2') return Array.isArray(args[2]) && inner !== name ? call(args[0], args[2]) : new Opaque(name, args);
  if (name === 'collections.OrderedDict') return new Map();
  return new Opaque(name, args);
}

// ---------------------------------------------------------------- the header

function contiguousStrides(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** The dict of tensors in a checkpoint: the one under 'model' / 'state_dict' / ..., else the object itself. */
function stateDictOf(obj: unknown, label: string): Map<unknown, unknown> {
  if (obj instanceof Map) {
    // an entry of tensors under 'model', 'state_dict', ... first: a checkpoint may keep a tensor of its own
    // beside it (a saved RNG state), which made it read as the state dict and its weights left unread
    for (const k of STATE_DICT_KEYS) {
      const v = obj.get(k);
      if (v instanceof Map && [...v.values()].some(isTensorRef)) return v;
    }
    if ([...obj.values()].some(isTensorRef)) return obj;
    const keys = [...obj.keys()].slice(0, 12).map(describe);
    const held = keys.length ? `its top-level keys are ${keys.join(', ')}` : 'it holds an empty dict';
    throw new Error(`${label}: a torch.save file without a state dict: ${held} (looked under ${STATE_DICT_KEYS.join(', ')})`);
  }
  throw new Error(`${label}: a torch.save file that holds ${describe(obj)}, not a dict of tensors`);
}

/** The header of a torch.save file, as safetensors': each tensor's dtype, shape and place in the file. */
export function readPytorchHeaderFd(fd: number, label: string): SafetensorsHeader {
  const fileSize = fs.fstatSync(fd).size;
  const entries = zipEntries(fd, fileSize, label);
  const pkl = [...entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) throw new Error(`${label}: a zip archive without <name>/data.pkl: not a torch.save file`);
  const root = pkl.slice(0, -'data.pkl'.length);
  // .format_version and .storage_alignment (PyTorch 2.x) say only in which order and at what alignment the
  // storages were written; each storage is found by its entry's name and local header, so neither is checked
  const byteorder = entries.get(`${root}byteorder`);
  if (byteorder) {
    const order = readBytes(fd, dataStart(fd, byteorder, 'byteorder', label), Math.min(byteorder.size, 16), label).toString('latin1');
    if (order !== 'little') throw new Error(`${label}: saved on a ${order}-endian machine; only little-endian files are read`);
  }
  const pklEntry = entries.get(pkl)!;
  if (pklEntry.size > 256 * 1024 * 1024) throw new Error(`${label}: data.pkl of ${pklEntry.size} bytes is not a state dict's`);
  const pickled = readBytes(fd, dataStart(fd, pklEntry, pkl, label), pklEntry.size, label);
  if (crc32(pickled) !== pklEntry.crc32) throw new Error(`${label}: ${pkl} does not match its CRC-32: the file is damaged`);
  let obj: unknown;
  try {
    obj = unpickle(pickled, label, { call, persistentLoad: storageOf });
  } catch (e) {
    const m = (e as Error).message;
    throw new Error(m.startsWith(label) ? m : `${label}: ${m}`, { cause: e });
  }
  const tensors = new Map<string, TensorInfo>();
  const starts = new Map<string, StorageChecksum>();
  let viewed = 0;
  for (const [key, value] of stateDictOf(obj, label)) {
    if (value instanceof Opaque && /^torch\..*\._rebuild_/.test(value.global)) {
      // a tensor of a kind the reader does not rebuild: dropping it would lose a weight without a word
      throw new Error(
        `${label}: tensor ${describe(key)} is saved through ${value.global} (a sparse, quantized, nested or device tensor), which semaim does not read: save it as a dense tensor (.to_dense(), .dequantize(), .cpu())`,
      );
    }
    if (!isTensorRef(value)) continue; // e.g. a version number beside the weights
    if (typeof key !== 'string') throw new Error(`${label}: a tensor under the key ${describe(key)}: a state dict's keys are names`);
    const name = key;
    const s = value.storage;
    if (!s.dtype) throw new Error(`${label}: tensor '${name}' is stored as ${s.storageType}, a type semaim does not read`);
    if (value.shape.length !== value.stride.length) throw new Error(`${label}: tensor '${name}' has a size and a stride of different lengths`);
    const strides = contiguousStrides(value.shape);
    if (value.shape.some((d, i) => d > 1 && value.stride[i] !== strides[i])) {
      throw new Error(`${label}: tensor '${name}' is not contiguous in its storage (strides ${value.stride.join(', ')}); save it with .contiguous()`);
    }
    let place = starts.get(s.key);
    if (!place) {
      const e = entries.get(`${root}data/${s.key}`);
      if (!e) throw new Error(`${label}: tensor '${name}' refers to storage ${s.key}, which the archive does not hold`);
      place = { entry: `data/${s.key}`, start: dataStart(fd, e, `data/${s.key}`, label), size: e.size, crc32: e.crc32 };
      starts.set(s.key, place);
    }
    let byteLength: number;
    try {
      byteLength = tensorByteLength(s.dtype, value.shape);
    } catch (e) {
      throw new Error(`${label}: tensor '${name}': ${(e as Error).message} (libtorch multiplies its sizes in this order and overflows)`, { cause: e });
    }
    const offset = value.offset * dtypeBytes(s.dtype);
    if (offset + byteLength > place.size) {
      throw new Error(`${label}: tensor '${name}' (${value.shape.join('×')} at element ${value.offset}) lies outside its storage of ${place.size} bytes`);
    }
    tensors.set(name, { dtype: s.dtype, shape: [...value.shape], offset: place.start + offset, byteLength, storage: place });
    viewed += byteLength;
  }
  // Names viewing one storage are legal (tied weights; a block shared at every depth is listed under each
  // depth's names, up to ~24×), but a loader copies each view: 1,500 names over one 1 MB storage made
  // 1.5 GB from a 1.2 MB file. 32× the file, plus 256 MiB for small files, leaves tied weights room.
  if (viewed > 32 * fileSize + (256 << 20)) {
    throw new Error(
      `${label}: its ${tensors.size} tensors view ${viewed} bytes of a ${fileSize}-byte file: many names over the same storage, not a state dict's`,
    );
  }
  return { metadata: { format: 'pytorch' }, tensors };
}
