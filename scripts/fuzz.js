#!/usr/bin/env node
// Deterministic mutation fuzzer for every file semaim reads from a user (and the outputs that carry
// user text). Seeded: case i of a target is always the same bytes, so any finding is replayed with
// `--case`. No dependencies beyond the project's own (it runs the compiled dist/ of this checkout).
//
//   npx tsc -p .                                        # build dist/ first
//   node scripts/fuzz.js                                # every target, 300 cases each (a few minutes)
//   node scripts/fuzz.js --cases 5000 tar png jpeg      # longer, some targets
//   node scripts/fuzz.js --seed 7 --cases 20000         # another seed (run it for hours: raise --cases)
//   node scripts/fuzz.js --case safetensors 1234 --keep /tmp/x   # replay one case, keep its files
//   node scripts/fuzz.js --list                         # the targets
//   --work DIR keeps the seed run folder (made once with the CLI, a few seconds) between calls; --timeout S per case.
//
// Each target runs in a child process that takes the cases in order and reports each one before and
// after it; a native crash (SIGSEGV, SIGABRT) or a case over --timeout seconds kills only that child:
// the case is recorded and a new child continues after it. A case fails when it
//   - crashes the process or hangs;
//   - raises an error of an unexpected type (TypeError, RangeError... from deep inside) or one whose
//     message does not name the file it read (targets that read a file);
//   - grows the child's peak memory by more than --max-mem-mb (default 400), or 20 times the case's size;
//   - is accepted but breaks the target's own invariant (labels outside the classes, HTML/Markdown/
//     CSV/SVG outputs that do not escape user text, ...).
// Findings are printed as `FAIL <target> <case> <kind>: <detail>` (the first 3 of each kind per target; all with
// --verbose), each target ends with its counts per outcome, and the exit status is 1 if any.
// test/data/fuzz.test.ts runs a few hundred cases of every target through the same code, in-process.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { spawn, spawnSync } = require('node:child_process');
const { createHash } = require('node:crypto');

const ROOT = path.join(__dirname, '..');
const D = (p) => require(path.join(ROOT, 'dist', 'src', p));

// ------------------------------------------------------------------ deterministic random numbers

/** mulberry32 over a 32-bit hash of (seed, target, case). */
function rngFor(seed, target, i) {
  let h = 2166136261;
  for (const c of `${seed}/${target}/${i}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  let a = h >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    chance: (p) => next() < p,
  };
}

// ------------------------------------------------------------------ mutations

const INTERESTING32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe, 46341, 65536 * 3];

/** One byte-level mutation of a copy of `b`. */
function mutateBytes(r, b) {
  const out = Buffer.from(b);
  if (out.length === 0) return Buffer.from([r.int(256)]);
  const at = r.int(out.length);
  switch (r.int(10)) {
    case 0: // bit flip
      out[at] ^= 1 << r.int(8);
      return out;
    case 1: // interesting byte
      out[at] = r.pick([0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x20, 0x2f, 0x2e]);
      return out;
    case 2: {
      // interesting 16/32-bit value, either byte order
      const v = r.pick(INTERESTING32);
      const tmp = Buffer.alloc(4);
      if (r.chance(0.5)) tmp.writeUInt32BE(v >>> 0);
      else tmp.writeUInt32LE(v >>> 0);
      const n = r.chance(0.5) ? 2 : 4;
      tmp.copy(out, at, r.chance(0.5) ? 0 : 4 - n, 4);
      return out.subarray(0, b.length);
    }
    case 3: // truncate
      return out.subarray(0, r.int(out.length));
    case 4: {
      // delete a range
      const n = 1 + r.int(Math.min(64, out.length - at));
      return Buffer.concat([out.subarray(0, at), out.subarray(at + n)]);
    }
    case 5: {
      // insert random bytes
      const ins = Buffer.alloc(1 + r.int(16));
      for (let k = 0; k < ins.length; k++) ins[k] = r.int(256);
      return Buffer.concat([out.subarray(0, at), ins, out.subarray(at)]);
    }
    case 6: {
      // duplicate a range
      const n = 1 + r.int(Math.min(256, out.length - at));
      const to = r.int(out.length);
      return Buffer.concat([out.subarray(0, to), out.subarray(at, at + n), out.subarray(to)]);
    }
    case 7: // random byte
      out[at] = r.int(256);
      return out;
    case 8: {
      // a run of random bytes over what is there
      const n = 1 + r.int(Math.min(32, out.length - at));
      for (let k = 0; k < n; k++) out[at + k] = r.int(256);
      return out;
    }
    default: // append garbage
      return Buffer.concat([out, Buffer.alloc(1 + r.int(64), r.int(256))]);
  }
}

function mutateBytesN(r, b) {
  let out = b;
  const n = 1 + r.int(r.chance(0.7) ? 2 : 8);
  for (let k = 0; k < n; k++) out = mutateBytes(r, out);
  return out;
}

const HOSTILE_STRINGS = [
  '',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  "'",
  '"',
  'a|b',
  'a\nb',
  'a\r\nb',
  '\u0000',
  '\u001b[31mred',
  '\u202etxt.exe',
  '\ud800',
  '../../../../etc/passwd',
  '/etc/passwd',
  'x'.repeat(5000),
  '=cmd|" /C calc"!A0',
  '\\',
  '`',
  '${x}',
  '%s%n',
];
const HOSTILE_NUMBERS = [0, -1, 1, 0.5, -0.5, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 2 ** 31, 2 ** 32, 2 ** 64, 1e21, 4294967296, 1e-320, 3];

function hostileValue(r, depth = 0) {
  switch (r.int(depth > 2 ? 5 : 8)) {
    case 0:
      return r.pick(HOSTILE_NUMBERS);
    case 1:
      return r.pick(HOSTILE_STRINGS);
    case 2:
      return r.pick([null, true, false]);
    case 3:
      return `${r.pick(HOSTILE_NUMBERS)}`;
    case 4:
      return { __raw: r.pick(['NaN', 'Infinity', '-Infinity', '1e999', '-0', '1e-999', '00', '0x10']) };
    case 5:
      return Array.from({ length: r.int(4) }, () => hostileValue(r, depth + 1));
    case 6: {
      const o = {};
      for (let k = r.int(3); k > 0; k--) o[r.pick(HOSTILE_STRINGS)] = hostileValue(r, depth + 1);
      return o;
    }
    default: {
      // deep nesting, as text (JSON.stringify itself would overflow the stack)
      const n = r.pick([100, 5000, 100000]);
      return r.chance(0.5) ? { __raw: '['.repeat(n) + '0' + ']'.repeat(n) } : { __raw: '{"a":'.repeat(n) + '0' + '}'.repeat(n) };
    }
  }
}

/** JSON text with `{__raw: token}` values written as the bare token (NaN, 1e999: what other writers produce). */
function toJson(v, indent) {
  const raws = [];
  const text = JSON.stringify(
    v,
    (k, x) => {
      if (x && typeof x === 'object' && !Array.isArray(x) && Object.keys(x).length === 1 && typeof x.__raw === 'string') {
        raws.push(x.__raw);
        return `\u0000RAW${raws.length - 1}\u0000`;
      }
      return x;
    },
    indent,
  );
  return text.replace(/"\\u0000RAW(\d+)\\u0000"/g, (_, n) => raws[Number(n)]);
}

/** Paths (arrays of keys) to every value inside a parsed JSON value. */
function jsonPaths(v, p = [], out = []) {
  out.push(p);
  if (out.length > 2000) return out;
  if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) jsonPaths(v[k], [...p, Array.isArray(v) ? Number(k) : k], out);
  return out;
}

