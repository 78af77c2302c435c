#!/usr/bin/env bash
# One device call for a GPU session (issues #2 and #8): unpack .gpu/ (scripts/pack-gpu.sh), build the
# addon against the machine's pip CUDA PyTorch, run the engine/model/optimiser tests with the CUDA ones,
# then the CUDA pre-training benchmark against both PyTorch references. Logs and the updated
# docs/BENCHMARKS.md go to $OUT (or .tmp/gpu-out). Usage from the device tool:
#   run(command="bash scripts/gpu-session.sh", carry=[".gpu"], timeout_s=590)
# BENCH=0 skips the benchmark; BENCH_ARGS adds flags to it (e.g. "--only base"); TESTS=0 only builds;
# CHECK=0 skips the build and tests (an addon already built); CLI=1 also runs the command-line tool end to
# end on cuda (scripts/gpu-cli-check.sh).
# PERF=1 (issue 19): the tests include the fused-kernel, CUDA-graph and attention checks (test/fused/),
# then a preflight (NVRTC, attention backends; $OUT/preflight.log) and the benchmark with every speed
# lever as its own side beside the plain TypeScript one and the authors'-style reference: the fused kernels
# of PERF_FUSED (default layernorm,layernorm-backward), CUDA graphs at ViT-B/16 batch 256 and 64, the
# per-phase timer, and with SDPA=1 the attention backend libtorch does not pick by default (ViT-B/16 batch
# 256 first, then batch 64, then ViT-L/16 batch 64; the docs section is rewritten after each config).
#   run(command="PERF=1 bash scripts/gpu-session.sh", carry=[".gpu"], timeout_s=590)
# DATA=1 (issue 19, input): bench:data at 224² with 1, 8 and all-but-one of the machine's cores as
# workers, and whether the loader keeps up with DATA_NEED img/s (default 1470, the ViT-B/16 target).
# LEVERS=1 (issue 19): each speed lever alone at ViT-B/16 batch 256 through the worker, each with its step's
# GPU time per kernel ($OUT/kernels-ts-<lever>.md), the phase timer with and without the fused kernels, and
# the PyTorch step's GPU time per kernel ($OUT/levers.log, kernels.md):
#   run(command="BENCH=0 LEVERS=1 CALL_LIMIT=285 bash scripts/gpu-session.sh", carry=[".gpu"], timeout_s=300)
# The fastest --fused set (where it beat none by 1 %) is kept in .tmp/perf-fused, and a PERF=1 call that
# follows on the still-warm machine takes it as its fused side (PERF_FUSED, given, wins), with the built
# addon (BUILD=0 keeps it; scripts/gpu-check.sh) and the compiled kernels (.tmp/kernel-cache): call it at once,
# without a new pack:
#   run(command="BUILD=0 PERF=1 GPU_TESTS=cuda.test bash scripts/gpu-session.sh", carry=[".gpu"], timeout_s=590)
# DEVICE=cpu (a dry run without a GPU): the same steps on the CPU with tiny sizes, the CUDA-only lever
# checked to be refused, and docs/BENCHMARKS.md left alone.
#   DEVICE=cpu PERF=1 CHECK=0 bash scripts/gpu-session.sh
# Each part goes on when an earlier one failed (the logs of the rest are worth the call), but the script's
# own exit status is 1 when any part failed, was killed at its limit or was skipped; $OUT/exit-codes.log
# lists each part's exit status.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/.tmp/gpu-out}
mkdir -p "$OUT" .tmp/node/bin
: > "$OUT/exit-codes.log"
# part_exit NAME STATUS: one line per part (a subshell of a pipeline cannot set this shell's variables)
part_exit() { echo "$1 $2" >> "$OUT/exit-codes.log"; }
# part_done NAME STATUS [LOG]: says how the part ended and when (appended to LOG too, where given), and records it
part_done() {
  local line="== $1: exit $2 after $(( $(date +%s) - start )) s"
  if [ -n "${3:-}" ]; then echo "$line" | tee -a "$3"; else echo "$line"; fi
  part_exit "$1" "$2"
}
if ! command -v node >/dev/null 2>&1; then
  # xz, or Python's lzma where xz-utils is missing
  { xz -dc .gpu/node.xz 2>/dev/null || python3 -c 'import lzma,shutil,sys;shutil.copyfileobj(lzma.open(".gpu/node.xz"),sys.stdout.buffer)'; } > .tmp/node/bin/node
  chmod +x .tmp/node/bin/node
  export PATH="$PWD/.tmp/node/bin:$PATH"
