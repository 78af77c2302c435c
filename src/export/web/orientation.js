// @ts-check
// EXIF orientation for the page. Browsers rotate/flip an image as its EXIF orientation tag (0x0112)
// says when they decode it (Chromium does even with createImageBitmap's imageOrientation: 'none'),
// each browser for its own set of formats (Chromium 156: JPEG and PNG, not WebP), while semaim
// ignores the tag unless a run was given --exif-orientation apply, and then applies it for every
// format. So the page decodes a copy of the file whose orientation tags are set to 1 (the pixels
// as stored, what semaim's 'ignore' reads), and for 'apply' rotates/flips them itself as semaim's
// decoder does (src/data/codecs/orientation.ts). The tags are found where semaim's decoder and the
// browsers look: JPEG (APP1 "Exif\0\0" segments), PNG (eXIf chunks; their CRC-32 is recomputed)
// and WebP (the EXIF chunk). Anything malformed is left as it is (and read as orientation 1).

/**
 * Sets the orientation entry of IFD0 in the TIFF structure at d[t, end) to 1, in place, and returns
 * the value it had; 0 (changing nothing) when there is no such entry or the structure is malformed.
 * @param {Uint8Array} d @param {number} t @param {number} end
 */
function clearTiffOrientation(d, t, end) {
  if (t < 0 || t + 8 > end) return 0;
  const le = d[t] === 0x49 && d[t + 1] === 0x49;
  if (!le && !(d[t] === 0x4d && d[t + 1] === 0x4d)) return 0;
  /** @param {number} o */
  const u16 = (o) => (le ? d[o] | (d[o + 1] << 8) : (d[o] << 8) | d[o + 1]);
  /** @param {number} o */
  const u32 = (o) => (le ? (d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24)) >>> 0 : ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) >>> 0);
  if (u16(t + 2) !== 42) return 0;
  const ifd = t + u32(t + 4);
  if (ifd + 2 > end) return 0;
  const n = u16(ifd);
  for (let i = 0; i < n; i++) {
    const e = ifd + 2 + 12 * i;
    if (e + 12 > end) return 0;
    if (u16(e) !== 0x0112) continue;
    const type = u16(e + 2);
    // SHORT: the value sits in the first two bytes of the value field; LONG: all four
    const value = type === 3 ? u16(e + 8) : type === 4 ? u32(e + 8) : 0;
    if (type === 3) d.set(le ? [1, 0] : [0, 1], e + 8);
    else if (type === 4) d.set(le ? [1, 0, 0, 0] : [0, 0, 0, 1], e + 8);
    else return 0;
    return Math.max(value, 1);
  }
  return 0;
}

/** Collects the orientation semaim reads: the first EXIF block's, when 1–8 (else 1). */
class Found {
  constructor() {
    /** Tags cleared. */
    this.count = 0;
    /** The orientation of the first EXIF block (0 until one is seen). */
    this.first = 0;
  }
  /** @param {number} value what clearTiffOrientation returned @param {boolean} [counts] whether semaim reads this block */
  block(value, counts = true) {
    if (value) this.count++;
    if (counts && !this.first) this.first = value >= 1 && value <= 8 ? value : 1;
  }
}

/** "Exif\0\0" at d[p]. @param {Uint8Array} d @param {number} p */
const exifPrefix = (d, p) => d[p] === 0x45 && d[p + 1] === 0x78 && d[p + 2] === 0x69 && d[p + 3] === 0x66 && d[p + 4] === 0 && d[p + 5] === 0;

/** Every APP1 Exif segment before the first scan. @param {Uint8Array} d @param {Found} found */
function clearJpeg(d, found) {
  let pos = 2;
  while (pos + 4 <= d.length) {
    if (d[pos] !== 0xff) break;
    const marker = d[pos + 1];
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) break; // EXIF comes before the first scan
    const len = (d[pos + 2] << 8) | d[pos + 3];
    if (len < 2) break;
    const seg = pos + 4;
    const end = Math.min(d.length, pos + 2 + len);
    if (marker === 0xe1 && seg + 6 <= end && exifPrefix(d, seg)) found.block(clearTiffOrientation(d, seg + 6, end));
    pos += 2 + len;
  }
}

/** @type {Uint32Array | null} */
let crcTable = null;

