#!/usr/bin/env bash
# Opens an HTML report in headless Chromium, saves a screenshot and fails if the page logged
# anything to the console (uncaught exceptions, CSP-blocked loads, console.error...).
#
#   scripts/screenshot-report.sh REPORT.html [OUT.png] [WIDTH,HEIGHT]
#
# Chromium: $CHROMIUM, else `chromium` (Debian: apt-get install -y chromium), `chromium-browser`
# or `google-chrome`. Exit status: 0 ok, 1 console errors or no screenshot, 2 usage / no browser.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
report="$1"
[[ -f "$report" ]] || { echo "error: report not found: $report" >&2; exit 2; }
out="${2:-${report%.html}.png}"
size="${3:-1280,2000}"

browser="${CHROMIUM:-}"
if [[ -z "$browser" ]]; then
  for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then browser="$(command -v "$b")"; break; fi
  done
fi
[[ -n "$browser" ]] || { echo "error: no chromium found (apt-get install -y chromium, or set CHROMIUM)" >&2; exit 2; }

profile="$(mktemp -d)"
log="$(mktemp)"
trap 'rm -rf "$profile" "$log"' EXIT
# %, # and ? in the path escaped: in a URL they would start an escape, the fragment and the query
path="$(realpath "$report")"
path="${path//%/%25}"
path="${path//#/%23}"
url="file://${path//\?/%3F}"
mkdir -p "$(dirname "$out")"
rm -f "$out"

status=0
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --enable-logging=stderr --v=0 \
  --hide-scrollbars --window-size="$size" --screenshot="$(realpath -m "$out")" "$url" 2>"$log" >/dev/null || status=$?

# Chromium logs every page console message as `<LEVEL>:CONSOLE:<line>] "..."` (recent versions log
# console.error and CSP violations at INFO level too). The report has no scripts, so any console
# message at all (an uncaught exception, a blocked or failed load) counts as an error.
errors="$(grep -E 'Uncaught|ERROR:CONSOLE|:CONSOLE[:(][0-9]+' "$log" || true)"
if [[ -n "$errors" ]]; then
  echo "console errors in $report:" >&2
  echo "$errors" >&2
  exit 1
fi
if [[ $status -ne 0 || ! -s "$out" ]]; then
  echo "error: chromium exited with status $status and no screenshot at $out; its log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo "screenshot: $out (no console errors)"
