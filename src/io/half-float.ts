// float32 ↔ float16 / bfloat16 as little-endian bytes (safetensors, ONNX initialisers, embed's float16 rows).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function float32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

function bitsToFloat32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

function float32ToBfloat16Bits(x: number): number {
  const bits = float32Bits(x);
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40; // NaN: keep it a (quiet) NaN
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16; // round to nearest even
}

function float32ToFloat16Bits(x: number): number {
  const bits = float32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  let half: number;
  let rem: number;
  let mid: number;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    mant |= 0x800000;
    const shift = 14 - e;
    half = mant >>> shift;
    rem = mant & ((1 << shift) - 1);
    mid = 1 << (shift - 1);
  } else {
    half = (e << 10) | (mant >>> 13);
    rem = mant & 0x1fff;
    mid = 0x1000;
  }
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rem > mid || (rem === mid && (half & 1) === 1)) half++;
  return sign | half;
}

function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function encode16(values: ArrayLike<number>, conv: (x: number) => number): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setUint16(i * 2, conv(values[i]!), true);
  return out;
}

function decode16(bytes: Uint8Array, conv: (h: number) => number): Float32Array {
  if (bytes.byteLength % 2 !== 0) throw new Error(`16-bit data has odd byte length ${bytes.byteLength}`);
  const out = new Float32Array(bytes.byteLength / 2);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = conv(dv.getUint16(i * 2, true));
  return out;
}

/** Little-endian bfloat16 bytes, rounding to nearest even. */
export function float32ToBfloat16Bytes(values: ArrayLike<number>): Uint8Array {
  return encode16(values, float32ToBfloat16Bits);
}

/** Little-endian bfloat16 bytes as float32 values (exact); throws on an odd byte length. */
export function bfloat16BytesToFloat32(bytes: Uint8Array): Float32Array {
  return decode16(bytes, (h) => bitsToFloat32(h << 16));
}

/** Little-endian IEEE half bytes, rounding to nearest even (overflow gives infinity). */
export function float32ToFloat16Bytes(values: ArrayLike<number>): Uint8Array {
  return encode16(values, float32ToFloat16Bits);
}

/** Little-endian IEEE half bytes as float32 values (exact, subnormals, ±Inf and NaN included); throws on an odd byte length. */
export function float16BytesToFloat32(bytes: Uint8Array): Float32Array {
  return decode16(bytes, float16BitsToFloat32);
}
