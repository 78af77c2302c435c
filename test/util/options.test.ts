// Option tables refuse what they do not declare, including names every JS object has
// ('constructor', '__proto__', 'toString'), and numbers a double cannot hold exactly, before any work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineOptions, parseArgv, readConfigFile, resolveOptions } from '../../src/util/options';
import { PRETRAIN_OPTIONS, modelConfigFrom, validatePretrain } from '../../src/train/pretrain-options';

const TABLE = defineOptions({
  seed: { type: 'int', default: 0, help: 'seed' },
  name: { type: 'string', default: 'x', help: 'name' },
  fast: { type: 'boolean', default: false, help: 'flag' },
});

test('names of Object.prototype members are unknown options, on the command line and in a config file', () => {
  for (const flag of ['--constructor', '--to-string', '--value-of', '--has-own-property', '--__proto__', '--is-prototype-of']) {
    assert.throws(() => parseArgv([flag, '5'], TABLE), /unknown option/, flag);
  }
  assert.throws(() => parseArgv(['--no-constructor'], TABLE), /unknown option/);
  const dir = mkdtempSync(join(tmpdir(), 'semaim-options-'));
  try {
    const file = (name: string, text: string) => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    const proto = readConfigFile(file('proto.json', '{"__proto__": {"seed": 3}}'));
    assert.throws(() => resolveOptions(TABLE, proto), /option '__proto__': unknown option/);
    assert.throws(() => resolveOptions(TABLE, readConfigFile(file('ctor.json', '{"constructor": "x"}'))), /option 'constructor': unknown option/);
    assert.throws(() => resolveOptions(TABLE, readConfigFile(file('tostr.yaml', 'toString: y\n'))), /option 'toString': unknown option/);
    assert.equal(({} as Record<string, unknown>).seed, undefined, 'nothing leaked into Object.prototype');
    assert.throws(
      () => readConfigFile(file('nested.json', '{"config": "other.json", "seed": 1}')),
      /option 'config': .*nested\.json: 'config' cannot be set in a config file/,
    );
    assert.throws(() => readConfigFile(file('help.json', '{"help": true}')), /option 'help': .*cannot be set in a config file/);
    assert.throws(() => resolveOptions(TABLE, readConfigFile(file('big.json', '{"seed": 1e400}'))), /option 'seed': expected a number, got Infinity/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('integers beyond 2^53 and oversized threads, image sizes and synthetic sets are refused before work', () => {
  assert.throws(() => resolveOptions(TABLE, { seed: '1e300' }), /option 'seed': 1e\+300 is beyond the integers a double holds exactly/);
  assert.equal(resolveOptions(TABLE, { seed: String(2 ** 53 - 1) }).seed, 2 ** 53 - 1);
  const base = { model: 'vit_tiny', dataset: 'synthetic' };
  for (const [extra, message] of [
    [{ threads: '2147483648' }, /option 'threads': must be <= 1024/],
    [{ imgSize: '100000' }, /option 'imgSize': must be <= 8192/],
    [{ syntheticSize: '10000000000' }, /option 'syntheticSize': must be <= 100000000/],
    [{ orderLambda: '1e308' }, /option 'orderLambda': .*must be in \[0, 1e6\], got 1e\+308/],
  ] as const) {
    assert.throws(
      () => {
        const o = resolveOptions(PRETRAIN_OPTIONS, base, extra);
        validatePretrain(o);
        modelConfigFrom(o); // what the command's validation runs next
      },
      message,
      JSON.stringify(extra),
    );
  }
});

test("a flag takes an optional explicit true/false ('--blur false' turned blur on and left 'false' behind)", () => {
  const parsed = (argv: string[]) => resolveOptions(TABLE, parseArgv(argv, TABLE).options).fast;
  assert.equal(parsed(['--fast']), true);
  assert.equal(parsed(['--fast', 'false']), false);
  assert.equal(parsed(['--fast', 'true']), true);
  assert.equal(parsed(['--no-fast']), false);
  assert.equal(parsed(['--fast=false']), false);
  assert.deepEqual(parseArgv(['--fast', 'file.png'], TABLE).positionals, ['file.png'], 'anything else is not its value');
});
