#!/usr/bin/env node
// Locates libtorch for the addon build (called by binding.gyp and native/install.js).
// Order: $LIBTORCH, Debian's libtorch-dev, then the libtorch inside a pip PyTorch.
// Usage: node native/find-libtorch.js include|libdir|std|cflags|ldflags|info
// When none is found it prints one message saying how to get one (no stack trace) and exits 1.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const MULTIARCH = ['x86_64-linux-gnu', 'aarch64-linux-gnu'];

function fromDir(root, source) {
  const inc = path.join(root, 'include');
  const lib = path.join(root, 'lib');
  if (!fs.existsSync(path.join(inc, 'torch', 'csrc', 'api', 'include', 'torch', 'torch.h'))) return null;
  return { source, include: [inc, path.join(inc, 'torch', 'csrc', 'api', 'include')], libdir: lib };
}

// A Debian-style tree: the system's libtorch-dev (root '/'), or via $LIBTORCH an unpacked (dpkg -x)
// libtorch-dev of another release: headers in [usr/]include, libraries in [usr/]lib/<multiarch>. Its
// OpenMP libopenblas, when installed (or unpacked alongside), lives in <libdir>/openblas-openmp.
function fromDebianTree(root, source) {
  for (const prefix of [root, path.join(root, 'usr')]) {
    const inc = path.join(prefix, 'include');
    if (!fs.existsSync(path.join(inc, 'torch', 'csrc', 'api', 'include', 'torch', 'torch.h'))) continue;
    for (const arch of MULTIARCH) {
      const lib = path.join(prefix, 'lib', arch);
      if (!fs.existsSync(path.join(lib, 'libtorch.so'))) continue;
      const openblas = path.join(lib, 'openblas-openmp');
      return {
        source,
        include: [inc, path.join(inc, 'torch', 'csrc', 'api', 'include')],
        libdir: lib,
        extraRpath: fs.existsSync(openblas) ? [openblas] : [],
      };
    }
  }
  return null;
}