/** One structural mutation of a JSON value (a deep copy): replace, delete, add (incl. __proto__), retype. */
function mutateJsonValue(r, value) {
  const root = { v: JSON.parse(JSON.stringify(value)) };
  const paths = jsonPaths(root.v).map((p) => ['v', ...p]);
  const p = r.pick(paths);
  let parent = root;
  for (const k of p.slice(0, -1)) parent = parent[k];
  const key = p[p.length - 1];
  const cur = parent[key];
  switch (r.int(6)) {
    case 0:
    case 1:
      parent[key] = hostileValue(r);
      break;
    case 2:
      if (Array.isArray(parent)) parent.splice(key, 1);
      else if (key !== 'v') delete parent[key];
      else parent[key] = hostileValue(r);
      break;
    case 3:
      if (cur !== null && typeof cur === 'object' && !Array.isArray(cur)) {
        // a key that JSON.parse makes an own property, even __proto__
        Object.defineProperty(cur, r.pick(HOSTILE_STRINGS), { value: hostileValue(r), enumerable: true, configurable: true, writable: true });
      } else if (Array.isArray(cur)) cur.push(hostileValue(r));
      else parent[key] = [cur];
      break;
    case 4: // retype: number as string, string as number, array as object
      if (typeof cur === 'number') parent[key] = r.chance(0.5) ? String(cur) : cur * r.pick([-1, 1e6, 0.5, 2 ** 40]);
      else if (typeof cur === 'string') parent[key] = r.chance(0.5) ? Number(cur.length) : cur + r.pick(HOSTILE_STRINGS);
      else if (Array.isArray(cur)) parent[key] = Object.fromEntries(cur.map((x, i) => [i, x]));
      else parent[key] = hostileValue(r);
      break;
    default:
      if (Array.isArray(cur) && cur.length > 0) {
        const n = r.pick([0, 1, cur.length + 1, 1000]);
        parent[key] = Array.from({ length: n }, (_, i) => cur[i % cur.length]);
      } else parent[key] = hostileValue(r);
  }
  return root.v;
}

function mutateJsonText(r, text) {
  if (r.chance(0.15)) return mutateBytesN(r, Buffer.from(text)).toString('latin1');
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    return mutateBytesN(r, Buffer.from(text)).toString('latin1');
  }
  for (let n = 1 + r.int(3); n > 0; n--) {
    const next = mutateJsonValue(r, v);
    if (jsonFits(next)) v = next; // repeated array growth can make text no string can hold
  }
  return toJson(v, r.chance(0.5) ? 1 : undefined);
}

/**
 * Whether a JSON value's text stays under 8 Mi characters (a header far past any reader's limit), counted
 * without writing it (a walk that stops at the limit: writing an oversized value first is what costs a
 * gigabyte of the fuzzer's own memory).
 */
function jsonFits(v) {
  const limit = 8 << 20;
  let size = 0;
  const todo = [v];
  while (todo.length) {
    const x = todo.pop();
    if (x !== null && typeof x === 'object') {
      size += 2;
      for (const [k, y] of Object.entries(x)) {
        size += k.length + 4;
        todo.push(y);
      }
    } else size += String(x).length + 2;
    if (size > limit) return false;
  }
  return true;
}

// ------------------------------------------------------------------ checks

/**
 * Errors a reader may raise for a bad file: its own kinds, not the engine's (TypeError, RangeError...).
 * NonFiniteTensorError is the CheckpointError of weights holding NaN/Inf (a fuzzed byte can make one).
 */
const EXPECTED_ERRORS = new Set([
  'Error',
  'DecodeError',
  'ShardReadError',
  'ConfigError',
  'SyntaxError',
  'CheckpointError',
  'NonFiniteTensorError',
  'DataError',
]);

class Finding extends Error {
  constructor(kind, detail) {
    super(`${kind}: ${detail}`);
    this.kind = kind;
  }
}

/** Checks a thrown error: expected type, and it names `file` (when given). */
function checkError(e, file) {
  const name = e && e.constructor ? e.constructor.name : typeof e;
  const msg = e && e.message !== undefined ? String(e.message) : String(e);
  if (e instanceof Finding) throw e;
  if (!EXPECTED_ERRORS.has(name))
    throw new Finding(
      'unexpected-error',
      `${name}: ${msg.slice(0, 300)}\n${String(e && e.stack)
        .split('\n')
        .slice(1, 6)
        .join('\n')}`,
    );
  if (file && !msg.includes(file) && !msg.includes(path.basename(file))) throw new Finding('error-without-file', `${name}: ${msg.slice(0, 300)}`);
  return `${name}: ${msg.split('\n')[0].slice(0, 120)}`;
}

/** An HTML/SVG text where user strings must appear escaped: no element or attribute a string could have opened. */
function checkMarkup(text, what) {
  for (const tag of text.match(/<[a-zA-Z][^>]*>/g) || []) {
    const n = /^<([a-zA-Z][\w-]*)/.exec(tag)[1].toLowerCase();
    if (['script', 'iframe', 'object', 'embed'].includes(n) || (n === 'img' && !ALLOWED_TAGS.has(n)))
      throw new Finding('unescaped', `${what} holds ${tag.slice(0, 80)}`);
    if (/\son\w+\s*=/i.test(tag.replace(/"[^"]*"|'[^']*'/g, '""'))) throw new Finding('unescaped', `${what} holds ${tag.slice(0, 80)}`);
  }
}
const ALLOWED_TAGS = new Set(['img']); // the report embeds its grid as <img src="data:...">

// ------------------------------------------------------------------ seeds (made once per process)

let WORK; // a scratch folder per process
const seedCache = new Map();
async function seeds(name, make) {
  if (!seedCache.has(name)) seedCache.set(name, await make());
  return seedCache.get(name);
}

function picture(w, h, ch, k = 0) {
  const px = Buffer.alloc(w * h * ch);
  for (let i = 0; i < px.length; i++) px[i] = (i * 37 + k * 11 + ((i / ch / w) | 0) * 5) & 255;
  return px;
}

async function imageSeeds(format) {
  const sharp = require(path.join(ROOT, 'node_modules', 'sharp'));
  const enc = (w, h, ch, f) => sharp(picture(w, h, ch), { raw: { width: w, height: h, channels: ch } });
  switch (format) {
    case 'jpeg':
      return Promise.all([
        enc(17, 9, 3).jpeg({ quality: 80 }).toBuffer(),
        enc(16, 16, 3).jpeg({ progressive: true }).toBuffer(),
        enc(9, 11, 1).jpeg().toBuffer(),
        enc(24, 8, 3).jpeg({ chromaSubsampling: '4:4:4', optimiseCoding: false }).toBuffer(),
        enc(20, 12, 3).withMetadata({ orientation: 6 }).jpeg().toBuffer(),
      ]);
    case 'png':
      return Promise.all([
        enc(13, 7, 3).png().toBuffer(),
        enc(8, 8, 4).png().toBuffer(),
        enc(9, 5, 1).png().toBuffer(),
        enc(10, 10, 3).png({ palette: true, colours: 16 }).toBuffer(),
        enc(7, 7, 3).png({ progressive: true }).toBuffer(),
        enc(6, 6, 2).png().toBuffer(),
        enc(5, 4, 3).toColourspace('rgb16').png().toBuffer(),
      ]);
    case 'bmp':
      return [bmp(7, 5, 24), bmp(4, 4, 32), bmp(9, 3, 8), bmp(5, -4, 24), bmp(8, 2, 1), bmp(6, 3, 4)];
    case 'gif':
      return Promise.all([enc(8, 6, 3).gif().toBuffer(), enc(4, 4, 4).gif().toBuffer()]);
    case 'webp':
      return Promise.all([enc(8, 6, 3).webp().toBuffer(), enc(8, 8, 4).webp({ lossless: true }).toBuffer()]);
    case 'tiff':
      return Promise.all([enc(8, 6, 3).tiff().toBuffer(), enc(5, 5, 1).tiff({ compression: 'lzw' }).toBuffer()]);
    case 'pnm':
      return pnmSeeds();
    default:
      throw new Error(format);
  }
}

/** Netpbm files of every kind: plain (P1-P3) and raw (P4-P6), 8- and 16-bit, comments in the header; one claims 20000×20000. */
function pnmSeeds() {
  const px = (n, max) => Array.from({ length: n }, (_, i) => (i * 37) % (max + 1));
  const text = (head, n, max) => Buffer.from(`${head}\n${px(n, max).join(' ')}\n`, 'latin1');
  const raw = (head, body) => Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]);
  const wide = Buffer.alloc(5 * 4 * 2);
  for (let i = 0; i < 20; i++) wide.writeUInt16BE((i * 3001) & 0xffff, 2 * i);
  return [
    Buffer.from('P1\n# bits\n4 3\n1 0 1 0\n0110\n1 1 0 0\n', 'latin1'),
    text('P2\n5 3\n15', 15, 15),
    text('P3\n4 2\n1000', 24, 1000),
    raw('P4\n9 2\n', [0xa5, 0x80, 0x3c, 0x00]),
    raw('P5\n6 4\n255\n', px(24, 255)),
    raw('P5 5 4 65535\n', wide),
    raw('P6\n# a comment\n5 3\n255\n', px(45, 255)),
    raw('P6\n4 4\n100\n', px(48, 100)),
    raw('P6\n20000 20000\n255\n', px(30, 255)),
  ];
}

