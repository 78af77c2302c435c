// Baseline and progressive JPEG decoder in TypeScript.
//
// Built for a training input pipeline rather than for display:
// - it decodes to planar Y/Cb/Cr (or gray / RGB) planes and leaves chroma subsampled; the
//   resampler upsamples chroma while it resizes, and colour conversion runs at output size;
// - `decode({ region })` runs the IDCT only for blocks that intersect the region (and stops reading
//   a baseline scan after the last row it needs);
// - `decode({ reduction })` (1, 2, 4, 8) downsamples in the DCT domain, like libjpeg's scaled IDCT.
// Files this decoder does not handle (CMYK/YCCK, 12-bit, arithmetic coding, lossless, odd sampling
// factors, DNL) raise `NeedsFallback` so the caller can use sharp/libvips instead.

import { DecodeError, NeedsFallback } from './errors';
import { checkPixelLimit } from './limits';
import { ZIGZAG, aanScaledQuant, plainQuant, idct8, idctReduced, fillBlock } from './idct';
import type { Image, Plane } from '../image';
import { scratchU8, scratchI16 } from '../scratch';
import { arenaAlloc, arenaBuffer, wasmIdct } from '../simd';

interface Huffman {
  /** FAST-bit lookahead: (length << 8) | symbol, or 0 when the code is longer than 9 bits. */
  look: Int32Array;
  /**
   * AC fast path (as in stb_image): for a 9-bit lookahead whose code and magnitude bits both fit,
   * (value << 8) | (run << 4) | totalLength; 0 otherwise.
   */
  fastAc: Int32Array;
  maxcode: Int32Array; // per length 1..16, -1 if none
  valoff: Int32Array; // index into vals = valoff[len] + code
  vals: Uint8Array;
}

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  /** Blocks per line / column in the MCU-padded grid. */
  bw: number;
  bh: number;
  /** Size of the component in its own samples. */
  cw: number;
  ch: number;
  /** Blocks actually covering the component (non-interleaved scans iterate these). */
  bwScan: number;
  bhScan: number;
  dcTable: Huffman | null;
  acTable: Huffman | null;
  pred: number;
  coeffs: Int16Array | null; // progressive only
  // output region (block coordinates) for the current decode
  bx0: number;
  bx1: number;
  by0: number;
  by1: number;
  plane: Uint8ClampedArray | null;
  stride: number;
  q: Float64Array | null;
  /** Offset of the plane in the wasm arena, or -1. */
  arenaOff: number;
}

export interface JpegDecodeOptions {
  /** Source-pixel rectangle that must be decoded; other blocks are entropy-decoded only. */
  region?: { x0: number; y0: number; x1: number; y1: number };
  /** DCT-domain downscale factor: 1, 2, 4 or 8. */
  reduction?: 1 | 2 | 4 | 8;
  /**
   * Decode into per-thread scratch memory: the planes are only valid until the next decode that
   * also uses scratch memory (the loader's per-sample path).
   */
  scratch?: boolean;
}

/**
 * Scans a JPEG may have (libjpeg-turbo's suggested limit, djpeg -maxscans / TJPARAM_SCANLIMIT). Encoders write about
 * ten; each scan walks every block of its components, so a 1 MB file of 17,000 tiny repeated scans of a 4096² image
 * took minutes to decode (at the pixel limit, hours), holding a loader worker all that time.
 */
export const MAX_JPEG_SCANS = 500;

/** Lookahead bits of the Huffman fast tables. */
const FAST = 9;
const FAST_MASK = (1 << FAST) - 1;

const huffCache = new Map<number, { bytes: Uint8Array; table: Huffman }>();

function buildHuffman(counts: Uint8Array, vals: Uint8Array): Huffman {
  let hash = 0x811c9dc5;
  for (let i = 0; i < 16; i++) hash = Math.imul(hash ^ counts[i], 0x01000193);
  for (let i = 0; i < vals.length; i++) hash = Math.imul(hash ^ vals[i], 0x01000193);
  hash = (hash ^ vals.length) >>> 0;
  const hit = huffCache.get(hash);
  if (hit && hit.bytes.length === 16 + vals.length) {
    const hb = hit.bytes;
    let same = true;
    for (let i = 0; i < 16 && same; i++) same = hb[i] === counts[i];
    for (let i = 0; i < vals.length && same; i++) same = hb[16 + i] === vals[i];
    if (same) return hit.table;
  }
  const look = new Int32Array(1 << FAST);
  const maxcode = new Int32Array(18).fill(-1);
  const valoff = new Int32Array(18);
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    const n = counts[len - 1];
    if (n > 0) {
      valoff[len] = k - code;
      for (let i = 0; i < n; i++, k++, code++) {
        if (len <= FAST) {
          const shift = FAST - len;
          const base = code << shift;
          const entry = (len << 8) | vals[k];
          for (let j = 0; j < 1 << shift; j++) look[base + j] = entry;
        }
      }
      maxcode[len] = code - 1;
    }
    code <<= 1;
  }
  maxcode[17] = 0x7fffffff;
  const fastAc = new Int32Array(1 << FAST);
  for (let i = 0; i < 1 << FAST; i++) {
    const e = look[i];
    if (e === 0) continue;
    const len = e >> 8;
    const rs = e & 255;
    const run = rs >> 4;
    const mag = rs & 15;
    if (mag === 0 || len + mag > FAST) continue;
    let v = ((i << len) & FAST_MASK) >> (FAST - mag);
    if (v < 1 << (mag - 1)) v += (-1 << mag) + 1;
    fastAc[i] = (v << 8) | (run << 4) | (len + mag);
  }
  const h: Huffman = { look, fastAc, maxcode, valoff, vals: vals.slice() };
  if (huffCache.size > 256) huffCache.clear();
  const bytes = new Uint8Array(16 + vals.length);
  bytes.set(counts, 0);
  bytes.set(vals, 16);
  huffCache.set(hash, { bytes, table: h });
  return h;
}

