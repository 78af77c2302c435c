// Files that belong together (an exported encoder's weights and config, embed's rows and image list,
// predict's JSON and CSV, ablate's and object-start's table and data) are renamed into place under a
// commit journal: a process killed (SIGKILL, no handler runs) between two renames leaves the journal,
// and the next writer or reader of that folder completes the renames: never a new file beside an old one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitFiles, commitJournalPath, finishInterruptedCommits, stageFile, writeFileAtomic, writeFilesAtomic } from '../../src/util/safe-write';
import { checkOutputs } from '../../src/io/outputs';
import { OptionError } from '../../src/util/options';
import { io } from '../../src';
import { processIdentity } from '../../src/util/process-alive';
import { encodePng } from '../../src/viz/png';
import { writeEncoder } from '../eval/helpers';

const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const SAFE_WRITE = join(__dirname, '..', '..', 'src', 'util', 'safe-write.js');
const TINY =
  '--model vit_tiny --embed-dim 32 --depth 2 --num-heads 2 --img-size 32 --patch-size 4 --synthetic-size 64 --batch-size 16 --epochs 1 --warmup-epochs 0 --max-steps 1 --num-workers 0 --threads 1';

/** A preload that SIGKILLs the process right after its first rename onto a name matching KILL_RENAME_MATCH. */
const KILLER = `const fs = require('node:fs');
const rename = fs.renameSync;
const match = new RegExp(process.env.KILL_RENAME_MATCH);
fs.renameSync = function (a, b) {
  rename.call(fs, a, b);
  if (match.test(String(b))) process.kill(process.pid, 'SIGKILL');
};
`;

function scratch(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-commit-journal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'killer.js'), KILLER);
  return dir;
}