/** A BMP (BITMAPINFOHEADER) of w×h at `bits` per pixel; palette formats get a grey palette. */
function bmp(w, h, bits) {
  const rows = Math.abs(h);
  const stride = Math.ceil((w * bits) / 32) * 4;
  const pal = bits <= 8 ? 4 << bits : 0;
  const off = 54 + pal;
  const b = Buffer.alloc(off + stride * rows);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(off, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18);
  b.writeInt32LE(h, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(bits, 28);
  b.writeUInt32LE(stride * rows, 34);
  if (bits <= 8) b.writeUInt32LE(1 << bits, 46);
  for (let i = 0; i < pal / 4; i++) b.fill((i * 255) / Math.max(1, (1 << bits) - 1), 54 + i * 4, 54 + i * 4 + 3);
  for (let i = off; i < b.length; i++) b[i] = (i * 31) & 255;
  return b;
}

async function labelPngSeeds() {
  const sharp = require(path.join(ROOT, 'node_modules', 'sharp'));
  const grey = (w, h) =>
    sharp(
      picture(w, h, 1).map((v) => v % 21),
      { raw: { width: w, height: h, channels: 1 } },
    );
  return Promise.all([
    grey(9, 7).png().toBuffer(),
    grey(16, 3).png({ palette: true, colours: 8 }).toBuffer(),
    grey(5, 5).png({ progressive: true }).toBuffer(),
  ]);
}

/** torch.save files PyTorch wrote (scripts/pytorch_file_make.py: a training checkpoint, protocols 2 and 4). */
function pytorchSeeds() {
  const dir = path.join(WORK, 'pth-seeds');
  const files = {
    fixtures: ['checkpoint.pth', 'plain.pt'],
    // PyTorch 2.x's layout (alignment padding, data descriptors, zip64 end record), and in zip64 form
    torch2: ['v2-plain.pt', 'v2-model.pth', 'vit.v2.timm.pth', 'v2-zip64.pth', 'v2-zip64-offsets.pth'],
  };
  const seeds = [];
  for (const [kind, names] of Object.entries(files)) {
    if (!names.every((f) => fs.existsSync(path.join(dir, f)))) {
      const r = spawnSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'pytorch_file_make.py'), kind, dir], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`pytorch seeds need /usr/bin/python3 with torch: ${r.stderr || r.error}`);
    }
    for (const f of names) seeds.push(fs.readFileSync(path.join(dir, f)));
  }
  return seeds;
}

/** The central directory entries of a zip: [offset of the entry, name, offset of its zip64 extra field's values or -1]. */
function zipCentralEntries(b) {
  const out = [];
  for (
    let at = b.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    at >= 0 && at + 46 <= b.length;
    at = b.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), at + 4)
  ) {
    const n = b.readUInt16LE(at + 28);
    const x = b.readUInt16LE(at + 30);
    let z64 = -1;
    for (let e = at + 46 + n; e + 4 <= Math.min(b.length, at + 46 + n + x); e += 4 + b.readUInt16LE(e + 2)) if (b.readUInt16LE(e) === 1) z64 = e + 4;
    out.push([at, b.toString('latin1', at + 46, at + 46 + n), z64]);
  }
  return out;
}

/** The 64-bit size or offset fields of a zip64 archive set to values that run past, into or over the file. */
function mutateZip64(r, seed) {
  const b = Buffer.from(seed);
  const entries = zipCentralEntries(b).filter(([, , z]) => z >= 0);
  if (!entries.length) return mutateBytesN(r, seed);
  for (let k = 1 + r.int(2); k > 0; k--) {
    const [, , z] = r.pick(entries);
    const field = z + 8 * r.int(3);
    if (field + 8 > b.length) continue;
    const v = r.pick([
      0n,
      1n,
      63n,
      64n,
      BigInt(b.length),
      BigInt(b.length - 1),
      2n ** 31n,
      2n ** 32n - 1n,
      2n ** 32n,
      2n ** 53n - 1n,
      2n ** 53n,
      2n ** 63n,
      2n ** 64n - 1n,
      BigInt(r.int(b.length)),
    ]);
    b.writeBigUInt64LE(v, field);
  }
  return b;
}

/** The zip's CRC-32 of data.pkl made right again (local header and central directory), so a mutation inside the pickle reaches the unpickler. */
function fixPickleCrc(b) {
  const { crc32 } = require('node:zlib');
  for (
    let at = b.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    at >= 0 && at + 46 <= b.length;
    at = b.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), at + 4)
  ) {
    const n = b.readUInt16LE(at + 28);
    if (!b.toString('latin1', at + 46, at + 46 + n).endsWith('/data.pkl')) continue;
    // (zip64: a size or offset of 0xffffffff is in the extra field, uncompressed size, compressed size, offset in that order)
    const z64 = zipCentralEntries(b.subarray(at)).find(([o]) => o === 0)?.[2] ?? -1;
    let z = z64 >= 0 ? at + z64 : -1;
    const wide = (v) => (v === 0xffffffff && z >= 0 && z + 8 <= b.length ? Number(b.readBigUInt64LE((z += 8) - 8)) : v);
    const size = wide(b.readUInt32LE(at + 24));
    if (b.readUInt32LE(at + 20) === 0xffffffff && z >= 0) z += 8;
    const local = wide(b.readUInt32LE(at + 42));
    if (local + 30 > b.length) return b;
    const start = local + 30 + b.readUInt16LE(local + 26) + b.readUInt16LE(local + 28);
    if (start + size > b.length) return b;
    const c = crc32(b.subarray(start, start + size));
    b.writeUInt32LE(c, at + 16);
    b.writeUInt32LE(c, local + 14);
    return b;
  }
  return b;
}

function safetensorsSeeds() {
  const st = D('io/safetensors');
  const f32 = (n) => new Uint8Array(new Float32Array(Array.from({ length: n }, (_, i) => i / 3)).buffer);
  return [
    Buffer.from(
      st.serializeSafetensors(
        { a: { dtype: 'float32', shape: [2, 3], data: f32(6) }, b: { dtype: 'int64', shape: [1], data: new Uint8Array(8) } },
        { format: 'pt' },
      ),
    ),
    Buffer.from(
      st.serializeSafetensors({
        h: { dtype: 'float16', shape: [4], data: new Uint8Array(8) },
        e: { dtype: 'bfloat16', shape: [0, 5], data: new Uint8Array(0) },
        s: { dtype: 'uint8', shape: [], data: new Uint8Array(1) },
        z: { dtype: 'bool', shape: [3], data: new Uint8Array([0, 1, 1]) },
      }),
    ),
  ];
}

/** A tiny run folder (two pre-training steps), an encoder exported from it and a linear probe on it, made once with the CLI. */
function tinyRun() {
  const dir = path.join(WORK, 'seed-run');
  if (!fs.existsSync(path.join(dir, 'lp', 'linprobe.json'))) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const cli = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
    const args =
      '--dataset synthetic --synthetic-size 16 --img-size 8 --patch-size 4 --embed-dim 16 --depth 1 --num-heads 2 --decoder-depth 1 --epochs 1 --warmup-epochs 0 --batch-size 8 --threads 1';
    const run = (a) => {
      const r = spawnSync(process.execPath, [cli, ...a], { cwd: dir, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`seed run failed: ${a[0]}: ${r.stderr}`);
    };
    run(['pretrain', ...args.split(' '), '--out-dir', 'run']);
    run(['export', '--checkpoint', 'run', '--out', 'enc']);
    const lp = '--dataset synthetic --epochs 1 --batch-size 8 --train-limit 16 --test-limit 8 --threads 1';
    run(['linprobe', '--checkpoint', path.join(dir, 'enc.safetensors'), ...lp.split(' '), '--out-dir', 'lp']);
  }
  return dir;
}