fi
# npm packages (scripts/pack-gpu.sh): tar with xz, or Python's tarfile where xz-utils is missing
[ -d node_modules/sharp ] || tar -xJf .gpu/modules.tar.xz 2>/dev/null \
  || python3 -c 'import tarfile;tarfile.open(".gpu/modules.tar.xz").extractall(".")'
# The compiled TypeScript of this call's pack. A warm machine keeps the ignored dist/ an earlier call
# unpacked (marked .from-gpu): that one is replaced; a dist/ built in this checkout (no mark) is kept.
if [ -d .gpu/dist ] && { [ ! -d dist ] || [ -f dist/.from-gpu ]; }; then
  rm -rf dist && cp -r .gpu/dist dist && touch dist/.from-gpu
fi
export NAPI_INCLUDE=${NAPI_INCLUDE:-$PWD/.gpu/napi-include}
# The fused kernels NVRTC compiled (10-20 s) in an earlier call of the session: kept in .tmp/kernel-cache on a
# warm machine (the ignored .tmp/ stays between calls; .gpu/ is replaced by each call's carry), else brought in
# .gpu/kernel-cache (KERNEL_CACHE=<the folder that call returned> bash scripts/pack-gpu.sh); this call's go back
# in $OUT/kernel-cache. A cubin is named by the source, GPU and NVRTC version it was compiled for.
if [ -z "${SEMAIM_KERNEL_CACHE+set}" ]; then
  mkdir -p .tmp/kernel-cache
  [ -d .gpu/kernel-cache ] && cp -r .gpu/kernel-cache/. .tmp/kernel-cache/
  export SEMAIM_KERNEL_CACHE=$PWD/.tmp/kernel-cache
fi
keep_kernels() { [ -n "$SEMAIM_KERNEL_CACHE" ] && [ -d "$SEMAIM_KERNEL_CACHE" ] && cp -r "$SEMAIM_KERNEL_CACHE/." "$OUT/kernel-cache/" 2>/dev/null; true; }
mkdir -p "$OUT/kernel-cache"
# The PyTorch references run with the Python that has the CUDA torch (not necessarily /usr/bin/python3).
SEMAIM_PYTHON=$(bash scripts/find-torch-python.sh) && export SEMAIM_PYTHON
# Time limits so that a hang in one part still leaves time for the other and for the logs: the
# device call is limited to 600 s (CHECK_TIMEOUT + BENCH_TIMEOUT + unpacking must stay under it).
DEVICE=${DEVICE:-cuda}
PERF=${PERF:-0}
start=$(date +%s)
# CALL_LIMIT: the seconds this whole script may take (the device call's timeout_s less a margin for the
# files to come back); the benchmark and the data benchmark get what the build and tests leave of it.
CALL_LIMIT=${CALL_LIMIT:-575}
left() { echo $(( CALL_LIMIT - ($(date +%s) - start) )); }
# PERF's minutes belong to the benchmark: the tests are the CUDA-specific ones and the fused kernels'
# (the full GPU set is GPU_TESTS unset with PERF=0).
[ "$PERF" = 1 ] && export GPU_TESTS=${GPU_TESTS:-cuda.test fused/}
if [ "${CHECK:-1}" != 0 ]; then
  {
    timeout "${CHECK_TIMEOUT:-$([ "$PERF" = 1 ] && echo 180 || echo 200)}" bash scripts/gpu-check.sh 2>&1 | grep -vE '^ *(duration_ms|\.\.\.|---|type:)'
    part_done gpu-check "${PIPESTATUS[0]}"
  } 2>&1 | tee "$OUT/gpu-check.log"
  # timeout stops gpu-check itself, not the test processes it started: stop those before the benchmark.
  pkill -f "$PWD/dist/test/" 2>/dev/null; pkill -f "scripts/run-tests.js" 2>/dev/null
  keep_kernels
