import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { readAt } from '../../src/io/read-at';
import {
  DType,
  TensorEntry,
  DTYPE_TO_SAFETENSORS,
  SAFETENSORS_TO_DTYPE,
  dtypeByteSize,
  tensorByteLength,
  writeSafetensors,
  readSafetensorsHeader,
  SafetensorsReader,
  readSafetensors,
  serializeSafetensors,
  deserializeSafetensors,
} from '../../src/io/safetensors';
import { float32ToBfloat16Bytes, bfloat16BytesToFloat32, float32ToFloat16Bytes, float16BytesToFloat32 } from '../../src/io/half-float';

const ALL: DType[] = ['float64', 'float32', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];
const PY = '/usr/bin/python3';
const SCRIPT = path.join(__dirname, '..', '..', '..', 'scripts', 'safetensors_check.py');

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'semaim-st-'));
}

function bytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 37 + seed * 11) & 0xff;
  return out;
}

function entry(dtype: DType, shape: number[], seed = 1): TensorEntry {
  const data = pattern(tensorByteLength(dtype, shape), seed);
  if (dtype === 'bool') data.forEach((v, i) => (data[i] = v & 1));
  return { dtype, shape, data };
}

/** Raw file bytes from a header object and a data section, for crafting bad files. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Uint8Array {
  const json = Buffer.from(headerText ?? JSON.stringify(header));
  const out = Buffer.alloc(8 + json.length + data.length);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** `content` written to a fresh temporary file; its path. */
function writeTemp(content: Uint8Array): string {
  const file = path.join(tmpDir(), 'f.safetensors');
  fs.writeFileSync(file, content);
  return file;
}

/** An 8-byte file: a header length and nothing after it. */
function lengthOnly(n: number): Uint8Array {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(n), 0);
  return out;
}

/** Element values of an entry, in row-major order. */
function decode(e: TensorEntry): (number | bigint | boolean)[] {
  const d = e.data;
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const n = d.byteLength / dtypeByteSize(e.dtype);
  const out: (number | bigint | boolean)[] = [];
  for (let i = 0; i < n; i++) {
    switch (e.dtype) {
      case 'float64':
        out.push(dv.getFloat64(i * 8, true));
        break;
      case 'float32':
        out.push(dv.getFloat32(i * 4, true));
        break;
      case 'float16':
        out.push(float16BytesToFloat32(d.subarray(i * 2, i * 2 + 2))[0]!);
        break;
      case 'bfloat16':
        out.push(bfloat16BytesToFloat32(d.subarray(i * 2, i * 2 + 2))[0]!);
        break;
      case 'int64':
        out.push(dv.getBigInt64(i * 8, true));
        break;
      case 'int32':
        out.push(dv.getInt32(i * 4, true));
        break;
      case 'int16':
        out.push(dv.getInt16(i * 2, true));
        break;
      case 'int8':
        out.push(dv.getInt8(i));
        break;
      case 'uint8':
        out.push(dv.getUint8(i));
        break;
      case 'bool':
        out.push(dv.getUint8(i) !== 0);
        break;
    }
  }
  return out;
}

function pythonHasTorch(): boolean {
  const r = spawnSync(PY, ['-c', 'import torch'], { stdio: 'ignore' });
  return r.status === 0;
}