/** Runs `args` (node arguments) with the killer preloaded; asserts that it was killed. */
function killedAtRename(dir: string, match: string, args: string[]): void {
  const r = spawnSync(process.execPath, ['-r', join(dir, 'killer.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, KILL_RENAME_MATCH: match },
    timeout: 120_000,
  });
  assert.equal(r.signal, 'SIGKILL', `killed at the rename of ${match}: ${r.status} ${r.stderr}`);
}

const ls = (dir: string) => readdirSync(dir).sort();

test('writeFilesAtomic killed between its renames: the journal is left, and the next write or check of the folder completes the new pair', (t) => {
  const dir = scratch(t);
  const out = join(dir, 'out');
  const [a, b] = [join(out, 'model.bin'), join(out, 'model.json')];
  writeFilesAtomic([
    [a, 'old weights'],
    [b, 'old config'],
  ]);
  const writeNew = `require(${JSON.stringify(SAFE_WRITE)}).writeFilesAtomic([[${JSON.stringify(a)}, 'new weights'], [${JSON.stringify(b)}, 'new config']])`;
  killedAtRename(dir, 'model\\.bin$', ['-e', writeNew]);
  assert.equal(readFileSync(a, 'utf8'), 'new weights');
  assert.equal(readFileSync(b, 'utf8'), 'old config', 'killed between the renames: the config is still the old one');
  assert.ok(ls(out).includes('model.bin.commit'), 'the journal says the set is being replaced');

  // a rerun's check of its outputs completes the pair (forward: the new config), then refuses as for any existing output
  const notes: string[] = [];
  const check = () => checkOutputs([a, b], { overwrite: false });
  assert.throws(check, (e: unknown) => e instanceof OptionError && /model\.bin exists/.test(e.message));
  assert.equal(readFileSync(b, 'utf8'), 'new config');
  assert.deepEqual(ls(out), ['model.bin', 'model.json'], 'no journal, no temporary file left');
  assert.deepEqual(
    finishInterruptedCommits(out, (m) => notes.push(m)),
    [],
    'nothing left to complete',
  );

  // the same kill, completed by the next write of one of the files alone: its temporary file is not taken for a dead one
  killedAtRename(dir, 'model\\.bin$', ['-e', writeNew.replace(/new /g, 'newer ')]);
  writeFileAtomic(join(out, 'other.txt'), 'x');
  assert.equal(readFileSync(a, 'utf8'), 'newer weights');
  assert.equal(readFileSync(b, 'utf8'), 'newer config');
  assert.deepEqual(ls(out), ['model.bin', 'model.json', 'other.txt']);
});

test('a journal of a live process (it is renaming now), of no parsable content or renaming what is not a temporary file is left alone; one of a dead process is completed', (t) => {
  const dir = scratch(t);
  const journal = commitJournalPath(join(dir, 'x.bin'));
  const host = require('node:os').hostname();
  writeFileSync(join(dir, 'x.bin.tmp-1-0'), 'new');
  writeFileSync(journal, JSON.stringify({ format: 'semaim.commit/1', pid: 1, host, renames: [['x.bin.tmp-1-0', 'x.bin']] }));
  writeFileSync(join(dir, 'notes.commit'), 'a file of the user’s');
  assert.deepEqual(finishInterruptedCommits(dir), [], 'pid 1 is alive');
  assert.deepEqual(ls(dir), ['killer.js', 'notes.commit', 'x.bin.commit', 'x.bin.tmp-1-0']);
  const dead = 2 ** 22 + 1; // above Linux's pid_max: no such process
  renameSync(join(dir, 'x.bin.tmp-1-0'), join(dir, `x.bin.tmp-${dead}-0`));
  writeFileSync(journal, JSON.stringify({ format: 'semaim.commit/1', pid: dead, host, renames: [[`x.bin.tmp-${dead}-0`, 'x.bin']] }));
  const notes: string[] = [];
  assert.deepEqual(
    finishInterruptedCommits(dir, (m) => notes.push(m)),
    [join(dir, 'x.bin')],
  );
  assert.match(notes[0], /completed the write of .*x\.bin that process \d+ was killed in \(it had renamed 0 of 1 files; /);
  assert.deepEqual(ls(dir), ['killer.js', 'notes.commit', 'x.bin']);
  assert.equal(readFileSync(join(dir, 'x.bin'), 'utf8'), 'new');
  // a journal that would rename anything but a temporary file of its target (planted, or not ours) renames nothing
  writeFileSync(join(dir, 'precious.txt'), 'keep');
  writeFileSync(journal, JSON.stringify({ format: 'semaim.commit/1', pid: dead, host, renames: [['precious.txt', 'x.bin']] }));
  assert.deepEqual(finishInterruptedCommits(dir), []);
  assert.equal(readFileSync(join(dir, 'precious.txt'), 'utf8'), 'keep');
  assert.equal(readFileSync(join(dir, 'x.bin'), 'utf8'), 'new');
  // a journal of another host's process (a shared folder) is left to it: its pid says nothing here
  writeFileSync(join(dir, `x.bin.tmp-${dead}-0`), 'theirs');
  writeFileSync(journal, JSON.stringify({ format: 'semaim.commit/1', pid: dead, host: `not-${host}`, renames: [[`x.bin.tmp-${dead}-0`, 'x.bin']] }));
  assert.deepEqual(finishInterruptedCommits(dir), []);
  assert.equal(readFileSync(join(dir, 'x.bin'), 'utf8'), 'new');
  assert.deepEqual(ls(dir), ['killer.js', 'notes.commit', 'precious.txt', 'x.bin', 'x.bin.commit', `x.bin.tmp-${dead}-0`]);
  // one naming this process is not being renamed now (a commit runs to its end synchronously): a failed commit's, completed
  rmSync(join(dir, `x.bin.tmp-${dead}-0`));
  writeFileSync(join(dir, `x.bin.tmp-${process.pid}-0`), 'mine');
  writeFileSync(journal, JSON.stringify({ format: 'semaim.commit/1', pid: process.pid, host, renames: [[`x.bin.tmp-${process.pid}-0`, 'x.bin']] }));
  assert.deepEqual(
    finishInterruptedCommits(dir, () => {}),
    [join(dir, 'x.bin')],
  );
  assert.equal(readFileSync(join(dir, 'x.bin'), 'utf8'), 'mine');
});

test('export and embed killed between renaming their pair: reading the export and rerunning embed find the new pair whole', (t) => {
  const dir = scratch(t);
  const run = join(dir, 'run');
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(cli('pretrain', ...TINY.split(' '), '--out-dir', run).status, 0);

  // export: killed after the weights were renamed, before the config; the next reader (embed from it) completes the pair
  const enc = join(dir, 'ex', 'enc');
  killedAtRename(dir, 'enc\\.safetensors$', [CLI, 'export', '--checkpoint', run, '--out', enc]);
  assert.ok(ls(join(dir, 'ex')).includes('enc.safetensors.commit'));
  const feats = join(dir, 'em', 'f.safetensors');
  const embed = (...more: string[]) =>
    cli(
      'embed',
      '--checkpoint',
      `${enc}.safetensors`,
      '--dataset',
      'synthetic',
      '--limit',
      '4',
      '--num-workers',
      '0',
      '--threads',
      '1',
      '--out',
      feats,
      ...more,
    );
  const first = embed();
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stderr, /completed the write of .*enc\.safetensors, .*enc\.json that process \d+ was killed in/);
  // (the killed export's lock stays until the next export to enc takes it over)
  assert.deepEqual(ls(join(dir, 'ex')), ['enc.json', 'enc.safetensors', 'enc.safetensors.lock']);
  assert.equal(JSON.parse(readFileSync(`${enc}.json`, 'utf8')).embedDim, 32);

  // embed over its earlier 4 rows with 8, killed after the rows were renamed, before their list: the rerun completes it
  killedAtRename(dir, 'f\\.safetensors$', [
    CLI,
    'embed',
    '--checkpoint',
    `${enc}.safetensors`,
    '--dataset',
    'synthetic',
    '--limit',
    '8',
    '--num-workers',
    '0',
    '--threads',
    '1',
    '--out',
    feats,
    '--overwrite',
  ]);
  const rerun = embed();
  assert.equal(rerun.status, 2, 'the rerun refuses to replace the completed outputs without --overwrite');
  assert.match(rerun.stderr, /completed the write of .*f\.safetensors, .*f\.json/);
  assert.equal(JSON.parse(readFileSync(join(dir, 'em', 'f.json'), 'utf8')).count, 8, 'the list of the 8 rows, not the earlier 4');
  assert.deepEqual(ls(join(dir, 'em')), ['f.json', 'f.safetensors', 'f.safetensors.lock']);
});

test('two processes writing one output: the second refuses naming the first (embed, export); a lock left by a killed process is taken over', async (t) => {
  const dir = scratch(t);
  const run = join(dir, 'run');
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(cli('pretrain', ...TINY.split(' '), '--out-dir', run).status, 0);
  const feats = join(dir, 'em', 'f.safetensors');
  const enc = join(dir, 'ex', 'enc');
  // another process holds both outputs, as a writer does from its start to its last rename
  const OUTPUTS = join(__dirname, '..', '..', 'src', 'io', 'outputs.js');
  const holder = spawn(
    process.execPath,
    [
      '-e',
      `const { claimOutputs } = require(${JSON.stringify(OUTPUTS)});
       claimOutputs([${JSON.stringify(feats)}, ${JSON.stringify(feats.replace(/safetensors$/, 'json'))}]);
       claimOutputs([${JSON.stringify(`${enc}.safetensors`)}, ${JSON.stringify(`${enc}.json`)}]);
       process.stdout.write('held\\n'); setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => holder.kill('SIGKILL'));
  await new Promise<void>((done) => holder.stdout!.once('data', () => done()));
  const embed = () => cli('embed', '--checkpoint', run, '--dataset', 'synthetic', '--limit', '4', '--num-workers', '0', '--threads', '1', '--out', feats);
  const busy = new RegExp(
    `is being written by another semaim process \\(process ${holder.pid} on this machine, since .*\\): wait for it, or choose another output; if that process is gone, delete .*\\.lock`,
  );
  const refused = embed();
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, busy);
  const exported = cli('export', '--checkpoint', run, '--out', enc);
  assert.equal(exported.status, 2, exported.stderr);
  assert.match(exported.stderr, busy);
  assert.deepEqual(ls(join(dir, 'em')), ['f.safetensors.lock'], 'the refused embed wrote nothing');

  // killed (no exit handler runs): its locks stay, and are taken over by the next writer
  holder.kill('SIGKILL');
  await new Promise((done) => holder.once('exit', done));
  const after = embed();
  assert.equal(after.status, 0, after.stderr);
  assert.equal(cli('export', '--checkpoint', run, '--out', enc).status, 0);
  assert.deepEqual(ls(join(dir, 'em')), ['f.json', 'f.safetensors'], 'the lock goes with the writer');
  assert.deepEqual(ls(join(dir, 'ex')), ['enc.json', 'enc.safetensors']);
});

/** An encoder file of width `embedDim` (weights + config JSON, as an export writes them). */
function encoderFile(dir: string, name: string, embedDim: number): string {
  return writeEncoder(dir, { imgSize: 16, patchSize: 8, inChans: 3, embedDim, depth: 1, numHeads: 2, mlpRatio: 2 }, 1, name);
}

test('export --format web killed between its renames: the model, the page and ort/ are one commit, and the rerun puts the whole new set in place', (t) => {
  const dir = scratch(t);
  const [a, b] = [encoderFile(dir, 'a', 16), encoderFile(dir, 'b', 32)];
  const web = join(dir, 'web');
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  const first = cli('export', '--checkpoint', a, '--format', 'web', '--out', web);
  assert.equal(first.status, 0, first.stderr);
  // the page and runtime files of an earlier export (another semaim or onnxruntime-web version)
  for (const f of ['index.html', 'app.js', join('ort', 'README.txt')]) writeFileSync(join(web, f), 'of the earlier export');

  // killed right after its first rename (model.onnx): every other file of the new export is still to come
  killedAtRename(dir, 'web/model\\.onnx$', [CLI, 'export', '--checkpoint', b, '--format', 'web', '--out', web, '--overwrite']);
  const journal = JSON.parse(readFileSync(join(web, 'model.onnx.commit'), 'utf8')) as { renames: [string, string][] };
  assert.deepEqual(
    journal.renames.map(([, final]) => final).sort(),
    [
      'app.js',
      'index.html',
      'maps.js',
      'model.json',
      'model.onnx',
      'orientation.js',
      'ort/README.txt',
      'ort/ort-wasm-simd-threaded.mjs',
      'ort/ort-wasm-simd-threaded.wasm',
      'ort/ort.wasm.min.mjs',
      'preprocess.js',
      'style.css',
    ],
    'one journal lists every file of the export',
  );

  // the rerun (without --overwrite) completes the killed export first, then refuses as for any existing output
  const rerun = cli('export', '--checkpoint', b, '--format', 'web', '--out', web);
  assert.equal(rerun.status, 2, rerun.stderr);
  assert.match(rerun.stderr, /completed the write of .*model\.onnx, .*index\.html, .*ort\/README\.txt that process \d+ was killed in/);
  assert.equal(JSON.parse(readFileSync(join(web, 'model.json'), 'utf8')).encoder.embedDim, 32, 'the new model');
  const asset = (f: string) => readFileSync(join(__dirname, '..', '..', '..', 'src', 'export', 'web', f), 'utf8');
  assert.equal(readFileSync(join(web, 'index.html'), 'utf8'), asset('index.html'), 'the new page, not the earlier export’s');
  assert.equal(readFileSync(join(web, 'app.js'), 'utf8'), asset('app.js'));
  assert.match(readFileSync(join(web, 'ort', 'README.txt'), 'utf8'), /^onnxruntime-web [\d.]+ \(WebAssembly build\)/);
  assert.deepEqual(ls(web), [
    'app.js',
    'index.html',
    'maps.js',
    'model.json',
    'model.onnx',
    'model.onnx.lock',
    'orientation.js',
    'ort',
    'preprocess.js',
    'style.css',
  ]);
  assert.deepEqual(
    ls(join(web, 'ort')),
    ['README.txt', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm', 'ort.wasm.min.mjs'],
    'no temporary file left',
  );
});

test('visualize killed between its renames: the list, the grid and the rows are one commit, completed by the next writer or check of the folder', async (t) => {
  const dir = scratch(t);
  const run = join(dir, 'run');
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(cli('pretrain', ...TINY.split(' '), '--out-dir', run).status, 0);
  mkdirSync(join(dir, 'img'));
  for (const [i, v] of [40, 200].entries()) {
    const rgb = new Uint8Array(24 * 24 * 3).fill(v);
    writeFileSync(join(dir, 'img', `i${i}.png`), await encodePng({ width: 24, height: 24, data: rgb }));
  }
  const vz = join(dir, 'vz');
  const visualize = (orders: string) => [
    CLI,
    'visualize',
    '--checkpoint',
    run,
    '--images',
    join(dir, 'img'),
    '--out',
    vz,
    '--orders',
    orders,
    '--cell-size',
    '8',
  ];
  const first = spawnSync(process.execPath, visualize('raster,semantic'), { encoding: 'utf8', timeout: 120_000 });
  assert.equal(first.status, 0, first.stderr);

  // a visualisation with one column more, killed right after renaming its grid: some of its files are still to come
  killedAtRename(dir, 'vz/grid\\.png$', visualize('raster,snake,semantic'));
  assert.ok(ls(vz).includes('visualize.json.commit'), 'the journal says the set is being replaced');
  const notes: string[] = [];
  finishInterruptedCommits(vz, (m) => notes.push(m));
  assert.match(notes.join('\n'), /completed the write of .*visualize\.json, .*grid\.png, .*row-000-i0\.png, .*row-001-i1\.png that process \d+ was killed in/);
  const list = JSON.parse(readFileSync(join(vz, 'visualize.json'), 'utf8')) as { columns: string[]; layout: { width: number } };
  assert.ok(list.columns.includes('order snake'), `the list of the new grid: ${list.columns.join(' | ')}`);
  const width = (png: string) => readFileSync(png).readUInt32BE(16); // IHDR
  assert.equal(width(join(vz, 'grid.png')), list.layout.width, 'the grid the list describes');
  assert.equal(width(join(vz, 'row-000-i0.png')), list.layout.width, 'a row of the same columns');
  // (the killed process's claim of the folder stays, as an export's: the next visualisation takes it over)
  assert.deepEqual(ls(vz), ['grid.png', 'row-000-i0.png', 'row-001-i1.png', 'visualize.json', 'visualize.json.lock']);
});

test('linprobe killed between renaming its probe and linprobe.json: one commit, completed by the next writer or check of the folder; the result describes its probe', (t) => {
  const dir = scratch(t);
  const [a, b] = [encoderFile(dir, 'a', 16), encoderFile(dir, 'b', 32)];
  const lp = join(dir, 'lp');
  const linprobe = (enc: string) => [
    CLI,
    'linprobe',
    '--checkpoint',
    enc,
    '--dataset',
    'synthetic',
    '--train-limit',
    '32',
    '--test-limit',
    '16',
    '--epochs',
    '1',
    '--batch-size',
    '16',
    '--num-workers',
    '0',
    '--threads',
    '1',
    '--out-dir',
    lp,
  ];
  const first = spawnSync(process.execPath, linprobe(a), { encoding: 'utf8', timeout: 120_000 });
  assert.equal(first.status, 0, first.stderr);
  // from the other encoder, killed right after the first of its two renames (whichever it makes first)
  killedAtRename(dir, 'lp/(probe\\.safetensors|linprobe\\.json)$', linprobe(b));
  finishInterruptedCommits(lp, () => {});
  const result = JSON.parse(readFileSync(join(lp, 'linprobe.json'), 'utf8')) as { checkpoint: { sha256: string } };
  const probe = io.readSafetensorsHeader(join(lp, 'probe.safetensors')).metadata;
  assert.equal(probe.encoderSha256, result.checkpoint.sha256, 'linprobe.json describes the probe beside it');
  assert.equal(result.checkpoint.sha256, createHash('sha256').update(readFileSync(b)).digest('hex'), 'both of the second run');
  assert.deepEqual(ls(lp), ['linprobe.json', 'probe.safetensors']);
});

test('demo killed between renaming its initial encoder and the config beside it: one commit, completed by the next writer or check of the folder', (t) => {
  const dir = scratch(t);
  const out = join(dir, 'demo');
  const demo = [CLI, 'demo', '--out-dir', out, '--epochs', '1', '--synthetic-size', '64', '--test-size', '16', '--knn-train-size', '64', '--threads', '1'];
  killedAtRename(dir, 'demo/init-encoder\\.safetensors$', demo);
  finishInterruptedCommits(out, () => {});
  const header = io.readSafetensorsHeader(join(out, 'init-encoder.safetensors')).metadata;
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'init-encoder.json'), 'utf8')), JSON.parse(header.config), 'the config of the weights beside it');
  assert.deepEqual(
    ls(out).filter((f) => f.startsWith('init-encoder')),
    ['init-encoder.json', 'init-encoder.safetensors'],
  );
});

/** A journal of a dead process of this host renaming `renames` ([temporary, final], relative to its folder). */
function plantJournal(path: string, renames: unknown[], pid = 2 ** 22 + 1): void {
  writeFileSync(path, JSON.stringify({ format: 'semaim.commit/1', pid, host: require('node:os').hostname(), renames }));
}

test('a planted journal renames nothing outside its folder, through a linked folder, or of another process; its rename that fails names it', (t) => {
  const dir = scratch(t);
  const [out, victim] = [join(dir, 'out'), join(dir, 'victim')];
  mkdirSync(out);
  mkdirSync(victim);
  const dead = 2 ** 22 + 1;
  writeFileSync(join(victim, 'x'), 'victim');
  writeFileSync(join(victim, 'x.partial'), 'planted');
  writeFileSync(join(victim, `x.tmp-${dead}-0`), 'planted');
  symlinkSync(victim, join(out, 'link'));
  writeFileSync(join(out, 'b'), 'old');
  writeFileSync(join(out, 'b.tmp-1-0'), 'half of what a live process writes');
  writeFileSync(join(out, '.partial'), 'planted');
  writeFileSync(join(out, `c.tmp-${dead}-0`), 'new');
  plantJournal(join(out, 'up.commit'), [['../victim/x.partial', '../victim/x']]);
  plantJournal(join(out, 'abs.commit'), [[join(victim, 'x.partial'), join(victim, 'x')]]);
  plantJournal(join(out, 'link.commit'), [[`link/x.tmp-${dead}-0`, 'link/x']]);
  plantJournal(join(out, 'live.commit'), [['b.tmp-1-0', 'b']]); // pid 1's temporary file, under a dead pid's journal
  plantJournal(join(out, 'self.commit'), [['.partial', '']]); // onto the folder itself
  plantJournal(join(out, 'nul.commit'), [[`c\0.tmp-${dead}-0`, 'c\0']]);
  symlinkSync(join(victim, 'x'), join(out, `g.tmp-${dead}-0`)); // a link at the writer's temporary name: not its file
  plantJournal(join(out, 'g.commit'), [[`g.tmp-${dead}-0`, 'g']]);
  assert.deepEqual(finishInterruptedCommits(out), []);
  assert.equal(readFileSync(join(victim, 'x'), 'utf8'), 'victim');
  assert.deepEqual(ls(victim), ['x', 'x.partial', `x.tmp-${dead}-0`]);
  assert.equal(readFileSync(join(out, 'b'), 'utf8'), 'old');
  assert.ok(!ls(out).includes('g'), 'a link at a temporary name is not put in place');
  writeFileAtomic(join(out, 'unrelated.txt'), 'x'); // the folder is still written to

  // the writer's own temporary file in a real folder below the journal's is completed
  mkdirSync(join(out, 'sub'));
  writeFileSync(join(out, 'sub', `d.tmp-${dead}-0`), 'new d');
  plantJournal(join(out, 'c.commit'), [
    [`c.tmp-${dead}-0`, 'c'],
    [`sub/d.tmp-${dead}-0`, 'sub/d'],
  ]);
  assert.deepEqual(
    finishInterruptedCommits(out, () => {}),
    [join(out, 'c'), join(out, 'sub', 'd')],
  );
  assert.equal(readFileSync(join(out, 'sub', 'd'), 'utf8'), 'new d');

  // a rename that cannot be made (a folder at the final name) is refused naming the journal to delete
  mkdirSync(join(out, 'e'));
  writeFileSync(join(out, 'e', 'f'), '');
  writeFileSync(join(out, `e.tmp-${dead}-0`), 'new e');
  plantJournal(join(out, 'e.commit'), [[`e.tmp-${dead}-0`, 'e']]);
  assert.throws(
    () => writeFileAtomic(join(out, 'other.txt'), 'x'),
    (e: Error) => /cannot write .*e: .*completing the interrupted write that .*e\.commit lists: .*or delete .*e\.commit/.test(e.message),
  );
});

test('a FIFO, a link to /dev/zero or a huge file at a journal name is not read as a journal: the next write neither hangs nor fills the memory', (t) => {
  const dir = scratch(t);
  const out = join(dir, 'out');
  mkdirSync(out);
  assert.equal(spawnSync('mkfifo', [join(out, 'fifo.commit')]).status, 0);
  symlinkSync('/dev/zero', join(out, 'zero.commit'));
  writeFileSync(join(out, 'big.commit'), Buffer.alloc((64 << 20) + 1, 0x20)); // above the journal size limit
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(SAFE_WRITE)}).writeFileAtomic(${JSON.stringify(join(out, 'x.json'))}, '{}')`], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.signal, null, 'the write hung on a journal name');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(ls(out), ['big.commit', 'fifo.commit', 'x.json', 'zero.commit']);
});

test('commitFiles refuses a set whose files do not lie in the folder of the first or below it (the next writer would not complete it)', (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'sub'));
  assert.throws(
    () =>
      writeFilesAtomic([
        [join(dir, 'sub', 'a'), 'a'],
        [join(dir, 'b'), 'b'],
      ]),
    /do not all lie in the folder of the first or below it/,
  );
  assert.deepEqual(ls(dir), ['killer.js', 'sub']);
  assert.deepEqual(ls(join(dir, 'sub')), [], 'the staged files are removed');
  writeFilesAtomic([
    [join(dir, 'b'), 'b'],
    [join(dir, 'sub', 'a'), 'a'],
  ]);
  assert.deepEqual(ls(dir), ['b', 'killer.js', 'sub']);
});

