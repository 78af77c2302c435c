#!/usr/bin/env bash
# Hostile image inputs through the command-line tool, as a user would meet them: a real PNG
# decompression bomb (30000×30000 grey, 0.9 MB on disk, 900 MB of pixels), tiny files whose
# headers claim 30000×30000 (JPEG, BMP, GIF), a truncated JPEG, a JPEG with EXIF orientation 6,
# a directory symlink loop, a file symlink loop and a dangling link, next to a few good images.
# Runs a 1-epoch `semaim pretrain`, `semaim knn`, `semaim visualize` on them (peak RSS by
# /usr/bin/time when installed), the same with only unreadable images, and a --data-path that
# does not exist; checks exit codes and messages, and prints one summary line.
# Needs the compiled tree (npm run build); ~1 min on a 2-core CPU. R=DIR keeps the files there.
set -uo pipefail
cd "$(dirname "$0")/.."
R=${R:-$(mktemp -d -t semaim-fault-data-XXXX)}
rm -rf "$R" && mkdir -p "$R/data/train/a" "$R/data/train/b" "$R/data/test/a" "$R/data/test/b" "$R/viz-bad"
pass=0
fail=0
notes=()
check() { # check NAME CONDITION...
  local name=$1
  shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); notes+=("FAILED: $name"); echo "FAILED: $name" >&2; fi
}
has() { grep -q -- "$2" "$1"; }
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -f 'maxrss_kb=%M')
run() { # run NAME ARGS...: semaim ARGS with stdout+stderr in $R/NAME.log, rc in $R/NAME.rc
  local name=$1
  shift
  "${TIME[@]}" node dist/src/cli/main.js "$@" >"$R/$name.log" 2>&1
  echo $? >"$R/$name.rc"
}
rc() { cat "$R/$1.rc"; }
rss_mib() { local kb; kb=$(grep -o 'maxrss_kb=[0-9]*' "$R/$1.log" | tail -1 | cut -d= -f2); [ -n "$kb" ] && echo $((kb / 1024)) || echo '?'; }

# ---------------------------------------------------------------- the files
node -e '
  const { join } = require("node:path");
  const { writeFileSync, symlinkSync } = require("node:fs");
  const sharp = require("sharp");
  const h = require("./dist/test/data/hostile-files.js");
  const R = process.argv[1];
  (async () => {
    for (const split of ["train", "test"]) for (const [k, cls] of ["a", "b"].entries()) for (let i = 0; i < 8; i++) {
      const px = Buffer.alloc(40 * 40 * 3);
      for (let j = 0; j < px.length; j++) px[j] = (j * (k + 2) + i * 11 + (j >> 6) * (k + 1) * 9) & 255;
      await sharp(px, { raw: { width: 40, height: 40, channels: 3 } }).png().toFile(join(R, "data", split, cls, i + ".png"));
    }
    const a = join(R, "data", "train", "a");
    await h.writeBombPng(join(a, "bomb.png"), 30000, 30000);
    writeFileSync(join(a, "claims.jpg"), h.claimedSizeJpeg(30000, 30000));
    writeFileSync(join(a, "claims.bmp"), h.claimedSizeBmp(30000, 30000));
    writeFileSync(join(a, "claims.gif"), h.claimedSizeGif(30000, 30000));
    const jpg = await sharp(Buffer.alloc(40 * 40 * 3, 90), { raw: { width: 40, height: 40, channels: 3 } }).jpeg().toBuffer();
    writeFileSync(join(a, "truncated.jpg"), jpg.subarray(0, jpg.length >> 1));
    const raw = Buffer.alloc(48 * 32 * 3);
    for (let y = 0; y < 32; y++) for (let x = 0; x < 48; x++) raw.set(x < 24 && y < 16 ? [220, 30, 30] : [240, 240, 240], (y * 48 + x) * 3);
    await sharp(raw, { raw: { width: 48, height: 32, channels: 3 } }).jpeg({ quality: 95, chromaSubsampling: "4:4:4" })
      .withMetadata({ orientation: 6 }).toFile(join(R, "data", "train", "b", "exif6.jpg"));
    symlinkSync(".", join(a, "loop"));
    symlinkSync("self.png", join(a, "self.png"));
    symlinkSync("missing.png", join(a, "dangling.png"));
  })().catch((e) => { console.error(e); process.exit(1); });
' "$R" || { echo "fault-check-data: could not make the test files" >&2; exit 1; }
cp "$R/data/train/a/bomb.png" "$R/data/train/a/truncated.jpg" "$R/viz-bad/"
bomb_kb=$(($(stat -c %s "$R/data/train/a/bomb.png") / 1024))

# ---------------------------------------------------------------- pre-training over the bomb folder
TINY=(--model vit_tiny --embed-dim 64 --depth 2 --num-heads 2 --decoder-depth 1 --img-size 32 --patch-size 4
  --batch-size 11 --epochs 1 --warmup-epochs 0 --threads 1 --num-workers 1)
