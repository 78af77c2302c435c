#!/usr/bin/env bash
# One device call for issue 20 (does the semantic order help?): the order ablation with seeds and the
# object-start study on a GPU, planned from measured step times to fit the call, resumable across calls.
#
#   Here:   npm run build && CIFAR=1 bash scripts/pack-gpu.sh          (.gpu/: node, dist, CIFAR-10 archive)
#   Device: run(command="bash scripts/gpu-ablation.sh", carry=[".gpu"], timeout_s=590)
#   Again:  the same call continues (the run folders stay on a warm machine). On a fresh machine:
#           mkdir x && tar -xzf <first call's files_at>/results.tar.gz -C x && mv x/resume .gpu-resume,
#           then carry=[".gpu", ".gpu-resume"]: the
#           plan and the finished runs are restored (unfinished ones start over: no checkpoints travel).
#
# What it runs (every part stops at a checkpoint before the call's time is up and is continued by the
# next call; results and logs go to $OUT):
#   1. unpack .gpu, build the addon against the machine's CUDA PyTorch (skipped when already built);
#   2. `semaim ablate --budget full`: CIFAR-10 at 32² (all 50,000 training images, evaluated on all
#      50,000 / 10,000), ViT 192×6 with patch 4 (64 patches), 6 decoder blocks, batch 512, bf16 with the
#      similarity pass in fp32 (as the authors' engine); the
#      orders raster, stochastic, similarity, semantic, multicenter, plus random init (ORDERS=...,semantic:self
#      adds the authors' [CLS]-attention S as a row, at the cost of a sixth of the steps);
#      3 seeds; k-NN and a linear probe (batch 4096, as the authors) on [CLS] and mean features;
#      the length planned by --budget-minutes from steps timed in $JOBS processes at once;
#   3. `semaim object-start`: synthetic objects, ViTs trained with S = cls and with S = self (OBJ_SEEDS
#      seeds each, default 3: mean ± std), scored at init and at checkpoints with S = cls / gap / self
#      against a random centre (estimated ~25 s per run on an H200: 6 runs in the 3 minutes kept).
#
# Settings (environment): CALL_MIN (the call's length, default 9.3), OBJECTS_MIN (time kept for part 3,
# default 3; 0 skips it), OBJ_SEEDS (3), ABLATION_MIN (the ablation's planned length; default: what is left),
# JOBS (processes sharing the GPU, default 3), SEEDS (3), ORDERS, DEVICE (cuda), GRAPHS (auto, the default: 1 where the CUDA-path tests pass first; 1: pre-train with
# --cuda-graphs, ablation and object-start: it removes the host time per step that bounds these small models; turn it on once
# test/fused/cuda-paths.test.ts has passed on a GPU: it compares the graph run with the eager one), ABL_ARGS / OBJ_ARGS
# (extra flags), RUN (run folder, default runs/gpu-ablation).
# DRY=1: the same script on the CPU at toy size (a check that it runs; nothing is measured).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
OUT=${OUT:-$PWD/.tmp/gpu-ablation-out}
RUN=${RUN:-runs/gpu-ablation}
mkdir -p "$OUT" "$RUN" .tmp/node/bin
OUT=$(cd "$OUT" && pwd)  # absolute: the resume copy below runs inside the run folder
left_min() { python3 -c "print(round(${CALL_MIN:-9.3} - ($(date +%s) - $start) / 60, 2))"; }
say() { echo "== [$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/gpu-ablation.log"; }

# ---- 1. node, packages, addon
if ! command -v node >/dev/null 2>&1; then
  { xz -dc .gpu/node.xz 2>/dev/null || python3 -c 'import lzma,shutil,sys;shutil.copyfileobj(lzma.open(".gpu/node.xz"),sys.stdout.buffer)'; } > .tmp/node/bin/node
  chmod +x .tmp/node/bin/node
  export PATH="$PWD/.tmp/node/bin:$PATH"
fi
# npm packages (scripts/pack-gpu.sh): tar with xz, or Python's tarfile where xz-utils is missing
[ -d node_modules/sharp ] || tar -xJf .gpu/modules.tar.xz 2>/dev/null \
  || python3 -c 'import tarfile;tarfile.open(".gpu/modules.tar.xz").extractall(".")'