async function tarSeeds() {
  const { pack } = require(path.join(ROOT, 'node_modules', 'tar-stream'));
  const jpg = (await imageSeeds('jpeg'))[0];
  const png = (await imageSeeds('png'))[2];
  const make = (members) =>
    new Promise((resolve, reject) => {
      const p = pack();
      const chunks = [];
      p.on('data', (c) => chunks.push(c));
      p.on('end', () => resolve(Buffer.concat(chunks)));
      p.on('error', reject);
      for (const [name, body, extra] of members) p.entry({ name, ...(extra || {}) }, body);
      p.finalize();
    });
  const long = `${'d'.repeat(120)}/${'f'.repeat(110)}`;
  return [
    await make([
      ['n01/a.jpg', jpg],
      ['n01/a.cls', '3'],
      ['n02/b.png', png],
      ['n02/b.json', '{"label": 1}'],
      ['c.jpg', jpg],
    ]),
    await make([
      [`${long}.jpg`, jpg],
      [`${long}.cls`, '0'],
      ['x/y.txt', 'no image'],
      ['dir', null, { type: 'directory' }],
      ['l.jpg', null, { type: 'symlink', linkname: '../../etc/passwd' }],
      ['p.jpg', jpg, { pax: { path: 'ü/../p.jpg' } }],
      ['p.cls', '2'],
    ]),
  ];
}

function cifarSeed() {
  const rec = 3073;
  const b = Buffer.alloc(rec * 3);
  for (let k = 0; k < 3; k++) {
    b[k * rec] = k;
    picture(32, 32, 3, k).copy(b, k * rec + 1);
  }
  return b;
}

// ------------------------------------------------------------------ targets

/** Writes `bytes` to a fresh file of that name in the case folder. */
function caseFile(ctx, name, bytes) {
  const p = path.join(ctx.dir, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, bytes);
  return p;
}

/** Runs `fn`; a thrown error is checked (type, names `file`) and reported as a rejection. */
async function expectCleanError(fn, file) {
  try {
    return { ok: await fn() };
  } catch (e) {
    return { rejected: checkError(e, file) };
  }
}

function checkImage(img, what) {
  if (!img || !(img.width > 0) || !(img.height > 0) || !Array.isArray(img.planes) || ![1, 3].includes(img.planes.length)) {
    throw new Finding('bad-output', `${what} decoded to an invalid image`);
  }
  for (const p of img.planes) {
    if (!(p.width > 0 && p.height > 0 && p.stride >= p.width && p.offset >= 0) || p.offset + (p.height - 1) * p.stride + p.width > p.data.length) {
      throw new Finding('bad-output', `${what}: a ${p.width}×${p.height} plane (stride ${p.stride}, offset ${p.offset}) outside its ${p.data.length} bytes`);
    }
  }
}

/** Where each format keeps its size: [offset, bytes, big-endian] of width and height (JPEG: found from its SOF marker). */
function sizeFields(format, b) {
  if (format === 'png')
    return [
      [16, 4, true],
      [20, 4, true],
    ];
  if (format === 'bmp')
    return [
      [18, 4, false],
      [22, 4, false],
    ];
  if (format === 'gif')
    return [
      [6, 2, false],
      [8, 2, false],
    ];
  if (format === 'jpeg') {
    for (let o = 2; o + 9 < b.length; o++)
      if (b[o] === 0xff && b[o + 1] >= 0xc0 && b[o + 1] <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(b[o + 1]))
        return [
          [o + 7, 2, true],
          [o + 5, 2, true],
        ];
  }
  return [];
}

/** The image with a width and height it does not hold the data for (up to past the pixel limit). */
function claimSize(r, format, b) {
  const out = Buffer.from(b);
  for (const [o, n, be] of sizeFields(format, out)) {
    const v = r.pick([0, 1, 4097, 9000, 13000, 20000, 65535, 0x7fffffff, 0xffffffff]) % 2 ** (8 * n);
    if (n === 2) be ? out.writeUInt16BE(v, o) : out.writeUInt16LE(v, o);
    else be ? out.writeUInt32BE(v >>> 0, o) : out.writeUInt32LE(v >>> 0, o);
  }
  return out;
}

function imageTarget(format) {
  return {
    about: `${format} decoding (openImage + decode, with and without a region/reduction, EXIF orientation applied)`,
    make: async (r) => {
      const seed = r.pick(await seeds(format, () => imageSeeds(format)));
      return r.chance(0.1) ? claimSize(r, format, seed) : mutateBytesN(r, seed);
    },
    run: async (bytes, ctx) => {
      const { openImage } = D('data/codecs/decode');
      return expectCleanError(async () => {
        const h = await openImage(bytes, { maxPixels: ctx.rng.chance(0.5) ? 1 << 20 : undefined, exifOrientation: ctx.rng.chance(0.3) ? 'apply' : 'ignore' });
        const full = h.decode();
        checkImage(full, format);
        if (h.scalable) {
          const x0 = h.width > 1 ? 1 : 0;
          checkImage(h.decode({ region: { x0, y0: 0, x1: Math.max(x0 + 1, h.width >> 1), y1: h.height }, reduction: 2 }), `${format} region`);
        }
        return `${full.width}×${full.height}×${full.planes.length}`;
      });
    },
  };
}

/** Loads a file whose header was accepted into libtorch: each tensor must come out as the header said. */
function loadsAsHeaderSays(file, header) {
  const { loadTensors, disposeAll } = D('io');
  return expectCleanError(() => {
    const t = loadTensors(file);
    for (const [k, v] of t.tensors) {
      const info = header.tensors.get(k);
      if (v.shape.join() !== info.shape.join() || v.dtype !== info.dtype)
        throw new Finding('bad-output', `tensor ${k}: libtorch made ${v.dtype} [${v.shape}] of ${info.dtype} [${info.shape}]`);
    }
    disposeAll(t.tensors);
    return `${t.tensors.size} tensors`;
  }, file);
}

