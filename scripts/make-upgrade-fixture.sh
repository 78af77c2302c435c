#!/usr/bin/env bash
# Writes test/golden/upgrade/: a tiny pre-training run folder written by an earlier semaim release (default
# aafd461, the release of 2026-12-02), stopped by --max-steps 5 of 12 steps, with the arguments it was
# started with (args.json). test/run/upgrade.test.ts resumes it with this checkout's code and checks that it
# ends with the weights and optimiser state of a run made by this checkout alone.
# Needs this repository's history, node_modules installed, and ~3 minutes to build that release's addon.
#
#   bash scripts/make-upgrade-fixture.sh            # OLD=<commit> for another release
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OLD=${OLD:-aafd461}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OUT="$ROOT/test/golden/upgrade"
ARGS=(--dataset synthetic --synthetic-size 32 --img-size 8 --patch-size 4 --model vit_tiny --embed-dim 16 --depth 1
  --num-heads 2 --decoder-depth 1 --batch-size 8 --epochs 3 --warmup-epochs 1 --log-every 2 --checkpoint-every 2
  --keep-last 1 --threads 1 --num-workers 0 --seed 3)

git clone -q "$ROOT" "$WORK/old"
cd "$WORK/old"
git checkout -q "$OLD"
ln -s "$ROOT/node_modules" node_modules
[ -f native/gen-ops.js ] && node native/gen-ops.js > /dev/null
npx tsc -p .
npm run --silent build:native > "$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log"; exit 1; }
# OpenBLAS kernels fixed (test/run/upgrade.test.ts runs with the same): bit-equal sums on any x86-64 with AVX2
OPENBLAS_CORETYPE=Haswell node dist/src/cli/main.js pretrain "${ARGS[@]}" --max-steps 5 --out-dir "$WORK/run"

rm -rf "$OUT/run"
mkdir -p "$OUT"
cp -r "$WORK/run" "$OUT/run"
rm -f "$OUT/run/run.lock"
# libtorch: the version whose kernels computed the first steps (the test skips under another: its sums round differently)
LIBTORCH_VERSION=$(node -p 'require("./dist/src/torch").version().torch')
node -e 'const [, commit, date, libtorch, ...args] = process.argv; process.stdout.write(JSON.stringify({ commit, date, libtorch, args }, null, 2) + "\n")' \
  "$(git rev-parse HEAD)" "$(git show -s --format=%cs HEAD)" "$LIBTORCH_VERSION" "${ARGS[@]}" > "$OUT/args.json"
echo "wrote $OUT (run folder of semaim $OLD, stopped at step 5)"
