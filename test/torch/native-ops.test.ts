// The addon, the op table (native/ops.yaml) and the generated TypeScript interface agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, TensorHandle } from '../../src/torch/native';
import { nativeOpNames } from '../../src/torch/generated/native-ops';

interface TableOp {
  name: string;
  unit: string;
}
const genOps = require(join(__dirname, '..', '..', '..', 'native', 'gen-ops.js')) as {
  readTable(file?: string): { ops: TableOp[] };
};

const tableNames = (): string[] => genOps.readTable().ops.map((op) => op.name);

test('native ops: the addon exports exactly the functions of native/ops.yaml', () => {
  // Hand-written handle classes besides the table: the random generator, and the process group and
  // gradient reducer where the build has c10d (and its Reducer).
  const dist = native.distInfo();
  const handles = ['Generator', ...(dist.c10d ? ['ProcessGroup'] : []), ...(dist.reducer ? ['GradReducer'] : [])];
  const exported = Object.keys(native).filter((k) => typeof (native as unknown as Record<string, unknown>)[k] === 'function' && !handles.includes(k));
  const table = tableNames();
  const missing = table.filter((n) => !exported.includes(n));
  const extra = exported.filter((n) => !table.includes(n));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, 'the addon does not match native/ops.yaml: rebuild it (npm run build:native)');
  assert.deepEqual(
    Object.keys(native)
      .filter((k) => !table.includes(k))
      .sort(),
    [...handles, 'cudaBuild'].sort(),
  );
  assert.equal(typeof native.cudaBuild, 'boolean');
});

test('native ops: the generated TypeScript interface lists the ops of native/ops.yaml', () => {
  assert.deepEqual([...nativeOpNames], tableNames(), 'src/torch/generated is stale: run npm run build');
});

test('native ops: table mistakes are reported with the op and the reason', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-ops-'));
  const read = (text: string): void => {
    const file = join(dir, 'ops.yaml');
    writeFileSync(file, text);
    genOps.readTable(file);
  };
  try {
    read('math:\n  - neg(Tensor self) -> Tensor = at::neg(self)\n');
    assert.throws(() => read('math:\n  - neg(Tensr self) -> Tensor\n'), /math\.neg: unknown parameter type 'Tensr'/);
    assert.throws(() => read('math:\n  - neg(Tensor self) -> Tensr\n'), /math\.neg: unknown return type 'Tensr'/);
    assert.throws(() => read('math:\n  - neg(Tensor self) -> Tensor\nnn:\n  - neg(Tensor self) -> Tensor\n'), /'neg' is declared twice/);
    assert.throws(() => read('math:\n  - sq(Tensor self, int? d) -> Tensor = d ? a : b\n'), /quote it when it contains ': '/);
    assert.throws(() => read('math:\n  - f(Scalar a=1, Tensor b) -> Tensor\n'), /'b' has no default but follows a parameter with one/);
    assert.throws(() => read('math:\n  - f(int? a=0) -> Tensor\n'), /nullable parameter's default must be None/);
    assert.throws(() => read('math:\n  - f(int a=None) -> Tensor\n'), /math\.f: None is a default only for nullable types \(int\?\)/);
    assert.throws(() => read('math:\n  - f(Tensor a=1) -> Tensor\n'), /math\.f: parameters of type Tensor cannot have a default/);
    assert.throws(() => read('math:\n  - f(Tensor info) -> Tensor\n'), /math\.f: parameter name 'info' is reserved/);
    assert.throws(() => read('math:\n  - f(Tensor a, int a) -> Tensor\n'), /math\.f: parameter 'a' appears twice/);
    assert.throws(() => read('Math:\n  - f(Tensor a) -> Tensor\n'), /unit 'Math' must be a lower-case file name/);
    assert.throws(() => read('math: f(Tensor a) -> Tensor\n'), /math: expected a list of ops/);
    assert.throws(() => read('math:\n  - neg\n'), /math\[0\]: a line starts with the op name and '\('/);
    assert.throws(() => read('math:\n  - f(Tensor a -> Tensor\n'), /math\.f: unbalanced parentheses/);
    assert.throws(() => read('math:\n  - f(Tensor a) -> (Tensor, Tensr)\n'), /math\.f: unknown tuple element type 'Tensr'/);
    // the N-API environment is no JS argument: it may follow a parameter with a default
    read('math:\n  - f(Scalar a=1, Env env) -> Tensor\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('native ops: a tensor-or-scalar argument takes a number, a boolean or a tensor; defaults apply when omitted', () => {
  const t = native.fromBuffer(new Float32Array([1, 2, 3]), [3], 'float32', null);
  const handles = [t];
  try {
    const byScalar = native.add(t, 2); // alpha omitted: 1
    const byTensor = native.add(t, t, 0.5);
    const byBool = native.mul(t, true);
    handles.push(byScalar, byTensor, byBool);
    assert.deepEqual(Array.from(new Float32Array(native.toBuffer(byScalar))), [3, 4, 5]);
    assert.deepEqual(Array.from(new Float32Array(native.toBuffer(byTensor))), [1.5, 3, 4.5]);
    assert.deepEqual(Array.from(new Float32Array(native.toBuffer(byBool))), [1, 2, 3]);
    const parts = native.splitWithSizes(t, [1, 2], 0);
    handles.push(...parts);
    assert.deepEqual(
      parts.map((h) => native.shape(h)),
      [[1], [2]],
    );
    assert.deepEqual(native.getAutocast('cpu').length, 2);
  } finally {
    for (const h of handles) native.dispose(h);
  }
});

test("native ops: an 'a'|'b' parameter refuses any other value, naming the op, the parameter and the allowed values", () => {
  const t = native.fromBuffer(new Float32Array([1, 2]), [2], 'float32', null);
  const call = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      return `${(e as { code?: string }).code} ${(e as Error).message}`;
    }
    return 'no error';
  };
  try {
    const n = native as unknown as Record<string, (...a: unknown[]) => unknown>;
    assert.equal(
      call(() => n.gelu(t, 'fast')),
      "ERR_ARG gelu: approximate must be one of 'none', 'tanh', got 'fast'",
    );
    assert.equal(
      call(() => n.mseLoss(t, t, 'avg')),
      "ERR_ARG mseLoss: reduction must be one of 'mean', 'sum', 'none', got 'avg'",
    );
    assert.equal(
      call(() => n.getAutocast('cuda:0')),
      "ERR_ARG getAutocast: device must be one of 'cpu', 'cuda', got 'cuda:0'",
    );
    assert.equal(
      call(() => n.setAutocast(false, 7, 'float32')),
      "ERR_ARG setAutocast: device must be one of 'cpu', 'cuda', got 7",
    );
  } finally {
    native.dispose(t);
  }
});