function runPy(...args: string[]): string {
  const r = spawnSync(PY, [SCRIPT, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `python ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

test('dtype tables and byte sizes', () => {
  const sizes = [8, 4, 2, 2, 8, 4, 2, 1, 1, 1];
  ALL.forEach((d, i) => {
    assert.equal(dtypeByteSize(d), sizes[i]);
    assert.equal(SAFETENSORS_TO_DTYPE[DTYPE_TO_SAFETENSORS[d]], d);
  });
  assert.deepEqual(Object.keys(SAFETENSORS_TO_DTYPE).sort(), ['BF16', 'BOOL', 'F16', 'F32', 'F64', 'I16', 'I32', 'I64', 'I8', 'U8']);
  assert.equal(tensorByteLength('float32', []), 4);
  assert.equal(tensorByteLength('int64', [2, 0, 3]), 0);
  assert.throws(() => tensorByteLength('float32', [2, -1]), /invalid shape/);
  // an empty tensor whose other dimensions multiply past 2^53 (libtorch's size check overflows on it)
  assert.throws(() => tensorByteLength('float32', [2 ** 52, 2 ** 52, 0]), /shape \[4503599627370496, 4503599627370496, 0\] is too large/);
  assert.throws(() => dtypeByteSize('complex64' as DType), /unknown dtype/);
});

test('round-trips every dtype, 0-d and empty tensors, and metadata', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'all.safetensors');
  const tensors = new Map<string, TensorEntry>();
  ALL.forEach((d, i) => {
    tensors.set(`t.${d}`, entry(d, [2, 3], i));
    tensors.set(`scalar.${d}`, entry(d, [], i + 20));
    tensors.set(`empty.${d}`, entry(d, [0, 4], i));
  });
  tensors.set('z.long', entry('float32', [3, 5, 7], 99));
  const metadata = { format: 'pt', note: 'ünïcödé "quoted"' };
  writeSafetensors(file, tensors, metadata);

  const raw = fs.readFileSync(file);
  const n = Number(raw.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0, 'data section is 8-byte aligned');

  const back = readSafetensors(file);
  assert.deepEqual(back.metadata, metadata);
  assert.deepEqual([...back.tensors.keys()], [...tensors.keys()].sort());
  for (const [name, t] of tensors) assert.deepEqual(back.tensors.get(name), t, name);

  // Data is laid out in name order, as the reference library does.
  const header = readSafetensorsHeader(file);
  const byOffset = [...header.tensors].sort((a, b) => a[1].offset - b[1].offset || a[1].byteLength - b[1].byteLength);
  const nonEmpty = byOffset.filter(([, i]) => i.byteLength > 0).map(([k]) => k);
  assert.deepEqual(nonEmpty, [...nonEmpty].sort());
  assert.equal(header.tensors.get('empty.float32')!.byteLength, 0);
  assert.deepEqual(header.tensors.get('scalar.int64')!.shape, []);

  // In-memory variants produce and accept the same bytes.
  const mem = serializeSafetensors(tensors, metadata);
  assert.deepEqual(Buffer.from(mem), raw);
  const des = deserializeSafetensors(mem);
  assert.deepEqual(des.metadata, metadata);
  for (const [name, t] of tensors) assert.deepEqual(des.tensors.get(name), t, name);
  fs.rmSync(dir, { recursive: true });
});

test('accepts records, pair lists and lazy producers; no metadata gives an empty object', () => {
  const a = entry('float32', [4], 1);
  const b = entry('int16', [2, 2], 2);
  const c = entry('bfloat16', [3], 3);
  const viaRecord = serializeSafetensors({ b, a, c });
  const viaPairs = serializeSafetensors([
    ['c', () => c],
    ['a', a],
    ['b', { dtype: b.dtype, shape: b.shape, data: () => b.data }],
  ]);
  assert.deepEqual(viaPairs, viaRecord);
  const back = deserializeSafetensors(viaRecord);
  assert.deepEqual(back.metadata, {});
  assert.deepEqual(back.tensors.get('c'), c);
});

test("tensors named like Object.prototype's members ('__proto__', 'constructor') are written and read back", () => {
  const a = entry('float32', [2], 1);
  const b = entry('int8', [3], 2);
  // a torch.save file's keys become tensor names (export --checkpoint x.pth); '__proto__' left the header without its entry
  const back = deserializeSafetensors(
    serializeSafetensors([
      ['__proto__', a],
      ['constructor', b],
      ['w', a],
    ]),
  );
  assert.deepEqual([...back.tensors.keys()].sort(), ['__proto__', 'constructor', 'w']);
  assert.deepEqual(back.tensors.get('__proto__'), a);
  assert.deepEqual(back.tensors.get('constructor'), b);
});

test('SafetensorsReader reads tensors one at a time', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'r.safetensors');
  const a = entry('float64', [3, 2], 5);
  const b = entry('uint8', [7], 6);
  writeSafetensors(file, { b, a }, { k: 'v' });
  const r = new SafetensorsReader(file);
  assert.deepEqual(r.keys(), ['a', 'b']);
  assert.deepEqual(r.metadata, { k: 'v' });
  const info = r.info('b');
  assert.equal(info.byteLength, 7);
  assert.deepEqual(fs.readFileSync(file).subarray(info.offset, info.offset + 7), Buffer.from(b.data));
  assert.deepEqual(r.read('a'), a);
  assert.deepEqual(r.read('b'), b);
  assert.equal(r.read('a').data.byteOffset % 8, 0);
  assert.throws(() => r.read('nope'), /no tensor named 'nope'/);
  r.close();
  assert.throws(() => r.read('a'), /closed/);
  r.close();
  {
    using r2 = new SafetensorsReader(file);
    assert.deepEqual(r2.read('b'), b);
  }
  fs.rmSync(dir, { recursive: true });
});

test('writes streamingly: lazy producers run one at a time, in name order, after the header', () => {
  const dir = tmpDir();
  const file = path.join(dir, 's.safetensors');
  const calls: string[] = [];
  const sizes: number[] = [];
  const tmpSize = () => {
    const tmp = fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));
    assert.equal(tmp.length, 1);
    return fs.statSync(path.join(dir, tmp[0]!)).size;
  };
  const lazy = (name: string, n: number) => ({
    dtype: 'float32' as const,
    shape: [n],
    data: () => {
      calls.push(name);
      sizes.push(tmpSize());
      return pattern(4 * n, n);
    },
  });
  writeSafetensors(file, [
    ['c', lazy('c', 3)],
    ['a', lazy('a', 1)],
    ['b', lazy('b', 2)],
  ]);
  assert.deepEqual(calls, ['a', 'b', 'c']);
  const start = readSafetensorsHeader(file).tensors.get('a')!.offset;
  assert.deepEqual(sizes, [start, start + 4, start + 12]);

  // Bare producers go through a staging file but give the same result.
  const order: string[] = [];
  const file2 = path.join(dir, 's2.safetensors');
  writeSafetensors(file2, [
    ['c', () => (order.push('c'), entry('int8', [3], 3))],
    ['a', () => (order.push('a'), entry('int8', [1], 1))],
  ]);
  assert.deepEqual(order, ['a', 'c']);
  assert.deepEqual(readSafetensors(file2).tensors.get('c'), entry('int8', [3], 3));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['s.safetensors', 's2.safetensors']);
  fs.rmSync(dir, { recursive: true });
});

test('atomic write: a failing producer leaves the old file and no temporary files', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'ckpt.safetensors');
  writeSafetensors(file, { old: entry('int32', [2], 7) });
  const before = fs.readFileSync(file);
  const boom = () => {
    throw new Error('boom');
  };
  assert.throws(() => writeSafetensors(file, { a: entry('float32', [1000]), b: { dtype: 'float32', shape: [2], data: boom } }), /boom/);
  assert.throws(() => writeSafetensors(file, { a: () => entry('float32', [1000]), b: boom }), /boom/);
  assert.throws(
    () => writeSafetensors(file, { a: entry('float32', [10]), b: { dtype: 'float32', shape: [2], data: () => new Uint8Array(4) } }),
    /tensor 'b'.*needs 8 bytes, got 4/,
  );
  assert.deepEqual(fs.readdirSync(dir), ['ckpt.safetensors']);
  assert.deepEqual(fs.readFileSync(file), before);

  writeSafetensors(file, { new: entry('uint8', [3]) });
  assert.deepEqual(fs.readdirSync(dir), ['ckpt.safetensors']);
  assert.deepEqual(readSafetensorsHeader(file).tensors.has('new'), true);
  fs.rmSync(dir, { recursive: true });
});

test('a lazy tensor whose dtype or shape changes after its header was written is refused, and no file is left (its bytes would not match the header)', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'lazy.safetensors');
  // its producer grows its own shape: 16 bytes under a header that says 8
  const shape = [2];
  const grows = {
    dtype: 'float32' as DType,
    shape,
    data: () => {
      shape.push(2);
      return new Uint8Array(16);
    },
  };
  assert.throws(() => writeSafetensors(file, { a: entry('int8', [3]), b: grows }), /tensor 'b': produced float32 \[2,2\] but declared float32 \[2\]/);
  // the producer of 'a' retypes 'b': int32 bytes of the same size under a header that says float32
  const b = { dtype: 'float32' as DType, shape: [2], data: () => new Uint8Array(8) };
  const a = {
    dtype: 'int8' as DType,
    shape: [1],
    data: () => {
      b.dtype = 'int32';
      return new Uint8Array(1);
    },
  };
  assert.throws(() => writeSafetensors(file, { a, b }), /tensor 'b': produced int32 \[2\] but declared float32 \[2\]/);
  assert.deepEqual(fs.readdirSync(dir), []);
  fs.rmSync(dir, { recursive: true });
});

test('without metadata (or with none in it) the header has no __metadata__ entry, as the reference writer', () => {
  for (const metadata of [undefined, {}]) {
    const buf = Buffer.from(serializeSafetensors({ a: entry('float32', [2]) }, metadata));
    const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(header), ['a']);
  }
});

test('keys() are sorted whatever order the header lists them in, and info() hands out a copy', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'unsorted.safetensors');
  const f32x2 = (begin: number, end: number) => ({ dtype: 'F32', shape: [2], data_offsets: [begin, end] });
  const content = rawFile({ b: f32x2(0, 8), a: f32x2(8, 16) }, pattern(16, 3));
  fs.writeFileSync(file, content);
  const r = new SafetensorsReader(file);
  assert.deepEqual(r.keys(), ['a', 'b']);
  assert.deepEqual([...readSafetensors(file).tensors.keys()], ['a', 'b']);
  r.info('a').shape.push(9);
  assert.deepEqual(r.info('a').shape, [2], "a caller's change to info().shape does not reach the reader");
  r.close();
  fs.rmSync(dir, { recursive: true });
});

test("deserializeSafetensors's tensors are copies, also of a Buffer (whose slice() is a view): reusing the buffer leaves them as read", () => {
  const a = entry('float32', [3], 4);
  const plain = serializeSafetensors({ a, b: entry('int8', [1]) });
  const file = writeTemp(plain);
  for (const buf of [plain, Buffer.from(plain), fs.readFileSync(file)]) {
    const des = deserializeSafetensors(buf);
    buf.fill(0);
    assert.deepEqual(des.tensors.get('a')!.data, a.data, buf.constructor.name);
  }
  fs.rmSync(path.dirname(file), { recursive: true });
});

test('writer validation', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'v.safetensors');
  const ok = entry('float32', [2]);
  assert.throws(() => writeSafetensors(file, { x: { dtype: 'float32', shape: [3], data: new Uint8Array(8) } }), /'x'.*needs 12 bytes, got 8/);
  assert.throws(
    () =>
      writeSafetensors(file, [
        ['x', ok],
        ['x', ok],
      ]),
    /duplicate tensor name 'x'/,
  );
  assert.throws(() => writeSafetensors(file, [['', ok]]), /non-empty/);
  assert.throws(() => writeSafetensors(file, { __metadata__: ok }), /reserved/);
  assert.throws(() => writeSafetensors(file, { x: ok }, { n: 1 as unknown as string }), /metadata value for 'n' must be a string/);
  assert.throws(() => writeSafetensors(file, { x: { dtype: 'complex64' as DType, shape: [1], data: new Uint8Array(8) } }), /unknown dtype/);
  assert.throws(() => writeSafetensors(file, { x: { dtype: 'float32', shape: [1.5], data: new Uint8Array(6) } }), /invalid shape/);
  assert.throws(
    () => writeSafetensors(file, { x: { dtype: 'toString' as DType, shape: [1], data: new Uint8Array(1) } }),
    /tensor 'x': unknown dtype 'toString'/,
  );
  assert.throws(() => writeSafetensors(file, { x: () => ({ dtype: 'int8', shape: [2], data: new Uint8Array(3) }) }), /needs 2 bytes, got 3/);
  assert.deepEqual(fs.readdirSync(dir), []);
  fs.rmSync(dir, { recursive: true });
});

test('reader rejects malformed files with clear errors', () => {
  const dir = tmpDir();
  const good = fs.readFileSync(
    (() => {
      const f = path.join(dir, 'good.safetensors');
      writeSafetensors(f, { a: entry('float32', [2, 2]), b: entry('int8', [3]) });
      return f;
    })(),
  );
  const f32x2 = (begin: number, end: number) => ({ dtype: 'F32', shape: [2], data_offsets: [begin, end] });
  const cases: [string, Uint8Array, RegExp][] = [
    ['empty file', new Uint8Array(0), /truncated file \(0 bytes/],
    ['short prefix', new Uint8Array(5), /truncated file \(5 bytes/],
    ['seven bytes', new Uint8Array(7), /truncated file \(7 bytes, need at least 8/],
    ['length prefix only', lengthOnly(1), /header length 1 is larger than the file \(8 bytes\)/],
    ['header too long', good.subarray(0, 40), /header length \d+ is larger than the file \(40 bytes\)/],
    ['cut data', good.subarray(0, good.length - 1), /tensor 'b': data_offsets \[16, 19\] out of range/],
    ['bad json', rawFile(null, new Uint8Array(0), '{"a": '), /not valid UTF-8 JSON/],
    ['not an object', rawFile([1, 2]), /header must be a JSON object/],
    ['bad metadata', rawFile({ __metadata__: { k: 3 } }), /__metadata__ value for 'k' is not a string/],
    ['metadata not an object', rawFile({ __metadata__: ['x'] }), /__metadata__ must be an object/],
    ['unknown dtype', rawFile({ a: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), /tensor 'a': unknown dtype "C64"/],
    [
      'prototype dtype',
      rawFile({ a: { dtype: 'constructor', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /tensor 'a': unknown dtype "constructor"/,
    ],
    ['bad shape', rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), /tensor 'a': invalid shape/],
    ['reversed offsets', rawFile({ a: f32x2(8, 0) }, new Uint8Array(8)), /invalid data_offsets \[8,0\]/],
    ['negative offsets', rawFile({ a: f32x2(-1, 7) }, new Uint8Array(8)), /invalid data_offsets \[-1,7\]/],
    ['size mismatch', rawFile({ a: f32x2(0, 12) }, new Uint8Array(12)), /tensor 'a': F32 \[2\] needs 8 bytes but data_offsets span 12/],
    ['overlap', rawFile({ a: f32x2(0, 8), b: f32x2(4, 12) }, new Uint8Array(12)), /tensor 'b' overlaps tensor 'a'/],
    ['gap', rawFile({ a: f32x2(0, 8), b: f32x2(12, 20) }, new Uint8Array(20)), /gap in data section before tensor 'b'/],
    ['trailing bytes', rawFile({ a: f32x2(0, 8) }, new Uint8Array(10)), /data section is 10 bytes but tensors cover only 8/],
    ['out of range', rawFile({ a: f32x2(0, 8) }, new Uint8Array(4)), /out of range \(data section is 4 bytes/],
    // JSON.parse keeps the last of two equal keys: a file that says two things about one tensor is refused.
    [
      'twice',
      rawFile(null, new Uint8Array(8), '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}, "a" :{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'),
      /header lists 'a' twice/,
    ],
    [
      'escaped twice',
      rawFile(null, new Uint8Array(8), '{"\\u0061":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'),
      /header lists 'a' twice/,
    ],
    [
      'escaped quote twice',
      rawFile(null, new Uint8Array(8), '{"q\\"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"q\\"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'),
      /header lists 'q"' twice/,
    ],
    ['field twice', rawFile(null, new Uint8Array(8), '{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8],"dtype":"F32"}}'), /header lists 'dtype' twice/],
    [
      'metadata twice',
      rawFile(null, new Uint8Array(8), '{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'),
      /header lists 'k' twice/,
    ],
  ];
  for (const [label, content, re] of cases) {
    const f = path.join(dir, `${label.replace(/ /g, '_')}.safetensors`);
    fs.writeFileSync(f, content);
    assert.throws(
      () => readSafetensorsHeader(f),
      (e: Error) => {
        assert.match(e.message, re, label);
        assert.ok(e.message.startsWith(f), `${label}: message names the file`);
        return true;
      },
    );
    assert.throws(() => new SafetensorsReader(f), re, label);
    assert.throws(() => deserializeSafetensors(content), re, label);
  }
  fs.rmSync(dir, { recursive: true });
});

test('a .pth, .pt or .bin file that is neither a torch.save zip nor safetensors says so; a .safetensors one only what is wrong', () => {
  const dir = tmpDir();
  for (const ext of ['pth', 'pt', 'bin', 'PTH', 'safetensors']) {
    const f = path.join(dir, `short.${ext}`);
    fs.writeFileSync(f, new Uint8Array(5));
    const neither = /neither a torch\.save file \(a zip archive since PyTorch 1\.6\) nor safetensors \(.*truncated file \(5 bytes/;
    assert.throws(
      () => readSafetensorsHeader(f),
      (e: Error) => {
        assert.match(e.message, /truncated file \(5 bytes/, ext);
        assert.equal(neither.test(e.message), ext !== 'safetensors', ext);
        return true;
      },
    );
  }
  fs.rmSync(dir, { recursive: true });
});

test('a header longer than 100 MB is refused by its length, before it is read (a sparse file: nothing is written)', () => {
  const dir = tmpDir();
  const f = path.join(dir, 'long-header.safetensors');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(100_000_008n);
  fs.writeFileSync(f, prefix);
  fs.truncateSync(f, 8 + 100_000_008);
  const re = /long-header\.safetensors: header length 100000008 exceeds the 100000000-byte limit/;
  assert.throws(() => readSafetensorsHeader(f), re);
  assert.throws(() => new SafetensorsReader(f), re);
  fs.rmSync(dir, { recursive: true });
});

test('float16 / bfloat16 conversions round to nearest even', () => {
  const bf = (x: number) => new DataView(float32ToBfloat16Bytes([x]).buffer).getUint16(0, true);
  assert.equal(bf(1), 0x3f80);
  assert.equal(bf(-2.5), 0xc020);
  assert.equal(bf(1 + 2 ** -8), 0x3f80); // tie, rounds to even
  assert.equal(bf(1 + 3 * 2 ** -8), 0x3f82); // tie, rounds to even (up)
  assert.equal(bf(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(bf(3.4e38), 0x7f80); // overflows to +inf
  assert.ok(Number.isNaN(bfloat16BytesToFloat32(float32ToBfloat16Bytes([NaN]))[0]));
  assert.deepEqual([...bfloat16BytesToFloat32(float32ToBfloat16Bytes([1, -2.5, 0, -Infinity, 3.140625]))], [1, -2.5, 0, -Infinity, 3.140625]);

  const h = (x: number) => new DataView(float32ToFloat16Bytes([x]).buffer).getUint16(0, true);
  assert.equal(h(1), 0x3c00);
  assert.equal(h(-2), 0xc000);
  assert.equal(h(65504), 0x7bff);
  assert.equal(h(65520), 0x7c00); // halfway to 2^16 rounds to +inf
  assert.equal(h(65519), 0x7bff);
  assert.equal(h(1e6), 0x7c00);
  assert.equal(h(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(h(2 ** -25), 0x0000); // tie, rounds to even (zero)
  assert.equal(h(1.5 * 2 ** -25), 0x0001);
  assert.equal(h(3 * 2 ** -25), 0x0002); // tie between 1 and 2 subnormal steps: even
  assert.equal(h(2 ** -14 - 2 ** -25), 0x0400); // rounds up into the normal range
  assert.equal(h(1 + 2 ** -11), 0x3c00); // tie, even
  assert.equal(h(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(h(-0), 0x8000);
  assert.equal(h(Infinity), 0x7c00);
  assert.ok(Number.isNaN(float16BytesToFloat32(float32ToFloat16Bytes([NaN]))[0]));
  const vals = [0.5, -65504, 2 ** -24, 1.0009765625, 6.103515625e-5, -0.333251953125];
  assert.deepEqual([...float16BytesToFloat32(float32ToFloat16Bytes(vals))], vals);
  // Exhaustive: every finite half decodes and re-encodes to itself.
  const all = new Uint16Array(0x10000).map((_, i) => i);
  const back = new Uint16Array(float32ToFloat16Bytes(float16BytesToFloat32(bytes(all))).buffer);
  for (let i = 0; i < 0x10000; i++) {
    if ((i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0) continue; // NaN payloads
    if (back[i] !== i) assert.fail(`half 0x${i.toString(16)} re-encoded as 0x${back[i]!.toString(16)}`);
  }
});

test('python reads a file written in TypeScript', (t) => {
  if (!pythonHasTorch()) return t.skip(`${PY} cannot import torch`);
  const dir = tmpDir();
  const file = path.join(dir, 'ts.safetensors');
  const tensors: Record<string, TensorEntry> = {
    f64: { dtype: 'float64', shape: [3], data: bytes(new Float64Array([Math.PI, -1e300, 1e-310])) },
    f32: { dtype: 'float32', shape: [2, 3], data: bytes(new Float32Array([1.5, -2, 0.25, 3, 100, -0.125])) },
    f16: { dtype: 'float16', shape: [2, 2], data: float32ToFloat16Bytes([0.5, -65504, 2 ** -24, 1.0009765625]) },
    bf16: { dtype: 'bfloat16', shape: [4], data: float32ToBfloat16Bytes([1, -2.5, 3.140625, 65536]) },
    i64: { dtype: 'int64', shape: [3], data: bytes(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 5n])) },
    i32: { dtype: 'int32', shape: [2], data: bytes(new Int32Array([-(2 ** 31), 12345])) },
    i16: { dtype: 'int16', shape: [3], data: bytes(new Int16Array([-32768, 32767, -3])) },
    i8: { dtype: 'int8', shape: [2], data: bytes(new Int8Array([-128, 127])) },
    u8: { dtype: 'uint8', shape: [1, 3], data: new Uint8Array([0, 200, 255]) },
    bool: { dtype: 'bool', shape: [3], data: new Uint8Array([1, 0, 1]) },
    scalar: { dtype: 'float32', shape: [], data: bytes(new Float32Array([7.5])) },
    empty: { dtype: 'float32', shape: [0, 3], data: new Uint8Array(0) },
    empty_i64: { dtype: 'int64', shape: [0], data: new Uint8Array(0) },
    long: { dtype: 'float32', shape: [5, 5], data: bytes(new Float32Array(25).map((_, i) => i - 12)) },
  };
  writeSafetensors(file, tensors, { source: 'ts' });
  const out = JSON.parse(runPy('read', file)) as Record<string, { dtype: string; shape: number[]; sum: number; first: unknown[] }>;
  assert.deepEqual(out.__metadata__, { source: 'ts' });
  for (const [name, e] of Object.entries(tensors)) {
    const got = out[name]!;
    assert.ok(got, name);
    assert.equal(got.dtype, DTYPE_TO_SAFETENSORS[e.dtype], name);
    assert.deepEqual(got.shape, e.shape, name);
    const vals = decode(e);
    const expectFirst = vals.slice(0, 8).map((v) => (typeof v === 'bigint' ? v.toString() : v));
    assert.deepEqual(got.first, expectFirst, name);
    const sum = vals.reduce<number>((a, v) => a + Number(v), 0);
    assert.ok(Math.abs(got.sum - sum) <= 1e-9 * Math.max(1, Math.abs(sum)), `${name}: sum ${got.sum} vs ${sum}`);
  }
  fs.rmSync(dir, { recursive: true });
});

test('TypeScript reads a file written by python', (t) => {
  if (!pythonHasTorch()) return t.skip(`${PY} cannot import torch`);
  const dir = tmpDir();
  const file = path.join(dir, 'py.safetensors');
  runPy('write', file);
  const { metadata, tensors } = readSafetensors(file);
  assert.deepEqual(metadata, { format: 'pt', source: 'safetensors_check.py' });
  const expected: Record<string, [DType, number[], (number | bigint | boolean)[]]> = {
    bf16: ['bfloat16', [2, 3], [1, -2.5, 3.140625, 0.0078125, -0, 65536]],
    f16: ['float16', [4], [0.5, -65504, 2 ** -24, 1.0009765625]],
    f32: ['float32', [3, 4], Array.from({ length: 12 }, (_, i) => i / 4 - 1)],
    f64: ['float64', [3], [Math.PI, -1e300, 2 ** -1074]],
    i64: ['int64', [4], [-(2n ** 63n), 2n ** 63n - 1n, 0n, 42n]],
    i32: ['int32', [2, 2], [-(2 ** 31), 2 ** 31 - 1, 7, -7]],
    i16: ['int16', [3], [-32768, 32767, 1]],
    i8: ['int8', [3], [-128, 127, -1]],
    u8: ['uint8', [3], [0, 255, 128]],
    bool: ['bool', [4], [true, false, true, true]],
    scalar: ['float32', [], [7.5]],
    empty: ['float32', [0, 3], []],
  };
  assert.deepEqual([...tensors.keys()], Object.keys(expected).sort());
  for (const [name, [dtype, shape, values]] of Object.entries(expected)) {
    const e = tensors.get(name)!;
    assert.equal(e.dtype, dtype, name);
    assert.deepEqual(e.shape, shape, name);
    assert.deepEqual(decode(e), values, name);
  }
  // Round trip through the TS writer and back through python keeps every byte.
  const again = path.join(dir, 'again.safetensors');
  writeSafetensors(again, tensors, metadata);
  assert.equal(runPy('read', again), runPy('read', file));
  fs.rmSync(dir, { recursive: true });
});

test('a tensor of 2 GiB or more is read in pieces: Node refuses one read that long', () => {
  const size = 2 ** 31 + 16; // (never touched: the stand-in read below writes nothing)
  const into = new Uint8Array(size);
  const nodeFs = require('node:fs') as typeof import('node:fs'); // (the module object itself: readAt's)
  const readSync = nodeFs.readSync;
  const lengths: number[] = [];
  (nodeFs as { readSync: unknown }).readSync = (_fd: number, _buf: Uint8Array, _offset: number, length: number) => {
    if (length >= 2 ** 31) throw new RangeError(`The value of "length" is out of range (${length})`); // as Node's own check
    lengths.push(length);
    return length;
  };
  try {
    readAt(-1, into, 0, () => new Error('ended'));
  } finally {
    (nodeFs as { readSync: unknown }).readSync = readSync;
  }
  assert.equal(
    lengths.reduce((a, b) => a + b, 0),
    size,
  );
  assert.ok(lengths.length >= 3, String(lengths));
});

test('a tensor of 2 GiB or more is written and hashed in pieces: Node refuses one write or hash update that long', () => {
  const size = 2 ** 31 + 16;
  const bytes = new Uint8Array(size); // (never touched: the stand-in write below writes nothing of it)
  const nodeFs = require('node:fs') as typeof import('node:fs');
  const writeSync = nodeFs.writeSync;
  const lengths: number[] = [];
  (nodeFs as { writeSync: unknown }).writeSync = (fd: number, buf: Uint8Array, offset: number, length: number, position?: number) => {
    if (length >= 2 ** 31) throw new RangeError(`The value of "length" is out of range (${length})`); // as Node's own check
    if (buf !== bytes) return writeSync(fd, buf, offset, length, position);
    lengths.push(length);
    return length;
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'semaim-st-big-'));
  try {
    writeSafetensors(path.join(dir, 'big.safetensors'), { x: { dtype: 'uint8', shape: [size], data: () => bytes } });
  } finally {
    (nodeFs as { writeSync: unknown }).writeSync = writeSync;
    fs.rmSync(dir, { recursive: true });
  }
  assert.equal(
    lengths.reduce((a, b) => a + b, 0),
    size,
  );
});