test("commitFiles: a folder at a later file's name, or a first rename that fails, changes none of the set and leaves no journal nor temporary file for the next writer to complete", (t) => {
  const dir = scratch(t);
  const out = join(dir, 'out');
  mkdirSync(out);
  const [a, b] = [join(out, 'model.bin'), join(out, 'model.json')];
  writeFileSync(a, 'old weights');
  mkdirSync(join(b, 'inside'), { recursive: true });
  assert.throws(
    () => commitFiles([stageFile(a, 'new weights'), stageFile(b, 'new config')]),
    (e: NodeJS.ErrnoException) => e.code === 'EISDIR' && e.message.startsWith(`cannot write ${b}: `),
  );
  assert.equal(readFileSync(a, 'utf8'), 'old weights', 'the folder was found before the first rename');
  assert.deepEqual(ls(out), ['model.bin', 'model.json']);
  rmSync(b, { recursive: true });
  writeFileSync(b, 'old config');
  // the first rename fails (its temporary file went): the earlier set stays, and nothing is left to complete
  const staged = [stageFile(a, 'new weights'), stageFile(b, 'new config')];
  rmSync(staged[0].tmp);
  assert.throws(
    () => commitFiles(staged),
    (e: NodeJS.ErrnoException) => e.code === 'ENOENT',
  );
  assert.deepEqual(ls(out), ['model.bin', 'model.json'], 'no journal, no temporary file');
  assert.deepEqual(finishInterruptedCommits(out), []);
  assert.equal(readFileSync(b, 'utf8'), 'old config', 'the config of the old weights');
});

