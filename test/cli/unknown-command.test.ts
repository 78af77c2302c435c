// An unknown command is refused with exit code 2 and the command it most likely means, including the
// names every JS object has ('constructor' reached Object.prototype and crashed with a TypeError).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAIN = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const semaim = (name: string) => spawnSync(process.execPath, [MAIN, name], { encoding: 'utf8' });

test('an unknown command exits 2 naming it, with the command a typo away', () => {
  for (const [name, meant] of [
    ['constructor', null],
    ['toString', null],
    ['__proto__', null],
    ['pretrian', 'pretrain'],
    ['Knn', 'knn'],
    ['frobnicate', null],
    ['', null], // an empty name ('semaim ""') printed the command list, as no command does
  ] as const) {
    const r = semaim(name);
    assert.equal(r.status, 2, `${name}: ${r.stderr}`);
    const hint = meant ? `; did you mean '${meant}'\\?` : '';
    assert.match(r.stderr, new RegExp(`^semaim: unknown command '${name}'${hint} \\(known: demo, pretrain, `), name);
  }
});

test('no command is a usage error (exit 2, the commands on stderr); --help, -h and help print them on stdout and exit 0', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  const none = run();
  assert.equal(none.status, 2, none.stderr);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^semaim — .*\nUsage: semaim <command> .*\n {2}pretrain {2,}/s);
  for (const arg of ['--help', '-h', 'help']) {
    const r = run(arg);
    assert.equal(r.status, 0, `${arg}: ${r.stderr}`);
    assert.equal(r.stdout, none.stderr, arg);
    assert.equal(r.stderr, '', arg);
  }
});

test("-h and 'semaim help <command>' print the command's help ('knn -h' was a missing --checkpoint, 'report -h' a run folder)", () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  for (const args of [
    ['knn', '-h'],
    ['report', '-h'],
    ['pretrain', '--epochs', '3', '-h'],
    ['help', 'knn'],
  ]) {
    const r = run(...args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^semaim ${args[0] === 'help' ? args[1] : args[0]} `), args.join(' '));
    assert.match(r.stdout, /--config/, args.join(' '));
  }
  // after '--' it is a positional as any other word
  assert.match(run('report', '--', '-h').stderr, /-h/);
});

test("'semaim help' of an unknown command is refused as the command itself (it printed the list and exited 0); --version and -V print the version", () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  for (const [name, hint] of [
    ['knm', "; did you mean 'knn'\\?"],
    ['frobnicate', ''],
    ['', ''], // an empty name printed the command list, as no command does
  ]) {
    const r = run('help', name);
    assert.equal(r.status, 2, `help ${name}: ${r.stdout}`);
    assert.equal(r.stdout, '', name);
    assert.match(r.stderr, new RegExp(`^semaim: unknown command '${name}'${hint} \\(known: demo, `), name);
  }
  const { version } = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  for (const arg of ['--version', '-V']) {
    const r = run(arg);
    assert.equal(r.status, 0, `${arg}: ${r.stderr}`);
    assert.equal(r.stdout, `semaim ${version}\n`, arg);
  }
});

test('a command started in a folder that was deleted says so (exit 1), not "ENOENT … uv_cwd"', () => {
  const gone = mkdtempSync(join(tmpdir(), 'semaim-cwd-gone-'));
  const out = join(tmpdir(), `semaim-cwd-gone-out-${process.pid}`);
  const r = spawnSync(
    'sh',
    ['-c', 'cd "$1" && rmdir "$1" && exec "$2" "$3" knn --checkpoint /nonexistent-run --out-dir "$4"', 'sh', gone, process.execPath, MAIN, out],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 1, r.stderr);
  assert.equal(
    r.stderr,
    'semaim: the current folder no longer exists (it was deleted or moved after the shell entered it): cd to an existing folder and run again\n',
  );
  assert.equal(existsSync(out), false);
});

test("an option before the command is refused (exit 2) with the command line written command first ('--epochs' was an unknown command); nothing runs", () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  for (const [args, written] of [
    [['--epochs', '3', 'pretrain'], 'semaim pretrain --epochs 3'],
    // the last word naming a command is taken for it: a value may name one too
    [['--out-dir', 'knn', 'pretrain', '--epochs', '2'], 'semaim pretrain --out-dir knn --epochs 2'],
    [['-x', 'run.yaml'], 'semaim <command> -x run.yaml'],
  ] as const) {
    const r = run(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '', args.join(' '));
    assert.equal(r.stderr, `semaim: ${args[0]} comes before the command: write the command first, then its options (${written})\n`, args.join(' '));
  }
});

test("'semaim --help=false' and '--help false' are refused (exit 2; they printed the list and exited 0); '--help=true' and '--help true' are --help", () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  for (const args of [['--help=false'], ['--help', 'false']]) {
    const r = run(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}`);
    assert.equal(r.stdout, '', args.join(' '));
    assert.equal(r.stderr, 'semaim: option --help: false asks for nothing: give --help alone to see the options, or leave it out to run the command\n');
  }
  const r = run('--help', 'true');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^semaim — .*\nUsage: semaim <command> /s);
});

test('an output that takes nothing more (stdout on a full disk) stops the command as SIGTERM would, saying why, not with an EPIPE/ENOSPC stack trace', () => {
  const full = openSync('/dev/full', 'w');
  try {
    const r = spawnSync(process.execPath, [MAIN, '--help'], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
    assert.equal(r.signal, 'SIGTERM', `${r.status}: ${r.stderr}`);
    assert.match(r.stderr, /^semaim: cannot write to stdout \(ENOSPC: [^\n]*\): stopping\n$/);
  } finally {
    closeSync(full);
  }
});
