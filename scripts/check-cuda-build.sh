#!/usr/bin/env bash
# Compiles the addon's CUDA code paths (-DSEMAIM_CUDA=1) on a machine without a GPU or CUDA, against
# the headers of Debian trixie's CUDA libtorch (libtorch-cuda-dev 2.6, contrib) and CUDA toolkit
# (nvidia-cuda-dev 12.4, non-free). Compile only (-fsyntax-only): nothing is linked or run, so this
# catches what a GPU session would otherwise find out at build time (renamed c10::cuda APIs,
# missing CUDA includes, C++ standard), without spending device time on it.
#
#   bash scripts/check-cuda-build.sh                 # every native/*.cc
#   bash scripts/check-cuda-build.sh native/dist.cc  # only these
#
# Needs deb.debian.org (or $DEBIAN_MIRROR): about 940 MB of downloads on the first run (the toolkit
# package carries all its libraries; only its headers are unpacked). Cache: $SEMAIM_CUDA_CACHE
# (default ~/.cache/semaim/cuda-headers). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${SUITE:-trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${SEMAIM_CUDA_CACHE:-$HOME/.cache/semaim/cuda-headers}
ROOT=$CACHE/root
log() { echo "check-cuda-build: $*" >&2; }
die() { log "$*"; exit 1; }
source scripts/debian-package.sh
mkdir -p "$CACHE"

# package component (nccl.h, gloo and libcu++ headers: for native/dist.cc, whose ProcessGroupNCCL.hpp pulls in ATen/cuda)
PACKAGES=("libtorch-cuda-dev contrib" "nvidia-cuda-dev non-free" "libnccl-dev contrib" "libgloo-cuda-dev contrib" "libcu++-dev main")
stamp=""
for entry in "${PACKAGES[@]}"; do
  read -r name component <<<"$entry"
  index=$(debian_index "$SUITE" "$component" "$CACHE") || exit 1
  deb=$(debian_deb "$index" "$name" "$CACHE/debs") || exit 1
  stamp+="$(basename "$deb") "
done

if [ "$(cat "$ROOT/.semaim-stamp" 2>/dev/null)" != "$stamp" ]; then
  log "unpacking headers into $ROOT"
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  for deb in $stamp; do dpkg-deb --fsys-tarfile "$CACHE/debs/$deb" | tar -x -C "$ROOT" --wildcards '*/include/*'; done
  echo "$stamp" > "$ROOT/.semaim-stamp"
fi
INC=$ROOT/usr/include
[ -f "$INC/c10/cuda/CUDACachingAllocator.h" ] && [ -f "$INC/cuda_runtime_api.h" ] && [ -f "$INC/nccl.h" ] && [ -f "$INC/gloo/config.h" ] ||
  die "headers missing under $INC"

STD=c++17
grep -qE '__cplusplus < 202002L' "$INC/ATen/ATen.h" && STD=c++20
NAPI_INCLUDE=${NAPI_INCLUDE:-/usr/include/node}
ADDON_API=$(node -p "require('node-addon-api').include_dir")
node native/gen-ops.js  # the op glue from native/ops.yaml
# Every distributed part on (c10d, Gloo, NCCL, the Reducer), as native/find-libtorch.js turns them on
# for a CUDA libtorch that has them.
DIST="-DSEMAIM_C10D=1 -DUSE_C10D_GLOO=1 -DUSE_C10D_NCCL=1 -DSEMAIM_C10D_REDUCER=1"
log "compiling native/*.cc with -DSEMAIM_CUDA=1 $DIST -std=$STD against $SUITE's CUDA libtorch headers"
fail=0
if [ $# -gt 0 ]; then FILES=("$@"); else FILES=(native/*.cc); fi
for f in "${FILES[@]}"; do
  if g++ -std=$STD -fsyntax-only -fexceptions -frtti -Wall -Wno-unused-parameter -Wdeprecated-declarations \
      -Werror=unused-function -Werror=missing-declarations \
      -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED -D_GLIBCXX_USE_CXX11_ABI=1 -DSEMAIM_CUDA=1 $DIST \
      -I"$NAPI_INCLUDE" -I"$ADDON_API" -I"$INC" -I"$INC/torch/csrc/api/include" "$f" 2>"$CACHE/$(basename "$f").log"; then
    warnings=$(grep -c 'warning:' "$CACHE/$(basename "$f").log" || true)
    log "ok   $f ($warnings warnings)"
  else
    fail=1
    log "FAIL $f"
    grep -E 'error' "$CACHE/$(basename "$f").log" | head -n 20 >&2
  fi
done
[ "$fail" = 0 ] && log "all CUDA code paths compile" || die "CUDA code paths do not compile"