/** CRC-32 (PNG's, ISO 3309) of d[start, end). @param {Uint8Array} d @param {number} start @param {number} end */
export function crc32(d, start = 0, end = d.length) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = crcTable[(c ^ d[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Every eXIf chunk (the TIFF structure, or with a JPEG-style "Exif\0\0" prefix); its CRC recomputed.
 * semaim reads one only before the image data. @param {Uint8Array} d @param {Found} found
 */
function clearPng(d, found) {
  let pos = 8;
  let data = false;
  while (pos + 12 <= d.length) {
    const len = ((d[pos] << 24) | (d[pos + 1] << 16) | (d[pos + 2] << 8) | d[pos + 3]) >>> 0;
    const body = pos + 8;
    if (body + len + 4 > d.length) break;
    const type = String.fromCharCode(d[pos + 4], d[pos + 5], d[pos + 6], d[pos + 7]);
    if (type === 'eXIf') {
      const value = clearTiffOrientation(d, exifPrefix(d, body) ? body + 6 : body, body + len);
      found.block(value, !data);
      if (value) {
        const crc = crc32(d, pos + 4, body + len);
        d.set([crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff], body + len);
      }
    }
    if (type === 'IDAT') data = true;
    if (type === 'IEND') break;
    pos = body + len + 4;
  }
}

/** Every EXIF chunk of a RIFF WebP container. @param {Uint8Array} d @param {Found} found */
function clearWebp(d, found) {
  let pos = 12;
  while (pos + 8 <= d.length) {
    const size = (d[pos + 4] | (d[pos + 5] << 8) | (d[pos + 6] << 16) | (d[pos + 7] << 24)) >>> 0;
    const body = pos + 8;
    if (body + size > d.length) break;
    const type = String.fromCharCode(d[pos], d[pos + 1], d[pos + 2], d[pos + 3]);
    if (type === 'EXIF') found.block(clearTiffOrientation(d, exifPrefix(d, body) ? body + 6 : body, body + size));
    pos = body + size + (size & 1);
  }
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * The file as stored: `bytes` with every EXIF orientation tag set to 1 (a copy; `bytes` itself when
 * it has none, is not a JPEG, PNG or WebP, or its structure cannot be followed), and the orientation
 * (1–8) semaim's decoder reads from it under --exif-orientation apply: the first EXIF block's (a
 * PNG's before its image data), 1 without one or for a value out of range.
 * @param {Uint8Array} bytes
 * @returns {{ bytes: Uint8Array, orientation: number }}
 */
export function withoutExifOrientation(bytes) {
  const d = new Uint8Array(bytes); // a copy (a Buffer's slice() would not be)
  const ascii = (/** @type {number} */ p, /** @type {string} */ s) => [...s].every((c, i) => d[p + i] === c.charCodeAt(0));
  const found = new Found();
  try {
    if (d.length >= 4 && d[0] === 0xff && d[1] === 0xd8) clearJpeg(d, found);
    else if (d.length >= 8 && PNG_SIGNATURE.every((b, i) => d[i] === b)) clearPng(d, found);
    else if (d.length >= 12 && ascii(0, 'RIFF') && ascii(8, 'WEBP')) clearWebp(d, found);
  } catch {
    return { bytes, orientation: 1 };
  }
  return { bytes: found.count ? d : bytes, orientation: found.first || 1 };
}

/**
 * RGBA pixels (width × height, as stored) shown under an EXIF orientation, as semaim's orientImage
 * does: 2 mirror, 3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate
 * 90° counter-clockwise; 5–8 swap width and height. 1 returns the input.
 * @param {Uint8ClampedArray} data @param {number} width @param {number} height @param {number} orientation
 * @returns {{ data: Uint8ClampedArray, width: number, height: number }}
 */
export function orientRgba(data, width, height, orientation) {
  if (!(orientation >= 2 && orientation <= 8)) return { data, width, height };
  const W = width;
  const H = height;
  const swap = orientation >= 5;
  const ow = swap ? H : W;
  const oh = swap ? W : H;
  // the stored pixel shown at (x, y) is (sx, sy) = (ax·x + bx·y + cx, ay·x + by·y + cy), as
  // src/data/codecs/orientation.ts's sourceOf: 2 (W−1−x, y), 3 (W−1−x, H−1−y), 4 (x, H−1−y),
  // 5 (y, x), 6 (y, H−1−x), 7 (W−1−y, H−1−x), 8 (W−1−y, x)
  const [ax, bx, cx, ay, by, cy] = [
    [-1, 0, W - 1, 0, 1, 0],
    [-1, 0, W - 1, 0, -1, H - 1],
    [1, 0, 0, 0, -1, H - 1],
    [0, 1, 0, 1, 0, 0],
    [0, 1, 0, -1, 0, H - 1],
    [0, -1, W - 1, -1, 0, H - 1],
    [0, -1, W - 1, 1, 0, 0],
  ][orientation - 2];
  const src = data.byteOffset % 4 ? new Uint32Array(data.slice().buffer) : new Uint32Array(data.buffer, data.byteOffset, W * H);
  const out = new Uint32Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) out[y * ow + x] = src[(ay * x + by * y + cy) * W + ax * x + bx * y + cx];
  }
  return { data: new Uint8ClampedArray(out.buffer), width: ow, height: oh };
}
