#!/usr/bin/env node
// The package's install step (`npm install semaim`, `npm ci`): builds the native addon with node-gyp
// (binding.gyp, which generates the op glue from native/ops.yaml first).
//
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

function build() {
  let lib;
  try {
    lib = locate();
  } catch (e) {
    if (!(e instanceof LibtorchNotFound)) throw e;
    fail(`cannot build the native addon.\n${e.message}`);
  }
  console.log(`semaim: building the native addon against ${lib.libdir} (${lib.source}); this takes a few minutes`);
  const gyp = require.resolve('node-gyp/bin/node-gyp.js');
  const r = spawnSync(process.execPath, [gyp, 'rebuild', '-j', '2'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) fail('building the native addon failed (the compiler output is above; it needs g++ and make)');
}

if (process.env.SEMAIM_PREBUILT_ADDON) copyPrebuilt(path.resolve(process.env.SEMAIM_PREBUILT_ADDON));
else build();