function corrupt(msg: string): DecodeError {
  return new DecodeError('corrupt', `corrupt JPEG data: ${msg}`);
}

/** Reads the dimensions of a JPEG without decoding it (null when it is not a JPEG we can parse). */
export function isJpeg(data: Uint8Array): boolean {
  return data.length >= 3 && data[0] === 0xff && data[1] === 0xd8 && data[2] === 0xff;
}

export class JpegImage {
  readonly width: number;
  readonly height: number;
  readonly progressive: boolean;
  readonly components: number;
  /** 'ycbcr' | 'rgb' | 'gray' colour model of the decoded planes. */
  readonly space: 'ycbcr' | 'rgb' | 'gray';

  private readonly data: Uint8Array;
  private readonly hasEoi: boolean;
  private comps: Component[] = [];
  private hmax = 1;
  private vmax = 1;
  private mcusX = 0;
  private mcusY = 0;

  // decoding state
  private qt: (Uint16Array | null)[] = [null, null, null, null];
  private dcT: (Huffman | null)[] = [null, null, null, null];
  private acT: (Huffman | null)[] = [null, null, null, null];
  private restartInterval = 0;
  private pos = 0;
  private acc = 0;
  private nbits = 0;
  private fakeBits = 0;
  private atMarker = false;
  private eobrun = 0;
  private readonly blkJs = new Float32Array(64);
  /** Coefficient block being decoded (in the wasm arena when the SIMD IDCT is used). */
  private blk: Float32Array = this.blkJs;
  private coefOff = -1;
  private widct: ((coef: number, out: number, stride: number) => void) | null = null;

