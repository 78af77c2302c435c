// Every `semaim ...` command line in the code blocks of README.md and docs/*.md goes through its
// command's option parser and checks (parse + validate, no work), so a documented example cannot
// name an option that does not exist or a value that is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as torch from '../../src/torch';
import { commands } from '../../src/cli/commands';

const REPO = join(__dirname, '..', '..', '..');

interface DocLine {
  file: string;
  line: number;
  command: string;
  args: string[];
}

/** Shell words of a command line (plain words and '...'/"..." quoting; enough for documentation). */
function words(text: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (let m; (m = re.exec(text));) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

/** The `semaim <command> ...` lines inside fenced code blocks (continuations joined, comments cut). */
export function documentedCommands(file: string, text: string): DocLine[] {
  const found: DocLine[] = [];
  const lines = text.split('\n');
  let inBlock = false;
  for (let i = 0; i < lines.length; i++) {
    if (/^\s*```/.test(lines[i])) {
      inBlock = !inBlock;
      continue;
    }
    if (!inBlock) continue;
    const first = i;
    let line = lines[i];
    while (/\\\s*$/.test(line) && i + 1 < lines.length) line = line.replace(/\\\s*$/, ' ') + lines[++i];
    line = line.replace(/(^|\s)#.*$/, '').trim();
    const m = /^(?:npx\s+semaim|semaim|node\s+dist\/src\/cli\/main\.js)\s+(\S+)(.*)$/.exec(line);
    // a trailing '...' is the documentation's "and the rest", not an argument
    if (m) found.push({ file, line: first + 1, command: m[1], args: words(m[2]).filter((w, k, all) => !(w === '...' && k === all.length - 1)) });
  }
  return found;
}

function allDocumentedCommands(): DocLine[] {
  const files = [
    'README.md',
    ...readdirSync(join(REPO, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => join('docs', f)),
  ];
  return files.flatMap((f) => documentedCommands(f, readFileSync(join(REPO, f), 'utf8')));
}

test('documented command lines: the extractor finds continued lines and cuts comments', () => {
  const md = [
    'text',
    '```sh',
    'npx semaim pretrain --a 1 \\',
    '  --b 2   # note',
    'semaim report runs/x  # y',
    'npm test',
    '```',
    'semaim knn --not-in-a-block',
  ].join('\n');
  assert.deepEqual(documentedCommands('x.md', md), [
    { file: 'x.md', line: 3, command: 'pretrain', args: ['--a', '1', '--b', '2'] },
    { file: 'x.md', line: 5, command: 'report', args: ['runs/x'] },
  ]);
});

test('every semaim command line in README.md and docs/*.md parses and validates', () => {
  const found = allDocumentedCommands();
  assert.ok(found.length >= 8, `found only ${found.length} documented command lines`);
  const failures: string[] = [];
  for (const d of found) {
    const where = `${d.file}:${d.line} semaim ${d.command} ${d.args.join(' ')}`;
    try {
      const cmd = commands[d.command];
      if (!cmd) throw new Error(`unknown command '${d.command}'`);
      // A GPU example is still checked on a machine without one, for everything but the device.
      const cpu = 'device' in cmd.options && !torch.cuda.isAvailable() ? ['--device', 'cpu'] : [];
      if (d.args.includes('--help')) continue;
      cmd.parse([...d.args, ...cpu]);
    } catch (e) {
      failures.push(`${where}\n    ${(e as Error).message}`);
    }
  }
  assert.deepEqual(failures, []);
});

/** The `semaim <command>` names in the first column of README's command table. */
export function commandTableNames(readme: string): string[] {
  return [...readme.matchAll(/^\| `semaim ([a-z-]+)` \|/gm)].map((m) => m[1]);
}

test("every command of `semaim --help` has a row in README's command table, and every row is a command", () => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const rows = commandTableNames(readme);
  assert.ok(rows.length >= 8, `found only ${rows.length} rows in README's command table`);
  assert.deepEqual([...rows].sort(), Object.keys(commands).sort());
});

test("README's list of the commands that read image files is the commands with --max-image-pixels", () => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const m = /Every command that reads them \(([^)]*)\) takes the same two options/.exec(readme);
  assert.ok(m, "README's 'Image files' paragraph not found");
  const listed = [...m[1].matchAll(/`([a-z-]+)`/g)].map((x) => x[1]).sort();
  const withOption = Object.entries(commands)
    .filter(([, c]) => 'maxImagePixels' in c.options && 'exifOrientation' in c.options)
    .map(([name]) => name)
    .sort();
  assert.deepEqual(listed, withOption);
});