fi
# The parts that run the addon: where the build left none (it failed, or CHECK=0 on a fresh machine), each
# says it was skipped, so that the log does not end at the tests without a word on the rest.
have_addon() {
  [ -f build/Release/semaim.node ] && return 0
  echo "== $1: skipped, no build/Release/semaim.node (the build failed or did not run: see gpu-check.log)" | tee -a "$OUT/skipped.log"
  part_exit "$1" skipped
  return 1
}
if [ "${BENCH:-1}" != 0 ] && have_addon bench; then
  if [ "$PERF" = 1 ]; then
    timeout 60 node dist/bench/gpu_preflight.js --device "$DEVICE" 2>&1 | tee "$OUT/preflight.log"
    part_exit preflight "${PIPESTATUS[0]}"
    if [ "$DEVICE" = cpu ]; then
      # Dry run: tiny sizes, no docs; the CUDA-graph lever must be refused with its reason.
      LEVERS=(--fused all --sdpa cudnn,flash,efficient,math --phase-timer --quick --only tiny --batch-tiny 4 --steps-tiny 2 --reference ours)
      node dist/bench/pretrain.js --device cpu --cuda-graphs 2>&1 | tee "$OUT/refusal.log"
      if grep -q 'refused: CUDA graphs need --device cuda' "$OUT/refusal.log"; then
        echo "== --cuda-graphs refused on the CPU, as it should" | tee -a "$OUT/refusal.log"
      else
        part_exit cuda-graphs-refusal "not refused"
      fi
    else
      # The fused side: PERF_FUSED; else the kinds a LEVERS=1 call on this warm machine measured fastest
      # (.tmp/perf-fused); else the kernels measured faster on 2026-12-04 (LayerNorm, 1.08x) and LayerNorm's backward.
      if [ -n "${PERF_FUSED:-}" ]; then perf_fused=$PERF_FUSED from="PERF_FUSED"
      elif [ -s .tmp/perf-fused ]; then perf_fused=$(cat .tmp/perf-fused) from="the levers of an earlier call (.tmp/perf-fused)"
      else perf_fused=layernorm,layernorm-backward from="the default"; fi
      echo "== fused side: --fused $perf_fused ($from)" | tee -a "$OUT/preflight.log"
      LEVERS=(--reference authors --fused "$perf_fused" --cuda-graphs --graphs-at base:256,base:64 --phase-timer --write-docs)
      # The attention side only with SDPA=1 (flash measured 0.971x of the cuDNN kernel libtorch picks,
      # 2026-12-04): the other backend than the one libtorch picks by default (preflight); on 2.11 the
      # default order puts cuDNN first and picks it, so its side runs flash first (cuDNN off).
      if [ "${SDPA:-0}" = 1 ]; then
        default=$(sed -n 's/.*default priority [^:]*: encoder \([a-z-]*\),.*/\1/p' "$OUT/preflight.log")
        sdpa=$([ "$default" = cudnn ] && echo flash,efficient,math || echo cudnn,flash,efficient,math)
        echo "== attention lever: --sdpa $sdpa (default pick: ${default:-unknown})" | tee -a "$OUT/preflight.log"
        LEVERS+=(--sdpa "$sdpa")
      fi
    fi
    # What is left after the build and tests, less the data benchmark's share when it runs too.
    bench_limit=$(( $(left) - $([ "${DATA:-0}" = 1 ] && echo 75 || echo 5) ))
    [ "$bench_limit" -gt "${BENCH_TIMEOUT:-400}" ] && bench_limit=${BENCH_TIMEOUT:-400}
    # timeout takes 0 as no limit and a negative number as an error: a part with no time left gets 1 s.
    [ "$bench_limit" -lt 1 ] && bench_limit=1
    echo "== bench: time limit ${bench_limit} s"
    timeout "$bench_limit" node dist/bench/pretrain.js --device "$DEVICE" "${LEVERS[@]}" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-$DEVICE.log"
  else
    timeout "${BENCH_TIMEOUT:-340}" node dist/bench/pretrain.js --device cuda --reference both --ablate-order --write-docs ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-cuda.log"
  fi
  part_done bench "${PIPESTATUS[0]}" "$OUT/bench-$DEVICE.log"
  cp docs/BENCHMARKS.md "$OUT/"
