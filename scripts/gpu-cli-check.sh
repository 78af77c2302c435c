#!/usr/bin/env bash
# The command-line tool end to end on a GPU, on the built-in synthetic dataset: pretrain (bf16 auto,
# uint8 uploads, checkpoints), an interrupted-and-resumed continuation, k-NN, linear probe, fine-tuning and
# predict (its accuracy must be finetune's), visualize and report, each with --device cuda; then k-NN and a few pre-training steps as a data-parallel worker
# of world size 1 (NCCL on a GPU, Gloo on the CPU), which must repeat the one-process results, and (on a
# GPU) the same steps with --cuda-graphs (and with --fused all) and with bf16-compressed gradients, whose
# losses must follow the eager ones. A short
# check that the user-facing paths run there, not a measurement.
# `DEVICE=cpu bash scripts/gpu-cli-check.sh` runs the same on the CPU.
# gpu-session.sh calls it when CLI=1 (sharp comes from .gpu/modules.tar.xz, packed by pack-gpu.sh).
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
semaim finetune "${EVAL[@]}" --epochs 1 --warmup-epochs 0 --batch-size 128 --out-dir "$R/finetune"
semaim predict --checkpoint "$R/finetune" --dataset synthetic --limit 500 --device "$DEVICE" --out "$R/predict/test.json"
node -e '
  const sharp = require("sharp");
  for (let i = 0; i < 4; i++) {
    const px = Buffer.alloc(32 * 32 * 3);
    for (let j = 0; j < px.length; j++) px[j] = (j * (7 + i) + (j >> 5) * 13) & 255;
    sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(process.argv[1] + "/img" + i + ".png");
  }' "$R/images"
semaim visualize --checkpoint "$R/pretrain" --images "$R/images" --device "$DEVICE" --out "$R/viz"
semaim report "$R/pretrain" --images "$R/images" --device "$DEVICE"
# World size 1 through the process group (the backend a multi-GPU run uses): torchrun's variables set by hand.
worker() { env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((20000 + RANDOM % 20000)) node dist/src/cli/main.js "$@"; }
echo "== semaim knn as a world-size-1 worker"
worker knn "${EVAL[@]}" --out-dir "$R/knn-worker"
STEPS=(--epochs 1 --max-steps 12 --log-every 1 --checkpoint-every 100)
semaim pretrain "${MODEL[@]/$R\/pretrain/$R/pt-one}" "${STEPS[@]}"
echo "== semaim pretrain as a world-size-1 worker"
worker pretrain "${MODEL[@]/$R\/pretrain/$R/pt-worker}" "${STEPS[@]}"
# --cuda-graphs (issue 19): 3 eager steps, the capture, then replays; the losses must follow the eager run's.
GRAPHS=0
if [ "$DEVICE" != cpu ]; then
  GRAPHS=1
  semaim pretrain "${MODEL[@]/$R\/pretrain/$R/pt-graphs}" "${STEPS[@]}" --cuda-graphs
  semaim pretrain "${MODEL[@]/$R\/pretrain/$R/pt-fused-graphs}" "${STEPS[@]}" --cuda-graphs --fused all
  echo "== semaim pretrain --cuda-graphs as a world-size-1 worker (NCCL all-reduce after each replay)"
  worker pretrain "${MODEL[@]/$R\/pretrain/$R/pt-graphs-worker}" "${STEPS[@]}" --cuda-graphs
  echo "== semaim pretrain --grad-compress bf16 as a world-size-1 worker (the compress hook on NCCL)"
  worker pretrain "${MODEL[@]/$R\/pretrain/$R/pt-bf16-worker}" "${STEPS[@]}" --grad-compress bf16
fi
node -e '
  const fs = require("fs"), [R, graphs] = process.argv.slice(1);
  const top1 = (d) => JSON.parse(fs.readFileSync(`${R}/${d}/knn.json`, "utf8")).top1;
  const losses = (d) => fs.readFileSync(`${R}/${d}/metrics.jsonl`, "utf8").trim().split("\n").map(JSON.parse).filter((m) => typeof m.loss === "number").map((m) => m.loss);
  const maxRel = (a, b) => Math.max(...a.map((x, i) => Math.abs(x - b[i]) / Math.abs(x)));
  const [a, b] = [losses("pt-one"), losses("pt-worker")];
  const rel = maxRel(a, b);
  const worldSize = JSON.parse(fs.readFileSync(`${R}/pt-worker/config.json`, "utf8")).worldSize;
  console.log(`== world-size-1 worker: k-NN top-1 ${top1("knn-worker")} vs ${top1("knn")}; ${b.length} losses vs ${a.length}, max rel diff ${rel.toExponential(2)} (worldSize ${worldSize})`);
  let bad = top1("knn-worker") !== top1("knn") || a.length !== b.length || a.length === 0 || !(rel <= 1e-3);
  const ft = JSON.parse(fs.readFileSync(`${R}/finetune/finetune.json`, "utf8")).top1;
  const pred = JSON.parse(fs.readFileSync(`${R}/predict/test.json`, "utf8")).accuracy.top1;
  console.log(`== predict: top-1 ${pred} vs ${ft} from finetune (same checkpoint and test images)`);
  bad ||= !(Math.abs(pred - ft) <= 0.01);
  if (graphs === "1") {
    for (const [d, tol] of [["pt-graphs", 5e-3], ["pt-fused-graphs", 1e-2], ["pt-graphs-worker", 5e-3], ["pt-bf16-worker", 2e-2]]) {
      const g = losses(d), relG = maxRel(a, g);
      console.log(`== ${d}: ${g.length} losses vs ${a.length}, max rel diff ${relG.toExponential(2)}; losses ${g.map((x) => x.toFixed(4)).join(" ")}`);
      bad ||= g.length !== a.length || !(relG <= tol);
    }
  }
  if (bad) { console.log("== MISMATCH"); process.exit(1); }
' "$R" "$GRAPHS"
echo "== files"; find "$R" -name '*.json' -o -name '*.png' -o -name '*.html' | sort
