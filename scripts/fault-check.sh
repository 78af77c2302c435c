#!/usr/bin/env bash
# Fault injection on the command-line tool: kill -9 at random moments (some during checkpoint writes)
# then resume, corrupted checkpoints, a full disk, and a changed recipe on resume; then the evaluations:
# finetune and linprobe killed at random moments, a damaged probe, SIGINT/SIGTERM and a full disk for
# knn. Prints one summary line; exits non-zero when a case fails. Needs a built tree (npm run build).
#   KILLS=18 bash scripts/fault-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-12}
WORK=$(mktemp -d /tmp/semaim-fault-XXXXXX)
trap 'umount "$WORK/full" "$WORK/full2" 2>/dev/null; rm -rf "$WORK"' EXIT
MAIN=dist/src/cli/main.js
semaim() { node "$MAIN" "$@"; }
B=(pretrain --model vit_tiny --embed-dim 64 --depth 2 --num-heads 2 --decoder-depth 1 --img-size 32 --patch-size 4
   --batch-size 16 --synthetic-size 1280 --epochs 2 --warmup-epochs 1 --checkpoint-every 7 --keep-last 3 --log-every 1
   --threads 1 --num-workers 0)
# A file's SHA-256; for a missing file a line naming it, so that two missing files do not compare equal
# (a command that failed without writing its result matched the reference that failed the same way).
sha() { if [ -f "$1" ]; then sha256sum "$1" | cut -c1-64; else echo "no file $1"; fi; }
latest() { ls -d "$1"/checkpoints/step-* 2>/dev/null | sort | tail -1; }
summary=()
fail=0

# 1. kill -9 at random moments, resume each time; the final weights must equal an uninterrupted run's.
semaim "${B[@]}" --out-dir "$WORK/ref" >/dev/null 2>&1 || { echo "fault-check: the reference run failed"; exit 1; }
ref=$(sha "$(latest "$WORK/ref")/model.safetensors")
exact=0
for i in $(seq 1 "$KILLS"); do
  node "$MAIN" "${B[@]}" --out-dir "$WORK/kill" >/dev/null 2>&1 &
  pid=$!
  # Half of the kills wait for a checkpoint write of this process to begin (its .tmp-…-<pid> folder
  # appears; one an earlier kill left does not count), the others a random time.
  if (( i % 2 )); then
    for _ in $(seq 1 400); do ls -d "$WORK/kill/checkpoints"/.tmp-*-"$pid" >/dev/null 2>&1 && break; sleep 0.01; done
  else
    sleep "0.$(( RANDOM % 9 + 1 ))$(( RANDOM % 10 ))"
  fi
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
done
semaim "${B[@]}" --out-dir "$WORK/kill" >/dev/null 2>&1
got=$(sha "$(latest "$WORK/kill")/model.safetensors")
temps=$(ls -d "$WORK/kill/checkpoints"/.tmp-* 2>/dev/null | wc -l)
dups=$(node -e "const l=require('fs').readFileSync('$WORK/kill/metrics.jsonl','utf8').trim().split('\n').map(x=>JSON.parse(x).step).filter(s=>s!==undefined);console.log(l.length-new Set(l).size)")
if [ "$got" = "$ref" ] && [ "$temps" = 0 ] && [ "$dups" = 0 ]; then exact=1; fi
summary+=("kill-9 x$KILLS: $([ $exact = 1 ] && echo 'final weights byte-identical, no temp folders, no duplicate metrics' || echo "FAILED (sha match $([ "$got" = "$ref" ] && echo yes || echo no), $temps temp folders, $dups duplicate metrics)")")
[ $exact = 1 ] || fail=1