fi
if [ "${LEVERS:-0}" = 1 ] && have_addon levers; then
  # Issue 19, one lever at a time at the target's config (ViT-B/16, 224², 12 decoder blocks, batch 256),
  # straight through the benchmark's worker (no reference sides: their numbers are in the PERF run): the
  # LayerNorm kernel, with its backward kernel, then GELU's backward with fc1's bias gradient, then q/k/v's
  # backward with qkv's, then the patch embedding as a matmul, then the targets kernel too (all), and all
  # with CUDA graphs: each kind's worth is
  # its row against the one before (2026-12-04: LayerNorm 1.077x, the old bias + GELU 0.976x, flash instead
  # of cuDNN 0.971x); then the per-kernel GPU time of the same step in PyTorch; then the phase timer with and
  # without the fused kernels (last: the first to go when time runs out).
  W=(node dist/bench/pretrain_worker.js --preset vit_base --img 224 --patch 16 --decoder-depth 12 --batch 256 --warmup 2 --steps 20 --threads 2 --device "$DEVICE")
  [ "$DEVICE" = cpu ] && W=(node dist/bench/pretrain_worker.js --preset vit_tiny --img 32 --patch 4 --decoder-depth 2 --batch 4 --warmup 2 --steps 2 --threads 2 --device cpu)
  # Each lever's own step is also profiled by kernel after its measured steps (bench/kernel-profile.ts):
  # the tables in $OUT/kernels-ts-<lever>.md, the families in the lever's line.
  lever() {
    [ "$(left)" -lt 45 ] && { echo "== levers: out of time before '$1'"; part_exit "lever ${1:-(plain)}" "no time"; return; }
    local slug limit
    slug=$(printf '%s' "${1:-plain}" | tr -c 'a-z0-9' '-' | sed 's/--*/-/g; s/^-//; s/-$//')
    # 60 s at most, and never past CALL_LIMIT (the margin there is the files' to come back)
    limit=$(( $(left) - 5 ))
    [ "$limit" -gt 60 ] && limit=60
    local result rc
    # shellcheck disable=SC2086
    result=$(timeout "$limit" "${W[@]}" $1 --kernel-profile 3 --kernel-profile-out "$OUT/kernels-ts-$slug.md" 2>>"$OUT/levers.err" | tail -1; exit "${PIPESTATUS[0]}")
    rc=$?
    part_exit "lever ${1:-(plain)}" "$rc"
    # (lever and ms/step, for the pick of the fused kinds below)
    [ "$rc" = 0 ] && printf '%s' "$result" | LEVER="$1" node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const r=JSON.parse(s);if(Number.isFinite(r.msPerStep))console.log(`${process.env.LEVER}\t${r.msPerStep}`)}catch{}})' >> "$OUT/levers.tsv"
    # (a lever killed by the limit writes nothing to levers.err: its line says so)
    [ "$rc" = 124 ] && rc="124, killed at its ${limit} s limit"
    printf '%s' "$result" \
      | LEVER="$1" RC="$rc" node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let r;try{r=JSON.parse(s)}catch{console.log(`== lever ${process.env.LEVER||"(plain)"}: failed (exit ${process.env.RC}; levers.err)`);return}const p=r.phaseTimer?.gpuMs;console.log(`== lever ${process.env.LEVER||"(plain)"}: ${r.msPerStep.toFixed(1)} ms/step (min ${r.minMs.toFixed(1)}), ${r.imgPerSec.toFixed(1)} img/s, peak GPU ${((r.peakGpuBytes??0)/2**30).toFixed(2)} GiB, attention ${JSON.stringify(r.attention??null)}${p?`, phases ${JSON.stringify(p)}`:""}${r.kernelProfile?`, kernels ${r.kernelProfile.msPerStep.toFixed(1)} ms ${JSON.stringify(r.kernelProfile.families)}`:""}${r.kernelProfileError?`, kernel profile failed: ${r.kernelProfileError}`:""}`)})' \
      | tee -a "$OUT/levers.log"
  }
  : > "$OUT/levers.tsv"
  k=layernorm,layernorm-backward,gelu,qkv
  for l in "" "--fused layernorm" "--fused layernorm,layernorm-backward" "--fused layernorm,layernorm-backward,gelu" \
    "--fused $k" "--fused $k,patch-embed" "--fused all" "--cuda-graphs --fused all"; do lever "$l"; done
  # The fastest --fused set becomes a PERF=1 call's fused side on this machine while it stays warm, so that the
  # next call can follow at once (no pack in between): only where it beat no fused kernel by 1 % or more.
  rm -f .tmp/perf-fused
  node -e '
    const rows = require("fs").readFileSync(process.argv[1], "utf8").trimEnd().split("\n").map((l) => l.split("\t"));
    const plain = rows.find(([l]) => l === "");
    const fused = rows.filter(([l]) => /^--fused [a-z,-]+$/.test(l)).sort((a, b) => a[1] - b[1])[0];
    if (!plain || !fused) { console.log("== levers: no pick of fused kinds (a plain or fused lever did not run)"); process.exit(0); }
    const speedup = plain[1] / fused[1];
    const kinds = fused[0].slice("--fused ".length);
    console.log(`== levers: fastest fused set ${kinds}: ${(+fused[1]).toFixed(1)} ms/step, ${speedup.toFixed(3)}x of no fused kernel`);
    if (speedup >= 1.01) require("fs").writeFileSync(".tmp/perf-fused", kinds + "\n");
  ' "$OUT/levers.tsv" | tee -a "$OUT/levers.log"
  if [ "$DEVICE" != cpu ] && [ "$(left)" -gt 40 ]; then
    timeout $(( $(left) - 5 )) "$SEMAIM_PYTHON" bench/pretrain_torch.py --preset vit_base --img 224 --patch 16 --decoder-depth 12 --batch 256 \
      --warmup 2 --steps 3 --threads 2 --device cuda --kernel-profile 3 --kernel-profile-out "$OUT/kernels.md" > /dev/null 2>>"$OUT/levers.err"
    part_done "kernel profile" $? "$OUT/levers.log"
  fi
  for l in "--phase-timer --upload-input --fused all" "--phase-timer --upload-input"; do lever "$l"; done