test('a journal naming no process (pid 0), reached through a symbolic link, or above the journal size limit is not read: none of its renames is made', (t) => {
  const dir = scratch(t);
  const [out, elsewhere] = [join(dir, 'out'), join(dir, 'elsewhere')];
  mkdirSync(out);
  mkdirSync(elsewhere);
  const dead = 2 ** 22 + 1;
  writeFileSync(join(out, 'a'), 'old a');
  writeFileSync(join(out, 'a.tmp-0-0'), 'planted a');
  plantJournal(join(out, 'a.commit'), [['a.tmp-0-0', 'a']], 0);
  writeFileSync(join(out, 'b'), 'old b');
  writeFileSync(join(out, `b.tmp-${dead}-0`), 'planted b');
  plantJournal(join(elsewhere, 'b.commit'), [[`b.tmp-${dead}-0`, 'b']]);
  symlinkSync(join(elsewhere, 'b.commit'), join(out, 'b.commit'));
  writeFileSync(join(out, 'c'), 'old c');
  writeFileSync(join(out, `c.tmp-${dead}-0`), 'planted c');
  plantJournal(join(out, 'c.commit'), [[`c.tmp-${dead}-0`, 'c']]);
  writeFileSync(join(out, 'c.commit'), ' '.repeat((64 << 20) - 10), { flag: 'a' }); // valid JSON, 64 MiB + a few bytes
  assert.deepEqual(
    finishInterruptedCommits(out, () => {}),
    [],
  );
  for (const f of ['a', 'b', 'c']) assert.equal(readFileSync(join(out, f), 'utf8'), `old ${f}`);
});

