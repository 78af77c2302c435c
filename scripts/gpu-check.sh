#!/usr/bin/env bash
# On a machine with CUDA PyTorch (pip) and a node binary: builds the addon against that libtorch and
# runs the engine, nn, model and optimiser tests with their tensors on cuda. Usage:
#   bash scripts/gpu-check.sh                     (node on PATH, node_modules and dist/ present)
#   NODE_XZ=node-v20-linux-x64.tar.xz bash scripts/gpu-check.sh
# Without node-gyp (a machine without npm) the addon is built by scripts/build-addon.sh; without
# TypeScript, the carried dist/ is used. scripts/gpu-session.sh wraps all of this for one device call.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1; then
  : "${NODE_XZ:?no node on PATH: set NODE_XZ to a node-*.tar.xz}"
  mkdir -p .tmp/node && tar -xJf "$NODE_XZ" -C .tmp/node --strip-components=1
  export PATH="$PWD/.tmp/node/bin:$PATH"
fi
PY=$(bash scripts/find-torch-python.sh)
export SEMAIM_PYTHON=$PY
TORCH_DIR=$($PY -c 'import torch,os;print(os.path.dirname(torch.__file__))')
export LIBTORCH="$TORCH_DIR"
echo "== $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
echo "== torch $($PY -c 'import torch;print(torch.__version__, torch.version.cuda)') at $TORCH_DIR; node $(node --version)"
node native/find-libtorch.js
# `|| return 1`: called as `if ! time build`, set -e does not apply inside it, and a failed gen-ops went unnoticed
build() {
  if [ -f node_modules/node-gyp/bin/node-gyp.js ]; then
    node native/gen-ops.js || return 1 # the op glue from native/ops.yaml (node-gyp does not make it)
    node node_modules/node-gyp/bin/node-gyp.js rebuild -j "$(nproc)"
  else
    bash scripts/build-addon.sh
  fi
}
# native/dist.cc with NCCL (the headers of the pip nvidia-nccl package) was compiled only against Debian's
# libtorch 2.6 before: if that build fails here, the rest of the call still gets an addon, without NCCL.
# BUILD=0: a later call on a warm machine keeps the addon an earlier call built (the compile takes minutes).
if [ "${BUILD:-1}" = 0 ] && [ -f build/Release/semaim.node ]; then
  echo "== build skipped (BUILD=0): the addon an earlier call built"
elif ! time build; then
  [ "${SEMAIM_NCCL:-}" != 0 ] && grep -q '"nccl": true' <<<"$(node native/find-libtorch.js info)" || exit 1
  echo "== the build with NCCL failed (above); building without it (SEMAIM_NCCL=0)"
  export SEMAIM_NCCL=0
  time build
fi
if [ -f node_modules/typescript/bin/tsc ]; then node node_modules/typescript/bin/tsc -p tsconfig.json; fi
node -e 'const t=require("./dist/src/torch");console.log("cuda available:",t.cuda.isAvailable(),"devices:",t.cuda.deviceCount())'
[ "${TESTS:-1}" = 0 ] && exit 0
# The engine, nn, model and optimiser tests with every tensor they create on the GPU (tests of CPU-only
# behaviour skip themselves), plus the CUDA-specific ones. GPU_TESTS narrows them (test path substrings,
# e.g. "cuda.test fused/" when a device call's minutes belong to the benchmark).
if node -e 'process.exit(require("./dist/src/torch").cuda.isAvailable() ? 0 : 1)'; then export SEMAIM_TEST_DEVICE=${SEMAIM_TEST_DEVICE:-cuda}; fi
echo "== tests on ${SEMAIM_TEST_DEVICE:-cpu}"
# shellcheck disable=SC2086
node scripts/run-tests.js ${GPU_TESTS:-cuda.test torch/ nn/ semaim/ optim/ eval/finetune fused/}