# 2. Corrupt every checkpoint of a run, then run a shorter budget: new checkpoints must survive.
semaim "${B[@]}" --max-steps 61 --out-dir "$WORK/corrupt" >/dev/null 2>&1
for f in "$WORK"/corrupt/checkpoints/{step-*,best}/model.safetensors; do printf '\xff\xff\xff\xff' | dd of="$f" bs=1 seek=200 conv=notrunc 2>/dev/null; done
out=$(semaim "${B[@]}" --max-steps 40 --out-dir "$WORK/corrupt" 2>&1)
ck=$(echo "$out" | sed -n 's/^  checkpoint: //p')
rerun=$(semaim "${B[@]}" --max-steps 45 --out-dir "$WORK/corrupt" 2>&1 | grep -c 'resumed from .*step-00000040')
if [ -n "$ck" ] && [ -d "$ck" ] && [ "$rerun" = 1 ] && ls -d "$WORK"/corrupt/previous/*/checkpoints/corrupt >/dev/null 2>&1; then
  summary+=("corrupt checkpoints: kept aside, new ones kept, rerun resumed")
else
  summary+=("corrupt checkpoints: FAILED (reported '$ck', rerun resumed: $rerun)"); fail=1
fi

# 3. A full disk: a small tmpfs (root only). The run is refused before its first step (its checkpoints
#    cannot fit); started anyway (SEMAIM_NO_SPACE_CHECK=1), the write error names the file, leaves no temp
#    folder, and the run resumes once there is room.
if [ "$(id -u)" = 0 ] && mkdir -p "$WORK/full" && mount -t tmpfs -o size=5m tmpfs "$WORK/full" 2>/dev/null; then
  early=$(semaim "${B[@]}" --max-steps 60 --keep-last 50 --out-dir "$WORK/full/run" 2>&1 | grep -c 'not enough free space in .* for the checkpoints of this run')
  out=$(SEMAIM_NO_SPACE_CHECK=1 semaim "${B[@]}" --max-steps 60 --keep-last 50 --out-dir "$WORK/full/run" 2>&1); rc=$?
  named=$(echo "$out" | grep -cE 'cannot write .*(model|optimizer)\.safetensors.*(ENOSPC|no space)')
  temps=$(ls -d "$WORK"/full/run/checkpoints/.tmp-* 2>/dev/null | wc -l)
  mount -o remount,size=64m "$WORK/full"
  resumed=$(semaim "${B[@]}" --max-steps 60 --keep-last 50 --out-dir "$WORK/full/run" 2>&1 | grep -c 'resumed from')
  if [ "$early" = 1 ] && [ $rc = 1 ] && [ "$named" -ge 1 ] && [ "$temps" = 0 ] && [ "$resumed" = 1 ]; then
    summary+=("disk full: refused before the first step, started anyway: rc 1, error names the file, no temp folder, resumed after freeing space")
  else
    summary+=("disk full: FAILED (refused early $early, rc $rc, named $named, $temps temp folders, resumed $resumed)"); fail=1
  fi
else
  summary+=("disk full: skipped (needs root to mount a small tmpfs)")
fi

# 4. Resume with a changed recipe: refused (rc 2) with the changed keys, config.json untouched.
semaim "${B[@]}" --max-steps 5 --out-dir "$WORK/recipe" >/dev/null 2>&1
before=$(sha "$WORK/recipe/config.json")
out=$(semaim "${B[@]}" --max-steps 10 --batch-size 32 --seed 3 --out-dir "$WORK/recipe" 2>&1); rc=$?
if [ $rc = 2 ] && echo "$out" | grep -q -- '--batch-size' && echo "$out" | grep -q -- '--seed' && [ "$(sha "$WORK/recipe/config.json")" = "$before" ]; then
  summary+=("changed recipe: refused with the changed keys, config.json unchanged")
else
  summary+=("changed recipe: FAILED (rc $rc)"); fail=1
fi

# 5. SIGINT: checkpoint, then exit 130.
# A background job of a script ignores SIGINT unless it restores the default first (POSIX), so the
# job is started through a shell that does.
bash -c 'trap - INT; exec node "$@"' _ "$MAIN" "${B[@]}" --out-dir "$WORK/sig" >/dev/null 2>"$WORK/sig.err" &
pid=$!
for _ in $(seq 1 500); do grep -q 'pretrain \[' "$WORK/sig.err" 2>/dev/null && break; sleep 0.02; done
kill -INT $pid; wait $pid; rc=$?
if [ $rc = 130 ] && [ -n "$(latest "$WORK/sig")" ]; then summary+=("SIGINT: checkpoint written, exit 130"); else summary+=("SIGINT: FAILED (rc $rc)"); fail=1; fi

# 6. The evaluations, on the reference run's encoder.
#    a. finetune killed at random moments (half of them while a checkpoint folder of its own is being
#       written), then run again: the final weights equal an uninterrupted run's, no temp folders.
FT=(finetune --checkpoint "$WORK/ref" --dataset synthetic --train-limit 256 --test-limit 64 --batch-size 16 --eval-batch-size 32
    --epochs 3 --warmup-epochs 1 --checkpoint-every 5 --keep-last 2 --log-every 1 --threads 1 --num-workers 0)
semaim "${FT[@]}" --out-dir "$WORK/ft-ref" >/dev/null 2>&1
for i in $(seq 1 "$KILLS"); do
  node "$MAIN" "${FT[@]}" --out-dir "$WORK/ft-kill" >/dev/null 2>&1 &
  pid=$!
  if (( i % 2 )); then
    for _ in $(seq 1 400); do ls -d "$WORK/ft-kill/checkpoints"/.tmp-*-"$pid" >/dev/null 2>&1 && break; sleep 0.01; done
  else
    sleep "$(( RANDOM % 2 )).$(( RANDOM % 10 ))"
  fi
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
done
semaim "${FT[@]}" --out-dir "$WORK/ft-kill" >/dev/null 2>&1
ft_same=$([ "$(sha "$WORK/ft-ref/checkpoints/step-00000048/model.safetensors")" = "$(sha "$WORK/ft-kill/checkpoints/step-00000048/model.safetensors" 2>/dev/null)" ] && echo 1 || echo 0)
ft_temps=$(ls -d "$WORK/ft-kill/checkpoints"/.tmp-* 2>/dev/null | wc -l)
if [ "$ft_same" = 1 ] && [ "$ft_temps" = 0 ] && [ -f "$WORK/ft-kill/finetune.json" ]; then
  summary+=("finetune kill-9 x$KILLS: final weights byte-identical, no temp folders")
else
  summary+=("finetune kill-9 x$KILLS: FAILED (sha match $ft_same, $ft_temps temp folders)"); fail=1
fi

#    b. linprobe killed at random moments (half of them while one of its files is staged) over an earlier
#       result: after each kill linprobe.json parses and names the probe beside it (details.probeSha256),
#       unless a journal (.commit) is left for the next command to complete; run again, it gives the
#       probe of an uninterrupted run.
LP=(linprobe --checkpoint "$WORK/ref" --dataset synthetic --train-limit 512 --test-limit 128 --eval-batch-size 64 --batch-size 64
    --epochs 30 --threads 1 --num-workers 0)
semaim "${LP[@]}" --out-dir "$WORK/lp-ref" >/dev/null 2>&1
semaim "${LP[@]}" --epochs 5 --out-dir "$WORK/lp" >/dev/null 2>&1
pairs=0
for i in $(seq 1 "$KILLS"); do
  node "$MAIN" "${LP[@]}" --out-dir "$WORK/lp" >/dev/null 2>&1 &
  pid=$!
  if (( i % 2 )); then
    for _ in $(seq 1 400); do ls "$WORK/lp"/*.tmp-"$pid"-* >/dev/null 2>&1 && break; sleep 0.01; done
  else
    sleep "$(( RANDOM % 2 )).$(( RANDOM % 10 ))"
  fi
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  ls "$WORK/lp"/*.commit >/dev/null 2>&1 && continue
  recorded=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$WORK/lp/linprobe.json','utf8')).details.probeSha256)" 2>/dev/null)
  [ "$recorded" = "$(sha "$WORK/lp/probe.safetensors")" ] || pairs=$((pairs + 1))
done
semaim "${LP[@]}" --out-dir "$WORK/lp" >/dev/null 2>&1
lp_same=$([ "$(sha "$WORK/lp-ref/probe.safetensors")" = "$(sha "$WORK/lp/probe.safetensors")" ] && echo 1 || echo 0)
lp_temps=$(ls "$WORK/lp" | grep -c -E '\.tmp-|\.commit$')
if [ "$pairs" = 0 ] && [ "$lp_same" = 1 ] && [ "$lp_temps" = 0 ]; then
  summary+=("linprobe kill-9 x$KILLS: result and probe always a pair, rerun byte-identical")
else
  summary+=("linprobe kill-9 x$KILLS: FAILED ($pairs mismatched pairs, probe match $lp_same, $lp_temps temp files)"); fail=1
fi

#    c. A probe damaged since linprobe wrote it is refused by predict, naming the file.
cp -r "$WORK/lp" "$WORK/lp-damaged"
printf '\x01' | dd of="$WORK/lp-damaged/probe.safetensors" bs=1 seek=$(( $(stat -c %s "$WORK/lp-damaged/probe.safetensors") - 8 )) conv=notrunc 2>/dev/null
out=$(semaim predict --checkpoint "$WORK/lp-damaged" --dataset synthetic --limit 16 --threads 1 --num-workers 0 --out "$WORK/pred/p.json" 2>&1); rc=$?
if [ $rc != 0 ] && echo "$out" | grep -q 'probe.safetensors does not match the SHA-256' && [ ! -e "$WORK/pred/p.json" ]; then
  summary+=("damaged probe: refused by predict, naming it")
else
  summary+=("damaged probe: FAILED (rc $rc)"); fail=1
fi

#    d. SIGINT / SIGTERM during k-NN: exit 130 / 143, the earlier knn.json unchanged.
KNN=(knn --checkpoint "$WORK/ref" --dataset synthetic --train-limit 2048 --test-limit 256 --eval-batch-size 32 --threads 1 --num-workers 0)
semaim "${KNN[@]}" --k 5 --out-dir "$WORK/knn" >/dev/null 2>&1
before=$(sha "$WORK/knn/knn.json")
codes=""
for s in INT TERM; do
  bash -c 'trap - INT; exec node "$@"' _ "$MAIN" "${KNN[@]}" --out-dir "$WORK/knn" >/dev/null 2>"$WORK/knn.err" &
  pid=$!
  for _ in $(seq 1 500); do grep -q 'features (train) \[' "$WORK/knn.err" 2>/dev/null && break; sleep 0.02; done
  kill -"$s" $pid; wait $pid; codes="$codes $?"
done
if [ "$codes" = " 130 143" ] && [ -f "$WORK/knn/knn.json" ] && [ "$(sha "$WORK/knn/knn.json")" = "$before" ]; then
  summary+=("knn SIGINT/SIGTERM: exit 130/143, earlier result unchanged")
else
  summary+=("knn SIGINT/SIGTERM: FAILED (exit codes$codes)"); fail=1
fi

#    e. A full disk when k-NN writes its result: rc 1 naming the file, the earlier result unchanged; the
#       same command succeeds once there is room.
if [ "$(id -u)" = 0 ] && mkdir -p "$WORK/full2" && mount -t tmpfs -o size=1m tmpfs "$WORK/full2" 2>/dev/null; then
  cp -r "$WORK/knn" "$WORK/full2/knn"
  head -c $(( $(df -k --output=avail "$WORK/full2" | tail -1) * 1024 )) /dev/zero > "$WORK/full2/filler" 2>/dev/null
  out=$(semaim "${KNN[@]}" --out-dir "$WORK/full2/knn" 2>&1); rc=$?
  kept=$([ "$(sha "$WORK/full2/knn/knn.json")" = "$before" ] && echo 1 || echo 0)
  rm -f "$WORK/full2/filler"
  semaim "${KNN[@]}" --out-dir "$WORK/full2/knn" >/dev/null 2>&1; again=$?
  if [ $rc = 1 ] && echo "$out" | grep -q 'cannot write .*knn.json.*no space' && [ "$kept" = 1 ] && [ $again = 0 ] && [ "$(ls "$WORK/full2/knn")" = knn.json ]; then
    summary+=("knn disk full: rc 1 naming the file, earlier result kept, written once freed")
  else
    summary+=("knn disk full: FAILED (rc $rc, earlier kept $kept, rerun rc $again)"); fail=1
  fi
  umount "$WORK/full2"
else
  summary+=("knn disk full: skipped (needs root to mount a small tmpfs)")
fi

echo "fault-check: $(IFS=';'; echo "${summary[*]}" | sed 's/;/; /g')"
exit $fail