[ -d dist ] || cp -r .gpu/dist dist
[ -f .gpu/cifar10-jpeg.tar.gz ] && export SEMAIM_CIFAR10_TAR=$PWD/.gpu/cifar10-jpeg.tar.gz
export NAPI_INCLUDE=${NAPI_INCLUDE:-$PWD/.gpu/napi-include}
if [ "${DRY:-0}" = 1 ]; then
  DEVICE=cpu
  ABL_SIZE=(--embed-dim 32 --depth 1 --num-heads 2 --decoder-depth 1 --batch-size 32 --pretrain-limit 256 --train-limit 400 --test-limit 200
    --linprobe-epochs 3 --linprobe-batch-size 128 --threads 1 --num-workers 0)
  OBJ_SIZE=(--steps 6 --points 2 --test-size 100 --embed-dim 32 --depth 1 --num-heads 2 --decoder-depth 1 --batch-size 16 --threads 1 --num-workers 0)
  JOBS=${JOBS:-2}; SEEDS=${SEEDS:-2}
else
  DEVICE=${DEVICE:-cuda}
  ABL_SIZE=(--batch-size 512 --linprobe-batch-size 4096 --order-precision fp32 --num-workers 4)
  OBJ_SIZE=(--steps 600 --points 5 --test-size 2000 --embed-dim 192 --depth 6 --num-heads 3 --decoder-depth 6 --batch-size 256 --blr 4e-3 --num-workers 8)
fi
if [ "$DEVICE" != cpu ] && ! node -e 'process.exit(require("./dist/src/torch").cuda.isAvailable() ? 0 : 1)' 2>/dev/null; then
  say "building the addon against this machine's CUDA PyTorch"
  TESTS=0 bash scripts/gpu-check.sh > "$OUT/build.log" 2>&1 || { say "build failed (see build.log)"; tail -20 "$OUT/build.log"; exit 1; }
fi
semaim() { node dist/src/cli/main.js "$@"; }
say "$(semaim info 2>&1 | head -4 | tr '\n' ' ')"

# GRAPHS=auto (the default): CUDA graphs only where test/fused/cuda-paths.test.ts passes on this machine first
# (graph replay against the eager steps, fused kernels against unfused, attention backends; about a minute).
GRAPHS=${GRAPHS:-auto}
if [ "$GRAPHS" = auto ]; then
  GRAPHS=0
  if [ "$DEVICE" != cpu ]; then
    timeout 120 node --test dist/test/fused/cuda-paths.test.js > "$OUT/cuda-paths.log" 2>&1 \
      && grep -qE '^ok [0-9]+ - a CUDA-graph step' "$OUT/cuda-paths.log" && ! grep -qE '^ok [0-9]+ - a CUDA-graph step.*# SKIP' "$OUT/cuda-paths.log" && GRAPHS=1
    say "CUDA-path tests: $(grep -E '^# (pass|fail|skipped)' "$OUT/cuda-paths.log" | tr '\n' ' ')-> GRAPHS=$GRAPHS"
  fi
fi

# A fresh machine after an earlier call: restore the finished runs (and the plan) that call saved.
if [ -d .gpu-resume/ablation ] && [ ! -f "$RUN/ablation/plan.json" ]; then
  mkdir -p "$RUN/ablation" && cp -rn .gpu-resume/ablation/. "$RUN/ablation/" && say "restored $(find "$RUN/ablation" -name ablation-eval.json | wc -l) finished runs from .gpu-resume"
fi

# ---- 2. the order ablation
OBJECTS_MIN=${OBJECTS_MIN:-3}
# minutes the ablation may run: what is left of the call, less the object study and a margin for the copies
ablation_time() { python3 -c "print(round($(left_min) - $OBJECTS_MIN - 0.3, 2))"; }
ablation_stop=$(ablation_time)
# A later call keeps the budget its plan was made for (the plan, and so every run's length, stays).
if [ -f "$RUN/ablation/plan.json" ]; then
  ABLATION_MIN=$(python3 -c "import json;print(json.load(open('$RUN/ablation/plan.json'))['inputs']['budgetMinutes'])")