function pip(pythons) {
  for (const py of pythons) {
    try {
      const dir = execFileSync(py, ['-c', 'import torch,os;print(os.path.dirname(torch.__file__))'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
      const found = dir && fromDir(dir, `pip (${py})`);
      if (found) return found;
    } catch {
      /* try next */
    }
  }
  return null;
}

/** How to get a libtorch: the text of the error when none is found. */
const HOW_TO_GET_LIBTORCH = [
  "semaim needs libtorch (PyTorch's C++ library) to build its native addon. Get one of:",
  '  - Debian 12 / Ubuntu: sudo apt-get install libtorch-dev libopenblas0-openmp',
  '  - a PyTorch from pip, found through python3: pip install torch',
  '  - any unpacked libtorch (e.g. the zip from pytorch.org): LIBTORCH=/path/to/libtorch npm install semaim',
  'then install semaim again.',
].join('\n');

class LibtorchNotFound extends Error {
  constructor(what) {
    super(`${what}\n${HOW_TO_GET_LIBTORCH}`);
    this.name = 'LibtorchNotFound';
  }
}

/**
 * Finds libtorch. `o` overrides where it looks (for tests): env ($LIBTORCH), systemRoot (where a
 * Debian libtorch-dev is installed, default '/') and pythons (interpreters asked for a pip PyTorch).
 */
function locate(o = {}) {
  const env = o.env ?? process.env;
  const systemRoot = o.systemRoot ?? '/';
  const pythons = o.pythons ?? ['python3', '/usr/bin/python3', 'python'];
  if (env.LIBTORCH) {
    // absolute: binding.gyp hands -L and -rpath to the linker as written, which runs in build/, and a
    // relative rpath would be looked up from the working folder of every process that loads the addon
    const root = path.resolve(env.LIBTORCH);
    const plain = fromDir(root, '$LIBTORCH');
    const found = plain && has(plain.libdir, 'torch') ? plain : fromDebianTree(root, '$LIBTORCH');
    if (!found && plain) {
      // Headers alone would pass here and fail only at the link (or print an -L to a missing folder).
      throw new LibtorchNotFound(
        `libtorch not found: $LIBTORCH=${root} has libtorch's headers (include/torch/...) but no libraries: ` +
          `neither ${path.join(plain.libdir, 'libtorch.so')} nor [usr/]lib/<multiarch>/libtorch.so (Debian layout).`,
      );
    }
    if (!found) {
      throw new LibtorchNotFound(
        `libtorch not found: $LIBTORCH=${root} has neither include/torch/csrc/api/include/torch/torch.h ` +
          '(a libtorch or pip torch folder) nor [usr/]include/torch/... with [usr/]lib/<multiarch>/libtorch.so (Debian layout).',
      );
    }
    return buildable(found, root);
  }
  const found = fromDebianTree(systemRoot, 'debian') || pip(pythons);
  if (!found) {
    throw new LibtorchNotFound(
      `libtorch not found: $LIBTORCH is not set, there is no libtorch-dev under ${systemRoot} and no python (${pythons.join(', ')}) has torch.`,
    );
  }
  return buildable(found, path.dirname(found.include[0]));
}

// node-gyp splits the output of binding.gyp's <!@(...) commands at whitespace, so a libtorch folder
// whose path has a space or a tab reaches the compiler as two bogus -I/-L arguments: refused here,
// before minutes of "No such file" errors from the compiler.
function buildable(found, root) {
  const bad = [...found.include, found.libdir, ...(found.extraRpath ?? [])].find((d) => /\s/.test(d));
  if (bad) {
    throw new LibtorchNotFound(
      `libtorch at ${root} (${found.source}) cannot be used: its path "${bad}" contains whitespace, which node-gyp ` +
        'splits into separate compiler arguments. Link it to a path without spaces and point LIBTORCH there, e.g.\n' +
        `  ln -s '${root}' /tmp/libtorch && LIBTORCH=/tmp/libtorch npm install semaim`,
    );
  }
  return found;
}

function has(libdir, name) {
  return fs.existsSync(path.join(libdir, `lib${name}.so`));
}

// The C++11 ABI flag must match the one libtorch was built with. Pre-cxx11 builds export
// std::string symbols without the __cxx11 tag; probe libc10 for one.
function cxx11Abi(libdir) {
  try {
    const syms = execFileSync('nm', ['-DC', path.join(libdir, 'libc10.so')], { encoding: 'utf8', maxBuffer: 1 << 28 });
    return /std::__cxx11::basic_string/.test(syms) ? 1 : 0;
  } catch {
    return 1;
  }
}

// The C++ standard libtorch's headers demand: ATen.h refuses older ones with
// `#if __cplusplus < 201402L` (1.13), `< 201703L` (2.x) or `< 202002L` (2.10 and later).
function cxxStandard(include) {
  try {
    const aten = fs.readFileSync(path.join(include[0], 'ATen', 'ATen.h'), 'utf8');
    const m = /__cplusplus\s*<\s*(\d{6})L/.exec(aten);
    if (m && Number(m[1]) >= 202002) return 'c++20';
  } catch {
    /* fall through */
  }
  return 'c++17';
}

// A CUDA libtorch's c10/cuda headers include the CUDA runtime's (cuda_runtime_api.h), which a pip
// PyTorch does not ship: they come from the CUDA toolkit ($CUDA_HOME, /usr/local/cuda) or from the
// nvidia-cuda-runtime pip package next to torch (site-packages/nvidia/cuda_runtime/include).
function cudaIncludes(t) {
  const dirs = [];
  const add = (d) => {
    if (d && fs.existsSync(path.join(d, 'cuda_runtime_api.h')) && !dirs.includes(d)) dirs.push(d);
  };
  if (t.include.some((d) => fs.existsSync(path.join(d, 'cuda_runtime_api.h')))) return dirs;
  for (const env of ['CUDA_HOME', 'CUDA_PATH']) if (process.env[env]) add(path.join(process.env[env], 'include'));
  const sitePackages = path.dirname(path.dirname(t.include[0])); // <site-packages>/torch/include
  const nvidia = path.join(sitePackages, 'nvidia');
  if (fs.existsSync(nvidia)) {
    add(path.join(nvidia, 'cuda_runtime', 'include'));
    add(path.join(nvidia, 'cu13', 'include'));
    for (const d of fs.readdirSync(nvidia)) add(path.join(nvidia, d, 'include'));
  }
  add('/usr/local/cuda/include');
  try {
    const nvcc = execFileSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' }).trim();
    if (nvcc) add(path.join(path.dirname(path.dirname(fs.realpathSync(nvcc))), 'include'));
  } catch {
    /* no nvcc */
  }
  add('/usr/include');
  return dirs;
}

// What of libtorch's distributed engine (c10d) this libtorch has, for native/dist.cc: the headers and
// the symbols (a libtorch built with USE_DISTRIBUTED=0 may still ship headers). Gloo (CPU) also needs
// gloo's own headers, which Debian ships apart (libgloo-dev); NCCL (CUDA) needs nccl.h (a pip PyTorch's
// comes in nvidia-nccl-*; SEMAIM_NCCL=0 builds without NCCL). c10d's
// gradient Reducer (DDP's engine) includes a dist-autograd header Debian's libtorch-dev leaves out:
// native/compat supplies the two declarations it uses.
function definesSymbol(libdir, lib, needle) {
  try {
    const out = execFileSync('sh', ['-c', `nm -D --defined-only "$0" | grep -c -- "$1"`, path.join(libdir, `lib${lib}.so`), needle], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return Number(out.trim()) > 0;
  } catch {
    return false;
  }
}

// The include folders of the nvidia-* pip packages next to a pip PyTorch's torch/ (nvidia-nccl-cu13:
// nvidia/nccl/include/nccl.h), where that PyTorch's NCCL headers are; none for other libtorches.
function pipNvidiaIncludes(t) {
  const nvidia = path.join(path.dirname(path.dirname(t.include[0])), 'nvidia'); // <site-packages>/torch/include
  if (!fs.existsSync(nvidia)) return [];
  return fs.readdirSync(nvidia).map((d) => path.join(nvidia, d, 'include'));
}

function findHeader(name, dirs) {
  return dirs.find((d) => fs.existsSync(path.join(d, name))) ?? null;
}

function distFeatures(t, include, cuda) {
  const c10d = path.join(t.include[0], 'torch', 'csrc', 'distributed', 'c10d');
  const hasHeader = (h) => fs.existsSync(path.join(c10d, h));
  const none = { c10d: false, gloo: false, nccl: false, reducer: false, extraInclude: [] };
  if (!hasHeader('ProcessGroup.hpp') || !hasHeader('TCPStore.hpp') || !definesSymbol(t.libdir, 'torch_cpu', 'TCPStore')) return none;
  const glooDir = findHeader(path.join('gloo', 'config.h'), [...include, '/usr/include']);
  const gloo = hasHeader('ProcessGroupGloo.hpp') && glooDir !== null && definesSymbol(t.libdir, 'torch_cpu', 'ProcessGroupGloo');
  const ncclDir = cuda && process.env.SEMAIM_NCCL !== '0' ? findHeader('nccl.h', [...include, ...pipNvidiaIncludes(t)]) : null;
  const nccl = ncclDir !== null && hasHeader('ProcessGroupNCCL.hpp') && definesSymbol(t.libdir, 'torch_cuda', 'ProcessGroupNCCL');
  const reducer = hasHeader('reducer.hpp') && definesSymbol(t.libdir, 'torch_cpu', 'c10d7Reducer');
  const extraInclude = [];
  if (gloo && !include.includes(glooDir)) extraInclude.push(glooDir);
  if (nccl && !include.includes(ncclDir)) extraInclude.push(ncclDir);
  if (reducer && !fs.existsSync(path.join(t.include[0], 'torch', 'csrc', 'distributed', 'autograd', 'context', 'context.h'))) {
    extraInclude.push(ownDir(path.join(__dirname, 'compat')));
  }
  return { c10d: true, gloo, nccl, reducer, extraInclude };
}

// A folder of this package (native/compat) as binding.gyp should name it: relative to the directory
// gyp runs this script in (binding.gyp's), so that a checkout whose path has a space still builds
// (node-gyp splits <!@(...) output at whitespace); absolute where the relative path would have one too.
function ownDir(dir) {
  const rel = path.relative(process.cwd(), dir);
  return rel && !/\s/.test(rel) ? rel : dir;
}

function distDefines(d) {
  return [d.c10d && '-DSEMAIM_C10D=1', d.gloo && '-DUSE_C10D_GLOO=1', d.nccl && '-DUSE_C10D_NCCL=1', d.reducer && '-DSEMAIM_C10D_REDUCER=1']
    .filter(Boolean)
    .join(' ');
}

function main(what) {
  let t;
  try {
    t = locate();
  } catch (e) {
    if (e.name !== 'LibtorchNotFound') throw e;
    console.error(e.message);
    process.exit(1);
  }
  const cuda = has(t.libdir, 'torch_cuda');
  const libs = ['torch', 'torch_cpu', 'c10'].concat(cuda ? ['torch_cuda', 'c10_cuda'] : []);
  const baseInclude = cuda ? t.include.concat(cudaIncludes(t)) : t.include;
  const dist = ['include', 'cflags', 'info'].includes(what) ? distFeatures(t, baseInclude, cuda) : null;
  const include = dist ? baseInclude.concat(dist.extraInclude) : baseInclude;
  if (cuda && !include.some((d) => fs.existsSync(path.join(d, 'cuda_runtime_api.h')))) {
    console.error('find-libtorch: warning: this libtorch has CUDA but cuda_runtime_api.h was not found; set $CUDA_HOME to the CUDA toolkit');
  }
  switch (what) {
    case 'include':
      console.log(include.join(' '));
      break;
    case 'libdir':
      console.log(t.libdir);
      break;
    case 'std':
      console.log(cxxStandard(t.include));
      break;
    case 'cflags':
      console.log(`-std=${cxxStandard(t.include)} -D_GLIBCXX_USE_CXX11_ABI=${cxx11Abi(t.libdir)}${cuda ? ' -DSEMAIM_CUDA=1' : ''} ${distDefines(dist)}`.trim());
      break;
    case 'ldflags': {
      // --no-as-needed keeps libtorch_cuda linked even though no symbol of it is named directly:
      // without it, CUDA kernels never register. DT_RPATH (not RUNPATH) so it also applies to
      // libtorch's own dependencies.
      const rpath = [...(t.extraRpath ?? []), t.libdir];
      console.log(
        [
          '-Wl,--no-as-needed',
          ...libs.map((l) => `-l${l}`),
          '-Wl,--as-needed',
          `-L${t.libdir}`,
          '-Wl,--disable-new-dtags',
          ...rpath.map((r) => `-Wl,-rpath,${r}`),
        ].join(' '),
      );
      break;
    }
    default:
      console.log(JSON.stringify({ ...t, include, cuda, libs, std: cxxStandard(t.include), cxx11Abi: cxx11Abi(t.libdir), dist }, null, 2));
  }
}

module.exports = { locate, LibtorchNotFound, HOW_TO_GET_LIBTORCH };

if (require.main === module) main(process.argv[2] || 'info');
