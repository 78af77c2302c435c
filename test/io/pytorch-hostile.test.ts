// torch.save files made to hurt the reader (src/io/pickle.ts, src/io/pytorch-file.ts): each is refused
// naming the file, without looping, overflowing the stack or allocating what the file does not hold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { loadTensors, readSafetensorsHeader } from '../../src/io';
import { PICKLE_LIMITS, unpickle } from '../../src/io/pickle';

const PICKLE = join(__dirname, '..', '..', 'src', 'io', 'pickle.js');
const IO = join(__dirname, '..', '..', 'src', 'io', 'index.js');
const root = mkdtempSync(join(tmpdir(), 'semaim-pth-hostile-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

/** A stored (uncompressed) zip of `entries`; `zip64Size` gives one entry a zip64 size of that many bytes it does not hold. */
function zipOf(entries: Record<string, Buffer>, zip64Size: Record<string, number> = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(entries)) {
    const n = Buffer.from(name);
    const big = zip64Size[name];
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const extra = Buffer.alloc(big === undefined ? 0 : 20);
    if (big !== undefined) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(16, 2);
      extra.writeBigUInt64LE(BigInt(big), 4);
      extra.writeBigUInt64LE(BigInt(big), 12);
    }
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt32LE(crc32(data), 16);
    central.writeUInt32LE(big === undefined ? data.length : 0xffffffff, 20);
    central.writeUInt32LE(big === undefined ? data.length : 0xffffffff, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt16LE(extra.length, 30);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, data);
    centrals.push(central, n, extra);
    offset += 30 + n.length + data.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(entries).length, 8);
  end.writeUInt16LE(Object.keys(entries).length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const GLOBAL_V2 = Buffer.from('ctorch._tensor\n_rebuild_from_type_v2\n', 'latin1');

/** A BINUNICODE string. */
function str(s: string): Buffer {
  const n = Buffer.alloc(4);
  n.writeUInt32LE(s.length);
  return Buffer.concat([hex('58'), n, Buffer.from(s, 'latin1')]);
}

/** A non-negative integer as an 8-byte LONG1. */
function long(x: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(x));
  return Buffer.concat([hex('8a 08'), b]);
}

/** A tuple of integers. */
const tuple = (xs: (number | bigint)[]): Buffer => Buffer.concat([hex('28'), ...xs.map(long), hex('74')]);

interface FloatTensorPkl {
  /** The storage: its key (data/<key>) and its size in elements. */
  key: string;
  numel: number;
  /** Where the tensor starts in it, in elements (2n ** 64n - 1n is the LONG1 of -1), and its size and stride. */
  offset: number | bigint;
  shape: (number | bigint)[];
  stride: (number | bigint)[];
}

/** A data.pkl as torch.save writes one: a dict of float32 tensors, each rebuilt by _rebuild_tensor_v2 from a FloatStorage. */
function statePkl(tensors: Record<string, FloatTensorPkl>): Buffer {
  const items = Object.entries(tensors).map(([name, t]) =>
    Buffer.concat([
      str(name),
      Buffer.from('ctorch._utils\n_rebuild_tensor_v2\n', 'latin1'),
      hex('28 28'),
      str('storage'),
      Buffer.from('ctorch\nFloatStorage\n', 'latin1'),
      str(t.key),
      str('cpu'),
      long(t.numel),
      hex('74 51'),
      long(t.offset),
      tuple(t.shape),
      tuple(t.stride),
      hex('89'),
      Buffer.from('ccollections\nOrderedDict\n', 'latin1'),
      hex('29 52 74 52 73'),
    ]),
  );
  return Buffer.concat([hex('8002 7d'), ...items, hex('2e')]);
}

/** float32 values as bytes (little-endian). */
const f32 = (...xs: number[]): Buffer => Buffer.from(new Float32Array(xs).buffer);

/** Runs `code` (given `unpickle` and `io`) in a child: a loop or a quadratic read must fail the test, not hang it. */
function inChild(code: string): { out: string; signal: NodeJS.Signals | null } {
  const r = spawnSync(process.execPath, ['-e', `const { unpickle } = require(${JSON.stringify(PICKLE)}); const io = require(${JSON.stringify(IO)}); ${code}`], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { out: (r.stdout + r.stderr).trim(), signal: r.signal };
}

test('pickle: a negative BINUNICODE8 or BINBYTES8 length is refused (it stepped back onto the same instruction forever)', () => {
  for (const op of ['8d', '8e']) {
    const minus9 = Buffer.alloc(8);
    minus9.writeBigInt64LE(-9n);
    const r = inChild(
      `try { unpickle(Buffer.from('8002${op}${minus9.toString('hex')}2e', 'hex'), 'x.pkl', { call: () => null, persistentLoad: () => null }); console.log('read') } catch (e) { console.log(e.message) }`,
    );
    assert.equal(r.signal, null, `opcode ${op}: the unpickler never ended`);
    assert.equal(r.out, 'x.pkl: the pickle gives a length of -9');
  }
});

test('pickle: a LONG4 of megabytes is read as a number beyond every size at once (built byte by byte it took quadratic time)', () => {
  const r = inChild(
    `const n = 4 << 20; const b = Buffer.alloc(8 + n, 0x11); b.set([0x80, 2, 0x8b], 0); b.writeUInt32LE(n, 3); b[7 + n] = 0x2e; b[7 + n - 1] = 0x01;
     console.log(unpickle(b, 'x.pkl', { call: () => null, persistentLoad: () => null }))`,
  );
  assert.equal(r.signal, null, 'the unpickler never ended');
  assert.equal(r.out, 'Infinity');
});

test('_rebuild_from_type_v2 whose arguments hold the same call again (a list that contains itself) is refused, not a stack overflow', () => {
  const path = join(root, 'cycle.pth');
  // stack: the global, then L = [the global, None, L] (memo 0 is L itself), then REDUCE
  const pkl = Buffer.concat([hex('8002'), GLOBAL_V2, hex('5d 94 28'), GLOBAL_V2, hex('4e 68 00 65 52 2e')]);
  writeFileSync(path, zipOf({ 'cycle/data.pkl': pkl }));
  assert.throws(
    () => readSafetensorsHeader(path),
    (e: Error) => e.message === `${path}: a torch.save file that holds a torch._tensor._rebuild_from_type_v2, not a dict of tensors`,
  );
});

test('a zip64 size of data.pkl beyond the end of a small file is refused before its bytes are allocated', () => {
  const path = join(root, 'big-pkl.pth');
  writeFileSync(path, zipOf({ 'big/data.pkl': hex('80027d2e') }, { 'big/data.pkl': 200 << 20 }));
  const r = inChild(
    `const before = process.resourceUsage().maxRSS;
     try { io.readSafetensorsHeader(${JSON.stringify(path)}) } catch (e) { console.log(e.message) }
     console.log(Math.round((process.resourceUsage().maxRSS - before) / 1024))`,
  );
  const [message, grownMb] = r.out.split('\n');
  assert.match(message, /big-pkl\.pth: entry big\/data\.pkl \(209715200 bytes from byte \d+\) runs past the end of the file/);
  assert.ok(Number(grownMb) < 64, `the read grew the memory by ${grownMb} MB`);
});

test('a global named by a list nested 100000 deep (STACK_GLOBAL takes names only, as Python) is refused saying so', () => {
  const path = join(root, 'deep.pth');
  const n = 100000;
  const pkl = Buffer.concat([hex('8002'), Buffer.alloc(n, 0x5d), Buffer.alloc(n - 1, 0x61), hex('8c 01 78 93 2e')]);
  writeFileSync(path, zipOf({ 'deep/data.pkl': pkl }));
  assert.throws(
    () => readSafetensorsHeader(path),
    (e: Error) => e.message === `${path}: the pickle names a global by something that is not a name`,
  );
});

test('a data.pkl of one-byte EMPTY_DICTs is refused at the object limit (60 M of them made 60 M Maps and node aborted out of heap)', () => {
  const path = join(root, 'dicts.pth');
  const n = PICKLE_LIMITS.objects + 1;
  writeFileSync(path, zipOf({ 'dicts/data.pkl': Buffer.concat([hex('8002'), Buffer.alloc(n, 0x7d), hex('2e')]) }));
  assert.throws(
    () => readSafetensorsHeader(path),
    (e: Error) => e.message === `${path}: the pickle makes more than ${PICKLE_LIMITS.objects} objects (dicts, lists, strings, calls), more than a checkpoint's`,
  );
});

test('pickle: values on the stack, marks and memo entries count against the value limit', () => {
  const hooks = { call: () => null, persistentLoad: () => null };
  const limits = { values: 1000, objects: 1000 };
  for (const op of ['4e', '28', '88 94']) {
    const pkl = Buffer.concat([hex('8002'), hex(op.repeat(1001)), hex('2e')]);
    assert.throws(
      () => unpickle(pkl, 'x.pkl', hooks, limits),
      (e: Error) => e.message === "x.pkl: the pickle makes more than 1000 values, more than a checkpoint's",
      `opcode ${op}`,
    );
  }
});

test('a tensor of shape [2^52, 2^52, 0] is refused at the header (zero bytes, but libtorch overflows counting its elements)', () => {
  const path = join(root, 'huge-empty.pth');
  const pkl = statePkl({ w: { key: '0', numel: 0, offset: 0, shape: [1n << 52n, 1n << 52n, 0n], stride: [0, 0, 1] } });
  writeFileSync(path, zipOf({ 'h/data.pkl': pkl, 'h/data/0': Buffer.alloc(0) }));
  assert.throws(
    () => readSafetensorsHeader(path),
    (e: Error) =>
      e.message ===
      `${path}: tensor 'w': shape [4503599627370496, 4503599627370496, 0] is too large (libtorch multiplies its sizes in this order and overflows)`,
  );
});

test('pickle: one APPENDS of 1 M values (a long training log) makes the list, not a call-stack overflow', () => {
  const n = 1_000_000;
  // PROTO 2, EMPTY_LIST, MARK, n × BININT1 7, APPENDS, STOP
  const pkl = Buffer.concat([Buffer.from([0x80, 2, 0x5d, 0x28]), Buffer.alloc(2 * n, Buffer.from([0x4b, 7])), Buffer.from([0x65, 0x2e])]);
  const list = unpickle(pkl, 'log.pkl', { call: () => null, persistentLoad: () => null }) as number[];
  assert.equal(list.length, n);
  assert.ok(list.every((v) => v === 7));
});

test('a .pth that is neither zip nor safetensors is named as not a torch.save file (it read as a bad safetensors header alone)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-pth-'));
  try {
    const bytes = Buffer.alloc(2000, 0x5a);
    for (const name of ['random.pth', 'random.pt', 'pytorch_model.bin']) {
      writeFileSync(join(dir, name), bytes);
      assert.throws(
        () => readSafetensorsHeader(join(dir, name)),
        new RegExp(`${name.replace('.', '\\.')}: neither a torch\\.save file .* nor safetensors \\(.*header length`),
      );
    }
    writeFileSync(join(dir, 'random.safetensors'), bytes);
    assert.throws(() => readSafetensorsHeader(join(dir, 'random.safetensors')), /random\.safetensors: header length \d+ is larger than the file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a zip that lists one entry name twice (a storage, or data.pkl) is refused: which copy PyTorch reads is unknown (the last was read, silently)', () => {
  const path = join(root, 'twice.pth');
  const pkl = statePkl({ w: { key: '0', numel: 2, offset: 0, shape: [2], stride: [1] } });
  const zip = zipOf({ 's/data.pkl': pkl, 's/data/0': f32(1.5, 2.5), 's/data/9': f32(7, 8) });
  writeFileSync(path, zip);
  const { tensors } = loadTensors(path);
  assert.deepEqual(Array.from(tensors.get('w')!.toFloat32Array()), [1.5, 2.5]);
  for (const t of tensors.values()) t.dispose();
  // the second storage renamed to the first's name, in its local header and in the central directory
  const renamed = (from: string, to: string) => Buffer.from(zip.toString('latin1').replaceAll(from, to), 'latin1');
  writeFileSync(path, renamed('s/data/9', 's/data/0'));
  assert.throws(() => readSafetensorsHeader(path), { message: `${path}: the zip archive lists the entry s/data/0 twice; which one is meant is unknown` });
  const two = zipOf({ 's/data.pkl': pkl, 's/data/0': f32(1.5, 2.5), 's/data.pkX': statePkl({}) });
  writeFileSync(path, Buffer.from(two.toString('latin1').replaceAll('s/data.pkX', 's/data.pkl'), 'latin1'));
  assert.throws(() => readSafetensorsHeader(path), { message: `${path}: the zip archive lists the entry s/data.pkl twice; which one is meant is unknown` });
});

test("a tensor that runs past the end of its storage is refused at the header (the next entry's bytes would load as its weights: the CRC covers the storage only)", () => {
  const path = join(root, 'past-storage.pth');
  const write = (w: FloatTensorPkl): void => writeFileSync(path, zipOf({ 's/data.pkl': statePkl({ w }), 's/data/0': f32(1.5, 2.5), 's/data/1': f32(7, 8) }));
  write({ key: '0', numel: 2, offset: 1, shape: [1], stride: [1] }); // element 1 of 2: inside
  const { tensors } = loadTensors(path);
  assert.deepEqual(Array.from(tensors.get('w')!.toFloat32Array()), [2.5]);
  for (const t of tensors.values()) t.dispose();
  for (const [offset, n] of [
    [1, 2],
    [0, 3],
  ]) {
    write({ key: '0', numel: 2, offset, shape: [n], stride: [1] });
    assert.throws(
      () => readSafetensorsHeader(path),
      (e: Error) => e.message === `${path}: tensor 'w' (${n} at element ${offset}) lies outside its storage of 8 bytes`,
      `${n} elements from element ${offset}`,
    );
  }
});

test('a file saved on a big-endian machine (its byteorder entry says so) is refused, not read byte-swapped', () => {
  const path = join(root, 'order.pth');
  const pkl = statePkl({ w: { key: '0', numel: 1, offset: 0, shape: [1], stride: [1] } });
  writeFileSync(path, zipOf({ 'o/data.pkl': pkl, 'o/byteorder': Buffer.from('little'), 'o/data/0': f32(1.5) }));
  assert.deepEqual(readSafetensorsHeader(path).tensors.get('w')!.shape, [1]);
  writeFileSync(path, zipOf({ 'o/data.pkl': pkl, 'o/byteorder': Buffer.from('big'), 'o/data/0': f32(1.5) }));
  assert.throws(
    () => readSafetensorsHeader(path),
    (e: Error) => e.message === `${path}: saved on a big-endian machine; only little-endian files are read`,
  );
});

test('an entry whose local header is not one (its signature damaged) is refused naming the entry', () => {
  const path = join(root, 'local-header.pth');
  const pkl = statePkl({ w: { key: '0', numel: 1, offset: 0, shape: [1], stride: [1] } });
  for (const [entry, named] of [
    ['l/data.pkl', 'l/data.pkl'],
    ['l/data/0', 'data/0'],
  ]) {
    // (an entry before them: a damaged first header is no longer a zip archive at all)
    const zip = zipOf({ 'l/.format_version': Buffer.from('1'), 'l/data.pkl': pkl, 'l/data/0': f32(1.5) });
    const at = zip.indexOf(entry) - 30;
    assert.equal(zip.readUInt32LE(at), 0x04034b50, `the local header of ${entry}`);
    zip.writeUInt32LE(0, at);
    writeFileSync(path, zip);
    assert.throws(
      () => readSafetensorsHeader(path),
      (e: Error) => e.message === `${path}: entry ${named} has a broken local header`,
      entry,
    );
  }
});

/** `zip` (from zipOf) with a zip64 end of central directory record and its locator before its end record, giving `dir`. */
function withZip64End(zip: Buffer, dir: { count: number; size: number; offset: number }): Buffer {
  const body = zip.subarray(0, zip.length - 22);
  const record = Buffer.alloc(56);
  record.writeUInt32LE(0x06064b50, 0);
  record.writeBigUInt64LE(44n, 4);
  record.writeBigUInt64LE(BigInt(dir.count), 24);
  record.writeBigUInt64LE(BigInt(dir.count), 32);
  record.writeBigUInt64LE(BigInt(dir.size), 40);
  record.writeBigUInt64LE(BigInt(dir.offset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(body.length), 8);
  locator.writeUInt32LE(1, 16);
  return Buffer.concat([body, record, locator, zip.subarray(zip.length - 22)]);
}

test('a zip central directory that lies outside the file, or counts more entries than it can hold, is refused before it is allocated', () => {
  const path = join(root, 'cdir.pth');
  const zip = zipOf({ 'c/data.pkl': hex('80027d2e') });
  const end = zip.length - 22;
  const dir = { count: zip.readUInt16LE(end + 10), size: zip.readUInt32LE(end + 12), offset: zip.readUInt32LE(end + 16) };
  const refused = (e: Error) => e.message === `${path}: the zip central directory lies outside the file`;
  // the directory as it is, in both forms, is read (an empty dict: no state dict)
  for (const good of [zip, withZip64End(zip, dir)]) {
    writeFileSync(path, good);
    assert.throws(() => readSafetensorsHeader(path), /without a state dict: it holds an empty dict/);
  }
  const patched = (at: number, write: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(zip);
    write(b.subarray(end + at));
    return b;
  };
  for (const [what, bytes] of [
    ['an offset past the end', patched(16, (b) => b.writeUInt32LE(zip.length + 100))],
    ['65535 entries in a directory of one', patched(10, (b) => b.writeUInt16LE(65535))],
    ['zip64: 2^40 entries', withZip64End(zip, { ...dir, count: 2 ** 40 })],
  ] as const) {
    writeFileSync(path, bytes);
    assert.throws(() => readSafetensorsHeader(path), refused, what);
  }
  // a zip64 directory size of 200 MB in a file of 200 bytes: refused without allocating it
  writeFileSync(path, withZip64End(zip, { ...dir, size: 200 << 20 }));
  const r = inChild(
    `const before = process.resourceUsage().maxRSS;
     try { io.readSafetensorsHeader(${JSON.stringify(path)}) } catch (e) { console.log(e.message) }
     console.log(Math.round((process.resourceUsage().maxRSS - before) / 1024))`,
  );
  const [message, grownMb] = r.out.split('\n');
  assert.equal(message, `${path}: the zip central directory lies outside the file`);
  assert.ok(Number(grownMb) < 64, `the read grew the memory by ${grownMb} MB`);
});

test('pickle: every truncation of a pickle is refused as ending inside an instruction (Python: "pickle data was truncated")', () => {
  const hooks = { call: () => null, persistentLoad: () => null };
  // pickle.dumps({'a': 'text', 'b': 258, 'c': 1.5}, protocol=2)
  const whole = hex('80027d7100285801000000617101580400000074657874710258010000006271034d02015801000000637104473ff8000000000000752e');
  assert.deepEqual(
    unpickle(whole, 'x.pkl', hooks),
    new Map<string, unknown>([
      ['a', 'text'],
      ['b', 258],
      ['c', 1.5],
    ]),
  );
  for (let n = 0; n < whole.length; n++) {
    assert.throws(
      () => unpickle(whole.subarray(0, n), 'x.pkl', hooks),
      (e: Error) => e.message === 'x.pkl: the pickle ends inside an instruction',
      `cut after ${n} bytes`,
    );
  }
});

test('pickle: a memo entry never stored, or a pop below the last mark, is refused (as by Python), not read as undefined or as a value outside the mark', () => {
  const hooks = { call: () => null, persistentLoad: () => null };
  const read = (h: string): unknown => unpickle(hex(h), 'x.pkl', hooks);
  assert.equal(read('8002 4b07 7105 30 6805 2e'), 7, 'BINPUT 5, POP, BINGET 5');
  assert.equal(read('8002 4b07 7205000000 30 6a05000000 2e'), 7, 'LONG_BINPUT 5, POP, LONG_BINGET 5');
  for (const h of ['8002 6805 2e', '8002 6a05000000 2e', '8002 4b07 7104 30 6805 2e']) {
    assert.throws(
      () => read(h),
      (e: Error) => e.message === 'x.pkl: the pickle refers to memo 5, never stored',
      h,
    );
  }
  // BININT1 1, MARK, then STOP / POP / TUPLE1 / SETITEM: each takes the 1 that lies below the mark (Python refuses each)
  assert.deepEqual(read('8002 4b01 28 4b02 85 2e'), [2], 'TUPLE1 of the value above the mark');
  for (const h of ['8002 4b01 28 2e', '8002 4b01 28 30 74 2e', '8002 4b01 28 85 2e', '8002 7d 4b01 28 4b02 73 2e']) {
    assert.throws(
      () => read(h),
      (e: Error) => e.message === 'x.pkl: the pickle pops an empty stack',
      h,
    );
  }
});

test('a negative storage offset, size or stride is refused at the header (the bytes before the storage would load as weights: the CRC covers the storage only)', () => {
  const path = join(root, 'negative-offset.pth');
  const minusOne = 2n ** 64n - 1n;
  for (const [w, why] of [
    [{ key: '0', numel: 2, offset: minusOne, shape: [1], stride: [1] }, /_rebuild_tensor_v2: a bad storage offset/],
    [{ key: '0', numel: 2, offset: 0, shape: [minusOne], stride: [1] }, /a tensor size is not a tuple of sizes/],
    [{ key: '0', numel: 2, offset: 0, shape: [1], stride: [minusOne] }, /a tensor stride is not a tuple of sizes/],
  ] as const) {
    writeFileSync(path, zipOf({ 'n/data.pkl': statePkl({ w: { ...w, shape: [...w.shape], stride: [...w.stride] } }), 'n/data/0': f32(1, 2) }));
    assert.throws(
      () => readSafetensorsHeader(path),
      (e: Error) => e.message.startsWith(path) && why.test(e.message),
      String(why),
    );
  }
});

test('a dimension of size 1 may have any stride (it never steps along it): such a tensor is contiguous and read', () => {
  const path = join(root, 'unit-dims.pth');
  const a = { key: '0', numel: 2, offset: 0, shape: [1, 2], stride: [7, 1] };
  const b = { key: '0', numel: 2, offset: 0, shape: [2, 1], stride: [1, 9] };
  writeFileSync(path, zipOf({ 'u/data.pkl': statePkl({ a, b }), 'u/data/0': f32(1, 2) }));
  const { tensors } = loadTensors(path);
  try {
    assert.deepEqual(tensors.get('a')!.shape, [1, 2]);
    assert.deepEqual(Array.from(tensors.get('a')!.toFloat32Array()), [1, 2]);
    assert.deepEqual(tensors.get('b')!.shape, [2, 1]);
    assert.deepEqual(Array.from(tensors.get('b')!.toFloat32Array()), [1, 2]);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
});

test('a tensor whose stride has another length than its size is refused at the header', () => {
  const path = join(root, 'stride.pth');
  writeFileSync(path, zipOf({ 'd/data.pkl': statePkl({ w: { key: '0', numel: 2, offset: 0, shape: [2], stride: [1, 5] } }), 'd/data/0': f32(1, 2) }));
  assert.throws(
    () => readSafetensorsHeader(path),
    (e: Error) => e.message === `${path}: tensor 'w' has a size and a stride of different lengths`,
  );
});

test('a data.pkl over 256 MB is refused by its size, before it is read', () => {
  const path = join(root, 'huge-pkl.pth');
  writeFileSync(path, zipOf({ 'big/data.pkl': hex('80027d2e') }, { 'big/data.pkl': 300 << 20 }));
  assert.throws(
    () => readSafetensorsHeader(path),
    (e: Error) => e.message === `${path}: data.pkl of ${300 << 20} bytes is not a state dict's`,
  );
});
