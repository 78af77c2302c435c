// An unknown command is refused with exit code 2 and the command it most likely means, including the
// names every JS object has ('constructor' reached Object.prototype and crashed with a TypeError).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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
  ] as const) {
    const r = semaim(name);
    assert.equal(r.status, 2, `${name}: ${r.stderr}`);
    const hint = meant ? `; did you mean '${meant}'\\?` : '';
    assert.match(r.stderr, new RegExp(`^semaim: unknown command '${name}'${hint} \\(known: demo, pretrain, `), name);
  }
});
