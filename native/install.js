#!/usr/bin/env node
// The package's install step (`npm install semaim`, `npm ci`, scripts/setup.sh, and `npx semaim` in a
// checkout, which links the checkout into npm's npx cache and runs this): builds the native addon with
// node-gyp (binding.gyp), after generating the op glue from native/ops.yaml (native/gen-ops.js).
//
// - The build is incremental: `node-gyp configure` then `node-gyp build`, never `rebuild` (which
//   deletes build/ first). gyp's Makefiles record each object's command line (build/Release/.deps) and
//   compile it again when that line (include folders, flags: a changed libtorch) or a source or header
//   it read changed, and link again when an object or the link line changed; so an up-to-date addon
//   costs seconds, a changed libtorch still rebuilds, and an interrupted build leaves the previous
//   build/Release/semaim.node in place (the linker writes a new file, then make copies it there).
// - libtorch is looked up first (native/find-libtorch.js): without one, the install stops with one
//   message saying how to get one, instead of node-gyp's chain of gyp errors.
// - SEMAIM_PREBUILT_ADDON=<path to a semaim.node> copies that addon into build/Release instead of
//   compiling (~3 min on 2 cores). It must have been built from the same native/ops.yaml against a
//   libtorch of this machine (its libtorch path is baked in); the package's tests use it to install
//   a tarball more than once.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { locate, LibtorchNotFound } = require('./find-libtorch');

const ROOT = path.join(__dirname, '..');
const TARGET = path.join(ROOT, 'build', 'Release', 'semaim.node');

function fail(message) {
  console.error(`semaim: ${message}`);
  process.exit(1);
}

function copyPrebuilt(from) {
  if (!fs.existsSync(from)) fail(`SEMAIM_PREBUILT_ADDON=${from} does not exist (unset it to compile the addon)`);
  fs.mkdirSync(path.dirname(TARGET), { recursive: true });
  fs.copyFileSync(from, TARGET);
  console.log(`semaim: using the prebuilt addon ${from} (SEMAIM_PREBUILT_ADDON); nothing compiled`);
}

// node-gyp compiles against node's C headers: npm's nodedir config where it is set (npm passes it on as
// npm_config_nodedir), else the headers installed with this node (Debian's and NodeSource's nodejs:
// /usr/include/node), else node-gyp downloads them from nodejs.org, which a machine that reaches only
// the npm and Debian registries cannot.
function nodedir() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const headers = path.join(prefix, 'include', 'node');
  return ['node_api.h', 'common.gypi'].every((f) => fs.existsSync(path.join(headers, f))) ? [`--nodedir=${prefix}`] : [];
}

function build() {
  let lib;
  try {
    lib = locate();
  } catch (e) {
    if (!(e instanceof LibtorchNotFound)) throw e;
    fail(`cannot build the native addon.\n${e.message}`);
  }
  const had = fs.existsSync(TARGET);
  console.log(
    `semaim: building the native addon against ${lib.libdir} (${lib.source}): ` +
      (had ? 'only what changed is compiled again (seconds when nothing did)' : 'a first build takes a few minutes'),
  );
  const started = Date.now();
  // The op glue first, here and not as a binding.gyp action: gyp runs an action after `cd` into the
  // checkout but names its output folders relative to build/, so its `mkdir -p ../native/generated`
  // made empty folders beside the checkout (in node_modules/, for an installed package). gen-ops
  // rewrites only what changed, so make's dependency files recompile exactly the units whose glue did.
  const glue = spawnSync(process.execPath, [path.join(__dirname, 'gen-ops.js')], { cwd: ROOT, stdio: 'inherit' });
  if (glue.status !== 0) fail('generating the op glue from native/ops.yaml failed (the output is above)');
  const gyp = require.resolve('node-gyp/bin/node-gyp.js');
  for (const args of [
    ['configure', ...nodedir()],
    ['build', '-j', '2'],
  ]) {
    const r = spawnSync(process.execPath, [gyp, ...args, '--loglevel=warn'], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) {
      fail(
        `building the native addon failed at node-gyp ${args[0]} (the output is above; it needs g++ and make)` +
          (had && fs.existsSync(TARGET) ? `; the previous ${path.relative(ROOT, TARGET)} is left in place` : ''),
      );
    }
  }
  console.log(`semaim: native addon ${path.relative(ROOT, TARGET)} up to date against ${lib.libdir} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

if (process.env.SEMAIM_PREBUILT_ADDON) copyPrebuilt(path.resolve(process.env.SEMAIM_PREBUILT_ADDON));
else build();
