// A very small WebAssembly emitter: enough to build the SIMD kernels in simd.ts at run time
// without a toolchain (the module is a few hundred bytes of opcodes written here and compiled by V8).

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function bytesOf(s: string): number[] {
  return [...Buffer.from(s, 'utf8')];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

/** Instruction helpers (each returns its bytes). */
export const op = {
  block: (): number[] => [0x02, 0x40],
  loop: (): number[] => [0x03, 0x40],
  end: (): number[] => [0x0b],
  br: (depth: number): number[] => [0x0c, ...uleb(depth)],
  brIf: (depth: number): number[] => [0x0d, ...uleb(depth)],
  get: (i: number): number[] => [0x20, ...uleb(i)],
  set: (i: number): number[] => [0x21, ...uleb(i)],
  tee: (i: number): number[] => [0x22, ...uleb(i)],
  i32: (v: number): number[] => [0x41, ...sleb(v | 0)],
  f32: (v: number): number[] => {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v, 0);
    return [0x43, ...b];
  },
  i32Load: (offset = 0): number[] => [0x28, 2, ...uleb(offset)],
  f32Load: (offset = 0): number[] => [0x2a, 2, ...uleb(offset)],
  f32Store: (offset = 0): number[] => [0x38, 2, ...uleb(offset)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Mul: [0x6c],
  i32Shl: [0x74],
  i32LtS: [0x48],
  i32GeS: [0x4e],
  f32Add: [0x92],
  f32Mul: [0x94],
  // SIMD (0xfd prefix, LEB128 sub-opcode)
  v128Load: (offset = 0): number[] => [0xfd, ...uleb(0x00), 4, ...uleb(offset)],
  v128Load8x8U: (offset = 0): number[] => [0xfd, ...uleb(0x02), 3, ...uleb(offset)],
  v128Store: (offset = 0): number[] => [0xfd, ...uleb(0x0b), 4, ...uleb(offset)],
  f32x4Splat: [0xfd, ...uleb(0x13)],
  i32x4ExtendLowI16x8U: [0xfd, ...uleb(0xa9)],
  i32x4ExtendHighI16x8U: [0xfd, ...uleb(0xaa)],
  f32x4ConvertI32x4U: [0xfd, ...uleb(0xfb)],
  f32x4Add: [0xfd, ...uleb(0xe4)],
  f32x4Sub: [0xfd, ...uleb(0xe5)],
  f32x4Mul: [0xfd, ...uleb(0xe6)],
  f32x4Min: [0xfd, ...uleb(0xe8)],
  f32x4Max: [0xfd, ...uleb(0xe9)],
  f32x4Nearest: [0xfd, ...uleb(0x6a)],
  i32x4TruncSatF32x4S: [0xfd, ...uleb(0xf8)],
  i16x8NarrowI32x4S: [0xfd, ...uleb(0x85)],
  i8x16NarrowI16x8U: [0xfd, ...uleb(0x66)],
  /** Shuffle of two f32x4 by lane indices 0–7 (4–7 select from the second operand). */
  f32x4Shuffle: (lanes: number[]): number[] => [0xfd, ...uleb(0x0d), ...lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3])],
  v128Store64Lane: (lane: number, offset = 0): number[] => [0xfd, ...uleb(0x5b), 3, ...uleb(offset), lane],
};

export interface FuncDef {
  name: string;
  params: number[];
  /** Extra locals (types), numbered after the params. */
  locals: number[];
  body: number[];
}

/** Builds a module exporting `funcs` and a memory named "memory" (initial pages). */
export function buildModule(funcs: FuncDef[], pages: number): Uint8Array {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((t) => [t])), 0x00]);
  const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
  const typeSec = section(1, vec(types));
  const funcSec = section(3, vec(funcs.map((_, i) => uleb(i))));
  const memSec = section(5, vec([[0x00, ...uleb(pages)]]));
  const exports = funcs.map((f, i) => [...uleb(bytesOf(f.name).length), ...bytesOf(f.name), 0x00, ...uleb(i)]);
  exports.push([...uleb(6), ...bytesOf('memory'), 0x02, 0x00]);
  const exportSec = section(7, vec(exports));
  const bodies = funcs.map((f) => {
    const groups: number[][] = f.locals.map((t) => [1, t]);
    const content = [...vec(groups), ...f.body, 0x0b];
    return [...uleb(content.length), ...content];
  });
  const codeSec = section(10, vec(bodies));
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...typeSec, ...funcSec, ...memSec, ...exportSec, ...codeSec]);
}
