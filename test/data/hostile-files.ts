// Hostile image files made by hand for tests and scripts/fault-check-data.sh: headers that claim a
// huge size while the files stay tiny (nothing of that size is ever allocated by making them), and a
// real PNG decompression bomb (a 30000×30000 grey image in under 1 MB) for the measurement script.

import { createDeflate } from 'node:zlib';
import { createWriteStream } from 'node:fs';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const v of b) c = CRC_TABLE[(c ^ v) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])), 0);
  return Buffer.concat([head, body, crc]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function ihdr(w: number, h: number): Buffer {
  const b = Buffer.alloc(13);
  b.writeUInt32BE(w, 0);
  b.writeUInt32BE(h, 4);
  b[8] = 8; // depth
  b[9] = 0; // grey
  return pngChunk('IHDR', b);
}

/** A PNG whose IHDR claims w×h (grey, 8-bit) with one tiny IDAT: 60-odd bytes. */
export function claimedSizePng(w: number, h: number): Buffer {
  const idat = Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]); // zlib of one zero byte
  return Buffer.concat([PNG_SIGNATURE, ihdr(w, h), pngChunk('IDAT', idat), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A baseline JPEG whose frame header claims w×h (one component) followed by an empty scan. */
export function claimedSizeJpeg(w: number, h: number): Buffer {
  const sof = [0xff, 0xc0, 0, 11, 8, h >> 8, h & 255, w >> 8, w & 255, 1, 1, 0x11, 0];
  const sos = [0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0];
  return Buffer.from([0xff, 0xd8, ...sof, ...sos, 0xff, 0xd9]);
}

/** A 24-bit BMP header claiming w×h with no pixel data. */
export function claimedSizeBmp(w: number, h: number): Buffer {
  const b = Buffer.alloc(54);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(54, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18);
  b.writeInt32LE(h, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  return b;
}

/**
 * A GIF whose screen and first frame claim w×h (decoded by sharp/libvips): 30-odd bytes. `frame`
 * gives the frame its own size and place on the screen (the image descriptor's left, top, width, height).
 */
export function claimedSizeGif(w: number, h: number, frame = { x: 0, y: 0, w, h }): Buffer {
  const u16 = (v: number): number[] => [v & 255, v >> 8];
  const descriptor = [...u16(frame.x), ...u16(frame.y), ...u16(frame.w), ...u16(frame.h)];
  return Buffer.from([...Buffer.from('GIF89a', 'latin1'), ...u16(w), ...u16(h), 0, 0, 0, 0x2c, ...descriptor, 0, 2, 2, 0x4c, 0x01, 0, 0x3b]);
}

/**
 * Writes a real decompression bomb: a valid w×h grey PNG of one colour, compressed at level 9
 * (30000×30000 gives a ~0.9 MB file that decodes to 900 MB of pixels). Streams; takes a few seconds.
 */
export async function writeBombPng(path: string, w: number, h: number): Promise<void> {
  const chunks: Buffer[] = [];
  const deflate = createDeflate({ level: 9 });
  deflate.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    deflate.on('end', resolve);
    deflate.on('error', reject);
  });
  const row = Buffer.alloc(w + 1, 0x80);
  row[0] = 0; // filter: none
  for (let y = 0; y < h; y++) {
    if (!deflate.write(row)) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await done;
  const out = createWriteStream(path);
  out.write(Buffer.concat([PNG_SIGNATURE, ihdr(w, h), pngChunk('IDAT', Buffer.concat(chunks)), pngChunk('IEND', Buffer.alloc(0))]));
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
}
