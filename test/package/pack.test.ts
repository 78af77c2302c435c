// semaim as an npm dependency, as a new user meets it: the files a clean clone has (git's view of
// this tree, no dist/ or build/) are packed with `npm pack` (prepack compiles the TypeScript), the
// tarball is installed into a new npm project (its install step compiles the addon against this
// machine's libtorch), and there `require('semaim')`, an ES module import, a strict TypeScript file
// importing { SemAIM, torch } from 'semaim' (type-checked with this project's tsc, moduleResolution
// node16) and `npx semaim --help` all work.
//
// It needs the npm registry (the tarball's dependencies; the machine's npm cache is used first) and
// skips with a message when it cannot reach it. SEMAIM_PACK_TEST_PREBUILT=1 installs with this
// tree's built addon (SEMAIM_PREBUILT_ADDON, honoured by native/install.js) instead of compiling
// it, for quick local runs; without it the addon is compiled from the tarball's sources (~3-5 min
// on 2 cores), which is what proves the tarball installs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { spawnSync, SpawnSyncOptions } from 'node:child_process';

const ROOT = resolve(__dirname, '..', '..', '..');
const PKG = require(join(ROOT, 'package.json')) as {
  version: string;
  bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
  devDependencies: Record<string, string>;
  engines: { node: string };
};

/** The environment of the npm calls: no npm_* variables of a surrounding `npm test`, no fetches beyond the registry. */
function npmEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_(package|lifecycle|command|config_(local_)?prefix)|^INIT_CWD$/.test(k)) continue;
    env[k] = v;
  }
  delete env.SEMAIM_PREBUILT_ADDON;
  return { ...env, ONNXRUNTIME_NODE_INSTALL: 'skip', ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip', ...extra };
}

