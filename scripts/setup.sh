#!/usr/bin/env bash
# Installs what semaim needs on Debian 12, then the npm packages and the native addon.
# Idempotent: every step is skipped when already done, except the addon's build step, which is
# incremental (seconds when nothing changed). Run as root (or with sudo available).
#   - libtorch: $LIBTORCH, else Debian's libtorch-dev + OpenBLAS (OpenMP build), else a pip PyTorch
#     (without apt-get, no Debian package is installed: the libtorch found, $LIBTORCH or a pip PyTorch)
#   - python3-torch / python3-torchvision: reference implementations used by tests and benchmarks
#   - chromium: the headless browser the test of the exported web page drives
#   - libgloo-dev: gloo's headers, for the addon's Gloo process groups (libtorch-dev ships the library only)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libtorch-dev libopenblas0-openmp libgloo-dev python3-torch python3-torchvision g++ make chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  # Installed means configured: `dpkg -s` also succeeds for a package removed with its config files
  # left, or one a broken earlier install left half-configured. (One status line per architecture.)
  case "$(dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null)" in
    *"install ok installed"*) ;;
    *) missing+=("$p") ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    # Not Debian/Ubuntu: the libtorch the addon's build finds ($LIBTORCH, else a pip PyTorch through
    # python3), or find-libtorch's message saying how to get one.
    libdir=$(node native/find-libtorch.js libdir) || exit 1
    echo "setup: no apt-get here: skipping the Debian packages (${missing[*]}); the addon is built against $libdir"
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
if [ ! -d node_modules/node-addon-api ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci (its install step builds the native addon)"
  npm ci --no-audit --no-fund
else
  # The addon's build step every time, not only when build/Release/semaim.node is missing: it is
  # incremental (native/install.js: node-gyp configure + build; seconds when nothing changed), and
  # compiles again what another libtorch ($LIBTORCH), newly installed headers (libgloo-dev) or changed
  # sources change. Through npm, so that npm's config (e.g. nodedir for node's headers) applies.
  npm run --silent install
fi
node native/gen-ops.js  # the typed addon interface (src/torch/generated/) from native/ops.yaml
npx tsc -p tsconfig.json
