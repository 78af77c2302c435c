// SafetensorsRowWriter: rows appended batch by batch, tail tensors and the header written last; the
// result is read back by our reader and by an independent Python reader that checks the data
// section is tiled exactly (as Python's safetensors demands).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { SafetensorsRowWriter, readSafetensors } from '../../src/io';

const PY = '/usr/bin/python3';
const SCRIPT = join(__dirname, '..', '..', '..', 'scripts', 'safetensors_check.py');

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'semaim-rows-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function bytes(a: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

let pythonHasTorch: boolean | undefined;

/** The independent reader's view of the file (null when Python has no torch). */
function pythonRead(path: string): Record<string, { shape: number[]; sum: number; first: number[] }> | null {
  pythonHasTorch ??= spawnSync(PY, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  if (!pythonHasTorch) return null;
  const r = spawnSync(PY, [SCRIPT, 'read', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function write(name: string, batches: number[], o: { headerReserve?: number; metadata?: Record<string, string> } = {}): { path: string; rows: Float32Array } {
  const path = join(dir, `${name}.safetensors`);
  const w = new SafetensorsRowWriter(path, { name: 'features', dtype: 'float32', rowShape: [2, 3] }, { headerReserve: o.headerReserve });
  const all: number[] = [];
  for (const k of batches) {
    const rows = Float32Array.from({ length: k * 6 }, (_, i) => all.length + i + 0.5);
    all.push(...rows);
    w.append(bytes(rows));
  }
  assert.equal(w.rows, all.length / 6);
  assert.ok(existsSync(`${path}.partial`) && !existsSync(path), 'the file appears only when finished');
  const n = all.length / 6;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  w.finish({ labels: { dtype: 'int32', shape: [n], data: bytes(labels) } }, o.metadata ?? { kind: 'test' });
  return { path, rows: Float32Array.from(all) };
}

test('rows appended in batches, a tail tensor and metadata read back exactly; the data section is tiled', () => {
  const { path, rows } = write('batches', [3, 1, 4]);
  const { metadata, tensors } = readSafetensors(path);
  assert.deepEqual(metadata, { kind: 'test' });
  const f = tensors.get('features')!;
  assert.deepEqual(f.shape, [8, 2, 3]);
  assert.deepEqual(new Float32Array(f.data.slice().buffer), rows);
  assert.deepEqual(Array.from(new Int32Array(tensors.get('labels')!.data.slice().buffer)), [0, 1, 2, 0, 1, 2, 0, 1]);
  const headerLength = Number(readFileSync(path).readBigUInt64LE(0));
  assert.equal((8 + headerLength) % 8, 0, 'the data section starts 8-aligned');
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.endsWith('.partial')),
    [],
  );
  const py = pythonRead(path);
  if (py) {
    assert.deepEqual(py.features.shape, [8, 2, 3]);
    assert.equal(
      py.features.sum,
      rows.reduce((a, b) => a + b, 0),
    );
    assert.deepEqual(py.labels.first, [0, 1, 2, 0, 1, 2, 0, 1]);
  }
});

test('a header larger than its reserve is written by copying the data once', () => {
  const metadata = { long: 'x'.repeat(5000) };
  const { path, rows } = write('big-header', [2, 2], { headerReserve: 64, metadata });
  const { metadata: m, tensors } = readSafetensors(path);
  assert.equal(m.long, metadata.long);
  assert.deepEqual(new Float32Array(tensors.get('features')!.data.slice().buffer), rows);
  const py = pythonRead(path);
  if (py) assert.deepEqual(py.features.shape, [4, 2, 3]);
});

test('no rows, partial rows, use after finish, abort', () => {
  const { path } = write('empty', []);
  assert.deepEqual(readSafetensors(path).tensors.get('features')!.shape, [0, 2, 3]);
  const p = join(dir, 'bad.safetensors');
  const w = new SafetensorsRowWriter(p, { name: 'features', dtype: 'float32', rowShape: [2, 3] });
  assert.throws(() => w.append(new Uint8Array(5)), /not whole rows of 24 bytes/);
  assert.throws(() => w.finish({ features: { dtype: 'int32', shape: [0], data: new Uint8Array(0) } }), /clashes/);
  assert.equal(existsSync(`${p}.partial`), false, 'a failed finish removes the partial file');
  assert.throws(() => w.append(new Uint8Array(24)), /already finished or aborted/);
  const a = new SafetensorsRowWriter(p, { name: 'features', dtype: 'float16', rowShape: [4] });
  a.append(new Uint8Array(16));
  a.abort();
  assert.equal(existsSync(`${p}.partial`), false);
  assert.equal(existsSync(p), false);
});

test("tensor names as the one-shot writer takes them: '__metadata__' is refused (as there), '__proto__' is written as any name (not a file the reader refuses)", () => {
  const spec = (name: string) => ({ name, dtype: 'float32' as const, rowShape: [2] });
  assert.throws(() => new SafetensorsRowWriter(join(dir, 'meta-rows.safetensors'), spec('__metadata__')), /'__metadata__' is reserved/);
  const path = join(dir, 'meta-tail.safetensors');
  const w = new SafetensorsRowWriter(path, spec('features'));
  w.append(bytes(new Float32Array([1, 2])));
  assert.throws(() => w.finish({ __metadata__: { dtype: 'int32', shape: [1], data: bytes(new Int32Array([7])) } }), /'__metadata__' is reserved/);
  assert.equal(existsSync(`${path}.partial`), false);
  const proto = join(dir, 'proto.safetensors');
  const p = new SafetensorsRowWriter(proto, spec('__proto__'));
  p.append(bytes(new Float32Array([1, 2])));
  p.finish({ labels: { dtype: 'int32', shape: [1], data: bytes(new Int32Array([7])) } }, { kind: 'rows' });
  const back = readSafetensors(proto);
  assert.deepEqual([...back.tensors.keys()], ['__proto__', 'labels']);
  assert.deepEqual(back.tensors.get('__proto__')!.shape, [1, 2]);
});

test('Ctrl-C while rows are written removes the partial files (one writer, or 12 at once) and still ends the process by the signal', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-rows-signal-'));
  try {
    const io = join(__dirname, '..', '..', 'src', 'io');
    for (const writers of [1, 12]) {
      const script = `
        process.on('warning', (w) => console.error(w.name));
        const { SafetensorsRowWriter } = require(${JSON.stringify(io)});
        for (let i = 0; i < ${writers}; i++) {
          const w = new SafetensorsRowWriter(${JSON.stringify(dir)} + '/f' + i + '.safetensors', { name: 'x', dtype: 'float32', rowShape: [4] });
          w.append(new Uint8Array(32));
        }
        process.kill(process.pid, 'SIGINT');
        setTimeout(() => process.exit(0), 5000);`;
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.signal, 'SIGINT', `${writers}: ended by the signal (status ${r.status}, ${r.stderr})`);
      assert.deepEqual(readdirSync(dir), [], `${writers}: no .partial file left`);
      assert.doesNotMatch(r.stderr, /MaxListenersExceededWarning/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('links planted at the partial file and at the header rewrite’s name are replaced, not written through (their targets are left as they were)', () => {
  const p = join(dir, 'linked.safetensors');
  const victims = [join(dir, 'victim-1.txt'), join(dir, 'victim-2.txt')];
  for (const v of victims) writeFileSync(v, 'precious');
  symlinkSync(victims[0], `${p}.partial`);
  symlinkSync(victims[1], `${p}.partial.moved`);
  const w = new SafetensorsRowWriter(p, { name: 'features', dtype: 'float32', rowShape: [2] }, { headerReserve: 8 });
  w.append(bytes(new Float32Array([1, 2])));
  w.finish({}, { note: 'x'.repeat(200) }); // a header beyond its reserve: rewritten through the .moved name
  for (const v of victims) assert.equal(readFileSync(v, 'utf8'), 'precious', v);
  assert.equal(lstatSync(p).isSymbolicLink(), false);
  assert.deepEqual(Array.from(new Float32Array(readSafetensors(p).tensors.get('features')!.data.slice().buffer)), [1, 2]);
});