const TARGETS = {
  safetensors: {
    about: 'safetensors reader: header, dtypes, shapes, offsets (readSafetensorsHeader, readSafetensors, deserializeSafetensors, loadTensors into libtorch)',
    make: async (r) => {
      const seed = r.pick(await seeds('st', safetensorsSeeds));
      if (r.chance(0.5)) return mutateBytesN(r, seed);
      const n = Number(seed.readBigUInt64LE(0));
      const text = mutateJsonText(r, seed.subarray(8, 8 + n).toString('utf8'));
      const head = Buffer.from(text, r.chance(0.9) ? 'utf8' : 'latin1');
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(r.chance(0.9) ? head.length : r.pick([head.length + 1, head.length - 1, 2 ** 40, 0])));
      return Buffer.concat([len, head, seed.subarray(8 + n)]);
    },
    run: async (bytes, ctx) => {
      const st = D('io/safetensors');
      const file = caseFile(ctx, 'w.safetensors', bytes);
      const a = await expectCleanError(() => st.readSafetensorsHeader(file), file);
      const b = await expectCleanError(() => st.deserializeSafetensors(bytes, file), file);
      if ('ok' in a !== 'ok' in b)
        throw new Finding('disagree', `readSafetensorsHeader ${a.rejected || 'accepts'}, deserializeSafetensors ${b.rejected || 'accepts'}`);
      if (a.rejected) return a;
      for (const [k] of a.ok.tensors) if (Object.prototype.hasOwnProperty.call(Object.prototype, k)) void 0; // names like __proto__ are data, kept in a Map
      return loadsAsHeaderSays(file, a.ok);
    },
  },

  pytorch: {
    about:
      'torch.save files (.pth): the zip directory, data.pkl through the unpickler that runs nothing (CRC-32 fixed up after pickle mutations), the tensors into libtorch',
    make: async (r) => {
      const seed = r.pick(await seeds('pth', pytorchSeeds));
      if (r.chance(0.3)) return mutateBytesN(r, seed);
      if (r.chance(0.15)) return mutateZip64(r, seed);
      const b = Buffer.from(seed);
      const pkl = b.indexOf(Buffer.from([0x80, 0x02]), b.indexOf('data.pkl'));
      const end = b.indexOf(Buffer.from([0x50, 0x4b]), pkl + 1);
      for (let k = 1 + r.int(4); k > 0; k--)
        b[pkl + r.int(Math.max(1, end - pkl))] = r.chance(0.5)
          ? r.int(256)
          : r.pick([0x28, 0x29, 0x2e, 0x30, 0x52, 0x62, 0x63, 0x68, 0x71, 0x73, 0x74, 0x75, 0x7d, 0x81, 0x8a, 0x93, 0x94]);
      return fixPickleCrc(b);
    },
    run: async (bytes, ctx) => {
      const st = D('io/safetensors');
      const file = caseFile(ctx, 'w.pth', bytes);
      const a = await expectCleanError(() => st.readSafetensorsHeader(file), file);
      if (a.rejected) return a;
      return loadsAsHeaderSays(file, a.ok);
    },
  },

  journal: {
    about:
      'commit journals (<first>.commit) that the next writer of a folder acts on (finishInterruptedCommits, then a write there): renames of a dead process of this host mutated, paths out of the folder, through a link, of a live process',
    make: async (r) => {
      const renames = r.pick([
        [
          [`a.tmp-${DEAD}-0`, 'a'],
          ['b.partial', 'b'],
          [`sub/c.tmp-${DEAD}-2`, 'sub/c'],
        ],
        [[`a.tmp-${DEAD}-0`, 'a']],
      ]);
      for (let k = r.chance(0.5) ? 1 + r.int(2) : 0; k > 0; k--) renames.splice(r.int(renames.length + 1), 0, r.pick(HOSTILE_RENAMES));
      const j = { format: 'semaim.commit/1', pid: DEAD, host: '@HOST@', renames };
      if (r.chance(0.2)) j.pid = r.pick([0, -1, 1, '@SELF@', 2 ** 31, 2 ** 53, 1.5, String(DEAD)]);
      if (r.chance(0.1)) j.host = r.pick(['elsewhere', '', null]);
      const text = toJson(j).replace('"@SELF@"', '@SELF@');
      // (a mutation can repeat a nested value into 100 MB: 4 MB is past the size a journal is read at)
      return Buffer.from(r.chance(0.5) ? mutateJsonText(r, text) : text, 'latin1').subarray(0, 4 << 20);
    },
    run: async (bytes, ctx) => {
      const { finishInterruptedCommits, writeFileAtomic } = D('util/safe-write');
      const { hostname } = require('node:os');
      for (const [f, text] of Object.entries(JOURNAL_FILES)) caseFile(ctx, f, text);
      fs.symlinkSync('../victim', path.join(ctx.dir, 'out', 'link'));
      const out = path.join(ctx.dir, 'out');
      const journal = path.join(out, 'a.commit');
      const text = bytes
        .toString('latin1')
        .replace('@HOST@', hostname())
        .replace('@SELF@', String(process.pid))
        .replace(/@CASE@/g, JSON.stringify(ctx.dir).slice(1, -1));
      fs.writeFileSync(journal, Buffer.from(text, 'latin1'));
      const before = snapshot(ctx.dir);
      let outcome;
      try {
        outcome = `renamed ${finishInterruptedCommits(out, () => {}).length}`;
        writeFileAtomic(path.join(out, 'unrelated.txt'), 'x'); // a folder with a journal is still written to
      } catch (e) {
        outcome = checkError(e, journal); // only a rename that cannot be made, naming the journal to delete
      }
      const after = snapshot(ctx.dir);
      for (const [p, v] of before) {
        const w = after.get(p);
        if (w === v || p === 'out/a.commit') continue;
        const final = OWN_TEMP.exec(p)?.[1];
        if (final !== undefined && w === undefined && after.get(final) === v) continue; // a dead writer's temporary file onto its final name
        if (w !== undefined && [...before].some(([t, c]) => OWN_TEMP.exec(t)?.[1] === p && c === w && !after.has(t))) continue; // that final name
        throw new Finding('bad-output', `${p} ${w === undefined ? 'removed' : 'changed'} by a journal`);
      }
      for (const p of after.keys()) if (!before.has(p) && p !== 'out/unrelated.txt') throw new Finding('bad-output', `${p} created by a journal`);
      if (outcome.startsWith('renamed') && finishInterruptedCommits(out, () => {}).length) throw new Finding('bad-output', 'a second pass renamed again');
      return outcome;
    },
  },

  lock: {
    about:
      "lock files (<first>.lock, run.lock) left by other processes: holder pid, host and JSON mutated (lockFile takes a dead holder's over, refuses a live one)",
    make: async (r) => {
      const h = { pid: DEAD, host: '@HOST@', since: '2026-12-03T00:00:00.000Z' };
      if (r.chance(0.4)) h.pid = r.pick([0, -1, 1, '@SELF@', 2 ** 31, 2 ** 32 + 1, 2 ** 53, 1.5, String(DEAD), null]);
      if (r.chance(0.2)) h.host = r.pick(['elsewhere', '', null, 7]);
      const text = toJson(h).replace('"@SELF@"', '@SELF@');
      return Buffer.from(r.chance(0.3) ? text : r.chance(0.7) ? mutateJsonText(r, text) : mutateBytesN(r, Buffer.from(text)).toString('latin1'), 'latin1');
    },
    run: async (bytes, ctx) => {
      const { lockFile } = D('util/file-lock');
      const { processAlive } = D('util/process-alive');
      const { hostname } = require('node:os');
      const lock = path.join(ctx.dir, 'x.lock');
      const text = Buffer.from(bytes.toString('latin1').replace('@HOST@', hostname()).replace('@SELF@', String(process.pid)), 'latin1');
      fs.writeFileSync(lock, text);
      let h = null;
      try {
        h = JSON.parse(text.toString('utf8'));
      } catch {
        /* unreadable: nobody holds it */
      }
      const names = h !== null && typeof h === 'object' && Number.isSafeInteger(h.pid) && typeof h.host === 'string';
      const live = names && (h.host !== hostname() || (h.pid !== process.pid && h.pid > 0 && processAlive(h.pid)));
      let got;
      try {
        got = lockFile(lock);
      } catch (e) {
        return { rejected: checkError(e, lock) };
      }
      if (typeof got === 'function') {
        if (live) throw new Finding('bad-output', `took over the lock of a live holder: ${text.toString('utf8').slice(0, 200)}`);
        if (JSON.parse(fs.readFileSync(lock, 'utf8')).pid !== process.pid) throw new Finding('bad-output', 'taken, but the lock does not name this process');
        got();
        const left = fs.readdirSync(ctx.dir);
        if (left.length) throw new Finding('bad-output', `left ${left.join(', ')} after its release`);
        return 'taken';
      }
      if (!live) throw new Finding('bad-output', `refused for a holder that is gone or names no process: ${text.toString('utf8').slice(0, 200)}`);
      if (!fs.readFileSync(lock).equals(text)) throw new Finding('bad-output', 'refused, but the lock was changed');
      return `held by ${got.pid}`;
    },
  },

  encoder: {
    about: 'an exported encoder (<name>.safetensors + <name>.json): resolveEncoder + loadEncoder, the config JSON and the weights mutated',
    make: async (r) => {
      const dir = tinyRun();
      const json = fs.readFileSync(path.join(dir, 'enc.json'), 'utf8');
      const st = fs.readFileSync(path.join(dir, 'enc.safetensors'));
      const which = r.int(3);
      if (which === 0) return packFiles({ 'enc.json': mutateJsonText(r, json), 'enc.safetensors': st });
      if (which === 1) return packFiles({ 'enc.json': json, 'enc.safetensors': mutateSafetensorsHeader(r, st) });
      return packFiles({ 'enc.json': r.chance(0.5) ? json : mutateJsonText(r, json), 'enc.safetensors': mutateBytesN(r, st) });
    },
    run: async (bytes, ctx) => {
      const files = unpackFiles(bytes);
      for (const [n, b] of Object.entries(files)) caseFile(ctx, n, b);
      const file = path.join(ctx.dir, 'enc.safetensors');
      const { resolveEncoder, loadEncoder } = D('semaim/pretrained');
      return expectCleanError(
        () => {
          const src = resolveEncoder(file);
          const e = loadEncoder(src);
          e.encoder.dispose();
          return JSON.stringify(src.config);
        },
        path.join(ctx.dir, 'enc'),
      );
    },
  },

  checkpoint: {
    about:
      'a checkpoint folder: state.json fields and the model config in model.safetensors metadata mutated (hashes recomputed, as an attacker would); verify, resolveEncoder, loadEncoder, loadModel, readCheckpoint',
    make: async (r) => {
      const ck = path.join(tinyRun(), 'run', 'checkpoints', 'step-00000002');
      const state = JSON.parse(fs.readFileSync(path.join(ck, 'state.json'), 'utf8'));
      let model = fs.readFileSync(path.join(ck, 'model.safetensors'));
      const opt = fs.readFileSync(path.join(ck, 'optimizer.safetensors'));
      let stateText;
      const mode = r.int(4);
      if (mode === 0 || mode === 3) model = mutateSafetensorsHeader(r, model, mode === 0 ? ['config'] : null);
      const { stateDigest } = D('io/checkpoint');
      const sha = (b) => createHash('sha256').update(b).digest('hex');
      state.files = { 'model.safetensors': sha(model), 'optimizer.safetensors': sha(opt) };
      let s = state;
      if (mode === 1 || mode === 3) for (let n = 1 + r.int(2); n > 0; n--) s = mutateJsonValue(r, s);
      if (s && typeof s === 'object' && !Array.isArray(s) && 'stateSha256' in state) s.stateSha256 = stateDigest(s);
      stateText = toJson(s, 1);
      if (mode === 2) stateText = mutateJsonText(r, stateText);
      return packFiles({ 'step-00000002/state.json': stateText, 'step-00000002/model.safetensors': model, 'step-00000002/optimizer.safetensors': opt });
    },
    run: async (bytes, ctx) => {
      const files = unpackFiles(bytes);
      for (const [n, b] of Object.entries(files)) caseFile(ctx, n, b);
      const dir = path.join(ctx.dir, 'step-00000002');
      const { verifyCheckpoint, readCheckpoint } = D('io/checkpoint');
      const { resolveEncoder, loadEncoder } = D('semaim/pretrained');
      const { loadModel } = D('semaim/load-model');
      const { disposeAll } = D('io');
      let problem;
      try {
        problem = verifyCheckpoint(dir, 'weights');
      } catch (e) {
        throw new Finding('unexpected-error', `verifyCheckpoint threw (it returns the problem): ${e.constructor.name}: ${e.message}`);
      }
      if (problem) return { rejected: problem };
      const out = [];
      out.push(
        await expectCleanError(() => {
          const e = loadEncoder(resolveEncoder(dir));
          e.encoder.dispose();
        }, dir),
      );
      out.push(
        await expectCleanError(() => {
          const m = loadModel(dir, 'cpu');
          m.dispose();
        }, dir),
      );
      out.push(
        await expectCleanError(() => {
          const c = readCheckpoint(dir);
          disposeAll(c.model);
          disposeAll(c.extra);
        }, dir),
      );
      return out.map((o) => o.rejected || 'ok').join(' / ');
    },
  },

  linprobe: {
    about: 'a linear-probe folder for predict (linprobe.json + probe.safetensors): resolvePredictor + loadPredictor',
    make: async (r) => {
      const dir = path.join(tinyRun(), 'lp');
      const json = fs.readFileSync(path.join(dir, 'linprobe.json'), 'utf8');
      const st = fs.readFileSync(path.join(dir, 'probe.safetensors'));
      const which = r.int(3);
      return packFiles({
        'linprobe.json': which === 1 ? json : mutateJsonText(r, json),
        'probe.safetensors': which === 0 ? st : which === 1 ? mutateSafetensorsHeader(r, st) : r.chance(0.5) ? st : mutateBytesN(r, st),
      });
    },
    run: async (bytes, ctx) => {
      for (const [n, b] of Object.entries(unpackFiles(bytes))) caseFile(ctx, n, b);
      const { resolvePredictor, loadPredictor } = D('eval/classifier-source');
      return expectCleanError(() => {
        const src = resolvePredictor(ctx.dir);
        if (src.classNames && (src.classNames.length !== src.numClasses || !src.classNames.every((n) => typeof n === 'string'))) {
          throw new Finding('bad-output', `class names ${JSON.stringify(src.classNames).slice(0, 100)} for ${src.numClasses} classes`);
        }
        loadPredictor(src, 'cpu').dispose();
        return `${src.numClasses} classes`;
      }, ctx.dir);
    },
  },

  'shard-index': {
    about: "a shard folder's index.json (sample counts and class names, trusted when sizes match): loadShardTable",
    make: async (r) => {
      const seed = await seeds('shard-index', async () => {
        const shard = (await seeds('tar', tarSeeds))[0];
        const dir = fs.mkdtempSync(path.join(WORK, 'index-seed-'));
        fs.writeFileSync(path.join(dir, 'shard-000000.tar'), shard);
        D('data/shards/shard-index').loadShardTable([path.join(dir, 'shard-000000.tar')], { onWarning: () => {} });
        const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
        index.classes = ['n01', 'n02', 'c', 'd'];
        return { shard, index: JSON.stringify(index, null, 1) };
      });
      return packFiles({ 'shard-000000.tar': seed.shard, 'index.json': mutateJsonText(r, seed.index) });
    },
    run: async (bytes, ctx) => {
      for (const [n, b] of Object.entries(unpackFiles(bytes))) caseFile(ctx, n, b);
      const { loadShardTable } = D('data/shards/shard-index');
      return expectCleanError(() => {
        const t = loadShardTable([path.join(ctx.dir, 'shard-000000.tar')], { onWarning: () => {} });
        if (!Array.isArray(t.classes) || !t.classes.every((c) => typeof c === 'string')) {
          throw new Finding('bad-output', `classes ${JSON.stringify(t.classes).slice(0, 100)}`);
        }
        const maxLabel = Math.max(-1, ...t.entries.map((e) => e.maxLabel));
        if (t.classes.length > 0 && t.classes.length <= maxLabel) throw new Finding('bad-output', `${t.classes.length} classes for label ${maxLabel}`);
        if (!t.entries.every((e) => Number.isSafeInteger(e.samples) && e.samples >= 0) || !Number.isSafeInteger(t.total)) {
          throw new Finding('bad-output', `sample counts ${JSON.stringify(t.entries.map((e) => e.samples)).slice(0, 100)}`);
        }
        return `${t.total} samples, ${t.classes.length} classes`;
      }, 'index.json');
    },
  },

  tar: {
    about: 'WebDataset tar shards: readShard (images and labels only) and scanShard',
    make: async (r) => {
      const seed = r.pick(await seeds('tar', tarSeeds));
      let b = mutateBytesN(r, seed);
      if (r.chance(0.3)) b = fixTarChecksums(b);
      return b;
    },
    run: async (bytes, ctx) => {
      const { readShard, MAX_CLASSES } = D('data/shards/tar-samples');
      const { scanShard } = D('data/shards/shard-index');
      const gz = ctx.rng.chance(0.2);
      const file = caseFile(ctx, gz ? 's.tar.gz' : 's.tar', gz ? require('node:zlib').gzipSync(bytes) : bytes);
      let n = 0;
      const res = await expectCleanError(async () => {
        for await (const s of readShard(file, { images: ctx.rng.chance(0.8) })) {
          n++;
          if (s.label !== null && !(Number.isSafeInteger(s.label) && s.label >= 0 && s.label < MAX_CLASSES))
            throw new Finding('bad-output', `label ${s.label}`);
          if (typeof s.key !== 'string' || !s.imageExt) throw new Finding('bad-output', `sample ${JSON.stringify(s.key)} without an image extension`);
        }
        return `${n} samples`;
      }, 's.tar');
      const scan = await expectCleanError(() => scanShard(file), 's.tar');
      return `${res.ok || res.rejected} | scan ${scan.ok ? 'ok' : scan.rejected}`;
    },
  },

  jpeg: imageTarget('jpeg'),
  png: imageTarget('png'),
  bmp: imageTarget('bmp'),
  gif: imageTarget('gif'),
  webp: imageTarget('webp'),
  tiff: imageTarget('tiff'),
  pnm: imageTarget('pnm'),

  'label-png': {
    about: 'segmentation masks (decodeLabelPng)',
    make: async (r) => mutateBytesN(r, r.pick(await seeds('label', labelPngSeeds))),
    run: async (bytes) => {
      const { decodeLabelPng } = D('data/codecs/label-png');
      return expectCleanError(() => {
        const m = decodeLabelPng(bytes, 1 << 20);
        if (m.data.length !== m.width * m.height) throw new Finding('bad-output', `${m.width}×${m.height} mask of ${m.data.length} bytes`);
        return `${m.width}×${m.height}`;
      });
    },
  },

  cifar: {
    about: 'CIFAR-10 binary batches (cifarBinary): sizes, label bytes, batches.meta.txt',
    make: async (r) => {
      const b = r.chance(0.7) ? mutateBytesN(r, cifarSeed()) : cifarSeed();
      const meta = r.chance(0.5) ? Buffer.from('airplane\nautomobile\nbird\n') : r.chance(0.5) ? mutateBytesN(r, Buffer.from('a\nb\nc\n')) : null;
      return packFiles(meta ? { 'data_batch_1.bin': b, 'batches.meta.txt': meta } : { 'data_batch_1.bin': b });
    },
    run: async (bytes, ctx) => {
      for (const [n, b] of Object.entries(unpackFiles(bytes))) caseFile(ctx, n, b);
      const { cifarBinary } = D('data/sources/cifar');
      return expectCleanError(() => {
        const ds = cifarBinary(ctx.dir);
        for (let i = 0; i < ds.length; i++) {
          const l = ds.label(i);
          if (!(l >= 0 && l < ds.classes.length)) throw new Finding('bad-output', `image ${i} has label ${l} but the dataset has ${ds.classes.length} classes`);
        }
        return `${ds.length} images, ${ds.classes.length} classes`;
      }, 'data_batch_1.bin');
    },
  },

  report: {
    about: 'a run folder read for the HTML report (config.json, metrics.jsonl, evaluation JSON) with hostile values and strings; the HTML must escape them',
    make: async (r) => {
      const dir = path.join(tinyRun(), 'run');
      const cfg = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
      const metrics = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8');
      const evalJson = JSON.stringify({ knn: { top1: 50, top5: 90, k: 20, feature: 'cls' }, linprobe: { top1: 40 } });
      const lines = metrics.split('\n').filter(Boolean);
      const mutLines = lines.map((l) => (r.chance(0.4) ? mutateJsonText(r, l).replace(/\n/g, ' ') : l));
      return packFiles({
        'config.json': r.chance(0.7) ? mutateJsonText(r, cfg) : cfg,
        'metrics.jsonl': mutLines.join('\n') + '\n',
        [`${r.pick(['knn', 'x<script>', 'a"b', "o'x", 'a|b'])}.json`]: r.chance(0.8) ? mutateJsonText(r, evalJson) : evalJson,
      });
    },
    run: async (bytes, ctx) => {
      for (const [n, b] of Object.entries(unpackFiles(bytes))) caseFile(ctx, n, b);
      const { readRun } = D('viz/run-data');
      const { renderReport } = D('viz/report');
      return expectCleanError(() => {
        const html = renderReport(readRun(ctx.dir), { generatedAt: new Date(0) });
        checkMarkup(html.replace(/<script type="application\/json"[\s\S]*?<\/script>/g, ''), 'report.html');
        return `${html.length} chars`;
      }, ctx.dir);
    },
  },
};