function run(cmd: string, args: string[], o: SpawnSyncOptions & { cwd: string }): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, env: npmEnv(), ...o });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} (in ${o.cwd}) failed with ${r.status ?? r.signal}:\n${output.slice(-6000)}`);
  return String(r.stdout);
}

/** The files a clean clone has: tracked and untracked-but-not-ignored files of this tree (null without git). */
function cloneFiles(): string[] | null {
  const r = spawnSync('git', ['-C', ROOT, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) return null;
  return r.stdout.split('\0').filter((f) => f && existsSync(join(ROOT, f)) && statSync(join(ROOT, f)).isFile());
}

function registryError(): string | null {
  const r = spawnSync('npm', ['ping'], { encoding: 'utf8', timeout: 60_000, env: npmEnv(), cwd: tmpdir() });
  return r.status === 0 ? null : `${r.stderr || r.stdout || r.error?.message || `exit ${r.status}`}`.trim().split('\n').slice(-2).join(' ');
}

const seconds = (t0: number) => ((Date.now() - t0) / 1000).toFixed(1);

test('the packed tarball installs into a new project: require, ESM import, strict TypeScript and npx semaim work', { timeout: 30 * 60_000 }, (t) => {
  const files = cloneFiles();
  if (!files) return t.skip(`git cannot list the files of ${ROOT}: no clean-clone view to pack`);
  const unreachable = registryError();
  if (unreachable) return t.skip(`the npm registry is unreachable (npm ping: ${unreachable}); this test installs the tarball's dependencies from it`);
  const work = mkdtempSync(join(tmpdir(), 'semaim-pack-'));
  try {
    // 1. A clean clone (no dist/, build/, node_modules/; the dev tools linked in) and `npm pack`.
    const t0 = Date.now();
    const clone = join(work, 'clone');
    for (const f of files) {
      mkdirSync(dirname(join(clone, f)), { recursive: true });
      copyFileSync(join(ROOT, f), join(clone, f));
    }
    assert.equal(existsSync(join(clone, 'dist')), false, 'the clean clone has no compiled code');
    symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'), 'dir');
    const packed = run('npm', ['pack', '--pack-destination', work], { cwd: clone }).trim().split('\n').pop()!;
    const tarball = join(work, packed);
    const size = statSync(tarball).size;
    const entries = run('tar', ['tzf', tarball], { cwd: work })
      .split('\n')
      .filter((l) => l && !l.endsWith('/'))
      .map((l) => l.replace(/^package\//, ''));
    t.diagnostic(`pack: ${seconds(t0)} s (prepack compiles the TypeScript); ${packed}: ${(size / 1024).toFixed(0)} KiB, ${entries.length} files`);

    // 2. What the tarball carries.
    const has = new Set(entries);
    for (const f of [
      'package.json',
      'README.md',
      'binding.gyp',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'dist/src/data/worker.js',
      'dist/src/torch/generated/native-ops.js',
      'dist/src/torch/generated/native-ops.d.ts',
      'native/install.js',
      'native/find-libtorch.js',
      'native/gen-ops.js',
      'native/ops.yaml',
      'native/common.h',
      'native/addon.cc',
      'src/export/onnx.proto',
      'src/export/web/index.html',
      'docs/METHOD.md', // the README and the commands' help cite it
    ])
      assert.ok(has.has(f), `the tarball lacks ${f}`);
    for (const target of [...Object.values(PKG.bin), ...Object.values(PKG.exports).flatMap((e) => (typeof e === 'string' ? [e] : [e.types, e.default]))]) {
      assert.ok(has.has(target.replace(/^\.\//, '')), `the tarball lacks ${target}, named in package.json`);
    }
    const unwanted = entries.filter((f) =>
      /^(dist\/(test|bench)\/|test\/|bench\/|scripts\/|build\/|node_modules\/|native\/generated\/)|\.map$|^src\/.*\.ts$/.test(f),
    );
    assert.deepEqual(unwanted, [], 'tests, benchmarks, build outputs and TypeScript sources stay out of the tarball');

    // 3. A new npm project installs it (and @types/node for the TypeScript check).
    const t1 = Date.now();
    const app = join(work, 'app');
    mkdirSync(join(app, 'src'), { recursive: true });
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'semaim-consumer', version: '1.0.0', private: true }, null, 2));
    const prebuilt = process.env.SEMAIM_PACK_TEST_PREBUILT === '1';
    const env = npmEnv(prebuilt ? { SEMAIM_PREBUILT_ADDON: join(ROOT, 'build', 'Release', 'semaim.node') } : {});
    const install = run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball, `@types/node@${PKG.devDependencies['@types/node']}`],
      { cwd: app, env },
    );
    assert.match(install, prebuilt ? /using the prebuilt addon/ : /building the native addon against/);
    assert.ok(existsSync(join(app, 'node_modules', 'semaim', 'build', 'Release', 'semaim.node')), 'the install step built the addon');
    // The build writes only inside the package: gyp's action once made native/ and src/ here, beside it.
    const strays = ['native', 'src'].filter((d) => existsSync(join(app, 'node_modules', d)));
    assert.deepEqual(strays, [], 'the install step made folders in node_modules/ outside the package');
    t.diagnostic(`install: ${seconds(t1)} s (${prebuilt ? 'prebuilt addon copied' : 'addon compiled from the tarball'})`);

    // 4. CommonJS and ES module consumers.
    const t2 = Date.now();
    const cjs = run(
      process.execPath,
      [
        '-e',
        "const s = require('semaim'); const t = s.torch.randn([2, 3]);" +
          ' console.log(JSON.stringify({ SemAIM: typeof s.SemAIM, shape: t.shape, embed: typeof s.embed, exportOnnx: typeof s.exportOnnx,' +
          " sameTorch: require('semaim/torch').Tensor === s.Tensor, nn: typeof require('semaim/nn').Linear, model: require('semaim/model').SemAIM === s.SemAIM }));",
      ],
      { cwd: app },
    );
    assert.deepEqual(JSON.parse(cjs), {
      SemAIM: 'function',
      shape: [2, 3],
      embed: 'function',
      exportOnnx: 'function',
      sameTorch: true,
      nn: 'function',
      model: true,
    });
    const esm = run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import { SemAIM, torch } from 'semaim'; import { Linear } from 'semaim/nn'; console.log(typeof SemAIM, torch.ones([3]).sum().item(), typeof Linear);",
      ],
      { cwd: app },
    );
    assert.equal(esm.trim(), 'function 3 function');

    // 5. A strict TypeScript consumer, type-checked against the package's .d.ts (no skipLibCheck).
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, module: 'node16', moduleResolution: 'node16', target: 'ES2022', outDir: 'out', types: ['node'] },
        include: ['src'],
      }),
    );
    writeFileSync(
      join(app, 'src', 'main.ts'),
      [
        "import { SemAIM, makeConfig, torch } from 'semaim';",
        "import * as nn from 'semaim/nn';",
        '',
        "const model: SemAIM = new SemAIM(makeConfig('vit_tiny', { imgSize: 16, patchSize: 4 })).initWeights();",
        'const loss: number = torch.scope(() => {',
        '  const images: torch.Tensor = torch.randn([2, 3, 16, 16]);',
        '  const { order } = model.makeOrder(images);',
        '  return model.forward(images, order).loss.item();',
        '});',
        'const layer: nn.Linear = new nn.Linear(4, 2);',
        'console.log(JSON.stringify({ finite: Number.isFinite(loss), params: layer.parameters().length }));',
        '',
      ].join('\n'),
    );
    writeFileSync(join(app, 'src', 'wrong.ts'), "import { SemAIM } from 'semaim';\nconst n: number = SemAIM;\nexport { n };\n");
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    // One compile of both files: the check can fail (wrong.ts misuses a type and is refused), and
    // main.ts has no error and is emitted.
    const checked = spawnSync(process.execPath, [tsc, '-p', '.'], { cwd: app, encoding: 'utf8' });
    const errors = checked.stdout.split('\n').filter((l) => /error TS/.test(l));
    assert.notEqual(checked.status, 0);
    assert.ok(errors.length > 0 && errors.every((l) => l.startsWith('src/wrong.ts(2,7): error TS2322')), checked.stdout);
    assert.deepEqual(JSON.parse(run(process.execPath, [join(app, 'out', 'main.js')], { cwd: app })), { finite: true, params: 2 });

    // 6. The command line.
    const help = run('npx', ['--no-install', 'semaim', '--help'], { cwd: app });
    assert.match(help, /Usage: semaim <command>/);
    for (const c of ['pretrain', 'knn', 'embed', 'export']) assert.match(help, new RegExp(`^  ${c} `, 'm'));
    assert.match(run('npx', ['--no-install', 'semaim', 'embed', '--help'], { cwd: app }), /--pooling <cls\|mean\|gap\|all>/);
    t.diagnostic(`use: ${seconds(t2)} s; total ${seconds(t0)} s`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('package.json exports every part, with types, from dist/src', () => {
  const parts = Object.keys(PKG.exports).filter((k) => k !== './package.json');
  assert.deepEqual(parts.sort(), ['.', './data', './dist', './eval', './export', './io', './model', './nn', './optim', './torch', './train', './viz']);
  for (const k of parts) {
    const e = PKG.exports[k];
    assert.ok(typeof e === 'object' && e.types.endsWith('.d.ts') && e.default.endsWith('.js'), k);
    if (typeof e === 'object') {
      assert.ok(existsSync(join(ROOT, e.default)), `${k}: ${e.default} is not built`);
      assert.ok(existsSync(join(ROOT, e.types)), `${k}: ${e.types} is not built`);
    }
  }
  assert.ok(readdirSync(join(ROOT, 'native')).includes('install.js'));
});

test("package.json's engines admits no Node without Symbol.dispose, which the compiled `using` declarations need", () => {
  // tsc (target ES2022) compiles `using x = ...` to a helper that throws "Symbol.dispose is not defined."
  // where the runtime lacks it: Node added Symbol.dispose in 20.4.0 (and 18.18.0)
  const m = /^>=\s*(\d+)(?:\.(\d+))?/.exec(PKG.engines.node);
  assert.ok(m, `engines.node: ${PKG.engines.node}`);
  const [major, minor] = [Number(m[1]), Number(m[2] ?? 0)];
  assert.ok(major > 20 || (major === 20 && minor >= 4), `engines.node ${PKG.engines.node} admits Node 20.0-20.3, where loading a safetensors file throws`);
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node: string } }> };
  assert.equal(lock.packages[''].engines?.node, PKG.engines.node, 'package-lock.json repeats engines: npm install rewrites it');
});