fi
if [ "${CLI:-0}" = 1 ] && have_addon cli; then
  export RUN_DIR=.tmp/gpu-cli
  timeout "${CLI_TIMEOUT:-150}" bash scripts/gpu-cli-check.sh 2>&1 | grep -vE '\[[#.]' | tee "$OUT/gpu-cli.log"
  part_done cli "${PIPESTATUS[0]}" "$OUT/gpu-cli.log"
  cp "$RUN_DIR/pretrain/viz/grid.png" "$OUT/cli-grid.png" 2>/dev/null
  cp "$RUN_DIR/pretrain/report.html" "$OUT/cli-report.html" 2>/dev/null
fi
if [ "${DATA:-0}" = 1 ]; then
  data_limit=$(left)
  [ "$data_limit" -gt "${DATA_TIMEOUT:-100}" ] && data_limit=${DATA_TIMEOUT:-100}
  [ "$data_limit" -lt 1 ] && data_limit=1
  timeout "$data_limit" node dist/bench/data.js --only=large --quick --workers="1,8,$(( $(nproc) - 1 ))" --need="${DATA_NEED:-1470}" 2>&1 \
    | tee "$OUT/bench-data.log"
  part_done data "${PIPESTATUS[0]}" "$OUT/bench-data.log"
fi
keep_kernels
failed=$(awk '$NF != "0"' "$OUT/exit-codes.log")
if [ -n "$failed" ]; then
  echo "== session: $(printf '%s\n' "$failed" | wc -l) part(s) did not succeed (part, exit status):"
  printf '%s\n' "$failed" | sed 's/^/   /'
  exit 1
fi
echo "== session: every part that ran succeeded"