test('a journal naming a dead process is left alone while a live process holds the lock of that set: its .partial file is being written', (t) => {
  const dir = scratch(t);
  const host = require('node:os').hostname();
  writeFileSync(join(dir, 'f.safetensors.partial'), 'half of the rows');
  plantJournal(join(dir, 'f.safetensors.commit'), [['f.safetensors.partial', 'f.safetensors']]);
  writeFileSync(join(dir, 'f.safetensors.lock'), JSON.stringify({ pid: 1, host, since: '2026-12-03T00:00:00.000Z' })); // pid 1 is alive
  assert.deepEqual(finishInterruptedCommits(dir), []);
  assert.deepEqual(ls(dir), ['f.safetensors.commit', 'f.safetensors.lock', 'f.safetensors.partial', 'killer.js']);
  // the lock's holder gone: the writer was killed after its journal, and the journal is completed
  writeFileSync(join(dir, 'f.safetensors.lock'), JSON.stringify({ pid: 2 ** 22 + 1, host, since: '2026-12-03T00:00:00.000Z' }));
  assert.deepEqual(
    finishInterruptedCommits(dir, () => {}),
    [join(dir, 'f.safetensors')],
  );
});

test('a reader arriving between the renames of a live process’s commit waits for the set to be whole: never the first file new and the others old', (t) => {
  const dir = scratch(t);
  const [a, b] = [join(dir, 'linprobe.json'), join(dir, 'probe.safetensors')];
  writeFilesAtomic([
    [a, 'old result'],
    [b, 'old probe'],
  ]);
  // process 1 (alive) commits a new pair: its journal stands and its first rename is made
  writeFileSync(join(dir, 'linprobe.json.tmp-1-0'), 'new result');
  writeFileSync(join(dir, 'probe.safetensors.tmp-1-0'), 'new probe');
  const journal = commitJournalPath(a);
  plantJournal(
    journal,
    [
      ['linprobe.json.tmp-1-0', 'linprobe.json'],
      ['probe.safetensors.tmp-1-0', 'probe.safetensors'],
    ],
    1,
  );
  renameSync(join(dir, 'linprobe.json.tmp-1-0'), a);
  // it makes its second rename and removes its journal once the reader looks at the journal again
  const fs = require('node:fs') as { lstatSync: (...args: unknown[]) => unknown };
  const lstat = fs.lstatSync;
  let finished = false;
  fs.lstatSync = (path: unknown, ...rest: unknown[]) => {
    if (!finished && path === journal) {
      finished = true;
      renameSync(join(dir, 'probe.safetensors.tmp-1-0'), b);
      rmSync(journal);
    }
    return lstat(path, ...rest);
  };
  try {
    assert.deepEqual(finishInterruptedCommits(dir), [], 'the live process completes its own commit');
  } finally {
    fs.lstatSync = lstat;
  }
  assert.equal(readFileSync(a, 'utf8'), 'new result');
  assert.equal(readFileSync(b, 'utf8'), 'new probe', 'the reader reads the pair the result describes');
});

