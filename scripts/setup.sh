#!/usr/bin/env bash
# Installs what semaim needs on Debian 12, then the npm packages and the native addon.
# Idempotent: every step is skipped when already done. Run as root (or with sudo available).
#   - libtorch: $LIBTORCH, else Debian's libtorch-dev + OpenBLAS (OpenMP build), else a pip PyTorch
#   - python3-torch / python3-torchvision: reference implementations used by tests and benchmarks
#   - chromium: the headless browser the test of the exported web page drives
#   - libgloo-dev: gloo's headers, for the addon's Gloo process groups (libtorch-dev ships the library only)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libtorch-dev libopenblas0-openmp libgloo-dev python3-torch python3-torchvision g++ make chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ -n "${LIBTORCH:-}" ] && [ ! -e /usr/bin/apt-get ]; then
    echo "setup: using \$LIBTORCH=$LIBTORCH; skipping Debian packages (${missing[*]})"
  else
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q "${missing[@]}"
  fi
fi

# onnxruntime-node (a devDependency, for the ONNX export tests) carries its CPU binaries in the npm
# package; its install script would also fetch CUDA providers from outside the npm registry unless told not to.
export ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip
# An addon built before gloo's headers were installed has no Gloo backend: rebuild it.
if [[ " ${missing[*]} " == *" libgloo-dev "* ]] && dpkg -s libgloo-dev >/dev/null 2>&1 && [ -f build/Release/semaim.node ] && [ -d node_modules/node-addon-api ]; then
  echo "setup: rebuilding the native addon with Gloo"
  npx node-gyp rebuild -j 2
fi
if [ ! -f build/Release/semaim.node ] || [ ! -d node_modules/node-addon-api ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci (builds the native addon against $(node native/find-libtorch.js libdir))"
  npm ci --no-audit --no-fund
fi
node native/gen-ops.js  # the typed addon interface (src/torch/generated/) from native/ops.yaml
npx tsc -p tsconfig.json