// ------------------------------------------------------------------ helpers of targets

const DEAD = 2 ** 22 + 1; // above Linux's pid_max: no such process

/** The folder a journal case starts from (out/link is a symbolic link to ../victim). */
const JOURNAL_FILES = {
  'out/a': 'old a',
  [`out/a.tmp-${DEAD}-0`]: 'new a',
  'out/b': 'old b',
  'out/b.partial': 'new b',
  'out/b.tmp-1-0': 'what live pid 1 is writing',
  'out/.partial': 'planted',
  'out/sub/c': 'old c',
  [`out/sub/c.tmp-${DEAD}-2`]: 'new c',
  'victim/x': 'victim',
  'victim/x.partial': 'planted',
  [`victim/x.tmp-${DEAD}-0`]: 'planted',
};
/** Temporary files of out/ that a journal of the dead writer may rename onto their final name (group 1). */
const OWN_TEMP = new RegExp(`^(out/(?:sub/)?[^/]+)(?:\\.tmp-${DEAD}-\\d+|\\.partial)$`);
/** Renames no journal may make: out of the folder, absolute, through a link, another process's temporary file, onto the folder. */
const HOSTILE_RENAMES = [
  ['../victim/x.partial', '../victim/x'],
  [`../victim/x.tmp-${DEAD}-0`, '../victim/x'],
  ['@CASE@/victim/x.partial', '@CASE@/victim/x'],
  [`link/x.tmp-${DEAD}-0`, 'link/x'],
  ['link/x.partial', 'link/x'],
  ['b.tmp-1-0', 'b'],
  ['.partial', ''],
  [`sub/../a.tmp-${DEAD}-0`, 'sub/../a'],
  [`./a.tmp-${DEAD}-0`, './a'],
  [`a\u0000.tmp-${DEAD}-0`, 'a\u0000'],
  [`a.tmp-${DEAD}-0`, 'a'],
  ['a', 'a'],
  [`a.tmp-${DEAD}-0`, 'sub'],
];