test("README's shards row and docs/DATA-SHARDING.md name the commands whose --dataset takes shards", () => {
  const withShards = Object.entries(commands)
    .filter(([, c]) => ((c.options as Record<string, { choices?: readonly string[] }>).dataset?.choices ?? []).includes('shards'))
    .map(([name]) => name)
    .sort();
  const listed = (text: string, re: RegExp): string[] => {
    const m = re.exec(text.replace(/\s+/g, ' '));
    assert.ok(m, `${re} not found`);
    return [...m[1].matchAll(/`([a-z-]+)`/g)].map((x) => x[1]).sort();
  };
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  assert.deepEqual(listed(readme, /tar shards \(`--dataset shards` of ([^)]*)\)/), withShards);
  const sharding = readFileSync(join(REPO, 'docs', 'DATA-SHARDING.md'), 'utf8');
  assert.deepEqual(listed(sharding, /((?:`[a-z-]+`(?:, | and ))+`[a-z-]+`) take `--dataset shards`/), withShards);
});

/** Paths of this repository that a document cites (src/..., test/..., scripts/..., bench/..., native/..., docs/...). */
export function citedPaths(text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(/(?<![\w./-])(?:src|test|scripts|bench|native|docs)\/[\w./-]*[\w]/g)) {
    // patterns (native/<unit>.cc, shard-{000000..}) are not files
    if (/[<{*]/.test(text.slice(m.index, m.index + m[0].length + 1))) continue;
    out.add(m[0]);
  }
  return [...out];
}

test('citedPaths finds repository paths and leaves out compiled ones and patterns', () => {
  assert.deepEqual(citedPaths('see `src/a/b.ts:12`, (`test/x.test.ts`), `dist/bench/data.js`, `native/<unit>.cc`, scripts/s.sh.'), [
    'src/a/b.ts',
    'test/x.test.ts',
    'scripts/s.sh',
  ]);
});

test('every source, test and script path cited in README.md and docs/*.md exists', () => {
  const files = [
    'README.md',
    ...readdirSync(join(REPO, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => join('docs', f)),
  ];
  const missing: string[] = [];
  let count = 0;
  for (const f of files) {
    for (const p of citedPaths(readFileSync(join(REPO, f), 'utf8'))) {
      count++;
      // a test filter (`check-libtorch2.sh test/dist/ddp`) names the start of a file's name
      const filter = existsSync(join(REPO, dirname(p))) && readdirSync(join(REPO, dirname(p))).some((e) => e.startsWith(basename(p)));
      if (!existsSync(join(REPO, p)) && !filter) missing.push(`${f}: ${p}`);
    }
  }
  assert.ok(count >= 50, `found only ${count} cited paths`);
  assert.deepEqual(missing, []);
});

test('README names every Debian package scripts/setup.sh installs', () => {
  const setup = readFileSync(join(REPO, 'scripts', 'setup.sh'), 'utf8');
  const m = /^APT_PACKAGES=\(([^)]*)\)/m.exec(setup);
  assert.ok(m, 'APT_PACKAGES not found in scripts/setup.sh');
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  // the OpenBLAS build is named in words ("with the OpenMP OpenBLAS")
  const unnamed = m[1].split(/\s+/).filter((p) => p && !p.startsWith('libopenblas') && !readme.includes(`\`${p}\``));
  assert.deepEqual(unnamed, []);
});

// Flags of other tools that the documents name beside semaim's: torchrun's, prettier's, scripts/run-tests.js's
// (--list), and the benchmark scripts' (bench/*.ts parse their own flags; docs/BENCHMARKS.md is theirs).
const OTHER_TOOLS_FLAGS = new Set([
  '--standalone',
  '--redirects',
  '--tee',
  '--check',
  '--list',
  '--phase-timer',
  '--kernel-profile',
  '--kernel-profile-out',
  '--rounds',
]);

test('every --flag named in README.md and docs/*.md (but BENCHMARKS.md) is an option of some command', () => {
  const known = new Set(['--config', '--help', '--version']);
  for (const cmd of Object.values(commands))
    for (const [key, spec] of Object.entries(cmd.options)) {
      const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      known.add(flag);
      if (spec.type === 'boolean') known.add(flag.replace(/^--/, '--no-'));
    }
  const files = [
    'README.md',
    ...readdirSync(join(REPO, 'docs'))
      .filter((f) => f.endsWith('.md') && f !== 'BENCHMARKS.md')
      .map((f) => join('docs', f)),
  ];
  const unknown: string[] = [];
  for (const f of files)
    for (const m of readFileSync(join(REPO, f), 'utf8').matchAll(/(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9](?![\w])/g))
      if (!known.has(m[0]) && !OTHER_TOOLS_FLAGS.has(m[0])) unknown.push(`${f}: ${m[0]}`);
  assert.ok(known.size > 100, `only ${known.size} known flags`);
  assert.deepEqual([...new Set(unknown)], []);
});
