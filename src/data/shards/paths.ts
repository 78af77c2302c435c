// Which shard files a `--data-path` names: a brace pattern ('dir/shard-{000000..000127}.tar',
// '{a,b}' alternatives too, expanded here as the shell would), a comma-separated list of such
// patterns, or a folder (every .tar / .tar.gz / .tgz in it, in name order). `{split}` is replaced
// by the split's name first ('data/{split}/shard-{0000..0009}.tar').

import { readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { finishInterruptedCommits } from '../../util/safe-write';
import { notRegular } from '../../util/regular-file';

export const SHARD_SUFFIXES = ['.tar', '.tar.gz', '.tgz'];

/** Largest number of names one pattern may expand to (a typo guard). */
const MAX_EXPANSION = 1_000_000;

/** Expands the first brace group of `s` recursively: ranges {a..b} (zero padding kept) and lists {x,y}. */
export function expandBraces(s: string): string[] {
  const open = s.indexOf('{');
  if (open < 0) return [s];
  let depth = 0;
  let close = -1;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) {
      close = i;
      break;
    }
  }
  if (close < 0) throw new Error(`shard pattern '${s}': '{' without a matching '}'`);
  const head = s.slice(0, open);
  const body = s.slice(open + 1, close);
  const tails = expandBraces(s.slice(close + 1));
  const out: string[] = [];
  for (const alt of braceAlternatives(body, s)) {
    for (const mid of expandBraces(alt)) {
      for (const t of tails) {
        out.push(head + mid + t);
        if (out.length > MAX_EXPANSION) throw new Error(`shard pattern '${s}' expands to more than ${MAX_EXPANSION} names`);
      }
    }
  }
  return out;
}

function braceAlternatives(body: string, whole: string): string[] {
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(body);
  if (range) {
    const [a, b] = [range[1], range[2]];
    const from = Number(a);
    const to = Number(b);
    // as bash and webdataset's braceexpand: a bound written with a leading zero ('007', '-01'; not '0' alone) pads every
    // name to the longer bound's width, sign included ({1..010}: 001 ... 010; {-01..1}: -01 000 001)
    const leadingZero = (t: string) => /^-?0\d/.test(t);
    const width = leadingZero(a) || leadingZero(b) ? Math.max(a.length, b.length) : 0;
    const format = (v: number) => (v < 0 ? `-${String(-v).padStart(width - 1, '0')}` : String(v).padStart(width, '0'));
    if (Math.abs(to - from) >= MAX_EXPANSION) throw new Error(`shard pattern '${whole}': range {${body}} is too large`);
    const step = from <= to ? 1 : -1;
    const out: string[] = [];
    for (let v = from; v !== to + step; v += step) out.push(format(v));
    return out;
  }
  // top-level commas split alternatives; nested groups stay inside their alternative
  const alts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '{') depth++;
    else if (body[i] === '}') depth--;
    else if (body[i] === ',' && depth === 0) {
      alts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  alts.push(body.slice(start));
  if (alts.length === 1) throw new Error(`shard pattern '${whole}': {${body}} is neither a range {A..B} nor a list {x,y}`);
  return alts;
}

/** Splits a list of patterns at commas outside braces. */
function splitList(spec: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < spec.length; i++) {
    if (spec[i] === '{') depth++;
    else if (spec[i] === '}') depth--;
    else if (spec[i] === ',' && depth === 0) {
      out.push(spec.slice(start, i));
      start = i + 1;
    }
  }
  out.push(spec.slice(start));
  return out.map((x) => x.trim()).filter((x) => x.length > 0);
}

export function isShardFile(name: string): boolean {
  const lower = name.toLowerCase();
  return SHARD_SUFFIXES.some((s) => lower.endsWith(s));
}

/** The shard files a data path names (absolute paths, in the given order; a folder in name order). */
export function resolveShardPaths(spec: string, split?: string): string[] {
  const text = split === undefined ? spec : spec.split('{split}').join(split);
  const out: string[] = [];
  const missing: string[] = [];
  const notFiles: string[] = [];
  // a packer killed while renaming its set into place left a journal: the set is completed before it is
  // listed or read (once per folder: a pattern may name thousands of shards in one)
  const completed = new Set<string>();
  const complete = (dir: string) => {
    if (!completed.has(dir)) finishInterruptedCommits(dir);
    completed.add(dir);
  };
  for (const item of splitList(text)) {
    for (const name of expandBraces(item)) {
      const p = resolve(name);
      complete(dirname(p));
      let st;
      try {
        st = statSync(p);
      } catch {
        missing.push(p);
        continue;
      }
      if (st.isDirectory()) {
        complete(p);
        // a FIFO, a device or a folder with a shard's name is no shard (as the folder source lists only files)
        const inDir = readdirSync(p)
          .filter((f) => !f.startsWith('.') && isShardFile(f))
          .sort()
          .map((f) => join(p, f))
          .filter((f) => statSync(f, { throwIfNoEntry: false })?.isFile() ?? true); // (a dangling link: warned as unreadable)
        if (split !== undefined && inDir.length === 0) {
          // a folder holding one sub-folder per split
          try {
            if (statSync(join(p, split)).isDirectory()) {
              for (const f of resolveShardPaths(join(p, split))) out.push(f);
              continue;
            }
          } catch {
            /* no split folder */
          }
        }
        if (inDir.length === 0) throw new Error(`shards: folder ${p} holds no ${SHARD_SUFFIXES.join('/')} files`);
        // (not push(...inDir): a spread of more than ~125,000 names overflows the call stack)
        for (const f of inDir) out.push(f);
      } else if (notRegular(st)) notFiles.push(`${p} (${notRegular(st)})`);
      else out.push(p);
    }
  }
  if (notFiles.length) {
    const list = notFiles.slice(0, 3).join(', ') + (notFiles.length > 3 ? `, ... (${notFiles.length} in all)` : '');
    throw new Error(`shards: ${notFiles.length} shard(s) of '${spec}' are not regular files: ${list}`);
  }
  if (missing.length) {
    const list = missing.slice(0, 3).join(', ') + (missing.length > 3 ? `, ... (${missing.length} in all)` : '');
    throw new Error(`shards: ${missing.length} shard file(s) of '${spec}' do not exist: ${list}`);
  }
  if (out.length === 0) throw new Error(`shards: '${spec}' names no shard files`);
  const seen = new Set<string>();
  for (const p of out) {
    if (seen.has(p)) throw new Error(`shards: ${p} is named twice in '${spec}'`);
    seen.add(p);
  }
  return out;
}
