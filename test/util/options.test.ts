// Option tables refuse what they do not declare, including names every JS object has
// ('constructor', '__proto__', 'toString'), and numbers a double cannot hold exactly, before any work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  MAX_CONFIG_BYTES,
  OptionError,
  SEED_RANGE,
  checkSeedList,
  closest,
  defineOptions,
  formatHelp,
  jobFields,
  parseArgv,
  readConfigFile,
  resolveOptions,
} from '../../src/util/options';
import { PRETRAIN_OPTIONS, modelConfigFrom, validatePretrain } from '../../src/train/pretrain-options';
import { reText } from '../../src/util/regexp-text';

const TABLE = defineOptions({
  seed: { type: 'int', default: 0, help: 'seed' },
  name: { type: 'string', default: 'x', help: 'name' },
  fast: { type: 'boolean', default: false, help: 'flag' },
});

/** Runs `body` with `file(name, text)`, which writes a config file into a new temporary folder (removed afterwards) and returns its path. */
function withConfigFiles(body: (file: (name: string, text: string) => string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-options-'));
  try {
    body((name, text) => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('names of Object.prototype members are unknown options, on the command line and in a config file', () => {
  for (const flag of ['--constructor', '--to-string', '--value-of', '--has-own-property', '--__proto__', '--is-prototype-of']) {
    assert.throws(() => parseArgv([flag, '5'], TABLE), /unknown option/, flag);
  }
  assert.throws(() => parseArgv(['--no-constructor'], TABLE), /unknown option/);
  withConfigFiles((file) => {
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
    assert.throws(() => resolveOptions(TABLE, readConfigFile(file('big.json', '{"seed": 1e400}'))), /option 'seed': expected a number, got "1e400"/);
  });
});

test("a config file's value nested too deeply to print (a list 20,000 deep) is an option error naming the key (the command line adds the file), not a bare RangeError", () => {
  withConfigFiles((file) => {
    const deep = '['.repeat(20_000) + ']'.repeat(20_000);
    for (const [key, what] of [
      ['seed', 'a number'],
      ['name', 'a string'],
      ['fast', 'true or false'],
    ]) {
      const values = readConfigFile(file(`${key}.json`, `{"${key}": ${deep}}`));
      assert.throws(
        () => resolveOptions(TABLE, values),
        (e: unknown) => e instanceof OptionError && e.key === key && e.detail === `expected ${what}, got (a value nested too deeply to print)`,
        key,
      );
    }
  });
});

test('integers beyond 2^53 and oversized threads, image sizes and synthetic sets are refused before work', () => {
  assert.throws(() => resolveOptions(TABLE, { seed: '1e300' }), /option 'seed': 1e\+300 is beyond the integers a double holds exactly/);
  assert.equal(resolveOptions(TABLE, { seed: String(2 ** 53 - 1) }).seed, 2 ** 53 - 1);
  const base = { model: 'vit_tiny', dataset: 'synthetic' };
  for (const [extra, message] of [
    [{ threads: '2147483648' }, new RegExp(`option 'threads': must be <= ${availableParallelism()} \\(the cores of this machine\\), got 2147483648`)],
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

test("--no-flag takes an explicit true/false as --flag does, as --no-flag=value does ('--no-fast false' left 'false' behind)", () => {
  // --no-flag=false already meant on; the spaced form now agrees with it, as '--fast false' agrees with '--fast=false'
  const parse = (argv: string[]) => parseArgv(argv, TABLE);
  assert.deepEqual(parse(['--no-fast', 'false']).positionals, []);
  assert.equal(resolveOptions(TABLE, parse(['--no-fast', 'false']).options).fast, true);
  assert.equal(resolveOptions(TABLE, parse(['--no-fast', 'true']).options).fast, false);
  assert.deepEqual(parse(['--no-fast', 'file.png']).positionals, ['file.png'], 'anything else is not its value');
  assert.equal(resolveOptions(TABLE, parse(['--no-fast', 'file.png']).options).fast, false);
});

test('a config file must be a regular file of at most 1 MiB, checked before reading (/dev/zero aborted, a FIFO hung)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-options-'));
  try {
    assert.throws(() => readConfigFile('/dev/zero'), /option 'config': \/dev\/zero is not a regular file/);
    assert.throws(() => readConfigFile(dir), /is not a regular file/);
    const fifo = join(dir, 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    assert.throws(() => readConfigFile(fifo), /fifo\.json is not a regular file/);
    const big = join(dir, 'big.json');
    writeFileSync(big, `{"seed": 1${' '.repeat(MAX_CONFIG_BYTES)}}`);
    assert.throws(() => readConfigFile(big), /big\.json is 1048587 bytes; a config file holds at most 1048576/);
    // the limit itself is a config file; one byte more is not
    const pad = (n: number) => `{"seed": 1${' '.repeat(n - '{"seed": 1}'.length)}}`;
    writeFileSync(big, pad(MAX_CONFIG_BYTES));
    assert.deepEqual(readConfigFile(big), { seed: 1 });
    writeFileSync(big, pad(MAX_CONFIG_BYTES + 1));
    assert.throws(() => readConfigFile(big), /big\.json is 1048577 bytes; a config file holds at most 1048576/);
    assert.throws(() => readConfigFile(join(dir, 'missing.json')), /option 'config': cannot read/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an empty --config is refused (\'--config "$UNSET"\' ran with the defaults, as if no file had been given)', async () => {
  const { commands } = await import('../../src/cli/commands');
  for (const argv of [['--config', ''], ['--config='], ['--config', '  ']]) {
    assert.throws(
      () => commands.shards.parse(['--input', 'train', '--output', 'shards', ...argv]),
      (e: unknown) => e instanceof OptionError && e.key === 'config' && /^option --config: must not be empty/.test(e.flagMessage),
      JSON.stringify(argv),
    );
  }
});

test("--no- before an option that takes a value says so (it was an 'unknown option' while --help lists the option)", () => {
  const T = defineOptions({
    lr: { type: 'number', help: 'lr' },
    order: { type: 'string', choices: ['raster', 'semantic'], help: 'order' },
    blur: { type: 'boolean', default: true, help: 'blur' },
  });
  for (const [flag, key, takes] of [
    ['--no-lr', 'lr', '--lr takes a value \\(<number>\\)'],
    ['--no-order', 'order', '--order takes a value \\(<raster\\|semantic>\\)'],
  ]) {
    assert.throws(
      () => parseArgv([flag], T),
      (e: unknown) =>
        e instanceof OptionError && e.key === key && new RegExp(`^option ${flag}: ${takes}, and only on/off options have a --no- form`).test(e.flagMessage),
      flag,
    );
  }
  assert.equal(parseArgv(['--no-blur'], T).options.blur, false);
  assert.throws(() => parseArgv(['--no-bogus'], T), /unknown option/);
});

test("an unknown flag that is one word of one option's name is answered with it ('--warmup' → --warmup-epochs; it got no hint)", async () => {
  const { commands } = await import('../../src/cli/commands');
  for (const [name, flag, meant] of [
    ['pretrain', '--warmup', '--warmup-epochs'],
    ['pretrain', '--workers', '--num-workers'],
    ['pretrain', '--out', '--out-dir'],
    ['pretrain', '--data', '--data-path'],
    ['knn', '--batch-size', '--eval-batch-size'],
  ]) {
    assert.throws(
      () => commands[name].parse([flag, '1']),
      (e: unknown) => e instanceof OptionError && e.flagMessage === `option ${flag}: unknown option; did you mean ${meant}? (see --help)`,
      `${name} ${flag}`,
    );
  }
  // a word of several options' names names none of them
  assert.throws(
    () => commands.pretrain.parse(['--size', '1']),
    (e: unknown) => e instanceof OptionError && e.flagMessage === 'option --size: unknown option (see --help)',
  );
});

test('a flag given twice takes its last value, as README says (flags appended to a command line override the earlier ones)', () => {
  assert.equal(resolveOptions(TABLE, parseArgv(['--seed', '1', '--seed=2'], TABLE).options).seed, 2);
  assert.equal(resolveOptions(TABLE, parseArgv(['--fast', '--no-fast'], TABLE).options).fast, false);
  assert.equal(resolveOptions(TABLE, parseArgv(['--no-fast', '--fast'], TABLE).options).fast, true);
});

test("a value that starts with '--' is refused: '--out-dir --no-resume' named a folder '--no-resume'", () => {
  const T = defineOptions({ ...TABLE, outDir: { type: 'string', default: 'runs', help: 'out' } });
  assert.throws(() => parseArgv(['--out-dir', '--no-fast'], T), /option 'outDir': expects a value, got the flag --no-fast/);
  assert.throws(() => parseArgv(['--name', '--fast'], T), /option 'name': expects a value, got the flag --fast \(write --name=--fast/);
  assert.equal(parseArgv(['--out-dir=--odd'], T).options.outDir, '--odd', '--opt=--value stays possible');
  assert.equal(parseArgv(['--seed', '-3'], T).options.seed, '-3', 'a single dash is a value');
});

test("an option whose own name starts with 'no' is itself, not the --no- form of another ('--noise 3' with an on/off 'ise' beside it)", () => {
  const table = defineOptions({
    noise: { type: 'int', default: 0, help: 'noise' },
    ise: { type: 'boolean', default: true, help: 'ise' },
  });
  assert.deepEqual(parseArgv(['--noise', '3'], table), { options: { noise: '3' }, positionals: [] });
  assert.deepEqual(parseArgv(['--no-ise'], table).options, { ise: false });
});

test("'--' ends the options, --no-flag=value negates, and numbers are decimal only", () => {
  assert.deepEqual(parseArgv(['--seed', '2', '--', '--fast'], TABLE), { options: { seed: '2' }, positionals: ['--fast'] });
  assert.equal(resolveOptions(TABLE, parseArgv(['--no-fast=true'], TABLE).options).fast, false);
  assert.equal(resolveOptions(TABLE, parseArgv(['--no-fast=false'], TABLE).options).fast, true);
  assert.throws(() => parseArgv(['--no-fast=maybe'], TABLE), /option 'fast': expected true or false/);
  for (const bad of ['0x10', '0b11', '0o7', '', ' ', '1_000', 'Infinity', '1e']) {
    assert.throws(() => resolveOptions(TABLE, { seed: bad }), /option 'seed': expected a number/, bad);
  }
  for (const [good, value] of [
    ['+5', 5],
    ['-2', -2],
    ['1e3', 1000],
    ['10.', 10],
    [' 7 ', 7],
  ] as const) {
    assert.equal(resolveOptions(TABLE, { seed: good }).seed, value, good);
  }
  assert.equal(resolveOptions(defineOptions({ lr: { type: 'number', default: 1, help: 'lr' } }), { lr: '.5e-2' }).lr, 0.005);
});

test("AdamW's betas must be below 1 in pretrain and finetune (a beta of 1 passed the table and failed in AdamW after the out-dir was made)", async () => {
  const { commands } = await import('../../src/cli/commands');
  for (const name of ['pretrain', 'finetune']) {
    const c = commands[name];
    for (const beta of ['beta1', 'beta2']) {
      assert.throws(() => c.parse([`--${beta}`, '1']), new RegExp(`option '${beta}': must be < 1, got 1`), `${name} --${beta} 1`);
      const required = name === 'finetune' ? ['--checkpoint', 'run'] : [];
      assert.equal(c.parse([...required, `--${beta}`, '0.999999'])?.options[beta], 0.999999, `${name} --${beta} just below 1`);
    }
  }
});

test("an empty value is refused for every string option ('--out-dir \"\"' did the work, then failed making '')", async () => {
  const { commands } = await import('../../src/cli/commands');
  let n = 0;
  for (const [name, c] of Object.entries(commands)) {
    for (const [key, spec] of Object.entries(c.options)) {
      if (spec.type !== 'string') continue;
      const flag = `--${key.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)}`;
      assert.throws(() => c.parse([flag, '']), new RegExp(`option '${key}': must not be empty`), `${name} ${flag} ''`);
      n++;
    }
  }
  assert.ok(n >= 40, `${n} string options`);
  assert.throws(() => resolveOptions(TABLE, { name: '  ' }), /option 'name': must not be empty \(only spaces\)/);
});

test('options that would change nothing are refused: linprobe --augment on cached features, embed/predict --split with --images', async () => {
  const { commands } = await import('../../src/cli/commands');
  assert.throws(() => commands.linprobe.parse(['--checkpoint', 'run', '--augment', 'crop-flip']), /option 'augment': has no effect on cached features/);
  assert.equal(commands.linprobe.parse(['--checkpoint', 'run', '--augment', 'crop-flip', '--no-cache-features'])?.options.augment, 'crop-flip');
  for (const name of ['embed', 'predict'])
    assert.throws(
      () => commands[name].parse(['--checkpoint', 'run', '--images', 'imgs', '--split', 'train', '--out', 'out.json']),
      /option 'split': --split goes with --dataset/,
      name,
    );
  assert.equal(commands.embed.parse(['--checkpoint', 'run', '--dataset', 'synthetic', '--split', 'train', '--out', 'f.safetensors'])?.options.split, 'train');
});

test('a config file that sets one option twice (out_dir and out-dir) is refused, naming both spellings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-config-'));
  try {
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ outDir: 'a', 'out-dir': 'b' }));
    assert.throws(() => readConfigFile(file), new RegExp(`option 'outDir': ${reText(file)} sets it twice, as 'outDir' and as 'out-dir': keep one`));
    writeFileSync(file, JSON.stringify({ out_dir: 'a', seed: 1 }));
    assert.deepEqual(readConfigFile(file), { outDir: 'a', seed: 1 });
    // one key written twice, as YAML refuses it ('Map keys must be unique'): JSON.parse kept the last silently
    for (const [text, twice] of [
      ['{"seed": 1, "seed": 2}', /option 'seed': .*c\.json sets it twice, as 'seed' both times: keep one/],
      ['{"seed": 1, "s\\u0065ed": 2}', /option 'seed': .*sets it twice, as 'seed' both times/],
      ['{"out_dir": "a", "seed": 1, "out_dir": "b"}', /option 'outDir': .*sets it twice, as 'out_dir' both times/],
    ] as const) {
      writeFileSync(file, text);
      assert.throws(() => readConfigFile(file), twice, text);
    }
    // keys of nested values and look-alikes inside strings are not the file's options
    writeFileSync(file, '{"name": "{\\"seed\\": 1, \\"seed\\": 2}", "nested": {"seed": 1, "x": [{"seed": 2}]}, "seed": 3}');
    assert.deepEqual(readConfigFile(file), { name: '{"seed": 1, "seed": 2}', nested: { seed: 1, x: [{ seed: 2 }] }, seed: 3 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--threads above the cores (100× slower) and --num-workers above 64 are refused by every command that has them', async () => {
  const { commands } = await import('../../src/cli/commands');
  const cores = availableParallelism();
  let threads = 0;
  let workers = 0;
  for (const [name, c] of Object.entries(commands)) {
    if (c.options.threads) {
      threads++;
      assert.throws(
        () => c.parse(['--threads', String(cores + 1)]),
        new RegExp(`option 'threads': must be <= ${cores} \\(the cores of this machine\\), got ${cores + 1}`),
        name,
      );
    }
    if (c.options.numWorkers) {
      workers++;
      assert.throws(() => c.parse(['--num-workers', '65']), /option 'numWorkers': must be <= 64, got 65/, name);
    }
  }
  assert.ok(threads >= 11 && workers >= 7, `${threads} commands with --threads, ${workers} with --num-workers`);
});

test('the command line names a bad option by its flag, the library by its key', () => {
  const e = new OptionError('maxImagePixels', 'must be >= 0, got -1');
  assert.equal(e.message, "option 'maxImagePixels': must be >= 0, got -1");
  assert.equal(e.flagMessage, 'option --max-image-pixels: must be >= 0, got -1');
  // what a program switches on: the class, a stable code and the key
  assert.throws(
    () => resolveOptions(PRETRAIN_OPTIONS, { batchSize: 0 }),
    (err: unknown) => err instanceof OptionError && err.code === 'ERR_OPTION' && err.key === 'batchSize',
  );
  // the library: undefined is no value (the default), null is refused, in any layer
  assert.equal(resolveOptions(PRETRAIN_OPTIONS, { imgSize: undefined }).imgSize, 224);
  assert.throws(
    () => resolveOptions(PRETRAIN_OPTIONS, { imgSize: null }, { imgSize: 32 }),
    (err: unknown) => err instanceof OptionError && err.key === 'imgSize' && /has no value \(null\)/.test(err.message),
  );
  const cli = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
  const r = (() => {
    try {
      execFileSync(process.execPath, [cli, 'knn', '--max-image-pixels', '-1'], { encoding: 'utf8', stdio: 'pipe' });
      return null;
    } catch (err) {
      return err as { status: number; stderr: string };
    }
  })();
  assert.ok(r, 'refused');
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'semaim: option --max-image-pixels: must be >= 0, got -1\n');
});

test("a library caller's 'config' or 'help' is refused, saying how to read a config file (it was skipped unread); the command line still takes both", () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-cli-only-'));
  try {
    const file = join(dir, 'run.json');
    writeFileSync(file, JSON.stringify({ seed: 7 }));
    assert.throws(() => resolveOptions(TABLE, { config: file }), {
      name: 'OptionError',
      message:
        "option 'config': 'config' is a command-line option: read the file with readConfigFile(path) and pass its fields (resolveOptions(table, readConfigFile(path), { ... }))",
    });
    assert.throws(() => resolveOptions(TABLE, { seed: 1 }, { help: true }), {
      name: 'OptionError',
      message: /^option 'help': 'help' is a command-line option/,
    });
    // what the message says to do
    assert.equal(resolveOptions(TABLE, readConfigFile(file), { name: 'y' }).seed, 7);
    // the command line: parseArgv's options hold --config and --help, which parseCommand reads itself
    const { options } = parseArgv(['--config', file, '--name', 'y'], TABLE);
    assert.deepEqual(resolveOptions(TABLE, readConfigFile(String(options.config)), options), { seed: 7, name: 'y', fast: false });
    assert.equal(resolveOptions(TABLE, parseArgv(['-h'], TABLE).options).seed, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad value from a config file is named as written there, with the file; the same value as a flag by its flag', () => {
  const dir = mkdtempSync(join(tmpdir(), 'semaim-options-'));
  const cli = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
  const stderrOf = (...args: string[]): string => {
    try {
      execFileSync(process.execPath, [cli, 'pretrain', ...args], { encoding: 'utf8', stdio: 'pipe' });
      return '';
    } catch (err) {
      assert.equal((err as { status: number }).status, 2);
      return (err as { stderr: string }).stderr;
    }
  };
  try {
    const cfg = join(dir, 'run.yaml');
    // an unknown key, a bad value, and a check across options (warmupEpochs below epochs): each names the key as written in run.yaml
    writeFileSync(cfg, 'seed: 1\nbogus_key: 1\n');
    assert.match(stderrOf('--config', cfg), new RegExp(`^semaim: option bogus_key in ${reText(cfg)}: unknown option \\(known: model, `));
    writeFileSync(cfg, 'max-image-pixels: -1\n');
    assert.equal(stderrOf('--config', cfg), `semaim: option max-image-pixels in ${cfg}: must be >= 0, got -1\n`);
    writeFileSync(cfg, 'epochs: 10\nwarmupEpochs: 12\n');
    assert.equal(stderrOf('--config', cfg), `semaim: option warmupEpochs in ${cfg}: (12) must be below --epochs (10)\n`);
    // a flag overrides the file: the error is the flag's
    assert.equal(stderrOf('--config', cfg, '--warmup-epochs', '11'), 'semaim: option --warmup-epochs: (11) must be below --epochs (10)\n');
    // a bad value in the file is refused though a flag overrides it, and the error names the file's key, not the flag the user typed right
    writeFileSync(cfg, 'batch_size: -1\n');
    assert.equal(stderrOf('--config', cfg, '--batch-size', '4'), `semaim: option batch_size in ${cfg}: must be >= 1, got -1\n`);
    writeFileSync(cfg, 'epochs: -1\n');
    assert.equal(stderrOf('--config', cfg, '--epochs', '1'), `semaim: option epochs in ${cfg}: must be >= 0, got -1\n`);
    // a bad flag over a good file value is the flag's, as typed
    writeFileSync(cfg, 'batch_size: 4\n');
    assert.equal(stderrOf('--config', cfg, '--batch_size', '-1'), 'semaim: option --batch_size: must be >= 1, got -1\n');
    // null is no value (not the default), refused naming the key as written, with or without a flag over it
    // (a bogus key after it: read as the default, the null would let pretrain start, and the test wait on it)
    for (const text of ['img_size: ~\n', 'img_size:\n', 'img_size: null\n']) {
      writeFileSync(cfg, `${text}bogus_key: 1\n`);
      assert.equal(stderrOf('--config', cfg), `semaim: option img_size in ${cfg}: has no value (null): give one, or leave the key out for its default (224)\n`);
      assert.match(stderrOf('--config', cfg, '--img-size', '32'), new RegExp(`^semaim: option img_size in ${reText(cfg)}: has no value \\(null\\)`));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('formatHelp: with no options but --config (semaim info), its description is indented under the flag', () => {
  const help = formatHelp('semaim info', 'what it does', defineOptions({}));
  assert.match(help, /\n {2}--config <file\.json\|file\.yaml>\n {4,}read options from a file; flags override it\n/);
  assert.doesNotMatch(help, /-?Infinity/);
});

test('formatHelp: flags share one column up to 44 characters wide (flag + 2); a longer flag puts its help on the next line', () => {
  const help = (key: string) => formatHelp('u', 'd', defineOptions({ [key]: { type: 'int', default: 1, help: 'HELP' } }));
  // '--' + 31 letters + ' <int>' = 39 characters: column 41, on one line
  assert.match(help('a'.repeat(31)), new RegExp(`\n {2}--a{31} <int> {2}HELP \\(default: 1\\)\n`));
  // 42 characters (column 44 at most): still one line
  assert.match(help('a'.repeat(34)), new RegExp(`\n {2}--a{34} <int> {2}HELP`));
  // 43 characters: the help goes under it, in the 44-character column
  assert.match(help('a'.repeat(35)), new RegExp(`\n {2}--a{35} <int>\n {46}HELP`));
});

test('formatHelp: a required option says so, one with a default shows it, one with neither shows nothing after its help', () => {
  const help = formatHelp(
    'u',
    'd',
    defineOptions({
      checkpoint: { type: 'string', required: true, help: 'CKPT' },
      mode: { type: 'string', default: 'a', choices: ['a', 'b'], help: 'MODE' },
      title: { type: 'string', help: 'TITLE' },
    }),
  );
  assert.match(help, /\n {2}--checkpoint <string> +CKPT \(required\)\n {2}--mode <a\|b> +MODE \(default: "a"\)\n {2}--title <string> +TITLE\n$/);
});

test("the authors' snake_case names are read as kebab-case ones, and an unknown option is answered with the one it most likely means", () => {
  assert.deepEqual(parseArgv(['--warmup_epochs', '3', '--batch-size', '8'], PRETRAIN_OPTIONS).options, { warmupEpochs: '3', batchSize: '8' });
  withConfigFiles((file) => {
    const o = resolveOptions(PRETRAIN_OPTIONS, readConfigFile(file('authors.yaml', 'warmup_epochs: 3\nmin_lr: 0.0001\naccum_iter: 2\n')));
    assert.deepEqual([o.warmupEpochs, o.minLr, o.accumIter], [3, 0.0001, 2]);
  });
  const message = (argv: string[]) => {
    try {
      parseArgv(argv, PRETRAIN_OPTIONS);
    } catch (e) {
      return (e as OptionError).flagMessage;
    }
    return 'accepted';
  };
  // named as typed (README: `--input_size` → `did you mean --img-size?`)
  assert.equal(message(['--input_size', '224']), 'option --input_size: unknown option; did you mean --img-size? (see --help)');
  assert.equal(message(['--norm_pix_loss']), 'option --norm_pix_loss: unknown option; did you mean --norm-pix? (see --help)');
  assert.equal(message(['--out_dir']), 'option --out_dir: expects a value');
  assert.equal(message(['--warmup-epoch', '3']), 'option --warmup-epoch: unknown option; did you mean --warmup-epochs? (see --help)');
  assert.equal(message(['--bach-size', '3']), 'option --bach-size: unknown option; did you mean --batch-size? (see --help)');
  // two swapped letters are one typo, not two (a 5-letter name allows one)
  assert.equal(message(['--depht', '3']), 'option --depht: unknown option; did you mean --depth? (see --help)');
  assert.equal(message(['--frobnicate', '3']), 'option --frobnicate: unknown option (see --help)');
  // a library caller's object: the option it meant is named as a key, as are the known ones
  assert.throws(
    () => resolveOptions(PRETRAIN_OPTIONS, { outputDir: 'x' }),
    /option 'outputDir': unknown option; did you mean 'outDir'\? \(known: model, imgSize, /,
  );
  // a bad value of a flag typed in the authors' spelling is named that way too; the library's message keeps the key
  const r = spawnSync(process.execPath, [join(__dirname, '..', '..', 'src', 'cli', 'main.js'), 'pretrain', '--img_size', '0'], { encoding: 'utf8' });
  assert.equal(r.stderr, 'semaim: option --img_size: must be >= 1, got 0\n');
  assert.equal(r.status, 2);
});

test("jobFields checks a job's option values, passes its other keys (callbacks, a signal) as they are, and refuses any other key", () => {
  const fields = defineOptions({ out: { type: 'string', required: true, help: 'output' }, topK: { type: 'int', min: 1, default: 5, help: 'classes' } });
  const onWarning = () => {};
  const job = (o: object) => jobFields(o as { out: string; topK?: number; onWarning?: () => void }, fields, { onWarning: true });
  const o = job({ out: 'x.json', topK: '2', onWarning });
  assert.deepEqual(o, { out: 'x.json', topK: 2, onWarning });
  assert.equal(job({ out: 'x.json' }).topK, 5);
  // a misspelt key was ignored (top_k: 2 listed 5 classes): refused with the key it most likely means, before any work
  assert.throws(() => job({ out: 'x.json', top_k: 2 }), /^OptionError: option 'top_k': unknown option; did you mean 'topK'\? \(known: out, topK, onWarning\)$/);
  assert.throws(() => job({ out: 'x.json', onWarnings: onWarning }), /option 'onWarnings': unknown option; did you mean 'onWarning'\?/);
  assert.throws(() => job({ out: 'x.json', constructor: 1 }), /option 'constructor': unknown option/);
  // a misspelt key whose value is undefined was written too ({ top_k: o.topK } with none given)
  assert.throws(() => job({ out: 'x.json', top_k: undefined }), /option 'top_k': unknown option; did you mean 'topK'\?/);
  assert.throws(() => job({ out: 'x.json', topK: 0 }), /option 'topK': must be >= 1/);
});

test('bounds are inclusive (min, max) or exclusive (below, above) as declared; an int refuses a fraction; choices, required and empty values are checked', () => {
  const table = defineOptions({
    count: { type: 'int', default: 1, min: 1, max: 8, help: 'count' },
    beta: { type: 'number', default: 0.9, min: 0, below: 1, help: 'beta' },
    share: { type: 'number', default: 0.5, above: 0, max: 1, help: 'share' },
    mode: { type: 'string', default: 'a', choices: ['a', 'b'], help: 'mode' },
    path: { type: 'string', required: true, help: 'path' },
  } as const);
  const ok = (o: Record<string, unknown>) => resolveOptions(table, { path: 'p', ...o });
  const refused = (o: Record<string, unknown>, key: string, detail: RegExp) =>
    assert.throws(
      () => ok(o),
      (e: unknown) => e instanceof OptionError && e.key === key && detail.test(e.detail),
      JSON.stringify(o),
    );
  assert.equal(ok({ count: 1 }).count, 1);
  assert.equal(ok({ count: '8' }).count, 8);
  assert.equal(ok({ beta: 0 }).beta, 0);
  assert.equal(ok({ beta: 0.999 }).beta, 0.999);
  assert.equal(ok({ mode: 'b' }).mode, 'b');
  refused({ count: 0 }, 'count', /must be >= 1, got 0/);
  refused({ count: 9 }, 'count', /must be <= 8, got 9/);
  refused({ count: 2.5 }, 'count', /expected an integer, got 2.5/);
  refused({ count: '2.5' }, 'count', /expected an integer, got 2.5/);
  refused({ beta: 1 }, 'beta', /must be < 1, got 1/);
  refused({ share: 0 }, 'share', /must be > 0, got 0/);
  assert.equal(ok({ share: 1e-9 }).share, 1e-9);
  refused({ beta: -0.1 }, 'beta', /must be >= 0/);
  refused({ count: 'Infinity' }, 'count', /expected a number/);
  refused({ count: '0x10' }, 'count', /expected a number/);
  refused({ count: ' ' }, 'count', /expected a number/);
  refused({ mode: 'c' }, 'mode', /must be one of a, b, got 'c'/);
  refused({ mode: '' }, 'mode', /must not be empty/);
  refused({ count: null }, 'count', /has no value \(null\)/);
  assert.throws(
    () => resolveOptions(table, {}),
    (e: unknown) => e instanceof OptionError && e.key === 'path' && /is required/.test(e.detail),
  );
  const flags = defineOptions({ fast: { type: 'boolean', default: true, help: 'flag' } });
  for (const [v, want] of [
    ['0', false],
    ['no', false],
    ['false', false],
    ['1', true],
    ['yes', true],
  ] as const)
    assert.equal(resolveOptions(flags, { fast: v }).fast, want, v);
});

test("a config file may be .yml as well as .yaml, a number is a string option's text (YAML 'name: 2024'), and a file that holds no object of options is refused", () => {
  withConfigFiles((file) => {
    for (const name of ['run.yml', 'run.YAML']) assert.deepEqual(readConfigFile(file(name, 'seed: 3\nname: 2024\n')), { seed: 3, name: 2024 }, name);
    assert.equal(resolveOptions(TABLE, readConfigFile(file('run.yml', 'name: 2024\n'))).name, '2024');
    assert.equal(resolveOptions(TABLE, { name: 7 }).name, '7');
    assert.throws(() => resolveOptions(TABLE, { name: true }), /option 'name': expected a string, got true/);
    for (const [name, text] of [
      ['list.json', '[{"seed": 1}]'],
      ['list.yaml', '- seed: 1\n'],
      ['null.json', 'null'],
      ['number.yaml', '3\n'],
    ])
      assert.throws(
        () => readConfigFile(file(name, text)),
        (e: unknown) => e instanceof OptionError && e.key === 'config' && /must hold an object of options$/.test(e.message),
        name,
      );
  });
});

test('checkSeedList: the last of --seeds N seeds may be SEED_RANGE.max itself, not one beyond', () => {
  const max = SEED_RANGE.max;
  checkSeedList({ seed: max, seeds: 1 });
  checkSeedList({ seed: max - 2, seeds: 3 });
  assert.throws(
    () => checkSeedList({ seed: max - 1, seeds: 3 }),
    (e: unknown) => e instanceof OptionError && e.key === 'seeds' && e.detail.includes(`..${max + 1},`),
  );
});

test('closest allows one edit per four letters (at least one), a swap of neighbours counting as one', () => {
  assert.equal(closest('depht', ['depth', 'width']), 'depth');
  assert.equal(closest('lr', ['lt', 'epochs']), 'lt');
  assert.equal(closest('abcdef', ['abcxyf']), undefined); // two edits in six letters
  assert.equal(closest('abcdefgh', ['abcxyfgh']), 'abcxyfgh'); // two in eight
  assert.equal(closest('abcdefgh', ['axcxyfgh']), undefined);
  assert.equal(closest('x', []), undefined);
});

test("an option's auto resolves only the value 'auto': a value given for it is kept as given", () => {
  const table = defineOptions({
    device: { type: 'string', default: 'cpu', choices: ['cpu', 'cuda'], help: 'device' },
    workers: { type: 'string', default: 'auto', choices: ['auto', '1', '4'], help: 'workers', auto: (o) => (o.device === 'cuda' ? '4' : '1') },
  } as const);
  assert.equal(resolveOptions(table, {}).workers, '1');
  assert.equal(resolveOptions(table, { device: 'cuda' }).workers, '4');
  assert.equal(resolveOptions(table, { workers: '4' }).workers, '4');
  assert.equal(resolveOptions(table, { device: 'cuda', workers: '1' }).workers, '1');
});

test('a number written for a string option in a config file is its text as written (1.10, 007, 1e3, 0x10), as the same text after a flag is', () => {
  withConfigFiles((file) => {
    for (const text of ['1.10', '007', '1e3', '0x10', '.5', '+5', '2024']) {
      const flag = resolveOptions(TABLE, parseArgv(['--name', text], TABLE).options).name;
      assert.equal(flag, text);
      assert.equal(resolveOptions(TABLE, readConfigFile(file('run.yaml', `name: ${text}  # the run's name\nseed: 1\n`))).name, text, `YAML ${text}`);
    }
    for (const text of ['1.10', '1e3', '-0.50', '2024'])
      assert.equal(resolveOptions(TABLE, readConfigFile(file('run.json', `{"seed": 1, "name" : ${text}}`))).name, text, `JSON ${text}`);
    // a number option still takes the number (YAML's 1e3 is 1000), and a flag still overrides the file
    assert.equal(resolveOptions(TABLE, readConfigFile(file('run.yaml', 'seed: 1e3\nname: 1.10\n'))).seed, 1000);
    assert.equal(resolveOptions(TABLE, readConfigFile(file('run.yaml', 'name: 1.10\n')), { name: 'y' }).name, 'y');
  });
});

test('a config file takes a number option in the notation its flag takes: YAML 0x10 and 0o17 are refused as --seed 0x10 is', () => {
  withConfigFiles((file) => {
    for (const text of ['0x10', '0o17', '0b11']) {
      assert.throws(() => resolveOptions(TABLE, parseArgv(['--seed', text], TABLE).options), /expected a number/, `flag ${text}`);
      assert.throws(
        () => resolveOptions(TABLE, readConfigFile(file('run.yaml', `seed: ${text}\n`))),
        /option .seed.: expected a number, got "0/,
        `YAML ${text}`,
      );
    }
    // decimal notations stay numbers, in both layers
    for (const [text, n] of [
      ['007', 7],
      ['1e3', 1000],
      ['+5', 5],
      ['-2', -2],
    ] as const) {
      assert.equal(resolveOptions(TABLE, parseArgv(['--seed', text], TABLE).options).seed, n, `flag ${text}`);
      assert.equal(resolveOptions(TABLE, readConfigFile(file('run.yaml', `seed: ${text}\n`))).seed, n, `YAML ${text}`);
    }
    assert.equal(resolveOptions(TABLE, readConfigFile(file('run.json', '{"seed": 1E+2}'))).seed, 100);
  });
});

test('a config file turns an on/off option on with 1 and off with 0, as --fast=1 and --fast=0 do', () => {
  withConfigFiles((file) => {
    assert.equal(resolveOptions(TABLE, parseArgv(['--fast=1'], TABLE).options).fast, true);
    assert.equal(resolveOptions(TABLE, readConfigFile(file('on.yaml', 'fast: 1\n'))).fast, true);
    assert.equal(resolveOptions(TABLE, readConfigFile(file('off.yaml', 'fast: 0\n'))).fast, false);
    assert.equal(resolveOptions(TABLE, readConfigFile(file('on.json', '{"fast": 1}'))).fast, true);
    // other numbers are no answer to on or off
    assert.throws(() => resolveOptions(TABLE, readConfigFile(file('two.yaml', 'fast: 2\n'))), /expected true or false, got 2/);
  });
});
