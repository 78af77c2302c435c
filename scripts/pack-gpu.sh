#!/usr/bin/env bash
# Packs what a GPU machine without node, npm or network needs into .gpu/ (git-ignored), for one
# device call: `bash scripts/gpu-session.sh` with carry [".gpu"]. Contents: this node binary (xz),
# the Node-API C headers, the runtime npm packages the engine, model, tests and benchmark need, and
# the compiled TypeScript (dist/), with CIFAR=1 the CIFAR-10 archive (for scripts/gpu-ablation.sh), and with
# KERNEL_CACHE=<folder> the fused kernels an earlier call compiled.
# Run `npm run build` first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/src/torch/index.js ] || { echo "pack-gpu: run npm run build first" >&2; exit 1; }
# dist/ must be the build of these sources: the GPU machine has no TypeScript, so a source edited or added
# after the last build would run there as its old code, or not at all, for a whole device call.
stale=$(find src test bench -name '*.ts' ! -name '*.d.ts' | while read -r f; do
  if [ "$f" -nt "dist/${f%.ts}.js" ]; then echo "$f"; fi
done | head -n 3 || true)
[ -z "$stale" ] || { echo "pack-gpu: dist/ is older than $(echo "$stale" | paste -sd, -) (or lacks it): run npm run build first" >&2; exit 1; }
rm -rf .gpu && mkdir -p .gpu/napi-include
xz -T0 -6 -c "$(command -v node)" > .gpu/node.xz
for h in node_api.h node_api_types.h js_native_api.h js_native_api_types.h; do cp "/usr/include/node/$h" .gpu/napi-include/; done
# Every runtime dependency of package.json with its own (node-gyp is not needed there), compressed (sharp's
# libvips is 18 MB): scripts/gpu-session.sh and gpu-ablation.sh unpack it. The command-line tool loads
# sharp at start (PNG output), so the ablation needs it too.
tar -cJf .gpu/modules.tar.xz $(node scripts/runtime-modules.js node-gyp)
cp -r dist .gpu/dist
# KERNEL_CACHE=<folder>: the cubins an earlier device call returned ($OUT/kernel-cache), so that this call
# skips NVRTC's seconds (scripts/gpu-session.sh points SEMAIM_KERNEL_CACHE at .gpu/kernel-cache)
if [ -n "${KERNEL_CACHE:-}" ]; then
  [ -d "$KERNEL_CACHE" ] || { echo "pack-gpu: KERNEL_CACHE=$KERNEL_CACHE is not a folder" >&2; exit 1; }
  mkdir -p .gpu/kernel-cache && cp "$KERNEL_CACHE"/*.cubin .gpu/kernel-cache/ 2>/dev/null || true
fi
if [ "${CIFAR:-0}" = 1 ]; then
  a=${SEMAIM_CIFAR10_TAR:-../shared/data/cifar10-jpeg.tar.gz}
  [ -f "$a" ] || { echo "pack-gpu: CIFAR=1 but $a is missing (set SEMAIM_CIFAR10_TAR)" >&2; exit 1; }
  cp "$a" .gpu/cifar10-jpeg.tar.gz
fi
du -sh .gpu
