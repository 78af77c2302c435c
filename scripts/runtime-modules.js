#!/usr/bin/env node
// Prints the node_modules folders that package.json's dependencies need at run time (each with its own
// dependencies, recursively), leaving out the packages named as arguments and what only they need.
// scripts/pack-gpu.sh packs these for a GPU machine without npm: `node scripts/runtime-modules.js node-gyp sharp`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const leftOut = new Set(process.argv.slice(2));
const seen = new Set();
const folders = [];

// Optional dependencies count where npm installed them (sharp's native binary for this platform is one).
function visit(name, optional = false) {
  if (seen.has(name) || leftOut.has(name)) return;
  const dir = path.join('node_modules', name);
  const manifest = path.join(root, dir, 'package.json');
  if (!fs.existsSync(manifest)) {
    if (optional) return;
    throw new Error(`runtime-modules: ${name} is not installed (run npm ci)`);
  }
  seen.add(name);
  folders.push(dir);
  const pkg = JSON.parse(fs.readFileSync(manifest, 'utf8'));
  for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep);
  for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, true);
}

for (const dep of Object.keys(require(path.join(root, 'package.json')).dependencies ?? {})) visit(dep);
console.log(folders.join('\n'));