test('two processes committing one set take turns: a commit waits while a live process’s journal of that set stands, then replaces the set whole', async (t) => {
  const dir = scratch(t);
  const [a, b] = [join(dir, 'probe.safetensors'), join(dir, 'probe.json')];
  writeFilesAtomic([
    [a, 'old weights'],
    [b, 'old config'],
  ]);
  // process 1 (alive) is renaming its own pair into place now: its journal stands for the set
  writeFileSync(join(dir, 'probe.safetensors.tmp-1-0'), 'rival weights');
  plantJournal(commitJournalPath(a), [['probe.safetensors.tmp-1-0', 'probe.safetensors']], 1);
  const writer = spawn(
    process.execPath,
    ['-e', `require(${JSON.stringify(SAFE_WRITE)}).writeFilesAtomic([[${JSON.stringify(a)}, 'new weights'], [${JSON.stringify(b)}, 'new config']])`],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  writer.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((done) => writer.on('exit', (code) => done(code)));
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(writer.exitCode, null, 'still waiting for the other commit');
  assert.equal(readFileSync(a, 'utf8'), 'old weights', 'nothing renamed while another process commits the set');
  assert.equal(readFileSync(b, 'utf8'), 'old config');
  // the rival finishes: its rename made, its journal removed
  renameSync(join(dir, 'probe.safetensors.tmp-1-0'), a);
  rmSync(commitJournalPath(a));
  assert.equal(await exited, 0, stderr);
  assert.equal(readFileSync(a, 'utf8'), 'new weights');
  assert.equal(readFileSync(b, 'utf8'), 'new config');
  assert.deepEqual(ls(dir), ['killer.js', 'probe.json', 'probe.safetensors'], 'no journal, no temporary file left');
});

test('a journal whose writer’s id a live process got since (a restarted container) is completed at once by a reader and a writer, not waited for; each commit records which process wrote it', (t) => {
  const dir = scratch(t);
  const itself = processIdentity(1);
  if (itself === null) return t.skip('this machine has no /proc to tell processes apart');
  const host = require('node:os').hostname();
  const [a, b] = [join(dir, 'x.bin'), join(dir, 'x.json')];
  const plant = (identity: string) => {
    writeFileSync(join(dir, 'x.bin.tmp-1-0'), 'killed writer’s a');
    writeFileSync(commitJournalPath(a), JSON.stringify({ format: 'semaim.commit/1', pid: 1, host, process: identity, renames: [['x.bin.tmp-1-0', 'x.bin']] }));
  };
  plant(`${itself.split(':')[0]}:1`); // pid 1 is alive, but it started after the writer
  const start = Date.now();
  assert.deepEqual(
    finishInterruptedCommits(dir, () => {}),
    [a],
    'the reader completes it',
  );
  assert.ok(Date.now() - start < 1000, 'without waiting for a writer that is gone');
  assert.equal(readFileSync(a, 'utf8'), 'killed writer’s a');
  plant(`${itself.split(':')[0]}:1`);
  commitFiles([stageFile(a, 'new a'), stageFile(b, 'new b')], { waitMs: 200 }); // threw after waiting, as for a live writer
  assert.deepEqual([readFileSync(a, 'utf8'), readFileSync(b, 'utf8')], ['new a', 'new b']);
  plant(itself); // the writer is the live process with the id: left to it
  assert.deepEqual(
    finishInterruptedCommits(dir, () => {}),
    [],
  );
  assert.equal(readFileSync(a, 'utf8'), 'new a');
  rmSync(commitJournalPath(a));
  rmSync(join(dir, 'x.bin.tmp-1-0'));
  // what a commit records: a writer killed between its renames leaves its journal
  const writeNew = `require(${JSON.stringify(SAFE_WRITE)}).writeFilesAtomic([[${JSON.stringify(a)}, 'a'], [${JSON.stringify(b)}, 'b']])`;
  killedAtRename(dir, 'x\\.bin$', ['-e', writeNew]);
  const recorded = JSON.parse(readFileSync(commitJournalPath(a), 'utf8')).process;
  assert.match(recorded, new RegExp(`^${itself.split(':')[0]}:\\d+$`), 'this boot and the writer’s start');
  assert.notEqual(recorded, itself);
  finishInterruptedCommits(dir, () => {});
  assert.deepEqual([readFileSync(a, 'utf8'), readFileSync(b, 'utf8')], ['a', 'b']);
});

test('a commit that waited its limit for another live process’s commit of the set fails naming that process and its journal, changing nothing', (t) => {
  const dir = scratch(t);
  const [a, b] = [join(dir, 'x.bin'), join(dir, 'x.json')];
  writeFileSync(a, 'old a');
  writeFileSync(b, 'old b');
  plantJournal(commitJournalPath(a), [], 1);
  const staged = [stageFile(a, 'new a'), stageFile(b, 'new b')];
  assert.throws(
    () => commitFiles(staged, { waitMs: 200 }),
    (e: Error) =>
      /cannot commit .*x\.bin and the files written with it: process 1 has held their commit journal .*x\.bin\.commit for 0 s: it is renaming them into place, or its commit stopped part-way/.test(
        e.message,
      ) && e.message.includes(`delete ${commitJournalPath(a)}`),
  );
  assert.equal(readFileSync(a, 'utf8'), 'old a');
  assert.equal(readFileSync(b, 'utf8'), 'old b');
  assert.deepEqual(ls(dir), ['killer.js', 'x.bin', 'x.bin.commit', 'x.json'], 'the staged files are removed, the other journal stays');
  // what is at the journal's name and is not a journal of ours does not block: it is replaced
  writeFileSync(commitJournalPath(a), 'a file of the user’s');
  commitFiles([stageFile(a, 'new a'), stageFile(b, 'new b')], { waitMs: 200 });
  assert.equal(readFileSync(b, 'utf8'), 'new b');
  assert.deepEqual(ls(dir), ['killer.js', 'x.bin', 'x.json']);
});

test('a commit waits its whole limit for another live process’s commit of the set, also when the wall clock is stepped forward meanwhile (NTP): it failed at once, saying it had waited', (t) => {
  const dir = scratch(t);
  const a = join(dir, 'x.bin');
  plantJournal(commitJournalPath(a), [], 1);
  const staged = [stageFile(a, 'new a'), stageFile(join(dir, 'x.json'), 'new b')];
  const realNow = Date.now;
  // 50 ms into the wait for the journal the wall clock reads an hour later (its first reading there starts the wait)
  let t0 = -1;
  Date.now = () => {
    if (t0 < 0 && new Error().stack?.includes('placeJournal')) t0 = performance.now();
    return realNow() + (t0 >= 0 && performance.now() - t0 > 50 ? 3_600_000 : 0);
  };
  try {
    assert.throws(() => commitFiles(staged, { waitMs: 500 }), /process 1 has held their commit journal/);
  } finally {
    Date.now = realNow;
  }
  // (by the monotonic clock: performance.now() while the wait starts, not a Date.now() reading there)
  const waited = t0 < 0 ? 500 : performance.now() - t0;
  assert.ok(waited >= 450, `gave up after ${waited} ms of 500`);
});

test('commitFiles flushes the folder of every temporary file before its journal names them: a power cut after the journal never loses a name it lists (files below the first one’s folder: export web’s ort/)', (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'ort'));
  const fs = require('node:fs') as typeof import('node:fs'); // the module object the writers call through
  const { fsyncSync, linkSync } = fs;
  const m = fs as unknown as Record<string, unknown>;
  const calls: string[] = [];
  m.fsyncSync = (fd: number) => (calls.push(`fsync ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`), fsyncSync(fd));
  m.linkSync = (from: string, to: string) => (calls.push(`link ${to}`), linkSync(from, to));
  try {
    commitFiles([stageFile(join(dir, 'model.onnx'), 'model'), stageFile(join(dir, 'ort', 'ort.wasm'), 'wasm')]);
  } finally {
    m.fsyncSync = fsyncSync;
    m.linkSync = linkSync;
  }
  const journalPlaced = calls.indexOf(`link ${commitJournalPath(join(dir, 'model.onnx'))}`);
  assert.ok(journalPlaced >= 0, calls.join('\n'));
  assert.ok(
    calls.slice(0, journalPlaced).includes(`fsync ${join(dir, 'ort')}`),
    `ort/ (the name of its temporary file) is flushed before the journal:\n${calls.join('\n')}`,
  );
  assert.equal(readFileSync(join(dir, 'ort', 'ort.wasm'), 'utf8'), 'wasm');
});

