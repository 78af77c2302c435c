#!/usr/bin/env bash
# Builds build/Release/semaim.node with g++ directly, without node-gyp or the network: for machines
# (the GPU lender) that have a compiler and libtorch but no npm. Same sources and flags as binding.gyp.
# Needs: node on PATH, node-addon-api in node_modules, and the Node-API C headers in $NAPI_INCLUDE
# (default: /usr/include/node, else .gpu/napi-include as packed by scripts/pack-gpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
NAPI_INCLUDE=${NAPI_INCLUDE:-$( [ -f /usr/include/node/node_api.h ] && echo /usr/include/node || echo "$PWD/.gpu/napi-include")}
[ -f "$NAPI_INCLUDE/node_api.h" ] || { echo "build-addon: node_api.h not found in $NAPI_INCLUDE" >&2; exit 1; }
ADDON_API=$(node -p "require('node-addon-api').include_dir")
INCLUDES=$(node native/find-libtorch.js include | tr ' ' '\n' | sed 's/^/-I/' | tr '\n' ' ')
CFLAGS="-O2 -fPIC -fexceptions -frtti -Wno-unused-parameter -Wno-deprecated-declarations -Werror=unused-function -Werror=missing-declarations -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED -DBUILDING_NODE_EXTENSION $(node native/find-libtorch.js cflags)"
node native/gen-ops.js  # the op glue from native/ops.yaml (needs the yaml package)
# Every source is compiled each time: the objects of an earlier build go, so that one whose source
# was renamed or removed is not linked in too.
rm -rf build/Release/obj
mkdir -p build/Release/obj
JOBS=${JOBS:-$(nproc)}
echo "build-addon: $(node native/find-libtorch.js libdir) ($CFLAGS), $JOBS jobs"
# The paths reach the compile through the environment, quoted, so that a space in one does not split it
# (CFLAGS and INCLUDES are lists of words).
export CFLAGS INCLUDES NAPI_INCLUDE ADDON_API
printf '%s\n' native/*.cc | xargs -P "$JOBS" -I{} sh -c \
  'g++ $CFLAGS -I"$NAPI_INCLUDE" -I"$ADDON_API" $INCLUDES -c "$1" -o "build/Release/obj/$(basename "$1" .cc).o"' _ {}
g++ -shared -o build/Release/semaim.node build/Release/obj/*.o $(node native/find-libtorch.js ldflags)
echo "build-addon: build/Release/semaim.node"