fi
ABLATION_MIN=${ABLATION_MIN:-$ablation_stop}
ORDERS=${ORDERS:-raster,stochastic,similarity,semantic,multicenter}
run_ablation() {
  say "ablation: budget ${ABLATION_MIN} min, stop after ${ablation_stop} min, ${JOBS:-3} processes, CUDA graphs ${GRAPHS}"
  semaim ablate --device "$DEVICE" --dataset cifar10 --budget full --orders "$ORDERS" --seeds "${SEEDS:-3}" "${ABL_SIZE[@]}" \
    --budget-minutes "$ABLATION_MIN" --stop-after-minutes "$ablation_stop" --jobs "${JOBS:-3}" --out-dir "$RUN/ablation" $([ "$GRAPHS" = 1 ] && echo --cuda-graphs) ${ABL_ARGS:-} \
    >> "$OUT/ablation.stdout" 2>> "$OUT/ablation.stderr"
}
if python3 -c "import sys; sys.exit(0 if $ablation_stop > 0.5 else 1)"; then
  run_ablation
  rc=$?
  # A failure with CUDA graphs that no test caught: once more without them, planned again for the time left
  # when no run has finished (a plan made from graph-replay step times would not fit eager steps).
  if [ "$rc" != 0 ] && [ "$rc" != 75 ] && [ "$GRAPHS" = 1 ]; then
    say "ablation: exit $rc with CUDA graphs; again without them"; tail -5 "$OUT/ablation.stderr"
    GRAPHS=0
    cp -r "$RUN/ablation/logs" "$OUT/ablation-logs-graphs" 2>/dev/null  # the failed attempt's logs, for the reason
    ablation_stop=$(ablation_time)
    if ! find "$RUN/ablation" -name ablation-eval.json 2>/dev/null | grep -q .; then
      rm -rf "$RUN/ablation"
      ABLATION_MIN=$ablation_stop
    fi
    run_ablation
    rc=$?
  fi
  case $rc in 0) state=complete ;; 75) state='partial: call again to continue' ;; *) state=failed ;; esac
  say "ablation: exit $rc ($state)"
  tail -5 "$OUT/ablation.stderr"
else
  say "ablation: no time left in this call"
fi
cp "$RUN/ablation/ablation.md" "$RUN/ablation/ablation.json" "$RUN/ablation/plan.json" "$OUT/" 2>/dev/null
cp -r "$RUN/ablation/logs" "$OUT/ablation-logs" 2>/dev/null
# What a fresh machine needs to continue: the plan and every finished run's evaluation (no checkpoints).
rm -rf "$OUT/resume" && mkdir -p "$OUT/resume/ablation"
cp "$RUN/ablation/plan.json" "$OUT/resume/ablation/" 2>/dev/null
( cd "$RUN/ablation" && find runs -name ablation-eval.json -o -name config.json 2>/dev/null | while read -r f; do
    d=$(dirname "$f"); [ -f "$d/ablation-eval.json" ] && mkdir -p "$OUT/resume/ablation/$d" && cp "$f" "$OUT/resume/ablation/$d/"; done )

# ---- 3. the object-start study
objects_left=$(left_min)
if [ "$OBJECTS_MIN" != 0 ] && python3 -c "import sys; sys.exit(0 if $objects_left > 0.5 else 1)"; then
  say "object-start study: ${objects_left} min left"
  timeout -s INT "$(python3 -c "print(int(($objects_left - 0.2) * 60))")" \
    node dist/src/cli/main.js object-start --device "$DEVICE" --train-tokens cls,self --seeds "${OBJ_SEEDS:-3}" "${OBJ_SIZE[@]}" --out-dir "$RUN/object-start" $([ "${GRAPHS:-0}" = 1 ] && echo --cuda-graphs) ${OBJ_ARGS:-} \
    > "$OUT/object-start.stdout" 2> "$OUT/object-start.stderr"
  say "object-start study: exit $?"
  cp "$RUN/object-start/object-start.md" "$RUN/object-start/object-start.json" "$OUT/" 2>/dev/null
  tail -3 "$OUT/object-start.stderr"
fi
say "done; results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
# The device tool brings back at most 8 files: everything in one archive, the summaries beside it.
if [ -z "${KEEP_OUT:-}" ]; then
  archive_dir=$(mktemp -d)
  tar -czf "$archive_dir/results.tar.gz" -C "$OUT" . && find "$OUT" -mindepth 1 -maxdepth 1 ! -name gpu-ablation.log ! -name ablation.md ! -name object-start.md -exec rm -rf {} + \
    && mv "$archive_dir/results.tar.gz" "$OUT/" && rmdir "$archive_dir"
fi
