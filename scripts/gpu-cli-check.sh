#!/usr/bin/env bash
# The command-line tool end to end on a GPU, on the built-in synthetic dataset: pretrain (bf16 auto,
# uint8 uploads, checkpoints), an interrupted-and-resumed continuation, k-NN, linear probe, visualize
# and report, each with --device cuda. A short check that the user-facing paths run there, not a
# measurement. `DEVICE=cpu bash scripts/gpu-cli-check.sh` runs the same on the CPU.
# gpu-session.sh calls it when CLI=1 (sharp comes from .gpu/sharp.tar.xz, packed by pack-gpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
R=${RUN_DIR:-.tmp/gpu-cli}
rm -rf "$R" && mkdir -p "$R/images"
semaim() { echo "== semaim $*"; node dist/src/cli/main.js "$@"; }
MODEL=(--dataset synthetic --synthetic-size 2048 --model vit_tiny --img-size 32 --patch-size 4 --embed-dim 128
  --depth 4 --num-heads 4 --decoder-depth 4 --no-blur --batch-size 128 --blr 1.6e-2 --warmup-epochs 0.5
  --checkpoint-every 8 --log-every 4 --num-workers 2 --device "$DEVICE" --out-dir "$R/pretrain")
semaim pretrain "${MODEL[@]}" --epochs 1
semaim pretrain "${MODEL[@]}" --epochs 2
EVAL=(--checkpoint "$R/pretrain" --dataset synthetic --train-limit 2048 --test-limit 500 --device "$DEVICE")
semaim knn "${EVAL[@]}" --out-dir "$R/knn"
semaim linprobe "${EVAL[@]}" --epochs 3 --batch-size 256 --out-dir "$R/linprobe"
node -e '
  const sharp = require("sharp");
  for (let i = 0; i < 4; i++) {
    const px = Buffer.alloc(32 * 32 * 3);
    for (let j = 0; j < px.length; j++) px[j] = (j * (7 + i) + (j >> 5) * 13) & 255;
    sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(process.argv[1] + "/img" + i + ".png");
  }' "$R/images"
semaim visualize --checkpoint "$R/pretrain" --images "$R/images" --device "$DEVICE" --out "$R/viz"
semaim report "$R/pretrain" --images "$R/images" --device "$DEVICE"
echo "== files"; find "$R" -name '*.json' -o -name '*.png' -o -name '*.html' | sort
