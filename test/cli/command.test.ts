// What every command does before its job (src/cli/command.ts): an --out-dir that cannot be a folder is an
// option error naming --out-dir before the command's own checks and before any work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands';
import { OptionError } from '../../src/util/options';
import { errorText } from '../../src/util/error-text';

test('an --out-dir that is a file, or has a dangling link on the way, is refused naming --out-dir before the checkpoint is looked at', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-command-'));
  try {
    const file = join(root, 'file.txt');
    writeFileSync(file, 'x');
    const dangling = join(root, 'gone');
    symlinkSync(join(root, 'nowhere'), dangling);
    const missing = join(root, 'missing-run'); // the checkpoint's own check would fail too, naming --checkpoint
    for (const [outDir, why] of [
      [file, /file\.txt cannot be the output folder: .*file\.txt exists and is not a folder/],
      [join(dangling, 'run'), /cannot be the output folder: .*gone is a symbolic link to .*nowhere, which does not exist/],
    ] as const) {
      for (const name of ['knn', 'linprobe', 'finetune', 'segprobe']) {
        await assert.rejects(
          commands[name].run(['--checkpoint', missing, '--out-dir', outDir]),
          (e: unknown) => e instanceof OptionError && e.key === 'outDir' && why.test(e.message),
          `${name} --out-dir ${outDir}`,
        );
      }
    }
    assert.equal(existsSync(join(root, 'nowhere')), false, 'nothing made');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("each command's own option checks refuse, naming the option, what would write the wrong file or ignore a choice", () => {
  const refused: Array<[string, string[], string, RegExp]> = [
    [
      'predict',
      ['--checkpoint', 'run', '--images', 'imgs', '--out', 'predictions.csv'],
      'out',
      /must end in \.json \(the CSV goes beside it\), got 'predictions\.csv'/,
    ],
    [
      'embed',
      ['--checkpoint', 'run', '--images', 'imgs', '--out', 'features.npy'],
      'out',
      /must end in \.safetensors \(the image list .*\), got 'features\.npy'/,
    ],
    // a name that is only the extension wrote hidden files (.json and .csv beside it)
    [
      'predict',
      ['--checkpoint', 'run', '--images', 'imgs', '--out', 'runs/.json'],
      'out',
      /runs\/\.json has no file name before \.json: give one, e\.g\. runs\/out\.json/,
    ],
    ['embed', ['--checkpoint', 'run', '--images', 'imgs', '--out', '.safetensors'], 'out', /has no file name before \.safetensors/],
    ['export', ['--checkpoint', 'run', '--out', 'enc', '--dtype', 'float16'], 'dtype', /float16 is for --format onnx or web/],
    ['export', ['--checkpoint', 'run', '--out', 'enc', '--format', 'onnx', '--exif-orientation', 'apply'], 'exifOrientation', /is for --format web/],
    ['visualize', ['--checkpoint', 'run', '--images', 'imgs', '--out', 'viz', '--orders', ' , '], 'orders', /needs at least one order type/],
    ['report', ['run', 'other-run'], 'runDir', /one run folder expected, got also other-run/],
    ['report', [], 'runDir', /expects the run folder/],
  ];
  for (const [name, argv, key, message] of refused) {
    assert.throws(
      () => commands[name].parse(argv),
      (e: unknown) => e instanceof OptionError && e.key === key && message.test(e.message),
      `${name} ${argv.join(' ')}`,
    );
  }
  // and accept the same command lines written right
  for (const [name, argv] of [
    ['predict', ['--checkpoint', 'run', '--images', 'imgs', '--out', 'predictions.json']],
    ['embed', ['--checkpoint', 'run', '--images', 'imgs', '--out', 'features.safetensors']],
    ['export', ['--checkpoint', 'run', '--out', 'enc', '--format', 'onnx', '--dtype', 'float16']],
    ['export', ['--checkpoint', 'run', '--out', 'page', '--format', 'web', '--exif-orientation', 'apply']],
    ['report', ['run', 'a.png', '--images', 'b.png']],
  ] as const)
    assert.ok(commands[name].parse([...argv]), `${name} ${argv.join(' ')}`);
});

test('predict, embed and segprobe refuse missing images or data (exit 2, naming the option) before they load the checkpoint', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-command-'));
  try {
    const missing = join(root, 'missing-run'); // looked at after the images: its error would name --checkpoint
    const file = join(root, 'file.txt');
    writeFileSync(file, 'x');
    const nope = join(root, 'nope');
    for (const [name, argv, key, why] of [
      ['predict', ['--images', nope, '--out', join(root, 'p.json')], 'images', /nope does not exist/],
      // a file is one image; a folder or a file, nothing else
      ['predict', ['--images', '/dev/null', '--out', join(root, 'p.json')], 'images', /null is neither a folder nor a file/],
      ['predict', ['--dataset', 'folder', '--data-path', nope, '--out', join(root, 'p.json')], 'dataPath', /nope does not exist/],
      ['embed', ['--images', nope, '--out', join(root, 'f.safetensors')], 'images', /nope does not exist/],
      ['embed', ['--dataset', 'cifar10', '--data-path', join(root, 'c.tar.gz'), '--out', join(root, 'f.safetensors')], 'dataPath', /does not exist/],
      ['segprobe', ['--dataset', 'seg-folder', '--data-path', nope, '--out-dir', join(root, 'seg')], 'dataPath', /nope does not exist/],
    ] as const) {
      await assert.rejects(
        commands[name].run(['--checkpoint', missing, ...argv]),
        (e: unknown) => e instanceof OptionError && e.key === key && why.test(e.message),
        `${name} ${argv.join(' ')}`,
      );
    }
    // one image file is an image set: the checkpoint is looked at next
    await assert.rejects(
      commands.predict.run(['--checkpoint', missing, '--images', file, '--out', join(root, 'p.json')]),
      /no usable checkpoint in .*missing-run/,
    );
    assert.deepEqual(readdirSync(root), ['file.txt'], 'nothing written');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("visualize (and report --images) refuse, before the checkpoint is looked at, a figure folder holding figure names of the user's (no visualize.json of an earlier run)", async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-command-'));
  try {
    const image = join(root, 'a.png');
    writeFileSync(image, 'an image');
    const missing = join(root, 'missing-run');
    for (const [files, named] of [
      [{ 'row-000-a.png': 'mine' }, /holds row-000-a\.png, which no earlier semaim visualisation wrote/],
      // the 1001st image's row is one of visualize's names too
      [{ 'row-1000-a.png': 'mine' }, /holds row-1000-a\.png, which no earlier semaim visualisation wrote/],
      [{ 'grid.png': 'mine', 'visualize.json': '{"columns": "not a list"}' }, /holds grid\.png, visualize\.json, which no earlier/],
      // an earlier visualisation's visualize.json lists its images as well as its columns
      [{ 'grid.png': 'mine', 'visualize.json': '{"columns": []}' }, /holds grid\.png, visualize\.json, which no earlier/],
    ] as const) {
      const out = mkdtempSync(join(root, 'viz-'));
      for (const [name, text] of Object.entries(files)) writeFileSync(join(out, name), text);
      await assert.rejects(
        commands.visualize.run(['--checkpoint', missing, '--images', image, '--out', out]),
        (e: unknown) => e instanceof OptionError && e.key === 'out' && named.test(e.message),
        Object.keys(files).join(', '),
      );
    }
    // report --images draws the same figures into --viz-out: the same check, naming --viz-out
    const run = mkdtempSync(join(root, 'run-'));
    const vizOut = mkdtempSync(join(root, 'viz-'));
    writeFileSync(join(vizOut, 'row-000-a.png'), 'mine');
    await assert.rejects(
      commands.report.run([run, '--images', image, '--viz-out', vizOut]),
      (e: unknown) => e instanceof OptionError && e.key === 'vizOut' && /holds row-000-a\.png, which no earlier/.test(e.message),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("every command's --seed is an integer in numpy's range 0..2^32-1, and ablate's and object-start's seed..seed+N-1 too (linprobe --seed 1e13 failed in libtorch once the features were extracted)", () => {
  const withSeed = Object.entries(commands).filter(([, c]) => 'seed' in c.options);
  assert.ok(withSeed.length >= 10, withSeed.map(([n]) => n).join(', '));
  for (const [name, c] of withSeed) {
    for (const [seed, why] of [
      ['4294967296', /must be <= 4294967295 \(numpy's seed range/],
      ['10000000000000', /must be <= 4294967295/],
      ['-1', /must be >= 0, got -1/],
    ] as const) {
      assert.throws(
        () => c.parse(['--seed', seed]),
        (e: unknown) => e instanceof OptionError && e.key === 'seed' && why.test(e.flagMessage),
        `${name} --seed ${seed}`,
      );
    }
  }
  for (const name of ['ablate', 'object-start']) {
    assert.throws(
      () => commands[name].parse(['--seed', '4294967295', '--seeds', '2']),
      (e: unknown) => e instanceof OptionError && e.key === 'seeds' && /runs seeds 4294967295\.\.4294967296, beyond 4294967295/.test(e.message),
      name,
    );
    assert.ok(commands[name].parse(['--seed', '4294967294', '--seeds', '2']), name);
  }
});

test('report names its run folder argument RUN_DIR, as its usage line does (there is no --run-dir flag to name)', () => {
  for (const argv of [[], ['run', 'other-run']]) {
    assert.throws(
      () => commands.report.parse(argv),
      (e: unknown) => e instanceof OptionError && e.key === 'runDir' && /^option RUN_DIR: /.test(e.flagMessage),
      argv.join(' '),
    );
  }
});

/** What `write` writes to stdout (a command's --help), captured instead of printed. */
function stdoutOf(write: () => unknown): { result: unknown; text: string } {
  const original = process.stdout.write.bind(process.stdout);
  let text = '';
  process.stdout.write = ((chunk: string) => ((text += chunk), true)) as typeof process.stdout.write;
  try {
    return { result: write(), text };
  } finally {
    process.stdout.write = original;
  }
}

test("a command's --help=false or --help false is refused as an option error (it printed the help and exited 0, as if asked); --help=true and --help true are --help", () => {
  const help = stdoutOf(() => commands.knn.parse(['--help']));
  assert.equal(help.result, null);
  assert.match(help.text, /^semaim knn /);
  for (const argv of [['--help=false'], ['--help', 'false'], ['--help=0'], ['--k', '20', '--help', 'false']]) {
    const r = stdoutOf(() =>
      assert.throws(
        () => commands.knn.parse(argv),
        (e: unknown) =>
          e instanceof OptionError &&
          /^option --help: (false|0) asks for nothing: give --help alone to see the options, or leave it out to run the command$/.test(e.flagMessage),
      ),
    );
    assert.equal(r.text, '', argv.join(' '));
  }
  assert.throws(
    () => commands.knn.parse(['--help=maybe']),
    (e: unknown) => e instanceof OptionError && e.flagMessage === 'option --help: expected true or false, got "maybe"',
  );
  for (const argv of [['--help=true'], ['--help', 'true']])
    assert.deepEqual(
      stdoutOf(() => commands.knn.parse(argv)),
      help,
      argv.join(' '),
    );
});

test("a value outside an option's choices is answered with the choice a typo away, as an unknown option is", () => {
  for (const [name, argv, key, message] of [
    ['pretrain', ['--order', 'semantik'], 'order', /must be one of raster, .*, got 'semantik'; did you mean 'semantic'\?$/],
    ['pretrain', ['--order', 'Raster'], 'order', /got 'Raster'; did you mean 'raster'\?$/],
    ['linprobe', ['--checkpoint', 'run', '--optimizer', 'lras'], 'optimizer', /must be one of sgd, lars, got 'lras'; did you mean 'lars'\?$/],
    ['pretrain', ['--order', 'zigzag'], 'order', /must be one of raster, .*multicenter, got 'zigzag'$/],
    ['ablate', ['--orders', 'raster,semntic'], 'orders', /unknown order 'semntic'; did you mean 'semantic'\? \(known: /],
    [
      'visualize',
      ['--checkpoint', 'run', '--images', 'imgs', '--out', 'viz', '--orders', 'rastr'],
      'orders',
      /unknown order type 'rastr'; did you mean 'raster'\? \(known: /,
    ],
    ['object-start', ['--train-tokens', 'cls,slef'], 'trainTokens', /unknown tokens 'slef'; did you mean 'self'\? \(known: /],
  ] as const) {
    assert.throws(
      () => commands[name].parse([...argv]),
      (e: unknown) => e instanceof OptionError && e.key === key && message.test(e.flagMessage),
      `${name} ${argv.join(' ')}`,
    );
  }
});

test('a message about two options names the other one as it is typed, with its --', () => {
  for (const [name, argv, message] of [
    ['pretrain', ['--warmup-epochs', '5', '--epochs', '3'], /^option --warmup-epochs: \(5\) must be below --epochs \(3\)$/],
    ['linprobe', ['--checkpoint', 'run', '--warmup-epochs', '5', '--epochs', '3'], /^option --warmup-epochs: \(5\) must be below --epochs \(3\)$/],
    ['pretrain', ['--img-size', '30'], /^option --img-size: 30 is not divisible by --patch-size 16$/],
    ['pretrain', ['--num-heads', '5'], /^option --embed-dim: 768 is not divisible by --num-heads 5$/],
    ['pretrain', ['--blur-kernel', '1001', '--img-size', '32', '--patch-size', '4'], /^option --blur-kernel: must be at most 2 × --img-size − 1 = 63 /],
    ['pretrain', ['--similarity-source', 'teacher'], /^option --similarity-source: 'teacher' needs --target features \(and its --teacher\)$/],
    ['pretrain', ['--dataset', 'folder'], /^option --data-path: --dataset folder needs --data-path$/],
    ['knn', ['--checkpoint', 'run', '--dataset', 'folder'], /^option --data-path: --dataset folder needs --data-path$/],
    ['embed', ['--checkpoint', 'run', '--dataset', 'folder'], /^option --data-path: --dataset folder needs --data-path$/],
  ] as const) {
    assert.throws(
      () => commands[name].parse([...argv]),
      (e: unknown) => e instanceof OptionError && message.test(e.flagMessage),
      `${name} ${argv.join(' ')}`,
    );
  }
});

test('a path holding a newline is printed quoted and escaped, on one line (it was printed raw: one line of output read as two)', async () => {
  const root = mkdtempSync(join(tmpdir(), 'semaim-command-'));
  try {
    const file = join(root, 'file.txt');
    writeFileSync(file, 'x');
    const outDir = `${file}/a\nsemaim: done`;
    await assert.rejects(
      commands.knn.run(['--checkpoint', join(root, 'run'), '--out-dir', outDir]),
      (e: unknown) => errorText(e) === `option --out-dir: ${JSON.stringify(outDir)} cannot be the output folder: ${file} exists and is not a folder`,
    );
    const checkpoint = join(root, 'run\nsemaim: done');
    await assert.rejects(commands.knn.run(['--checkpoint', checkpoint, '--out-dir', join(root, 'knn')]), (e: unknown) =>
      errorText(e).startsWith(`encoder ${JSON.stringify(checkpoint)} does not exist (give a run folder`),
    );
    // a system error's message names the path raw: the option error shows it escaped
    await assert.rejects(commands.knn.run(['--config', 'run\n.yaml']), (e: unknown) =>
      /^option --config: cannot read "run\\n\.yaml": ENOENT[^\n]*'run\\x0a\.yaml'$/.test(errorText(e)),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
