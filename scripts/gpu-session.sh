#!/usr/bin/env bash
# One device call for a GPU session (issues #2 and #8): unpack .gpu/ (scripts/pack-gpu.sh), build the
# addon against the machine's pip CUDA PyTorch, run the engine/model/optimiser tests with the CUDA ones,
# then the CUDA pre-training benchmark against both PyTorch references. Logs and the updated
# docs/BENCHMARKS.md go to $OUT (or .tmp/gpu-out). Usage from the device tool:
#   run(command="bash scripts/gpu-session.sh", carry=[".gpu"], timeout_s=590)
# BENCH=0 skips the benchmark; BENCH_ARGS adds flags to it (e.g. "--only base"); TESTS=0 only builds;
# CLI=1 also runs the command-line tool end to end on cuda (scripts/gpu-cli-check.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/.tmp/gpu-out}
mkdir -p "$OUT" .tmp/node/bin
if ! command -v node >/dev/null 2>&1; then
  # xz, or Python's lzma where xz-utils is missing
  { xz -dc .gpu/node.xz 2>/dev/null || python3 -c 'import lzma,shutil,sys;shutil.copyfileobj(lzma.open(".gpu/node.xz"),sys.stdout.buffer)'; } > .tmp/node/bin/node
  chmod +x .tmp/node/bin/node
  export PATH="$PWD/.tmp/node/bin:$PATH"
fi
mkdir -p node_modules && cp -rn .gpu/node_modules/* node_modules/ 2>/dev/null
[ -d dist ] || cp -r .gpu/dist dist
export NAPI_INCLUDE=${NAPI_INCLUDE:-$PWD/.gpu/napi-include}
# The PyTorch references run with the Python that has the CUDA torch (not necessarily /usr/bin/python3).
SEMAIM_PYTHON=$(bash scripts/find-torch-python.sh) && export SEMAIM_PYTHON
# Time limits so that a hang in one part still leaves time for the other and for the logs: the
# device call is limited to 600 s (CHECK_TIMEOUT + BENCH_TIMEOUT + unpacking must stay under it).
start=$(date +%s)
{
  timeout "${CHECK_TIMEOUT:-200}" bash scripts/gpu-check.sh 2>&1 | grep -vE '^ *(duration_ms|\.\.\.|---|type:)'
  echo "== gpu-check: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
} 2>&1 | tee "$OUT/gpu-check.log"
# timeout stops gpu-check itself, not the test processes it started: stop those before the benchmark.
pkill -f "$PWD/dist/test/" 2>/dev/null; pkill -f "scripts/run-tests.js" 2>/dev/null
if [ "${BENCH:-1}" != 0 ] && [ -f build/Release/semaim.node ]; then
  timeout "${BENCH_TIMEOUT:-340}" node dist/bench/pretrain.js --device cuda --reference both --ablate-order --write-docs ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-cuda.log"
  echo "== bench: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s" | tee -a "$OUT/bench-cuda.log"
  cp docs/BENCHMARKS.md "$OUT/"
fi
if [ "${CLI:-0}" = 1 ] && [ -f build/Release/semaim.node ]; then
  [ -d node_modules/sharp ] || tar -xJf .gpu/sharp.tar.xz 2>/dev/null \
    || python3 -c 'import tarfile;tarfile.open(".gpu/sharp.tar.xz").extractall(".")'
  export RUN_DIR=.tmp/gpu-cli
  timeout "${CLI_TIMEOUT:-150}" bash scripts/gpu-cli-check.sh 2>&1 | grep -vE '\[[#.]' | tee "$OUT/gpu-cli.log"
  echo "== cli: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu-cli.log"
  cp "$RUN_DIR/pretrain/viz/grid.png" "$OUT/cli-grid.png" 2>/dev/null
  cp "$RUN_DIR/pretrain/report.html" "$OUT/cli-report.html" 2>/dev/null
fi