run pretrain pretrain "${TINY[@]}" --dataset folder --data-path "$R/data" --out-dir "$R/run"
L=$R/pretrain.log
check "pretrain exits 0" [ "$(rc pretrain)" = 0 ]
check "pretrain names the bomb, its size and the limit" has "$L" 'bomb.png: PNG of 30000×30000 = 900,000,000 pixels exceeds the limit of 178,956,970'
check "pretrain refuses the claimed JPEG/BMP/GIF" bash -c "grep -q 'claims.jpg: JPEG of 30000×30000' '$L' && grep -q 'claims.bmp: BMP of 30000×30000' '$L' && grep -q 'claims.gif: GIF of 30000×30000' '$L'"
check "pretrain counts them with the truncated JPEG" bash -c "grep -q 'skipped 5 unusable files (' '$L' && grep 'skipped 5 unusable' '$L' | grep -q '4 too-large' && grep 'skipped 5 unusable' '$L' | grep -q '1 truncated'"
check "the directory loop is reported once" [ "$(grep -c 'is a symlink loop' "$L")" = 1 ]
check "file loop and dangling link are reported" has "$L" '2 entries cannot be read and are left out: a/dangling.png (dangling link), a/self.png (symlink loop)'

# ---------------------------------------------------------------- k-NN over the same folder
run knn knn --checkpoint "$R/run" --dataset folder --data-path "$R/data" --k 5 --threads 1 --num-workers 1 --out-dir "$R/knn"
check "knn exits 0 and writes knn.json" bash -c "[ \"\$(cat '$R/knn.rc')\" = 0 ] && [ -f '$R/knn/knn.json' ]"
check "knn skips the bomb" has "$R/knn.log" 'bomb.png: PNG of 30000×30000'

# ---------------------------------------------------------------- figures
run viz visualize --checkpoint "$R/run" --images "$R/data/train/a" "$R/data/train/b/exif6.jpg" --out "$R/viz" --threads 1 --orders raster
check "visualize exits 0 with unreadable images among good ones" [ "$(rc viz)" = 0 ]
check "visualize lists the 7 unreadable files in visualize.json" node -e '
  const s = require(process.argv[1]).skipped;
  process.exit(s.length === 7 && s.some((x) => /bomb\.png: PNG of 30000×30000/.test(x.reason)) ? 0 : 1)' "$R/viz/visualize.json"
run viz_bad visualize --checkpoint "$R/run" --images "$R/viz-bad" --out "$R/viz-bad-out" --threads 1
check "visualize with no readable image fails (rc 1) naming each file" bash -c "[ \"\$(cat '$R/viz_bad.rc')\" = 1 ] && grep -q 'none of the 2 image(s) could be read' '$R/viz_bad.log' && grep -q 'truncated' '$R/viz_bad.log'"

# ---------------------------------------------------------------- one EXIF policy
check "EXIF orientation: loader and figures ignore it by default and both apply it on request" node -e '
  const { loadRgb } = require("./dist/src/viz");
  const { DataLoader, imageFiles, centerCrop } = require("./dist/src/data");
  const { mkdtempSync, copyFileSync } = require("node:fs");
  const { join } = require("node:path");
  const dir = mkdtempSync(join(require("node:os").tmpdir(), "exif-"));
  copyFileSync(process.argv[1], join(dir, "exif6.jpg"));
  const red = (d, x, y) => d[(y * 32 + x) * 3] > 180 && d[(y * 32 + x) * 3 + 2] < 80;
  (async () => {
    const ok = [];
    for (const exif of ["ignore", "apply"]) {
      const fig = (await loadRgb(process.argv[1], 32, { exifOrientation: exif })).data;
      const l = new DataLoader(imageFiles(dir), { batchSize: 1, workers: 0, uint8: true, transforms: [centerCrop(32)], exifOrientation: exif });
      let hwc;
      for await (const b of l.iterate(0)) { hwc = new Uint8Array(3072); for (let i = 0; i < 1024; i++) for (let c = 0; c < 3; c++) hwc[i * 3 + c] = b.images[c * 1024 + i]; }
      await l.close();
      const same = Buffer.compare(Buffer.from(fig), Buffer.from(hwc)) === 0;
      ok.push(same && (exif === "ignore" ? red(fig, 2, 2) && !red(fig, 29, 2) : red(fig, 29, 2) && !red(fig, 2, 2)));
    }
    process.exit(ok.every(Boolean) ? 0 : 1);
  })();' "$R/data/train/b/exif6.jpg"

# ---------------------------------------------------------------- a data path that does not exist
run nodata pretrain "${TINY[@]}" --dataset cifar10 --data-path /nonexistent.tar.gz --out-dir "$R/nodata"
check "--data-path /nonexistent.tar.gz is an option error (rc 2) before any work" bash -c "[ \"\$(cat '$R/nodata.rc')\" = 2 ] && grep -q \"option --data-path: /nonexistent.tar.gz does not exist\" '$R/nodata.log' && [ ! -e '$R/nodata' ]"

total=$((pass + fail))
echo "fault-check-data: $pass/$total checks passed; ${bomb_kb} KB bomb PNG (30000×30000): peak RSS pretrain $(rss_mib pretrain) MiB, knn $(rss_mib knn) MiB, visualize $(rss_mib viz) MiB; files in $R${notes[*]:+; ${notes[*]}}"
[ "$fail" = 0 ]