/** Every file, link and folder under `dir` (not through links): relative path → its content, link target or 'folder'. */
function snapshot(dir, rel = '', out = new Map()) {
  for (const name of fs.readdirSync(path.join(dir, rel))) {
    const p = rel ? `${rel}/${name}` : name;
    const st = fs.lstatSync(path.join(dir, p));
    if (st.isSymbolicLink()) out.set(p, `link to ${fs.readlinkSync(path.join(dir, p))}`);
    else if (st.isDirectory()) {
      out.set(p, 'folder');
      snapshot(dir, p, out);
    } else out.set(p, fs.readFileSync(path.join(dir, p), 'latin1'));
  }
  return out;
}

/** A tar header's checksum recomputed for every 512-byte block that looks like a header (so mutations reach past it). */
function fixTarChecksums(b) {
  const out = Buffer.from(b);
  for (let o = 0; o + 512 <= out.length; o += 512) {
    if (out.toString('latin1', o + 257, o + 262) !== 'ustar') continue;
    out.fill(0x20, o + 148, o + 156);
    let sum = 0;
    for (let k = 0; k < 512; k++) sum += out[o + k];
    out.write(sum.toString(8).padStart(6, '0') + '\0 ', o + 148, 'latin1');
  }
  return out;
}

/** A safetensors file with its JSON header mutated (optionally only inside metadata values named `keys`, which are JSON themselves). */
function mutateSafetensorsHeader(r, st, keys) {
  const n = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.subarray(8, 8 + n).toString('utf8'));
  let h = header;
  if (keys && header.__metadata__) {
    for (const k of keys) if (typeof header.__metadata__[k] === 'string') header.__metadata__[k] = mutateJsonText(r, header.__metadata__[k]);
  } else h = mutateJsonValue(r, header);
  const text = Buffer.from(toJson(h));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, st.subarray(8 + n)]);
}

