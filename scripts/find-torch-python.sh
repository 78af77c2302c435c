#!/usr/bin/env bash
# Prints the first Python that can `import torch`: $SEMAIM_PYTHON, then python3/python on PATH, then
# the usual fixed places (Debian's /usr/bin/python3, conda, /usr/local). Exit 1 if none can.
# A $SEMAIM_PYTHON that is not there or cannot import torch is an error: never another Python (another
# torch, perhaps without CUDA) in the one asked for's place.
if [ -n "${SEMAIM_PYTHON:-}" ]; then
  path=$(command -v "$SEMAIM_PYTHON" 2>/dev/null) || { echo "find-torch-python: SEMAIM_PYTHON=$SEMAIM_PYTHON: no such command" >&2; exit 1; }
  "$path" -c 'import torch' >/dev/null 2>&1 || { echo "find-torch-python: SEMAIM_PYTHON=$SEMAIM_PYTHON cannot import torch" >&2; exit 1; }
  echo "$path"
  exit 0
fi
for py in python3 python /usr/bin/python3 /opt/conda/bin/python /usr/local/bin/python3; do
  path=$(command -v "$py" 2>/dev/null) || continue
  if "$path" -c 'import torch' >/dev/null 2>&1; then echo "$path"; exit 0; fi
done
echo "find-torch-python: no Python with torch (set SEMAIM_PYTHON)" >&2
exit 1