  /** Reads the headers; `maxPixels`: the pixel limit (undefined = the default, 0 = none), checked before any decoding. */
  constructor(data: Uint8Array, maxPixels?: number) {
    if (!isJpeg(data)) throw new DecodeError('unsupported', 'not a JPEG file');
    this.data = data;
    let pos = 2;
    let sof = -1;
    let adobe = -1;
    let jfif = false;
    let sos = -1;
    const end = data.length;
    while (pos < end) {
      if (data[pos] !== 0xff) {
        pos++; // tolerate garbage between segments
        continue;
      }
      const marker = data[pos + 1];
      if (marker === 0xff) {
        pos++;
        continue;
      }
      if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
        pos += 2;
        continue;
      }
      if (pos + 4 > end) break;
      const len = (data[pos + 2] << 8) | data[pos + 3];
      if (len < 2) throw corrupt('bad segment length');
      const seg = pos + 4;
      if (marker === 0xda) {
        sos = pos;
        break;
      }
      if (marker === 0xd9) break;
      if (seg + len - 2 > end) throw new DecodeError('truncated', 'truncated JPEG header');
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        if (sof >= 0) throw corrupt('more than one frame header');
        sof = pos;
        if (marker !== 0xc0 && marker !== 0xc1 && marker !== 0xc2) {
          throw new NeedsFallback(`JPEG process SOF${marker - 0xc0} (lossless/arithmetic/hierarchical)`);
        }
      } else if (marker === 0xee && len >= 14) {
        if (data[seg] === 0x41 && data[seg + 1] === 0x64 && data[seg + 2] === 0x6f && data[seg + 3] === 0x62) {
          adobe = data[seg + 11];
        }
      } else if (marker === 0xe0 && len >= 7) {
        if (data[seg] === 0x4a && data[seg + 1] === 0x46 && data[seg + 2] === 0x49 && data[seg + 3] === 0x46) jfif = true;
      }
      pos = seg + len - 2;
    }
    if (sof < 0) throw new DecodeError(pos >= end ? 'truncated' : 'corrupt', 'JPEG has no frame header');
    if (sos < 0) throw new DecodeError('truncated', 'JPEG has no scan data');
    // as libjpeg's get_sof (JERR_BAD_LENGTH): 6 bytes, then 3 per component; a shorter segment had its components
    // read from the bytes after it, a longer one its extra bytes ignored
    const sofLen = (data[sof + 2] << 8) | data[sof + 3];
    if (sofLen < 8 || sofLen !== 8 + 3 * data[sof + 9]) {
      throw corrupt(`bad frame header length (${sofLen} bytes${sofLen < 8 ? '' : ` for ${data[sof + 9]} component(s)`})`);
    }
    const m = data[sof + 1];
    const s = sof + 4;
    const precision = data[s];
    if (precision !== 8) throw new NeedsFallback(`${precision}-bit JPEG`);
    this.height = (data[s + 1] << 8) | data[s + 2];
    this.width = (data[s + 3] << 8) | data[s + 4];
    const nc = data[s + 5];
    if (this.height === 0) throw new NeedsFallback('JPEG with DNL marker');
    if (this.width === 0) throw corrupt('zero width');
    checkPixelLimit(this.width, this.height, maxPixels, 'JPEG');
    if (nc !== 1 && nc !== 3) throw new NeedsFallback(`JPEG with ${nc} components (CMYK/YCCK)`);
    this.progressive = m === 0xc2;
    this.components = nc;
    for (let i = 0; i < nc; i++) {
      const o = s + 6 + i * 3;
      const hv = data[o + 1];
      const h = hv >> 4;
      const v = hv & 15;
      if (h < 1 || h > 4 || v < 1 || v > 4) throw corrupt('bad sampling factor');
      this.comps.push({
        id: data[o],
        h,
        v,
        tq: data[o + 2],
        bw: 0,
        bh: 0,
        cw: 0,
        ch: 0,
        bwScan: 0,
        bhScan: 0,
        dcTable: null,
        acTable: null,
        pred: 0,
        coeffs: null,
        bx0: 0,
        bx1: 0,
        by0: 0,
        by1: 0,
        plane: null,
        stride: 0,
        q: null,
        arenaOff: -1,
      });
    }
    for (const c of this.comps) {
      this.hmax = Math.max(this.hmax, c.h);
      this.vmax = Math.max(this.vmax, c.v);
    }
    for (const c of this.comps) {
      if (this.hmax % c.h !== 0 || this.vmax % c.v !== 0) throw new NeedsFallback('non-integer chroma subsampling');
    }
    this.mcusX = Math.ceil(this.width / (8 * this.hmax));
    this.mcusY = Math.ceil(this.height / (8 * this.vmax));
    for (const c of this.comps) {
      c.bw = this.mcusX * c.h;
      c.bh = this.mcusY * c.v;
      c.cw = Math.ceil((this.width * c.h) / this.hmax);
      c.ch = Math.ceil((this.height * c.v) / this.vmax);
      c.bwScan = Math.ceil(c.cw / 8);
      c.bhScan = Math.ceil(c.ch / 8);
    }
    // Every 8×8 block of every component has a DC code of at least one bit (Huffman codes are never
    // empty): a file with fewer scan bytes than that cannot hold the image its header claims. Checked
    // before decode allocates the planes, so a few hundred bytes claiming 9000×9000 (within the pixel
    // limit) do not take a quarter of a gigabyte first; a real image is far above this bound.
    const minScanBytes = Math.ceil(this.comps.reduce((a, c) => a + c.bwScan * c.bhScan, 0) / 8);
    if (data.length - sos < minScanBytes) {
      throw new DecodeError(
        'truncated',
        `truncated JPEG: ${this.width}×${this.height} needs at least ${minScanBytes} bytes of scan data, the file holds ${data.length - sos} after its header`,
      );
    }
    if (nc === 1) this.space = 'gray';
    else {
      const ids = this.comps.map((c) => c.id);
      const rgbIds = ids[0] === 0x52 && ids[1] === 0x47 && ids[2] === 0x42;
      if (adobe === 0 || (adobe < 0 && !jfif && rgbIds)) this.space = 'rgb';
      else this.space = 'ycbcr';
    }
    // Find an EOI after the first scan (scanning back from the end past any trailing bytes).
    let eoi = false;
    for (let i = end - 2; i > sos; i--) {
      if (data[i] === 0xff && data[i + 1] === 0xd9) {
        eoi = true;
        break;
      }
    }
    this.hasEoi = eoi;
  }

  /** Decodes to planar 8-bit planes. */
  decode(opts: JpegDecodeOptions = {}): Image {
    const r = opts.reduction ?? 1;
    const n = 8 / r;
    const full = !this.hasEoi; // without EOI we must read everything to detect truncation
    const region = opts.region ?? { x0: 0, y0: 0, x1: this.width, y1: this.height };
    const rx0 = Math.max(0, Math.floor(region.x0));
    const ry0 = Math.max(0, Math.floor(region.y0));
    const rx1 = Math.min(this.width, Math.ceil(region.x1));
    const ry1 = Math.min(this.height, Math.ceil(region.y1));
    if (!(rx1 > rx0 && ry1 > ry0)) throw new RangeError('JpegImage.decode: empty region');
    // Planes go to the wasm arena when decoding into scratch memory with SIMD available (the IDCT
    // then runs in WebAssembly and the resampler reads the planes in place).
    const useArena = !!opts.scratch && n === 8 && wasmIdct() !== null;
    const sizes: number[] = [];
    for (const c of this.comps) {
      const fx = c.h / this.hmax;
      const fy = c.v / this.vmax;
      c.bx0 = Math.max(0, Math.floor((rx0 * fx) / 8));
      c.by0 = Math.max(0, Math.floor((ry0 * fy) / 8));
      c.bx1 = Math.min(c.bwScan, Math.ceil((rx1 * fx) / 8));
      c.by1 = Math.min(c.bhScan, Math.ceil((ry1 * fy) / 8));
      if (c.bx1 <= c.bx0) c.bx1 = c.bx0 + 1;
      if (c.by1 <= c.by0) c.by1 = c.by0 + 1;
      c.stride = (c.bx1 - c.bx0) * n;
      sizes.push(c.stride * (c.by1 - c.by0) * n);
      c.pred = 0;
    }
    if (useArena) {
      for (let ci = 0; ci < this.comps.length; ci++) this.comps[ci].arenaOff = arenaAlloc(sizes[ci])!;
      this.coefOff = arenaAlloc(256)!;
      const buf = arenaBuffer(); // no allocation after this point: views stay valid
      for (let ci = 0; ci < this.comps.length; ci++) this.comps[ci].plane = new Uint8ClampedArray(buf, this.comps[ci].arenaOff, sizes[ci]);
      this.blk = new Float32Array(buf, this.coefOff, 64);
      this.blk.fill(0);
      this.widct = wasmIdct();
    } else {
      for (let ci = 0; ci < this.comps.length; ci++) {
        const c = this.comps[ci];
        c.arenaOff = -1;
        if (opts.scratch) {
          const u8 = scratchU8(`jpeg-plane-${ci}`, sizes[ci]);
          c.plane = new Uint8ClampedArray(u8.buffer, 0, sizes[ci]);
        } else c.plane = new Uint8ClampedArray(sizes[ci]);
      }
      this.blk = this.blkJs;
      this.blk.fill(0);
      this.coefOff = -1;
      this.widct = null;
    }
    for (let ci = 0; ci < this.comps.length; ci++) {
      const c = this.comps[ci];
      if (this.progressive) {
        const nco = c.bw * c.bh * 64;
        c.coeffs = opts.scratch ? scratchI16(`jpeg-coef-${ci}`, nco).fill(0) : new Int16Array(nco);
      } else c.coeffs = null;
    }
    this.qt = [null, null, null, null];
    this.dcT = [null, null, null, null];
    this.acT = [null, null, null, null];
    this.restartInterval = 0;
    try {
      this.readTablesAndScans(n, full);
      if (this.progressive) this.progressiveIdct(n);
    } catch (e) {
      if (!this.hasEoi && e instanceof DecodeError) {
        throw new DecodeError('truncated', `truncated JPEG file (no end marker; ${e.message})`);
      }
      throw e;
    }

    const planes: Plane[] = this.comps.map((c) => {
      const sx = (this.hmax / c.h) * r;
      const sy = (this.vmax / c.v) * r;
      const x0 = c.bx0 * 8 * (this.hmax / c.h);
      const y0 = c.by0 * 8 * (this.vmax / c.v);
      const validW = Math.ceil((c.cw - c.bx0 * 8) / r);
      const validH = Math.ceil((c.ch - c.by0 * 8) / r);
      const plane = c.plane!;
      c.plane = null;
      c.coeffs = null;
      const arena = c.arenaOff >= 0 ? c.arenaOff : undefined;
      return {
        arena,
        data: new Uint8Array(plane.buffer, plane.byteOffset, plane.length),
        width: Math.min(c.stride, validW),
        height: Math.min((c.by1 - c.by0) * n, validH),
        stride: c.stride,
        offset: 0,
        x0,
        y0,
        sx,
        sy,
      };
    });
    return { width: this.width, height: this.height, space: this.space, planes };
  }

  // ---------------------------------------------------------------- marker / scan loop

  private readTablesAndScans(n: number, full: boolean): void {
    const data = this.data;
    const end = data.length;
    let pos = 2;
    let scans = 0;
    for (;;) {
      // find next marker
      while (pos < end && data[pos] !== 0xff) pos++;
      while (pos < end && data[pos] === 0xff) pos++;
      if (pos >= end) {
        if (scans === 0 || this.progressive || full) throw new DecodeError('truncated', 'JPEG ends before its end marker');
        return;
      }
      const marker = data[pos];
      pos++;
      if (marker === 0xd9) return; // EOI
      if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x00 || marker === 0x01) continue;
      if (pos + 2 > end) throw new DecodeError('truncated', 'truncated JPEG segment');
      const len = (data[pos] << 8) | data[pos + 1];
      const seg = pos + 2;
      const segEnd = pos + len;
      if (segEnd > end) throw new DecodeError('truncated', 'truncated JPEG segment');
      switch (marker) {
        case 0xdb:
          this.readDqt(seg, segEnd);
          break;
        case 0xc4:
          this.readDht(seg, segEnd);
          break;
        case 0xdd:
          // as libjpeg's get_dri (JERR_BAD_LENGTH): a 2-byte interval; a shorter segment's was read from the next marker
          if (len !== 4) throw corrupt(`bad restart interval segment (${len} bytes, not 4)`);
          this.restartInterval = (data[seg] << 8) | data[seg + 1];
          break;
        case 0xda: {
          if (scans === MAX_JPEG_SCANS)
            throw new DecodeError('unsupported', `JPEG of more than ${MAX_JPEG_SCANS} scans (encoders write about 10; so many only make its decoding slow)`);
          const done = this.readScan(seg, segEnd, n, full);
          scans++;
          pos = this.pos;
          if (done) return; // baseline scan finished all rows it needed
          continue;
        }
        default:
          break;
      }
      pos = segEnd;
    }
  }

  private readDqt(p: number, end: number): void {
    const d = this.data;
    while (p < end) {
      const pq = d[p] >> 4;
      const tq = d[p] & 15;
      // as libjpeg (JERR_DQT_INDEX, JERR_BAD_LENGTH): index 4 was read as table 0, a short table from the next segment
      if (tq > 3) throw corrupt(`bad quantization table index ${tq}`);
      if (p + 1 + (pq ? 128 : 64) > end) throw corrupt('quantization table longer than its segment');
      p++;
      const q = new Uint16Array(64);
      for (let k = 0; k < 64; k++) {
        q[ZIGZAG[k]] = pq ? (d[p + 2 * k] << 8) | d[p + 2 * k + 1] : d[p + k];
      }
      p += pq ? 128 : 64;
      this.qt[tq] = q;
    }
  }

  private readDht(p: number, end: number): void {
    const d = this.data;
    while (p < end) {
      const tc = d[p] >> 4;
      const th = d[p] & 15;
      // as libjpeg (JERR_DHT_INDEX): table 4 was read as table 0, class 2 as an AC table
      if (tc > 1 || th > 3) throw corrupt(`bad Huffman table class/index 0x${d[p].toString(16)}`);
      const counts = d.subarray(p + 1, p + 17);
      let total = 0;
      for (let i = 0; i < 16; i++) total += counts[i];
      if (p + 17 + total > end) throw corrupt('bad Huffman table');
      const vals = d.subarray(p + 17, p + 17 + total);
      const h = buildHuffman(counts, vals);
      if (tc === 0) this.dcT[th] = h;
      else this.acT[th] = h;
      p += 17 + total;
    }
  }

  /** Decodes one scan; returns true when decoding can stop (baseline: last needed row reached). */
  private readScan(p: number, segEnd: number, n: number, full: boolean): boolean {
    const d = this.data;
    const ns = d[p];
    // as libjpeg (JERR_BAD_LENGTH): 1-4 components and a length that holds them; a count of 0 decoded
    // nothing and gave an image of zeros, one the length does not hold read the scan's data as another scan's
    if (ns < 1 || ns > 4 || segEnd - p !== 4 + 2 * ns) throw corrupt(`bad scan header (${ns} component(s) in ${segEnd - p + 2} bytes)`);
    const scomps: Component[] = [];
    for (let i = 0; i < ns; i++) {
      const cid = d[p + 1 + 2 * i];
      const tables = d[p + 2 + 2 * i];
      const c = this.comps.find((x) => x.id === cid);
      if (!c) throw corrupt('scan references an unknown component');
      c.dcTable = this.dcT[tables >> 4];
      c.acTable = this.acT[tables & 15];
      scomps.push(c);
    }
    const q = p + 1 + 2 * ns;
    const ss = d[q];
    const se = d[q + 1];
    const ah = d[q + 2] >> 4;
    const al = d[q + 2] & 15;
    this.pos = segEnd;
    this.resetBits();
    this.eobrun = 0;
    for (const c of scomps) c.pred = 0;

    if (!this.progressive) {
      for (const c of scomps) {
        const qt = this.qt[c.tq];
        if (!qt) throw corrupt('missing quantisation table');
        if (!c.dcTable || !c.acTable) throw corrupt('missing Huffman table');
        c.q = n === 8 ? aanScaledQuant(qt) : plainQuant(qt);
      }
      return this.baselineScan(scomps, n, full);
    }
    for (const c of scomps) {
      if (ss === 0 && ah === 0 && !c.dcTable) throw corrupt('missing Huffman table');
      if (ss > 0 && !c.acTable) throw corrupt('missing Huffman table');
    }
    if (ss === 0 && se !== 0) throw corrupt('bad progressive scan');
    if (ss > se || se > 63) throw corrupt('bad spectral selection');
    if (ss > 0 && ns !== 1) throw corrupt('interleaved AC scan');
    this.progressiveScan(scomps, ss, se, ah, al, full);
    return false;
  }

  // ---------------------------------------------------------------- bit reader

  private resetBits(): void {
    this.acc = 0;
    this.nbits = 0;
    this.fakeBits = 0;
    this.atMarker = false;
  }

  private fill(): void {
    const d = this.data;
    const end = d.length;
    let pos = this.pos;
    let acc = this.acc;
    let nbits = this.nbits;
    while (nbits <= 24) {
      let b = 0;
      if (!this.atMarker) {
        if (pos < end) {
          b = d[pos];
          if (b === 0xff) {
            const b2 = pos + 1 < end ? d[pos + 1] : -1;
            if (b2 === 0) pos += 2;
            else {
              this.atMarker = true;
              b = 0;
            }
          } else pos++;
        } else this.atMarker = true;
      }
      if (this.atMarker) this.fakeBits += 8;
      acc = (acc << 8) | b;
      nbits += 8;
    }
    this.pos = pos;
    this.acc = acc;
    this.nbits = nbits;
  }

  private decodeHuff(t: Huffman): number {
    if (this.nbits < 16) this.fill();
    const e = t.look[(this.acc >>> (this.nbits - FAST)) & FAST_MASK];
    if (e !== 0) {
      this.nbits -= e >> 8;
      return e & 255;
    }
    const code16 = (this.acc >>> (this.nbits - 16)) & 0xffff;
    for (let len = FAST + 1; len <= 16; len++) {
      const c = code16 >>> (16 - len);
      if (c <= t.maxcode[len]) {
        this.nbits -= len;
        return t.vals[t.valoff[len] + c];
      }
    }
    throw corrupt('bad Huffman code');
  }

  private bits(s: number): number {
    if (this.nbits < s) this.fill();
    this.nbits -= s;
    return (this.acc >>> this.nbits) & ((1 << s) - 1);
  }

  private bit(): number {
    if (this.nbits < 1) this.fill();
    this.nbits--;
    return (this.acc >>> this.nbits) & 1;
  }

  private overrun(): boolean {
    return this.fakeBits > this.nbits;
  }

  /** Handles a restart marker between restart intervals. */
  private restart(): void {
    if (this.overrun()) throw corrupt('premature end of data segment');
    const d = this.data;
    let pos = this.pos;
    // Skip to the marker (normally immediately here).
    while (pos + 1 < d.length && !(d[pos] === 0xff && d[pos + 1] >= 0xd0 && d[pos + 1] <= 0xd7)) {
      if (d[pos] === 0xff && d[pos + 1] !== 0 && d[pos + 1] !== 0xff) throw corrupt('missing restart marker');
      pos++;
    }
    if (pos + 1 >= d.length) throw new DecodeError('truncated', 'JPEG data ends early');
    this.pos = pos + 2;
    this.resetBits();
    this.eobrun = 0;
    for (const c of this.comps) c.pred = 0;
  }

  /** Moves `pos` to the next marker that is not RSTn (used when a scan is abandoned early). */
  private skipToMarker(): void {
    const d = this.data;
    let pos = this.pos;
    while (pos + 1 < d.length) {
      if (d[pos] === 0xff) {
        const m = d[pos + 1];
        if (m !== 0 && m !== 0xff && !(m >= 0xd0 && m <= 0xd7)) break;
      }
      pos++;
    }
    this.pos = pos;
  }

  /** After a scan: check for overrun and position at the following marker. */
  private endScan(full: boolean): void {
    if (this.overrun()) {
      throw new DecodeError(full ? 'truncated' : 'corrupt', full ? 'JPEG data ends early' : 'corrupt JPEG data: premature end of data segment');
    }
    this.skipToMarker();
  }

  // ---------------------------------------------------------------- baseline

  private baselineScan(scomps: Component[], n: number, full: boolean): boolean {
    const single = scomps.length === 1;
    const ri = this.restartInterval;
    const blk = this.blk;
    const widct = this.widct;
    const coefOff = this.coefOff;
    const data = this.data;
    const end = data.length;
    // Blocks making up one MCU.
    const bComp: Component[] = [];
    const bDx: number[] = [];
    const bDy: number[] = [];
    const bMx: number[] = [];
    const bMy: number[] = [];
    let mcuW: number;
    let totalRows: number;
    let lastRow: number;
    if (single) {
      const c = scomps[0];
      bComp.push(c);
      bDx.push(0);
      bDy.push(0);
      bMx.push(1);
      bMy.push(1);
      mcuW = c.bwScan;
      totalRows = c.bhScan;
      lastRow = full ? totalRows - 1 : Math.min(totalRows - 1, c.by1 - 1);
    } else {
      for (const c of scomps) {
        for (let v = 0; v < c.v; v++) {
          for (let h = 0; h < c.h; h++) {
            bComp.push(c);
            bDx.push(h);
            bDy.push(v);
            bMx.push(c.h);
            bMy.push(c.v);
          }
        }
      }
      mcuW = this.mcusX;
      totalRows = this.mcusY;
      lastRow = totalRows - 1;
      if (!full) {
        lastRow = 0;
        for (const c of scomps) lastRow = Math.max(lastRow, Math.floor((c.by1 - 1) / c.v));
        lastRow = Math.min(lastRow, totalRows - 1);
      }
    }
    const nb = bComp.length;
    // The bit reader's state is held in locals through the MCU loop, and its refill is written out at each
    // of its four uses: a helper could not update four locals, and going through `this` in the innermost
    // loop is what the locals avoid.
    let acc = this.acc;
    let nbits = this.nbits;
    let pos = this.pos;
    let fake = this.fakeBits;
    let mcu = 0;
    for (let my = 0; my <= lastRow; my++) {
      for (let mx = 0; mx < mcuW; mx++) {
        if (ri && mcu > 0 && mcu % ri === 0) {
          this.acc = acc;
          this.nbits = nbits;
          this.pos = pos;
          this.fakeBits = fake;
          this.restart();
          acc = this.acc;
          nbits = this.nbits;
          pos = this.pos;
          fake = this.fakeBits;
        }
        mcu++;
        for (let b = 0; b < nb; b++) {
          const c = bComp[b];
          const bx = mx * bMx[b] + bDx[b];
          const by = my * bMy[b] + bDy[b];
          const need = by >= c.by0 && by < c.by1 && bx >= c.bx0 && bx < c.bx1;
          const q = c.q!;
          // ---- DC
          let T = c.dcTable!;
          if (nbits < 16) {
            // fast path: two bytes without 0xFF
            if (pos + 1 < end && data[pos] !== 0xff && data[pos + 1] !== 0xff) {
              acc = (acc << 16) | (data[pos] << 8) | data[pos + 1];
              pos += 2;
              nbits += 16;
            }
            while (nbits <= 24) {
              let byte = 0;
              if (pos < end) {
                byte = data[pos];
                if (byte === 0xff) {
                  if (pos + 1 < end && data[pos + 1] === 0) pos += 2;
                  else {
                    byte = 0;
                    fake += 8;
                  }
                } else pos++;
              } else fake += 8;
              acc = (acc << 8) | byte;
              nbits += 8;
            }
          }
          let sym = 0;
          let e = T.look[(acc >>> (nbits - FAST)) & FAST_MASK];
          if (e !== 0) {
            nbits -= e >> 8;
            sym = e & 255;
          } else {
            const code16 = (acc >>> (nbits - 16)) & 0xffff;
            let len = FAST + 1;
            for (; len <= 16; len++) {
              const cc = code16 >>> (16 - len);
              if (cc <= T.maxcode[len]) {
                sym = T.vals[T.valoff[len] + cc];
                break;
              }
            }
            if (len > 16) throw corrupt('bad Huffman code');
            nbits -= len;
          }
          if (sym !== 0) {
            if (nbits < 16) {
              // fast path: two bytes without 0xFF
              if (pos + 1 < end && data[pos] !== 0xff && data[pos + 1] !== 0xff) {
                acc = (acc << 16) | (data[pos] << 8) | data[pos + 1];
                pos += 2;
                nbits += 16;
              }
              while (nbits <= 24) {
                let byte = 0;
                if (pos < end) {
                  byte = data[pos];
                  if (byte === 0xff) {
                    if (pos + 1 < end && data[pos + 1] === 0) pos += 2;
                    else {
                      byte = 0;
                      fake += 8;
                    }
                  } else pos++;
                } else fake += 8;
                acc = (acc << 8) | byte;
                nbits += 8;
              }
            }
            nbits -= sym;
            let diff = (acc >>> nbits) & ((1 << sym) - 1);
            if (diff < 1 << (sym - 1)) diff += (-1 << sym) + 1;
            c.pred += diff;
          }
          // ---- AC
          T = c.acTable!;
          const fastAc = T.fastAc;
          const look = T.look;
          let last = 0;
          if (need) blk[0] = c.pred * q[0];
          for (let k = 1; k < 64;) {
            if (nbits < 16) {
              // fast path: two bytes without 0xFF
              if (pos + 1 < end && data[pos] !== 0xff && data[pos + 1] !== 0xff) {
                acc = (acc << 16) | (data[pos] << 8) | data[pos + 1];
                pos += 2;
                nbits += 16;
              }
              while (nbits <= 24) {
                let byte = 0;
                if (pos < end) {
                  byte = data[pos];
                  if (byte === 0xff) {
                    if (pos + 1 < end && data[pos + 1] === 0) pos += 2;
                    else {
                      byte = 0;
                      fake += 8;
                    }
                  } else pos++;
                } else fake += 8;
                acc = (acc << 8) | byte;
                nbits += 8;
              }
            }
            const f = fastAc[(acc >>> (nbits - FAST)) & FAST_MASK];
            if (f !== 0) {
              k += (f >> 4) & 15;
              nbits -= f & 15;
              if (need) {
                const z = ZIGZAG[k];
                blk[z] = (f >> 8) * q[z];
                last = k;
              }
              k++;
              continue;
            }
            e = look[(acc >>> (nbits - FAST)) & FAST_MASK];
            if (e !== 0) {
              nbits -= e >> 8;
              sym = e & 255;
            } else {
              const code16 = (acc >>> (nbits - 16)) & 0xffff;
              let len = FAST + 1;
              for (; len <= 16; len++) {
                const cc = code16 >>> (16 - len);
                if (cc <= T.maxcode[len]) {
                  sym = T.vals[T.valoff[len] + cc];
                  break;
                }
              }
              if (len > 16) throw corrupt('bad Huffman code');
              nbits -= len;
            }
            const s = sym & 15;
            const r = sym >> 4;
            if (s === 0) {
              if (r === 15) {
                k += 16;
                continue;
              }
              break;
            }
            k += r;
            if (nbits < 16) {
              // fast path: two bytes without 0xFF
              if (pos + 1 < end && data[pos] !== 0xff && data[pos + 1] !== 0xff) {
                acc = (acc << 16) | (data[pos] << 8) | data[pos + 1];
                pos += 2;
                nbits += 16;
              }
              while (nbits <= 24) {
                let byte = 0;
                if (pos < end) {
                  byte = data[pos];
                  if (byte === 0xff) {
                    if (pos + 1 < end && data[pos + 1] === 0) pos += 2;
                    else {
                      byte = 0;
                      fake += 8;
                    }
                  } else pos++;
                } else fake += 8;
                acc = (acc << 8) | byte;
                nbits += 8;
              }
            }
            nbits -= s;
            if (need) {
              let v = (acc >>> nbits) & ((1 << s) - 1);
              if (v < 1 << (s - 1)) v += (-1 << s) + 1;
              const z = ZIGZAG[k];
              blk[z] = v * q[z];
              last = k;
            }
            k++;
          }
          if (need) {
            const o = (by - c.by0) * n * c.stride + (bx - c.bx0) * n;
            const out = c.plane!;
            if (n === 8) {
              if (last === 0) {
                fillBlock(blk[0] + 128, 8, out, o, c.stride);
                blk[0] = 0;
              } else if (widct !== null) {
                widct(coefOff, c.arenaOff + o, c.stride); // also zeroes the block
              } else {
                idct8(blk, out, o, c.stride);
                if (last > 63) last = 63;
                for (let k = 0; k <= last; k++) blk[ZIGZAG[k]] = 0;
              }
            } else {
              idctReduced(blk, n, out, o, c.stride);
              if (last > 63) last = 63;
              for (let k = 0; k <= last; k++) blk[ZIGZAG[k]] = 0;
            }
          }
        }
      }
    }
    this.acc = acc;
    this.nbits = nbits;
    this.pos = pos;
    this.fakeBits = fake;
    if (lastRow < totalRows - 1) {
      if (this.overrun()) throw corrupt('premature end of data segment');
      if (!single && scomps.length === this.comps.length) return true;
      this.skipToMarker();
      return single && this.comps.length === 1;
    }
    this.endScan(full);
    return false;
  }

  // ---------------------------------------------------------------- progressive

  private progressiveScan(scomps: Component[], ss: number, se: number, ah: number, al: number, full: boolean): void {
    const ri = this.restartInterval;
    let mcu = 0;
    if (scomps.length === 1) {
      const c = scomps[0];
      const lastRow = full ? c.bhScan - 1 : Math.min(c.bhScan - 1, c.by1 - 1);
      for (let by = 0; by <= lastRow; by++) {
        for (let bx = 0; bx < c.bwScan; bx++) {
          if (ri && mcu > 0 && mcu % ri === 0) this.restart();
          mcu++;
          this.progressiveBlock(c, (by * c.bw + bx) * 64, ss, se, ah, al);
        }
      }
      if (lastRow < c.bhScan - 1) {
        if (this.overrun()) throw corrupt('premature end of data segment');
        this.skipToMarker();
        return;
      }
      this.endScan(full);
      return;
    }
    let lastMcuRow = this.mcusY - 1;
    if (!full) {
      lastMcuRow = 0;
      for (const c of scomps) lastMcuRow = Math.max(lastMcuRow, Math.floor((c.by1 - 1) / c.v));
      lastMcuRow = Math.min(lastMcuRow, this.mcusY - 1);
    }
    for (let my = 0; my <= lastMcuRow; my++) {
      for (let mx = 0; mx < this.mcusX; mx++) {
        if (ri && mcu > 0 && mcu % ri === 0) this.restart();
        mcu++;
        for (const c of scomps) {
          for (let v = 0; v < c.v; v++) {
            for (let h = 0; h < c.h; h++) {
              const off = ((my * c.v + v) * c.bw + mx * c.h + h) * 64;
              this.progressiveBlock(c, off, ss, se, ah, al);
            }
          }
        }
      }
    }
    if (lastMcuRow < this.mcusY - 1) {
      if (this.overrun()) throw corrupt('premature end of data segment');
      this.skipToMarker();
      return;
    }
    this.endScan(full);
  }

  private progressiveBlock(c: Component, off: number, ss: number, se: number, ah: number, al: number): void {
    const co = c.coeffs!;
    if (ss === 0) {
      if (ah === 0) {
        const t = this.decodeHuff(c.dcTable!);
        let diff = 0;
        if (t) {
          diff = this.bits(t);
          if (diff < 1 << (t - 1)) diff += (-1 << t) + 1;
        }
        c.pred += diff;
        co[off] = c.pred * (1 << al);
      } else if (this.bit()) {
        co[off] |= 1 << al;
      }
      return;
    }
    const acT = c.acTable!;
    if (ah === 0) {
      if (this.eobrun > 0) {
        this.eobrun--;
        return;
      }
      for (let k = ss; k <= se;) {
        const rs = this.decodeHuff(acT);
        const s = rs & 15;
        const r = rs >> 4;
        if (s === 0) {
          if (r < 15) {
            this.eobrun = (1 << r) - 1;
            if (r) this.eobrun += this.bits(r);
            break;
          }
          k += 16;
          continue;
        }
        k += r;
        let v = this.bits(s);
        if (v < 1 << (s - 1)) v += (-1 << s) + 1;
        co[off + ZIGZAG[k]] = v * (1 << al);
        k++;
      }
      return;
    }
    // AC refinement
    const p1 = 1 << al;
    const m1 = -1 << al;
    let k = ss;
    if (this.eobrun <= 0) {
      for (; k <= se; k++) {
        const rs = this.decodeHuff(acT);
        let s = rs & 15;
        let r = rs >> 4;
        if (s) {
          if (s !== 1) throw corrupt('bad refinement');
          s = this.bit() ? p1 : m1;
        } else if (r !== 15) {
          this.eobrun = 1 << r;
          if (r) this.eobrun += this.bits(r);
          break;
        }
        while (k <= se) {
          const z = off + ZIGZAG[k];
          const cur = co[z];
          if (cur !== 0) {
            if (this.bit() && (cur & p1) === 0) co[z] = cur >= 0 ? cur + p1 : cur + m1;
          } else {
            if (r === 0) break;
            r--;
          }
          k++;
        }
        if (s && k <= 63) co[off + ZIGZAG[k]] = s;
      }
    }
    if (this.eobrun > 0) {
      for (; k <= se; k++) {
        const z = off + ZIGZAG[k];
        const cur = co[z];
        if (cur !== 0 && this.bit() && (cur & p1) === 0) co[z] = cur >= 0 ? cur + p1 : cur + m1;
      }
      this.eobrun--;
    }
  }

  private progressiveIdct(n: number): void {
    const blk = this.blk;
    for (const c of this.comps) {
      const qt = this.qt[c.tq];
      if (!qt) throw corrupt('missing quantisation table');
      const q = n === 8 ? aanScaledQuant(qt) : plainQuant(qt);
      const co = c.coeffs!;
      const out = c.plane!;
      for (let by = c.by0; by < c.by1; by++) {
        for (let bx = c.bx0; bx < c.bx1; bx++) {
          const off = (by * c.bw + bx) * 64;
          let any = false;
          for (let i = 0; i < 64; i++) {
            const v = co[off + i];
            if (v !== 0) {
              blk[i] = v * q[i];
              if (i) any = true;
            } else blk[i] = 0;
          }
          const o = (by - c.by0) * n * c.stride + (bx - c.bx0) * n;
          if (n === 8) {
            if (!any) fillBlock(blk[0] + 128, 8, out, o, c.stride);
            else if (this.widct !== null) this.widct(this.coefOff, c.arenaOff + o, c.stride);
            else idct8(blk, out, o, c.stride);
          } else idctReduced(blk, n, out, o, c.stride);
        }
      }
      blk.fill(0);
    }
  }
}