test('native ops: an id one past the last slot of the handle table names no tensor', () => {
  // A handle id is tag (bit 63) | generation << 32 | slot. 64 new tensors use up any free slots, so the
  // highest slot among them is the table's last.
  const hs = Array.from({ length: 64 }, () => native.fromBuffer(new Float32Array([1]), [1], 'float32', null));
  try {
    const last = Math.max(...hs.map((h) => Number(BigInt.asUintN(32, h))));
    for (const gen of [0n, 1n]) {
      const forged = ((1n << 63n) | (gen << 32n) | BigInt(last + 1)) as unknown as TensorHandle;
      assert.throws(() => native.neg(forged), { message: 'neg: argument 0: expected a tensor' });
    }
  } finally {
    for (const h of hs) native.dispose(h);
  }
});

test('native ops: argument readers: an omitted bool is false; an integer beyond int64, a tensor for a scalar and an object that is not a Generator are refused', () => {
  const t = native.fromBuffer(new Float32Array([1, 2]), [2], 'float32', null);
  const n = native as unknown as Record<string, (...a: unknown[]) => unknown>;
  try {
    native.setRequiresGrad(t, true);
    n.setRequiresGrad(t);
    assert.equal(native.requiresGrad(t), false);
    // 2^63 is the first double past int64 (casting it is undefined behaviour); -2^63 is the last one in range
    assert.throws(() => n.narrow(t, 0, 2 ** 63, 1), {
      code: 'ERR_ARG',
      message: 'narrow: argument 2: expected an integer in the int64 range, got 9223372036854776000',
    });
    assert.throws(() => n.narrow(t, 0, -(2 ** 63), 1), { code: 'ERR_TORCH_INDEX' });
    assert.throws(() => n.rand([2], null, null, {}), { code: 'ERR_ARG', message: 'rand: argument 3: expected a Generator' });
    assert.throws(() => n.full([1], t), { code: 'ERR_ARG', message: 'full: argument 1: expected a number, got a tensor' });
    assert.throws(() => n.setNumThreads(0), { code: 'ERR_ARG', message: /setNumThreads: expected a thread count in 1\.\.2147483647, got 0/ });
  } finally {
    native.dispose(t);
  }
});

test('native ops: interpolate refuses an input that is not 4-D; the profiler refuses a second start and a stop when not running', () => {
  const t = native.fromBuffer(new Float32Array([1, 2, 3, 4]), [1, 2, 2], 'float32', null);
  try {
    assert.throws(() => native.interpolate(t, [4, 4], 'nearest', null), { code: 'ERR_ARG', message: 'interpolate: expects a 4-D input and a 2-element size' });
  } finally {
    native.dispose(t);
  }
  native.profilerStart(false);
  try {
    assert.throws(() => native.profilerStart(false), { message: 'profilerStart: the profiler is already running (profilerStop ends it)' });
  } finally {
    assert.equal(typeof native.profilerStop(), 'string');
  }
  assert.throws(() => native.profilerStop(), { message: 'profilerStop: the profiler is not running (profilerStart starts it)' });
});