/** Several files in one case: JSON of base64 (a case is one byte string, for replay). */
function packFiles(files) {
  return Buffer.from(JSON.stringify(Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')]))));
}
function unpackFiles(b) {
  return Object.fromEntries(Object.entries(JSON.parse(b.toString('utf8'))).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
}

// ------------------------------------------------------------------ running cases

/** Makes and runs case `i` of `target` in this process; returns a one-line outcome or throws a Finding. */
async function runCase(target, seed, i, keepDir) {
  const t = TARGETS[target];
  const bytes = await t.make(rngFor(seed, target, i));
  const dir = keepDir || fs.mkdtempSync(path.join(WORK, `case-${target}-`));
  fs.mkdirSync(dir, { recursive: true });
  try {
    const res = await t.run(bytes, { dir, rng: rngFor(seed, `${target}/run`, i) });
    runCase.lastBytes = bytes.length;
    return typeof res === 'string' ? res : (res.rejected ?? `ok ${res.ok ?? ''}`);
  } finally {
    if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The child: runs cases [from, to) and reports `S i`, then `D i ok|FAIL kind detail` on stdout. */
async function child(target, seed, from, to, maxMemMb) {
  const say = (s) => fs.writeSync(1, s + '\n');
  const base = process.resourceUsage().maxRSS;
  for (let i = from; i < to; i++) {
    say(`S ${i}`);
    let line;
    try {
      line = `ok ${(await runCase(target, seed, i)).replace(/\s+/g, ' ').slice(0, 200)}`;
      const grown = (process.resourceUsage().maxRSS - base) / 1024;
      const allowed = Math.max(maxMemMb, (20 * runCase.lastBytes) / 2 ** 20); // a big file may take memory in proportion
      if (grown > allowed) line = `FAIL memory peak memory grew by ${grown.toFixed(0)} MB for a case of ${runCase.lastBytes} bytes`;
    } catch (e) {
      line = e instanceof Finding ? `FAIL ${e.message.replace(/\n/g, ' \\ ')}` : `FAIL harness ${e.stack.replace(/\n/g, ' \\ ')}`;
    }
    say(`D ${i} ${line}`);
    if (line.startsWith('FAIL memory')) return; // a fresh child for the next case: the peak is per process
  }
}

/** Runs cases [0, n) of a target in child processes; returns the findings. */
function runTarget(target, seed, n, o) {
  return new Promise((resolve) => {
    const findings = [];
    const counts = {};
    let next = 0;
    const start = () => {
      if (next >= n) return resolve({ findings, counts });
      const c = spawn(
        process.execPath,
        ['--max-old-space-size=2048', __filename, '--child', target, String(seed), String(next), String(n), String(o.maxMemMb)],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, SEMAIM_FUZZ_WORK: WORK },
        },
      );
      let current = null;
      let timer = null;
      let buf = '';
      let stderr = '';
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => c.pid !== undefined && c.exitCode === null && c.kill('SIGKILL'), o.timeout * 1000 + (current === next ? 30000 : 0)); // the first case loads the addon
      };
      c.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
      c.stdout.on('data', (d) => {
        buf += d;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const m = /^([SD]) (\d+) ?(.*)$/.exec(line);
          if (!m) continue;
          const i = Number(m[2]);
          if (m[1] === 'S') {
            current = i;
            arm();
          } else {
            current = null;
            next = i + 1;
            const kind = m[3].startsWith('FAIL') ? m[3].split(' ')[1].replace(/:$/, '') : m[3].split(' ')[0] === 'ok' ? 'handled' : 'other';
            counts[kind] = (counts[kind] || 0) + 1;
            if (m[3].startsWith('FAIL')) {
              findings.push({ target, i, what: m[3].slice(5) });
              if ((counts[kind] <= 3 && (o.shown[m[3].slice(5, 200)] = (o.shown[m[3].slice(5, 200)] || 0) + 1) === 1) || o.verbose) {
                o.log(`FAIL ${target} ${i} ${m[3].slice(5)}`);
              }
            } else if (o.verbose) o.log(`  ${target} ${i} ${m[3]}`);
            if (i % 500 === 499) o.log(`  ${target}: ${i + 1}/${n}`);
          }
        }
      });
      // a child that cannot be started (EAGAIN, ENOMEM) ends this target's run as a finding: no 'exit' follows
      c.on('error', (e) => {
        clearTimeout(timer);
        const what = `harness: cannot start a child process: ${e.message}; cases ${next}..${n - 1} not run`;
        findings.push({ target, i: next, what });
        o.log(`FAIL ${target} ${next} ${what}`);
        resolve({ findings, counts });
      });
      c.on('exit', (code, signal) => {
        clearTimeout(timer);
        if (current !== null) {
          const what =
            signal === 'SIGKILL'
              ? `hang: over ${o.timeout} s (or killed)`
              : `crash: exit ${code} ${signal || ''} ${stderr.trim().split('\n').slice(-3).join(' \\ ')}`;
          findings.push({ target, i: current, what });
          counts.crash = (counts.crash || 0) + 1;
          o.log(`FAIL ${target} ${current} ${what}`);
          next = current + 1;
        } else if (code !== 0 && next < n) {
          // died between cases (a crash in a finalizer, an unhandled rejection after a case's report, or at
          // start-up): a finding, or a run that never reached its remaining cases would report none
          const what = `crash: the child exited ${code} ${signal || ''} between cases, before case ${next}; cases ${next}..${n - 1} not run: ${stderr.trim().split('\n').slice(-3).join(' \\ ')}`;
          findings.push({ target, i: next, what });
          counts.crash = (counts.crash || 0) + 1;
          o.log(`FAIL ${target} ${next} ${what}`);
          return resolve({ findings, counts });
        }
        start();
      });
    };
    start();
  });
}

async function main(argv) {
  if (argv[0] === '--child') {
    WORK = process.env.SEMAIM_FUZZ_WORK;
    await child(argv[1], Number(argv[2]), Number(argv[3]), Number(argv[4]), Number(argv[5]));
    process.exit(0);
  }
  const o = { cases: 300, seed: 1, timeout: 20, maxMemMb: 400, verbose: false, shown: {}, log: (s) => console.log(s) };
  const targets = [];
  let replay = null;
  // a number that is not one (--cases 1k) would be NaN, and a target of NaN cases restarts its child forever
  const num = (flag, s, min = 0) => {
    const v = Number(s);
    if (s === undefined || s.trim() === '' || !Number.isFinite(v) || v < min)
      throw new Error(`${flag} takes a number${min > -Infinity ? ` >= ${min}` : ''}, not ${s}`);
    return v;
  };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a === '--cases') o.cases = num(a, argv[++k]);
    else if (a === '--seed') o.seed = num(a, argv[++k], -Infinity);
    else if (a === '--timeout') o.timeout = num(a, argv[++k]);
    else if (a === '--max-mem-mb') o.maxMemMb = num(a, argv[++k]);
    else if (a === '--work') WORK = path.resolve(argv[++k]);
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--case') replay = { target: argv[++k], i: num(a, argv[++k]) };
    else if (a === '--keep') replay.keep = path.resolve(argv[++k]);
    else if (a === '--list') {
      for (const [n, t] of Object.entries(TARGETS)) console.log(`${n.padEnd(12)} ${t.about}`);
      return 0;
    } else if (TARGETS[a]) targets.push(a);
    else throw new Error(`unknown argument ${a} (targets: ${Object.keys(TARGETS).join(', ')})`);
  }
  const ownWork = WORK === undefined && !replay?.keep; // removed at the end (a --work folder keeps its seed run for the next call)
  WORK ??= fs.mkdtempSync(path.join(os.tmpdir(), 'semaim-fuzz-'));
  if (ownWork) process.once('exit', () => fs.rmSync(WORK, { recursive: true, force: true }));
  fs.mkdirSync(WORK, { recursive: true });
  if (replay) {
    const pending = () => {
      console.log('FAIL hang: the case never finished (a promise that never settles)');
      process.exitCode = 1;
    };
    process.once('exit', pending);
    const out = await runCase(replay.target, o.seed, replay.i, replay.keep).catch((e) => `FAIL ${e.message}`);
    process.off('exit', pending);
    console.log(out);
    return out.startsWith('FAIL') ? 1 : 0;
  }
  tinyRun(); // once, before the children share it
  let all = [];
  for (const t of targets.length ? targets : Object.keys(TARGETS)) {
    const t0 = Date.now();
    const { findings, counts } = await runTarget(t, o.seed, o.cases, o);
    console.log(`${t}: ${o.cases} cases in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${JSON.stringify(counts)}`);
    all = all.concat(findings);
  }
  console.log(all.length ? `${all.length} finding(s)` : 'no findings');
  return all.length ? 1 : 0;
}

module.exports = { TARGETS, rngFor, runCase, runTarget, mutateBytesN, mutateJsonText, checkMarkup, Finding, setWork: (w) => (WORK = w) };

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e.stack || e);
      process.exit(2);
    },
  );
}