test('a journal left by a writer killed after this job checked the folder (guardOutputs) and before it took the set’s lock is completed when the lock is taken: the new rows never go in beside the dead writer’s list', (t) => {
  const dir = scratch(t);
  const { claimOutputs } = require('../../src/io/outputs') as typeof import('../../src/io/outputs');
  const { SafetensorsRowWriter } = require('../../src/io/safetensors-rows') as typeof import('../../src/io/safetensors-rows');
  const [rows, list] = [join(dir, 'f.safetensors'), join(dir, 'f.json')];
  writeFileSync(rows, 'old rows');
  writeFileSync(list, 'old list');
  // the killed writer: its rows and list complete under their temporary names, its journal, its lock (its process gone)
  const dead = 2 ** 22 + 1;
  writeFileSync(`${rows}.partial`, 'dead rows');
  writeFileSync(`${list}.tmp-${dead}-0`, 'dead list');
  plantJournal(commitJournalPath(rows), [
    ['f.safetensors.partial', 'f.safetensors'],
    [`f.json.tmp-${dead}-0`, 'f.json'],
  ]);
  writeFileSync(`${rows}.lock`, JSON.stringify({ pid: dead, host: require('node:os').hostname(), since: '2026-12-03T00:00:00.000Z' }));
  const release = claimOutputs([rows, list]);
  t.after(release);
  // what a killed writer's set is once this job holds the lock: the dead writer's whole, or the old one whole
  assert.ok(
    [
      ['dead rows', 'dead list'],
      ['old rows', 'old list'],
    ].some((pair) => pair[0] === readFileSync(rows, 'utf8') && pair[1] === readFileSync(list, 'utf8')),
    'a set whole when the lock is taken',
  );
  // embed then writes its rows (.partial, the name the journal lists) and stages its list
  const writer = new SafetensorsRowWriter(rows, { name: 'features', dtype: 'float32', rowShape: [1] });
  writer.append(new Uint8Array(4));
  const listed = stageFile(list, 'new list');
  const staged = writer.stage();
  try {
    commitFiles([staged, listed]);
  } catch {
    /* (the new rows' rename found their partial file gone) */
  }
  const [nowRows, nowList] = [readFileSync(rows), readFileSync(list, 'utf8')];
  assert.equal(
    nowList === 'new list',
    nowRows.includes(Buffer.from('"features"')),
    `the rows and the list are of one writer (rows ${nowRows.byteLength} bytes, list '${nowList}')`,
  );
});
