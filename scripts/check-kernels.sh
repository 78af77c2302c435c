#!/usr/bin/env bash
# Compiles the CUDA kernels of native/kernels/fused.cu for a GPU architecture on a machine without a GPU,
# so that a syntax or type error shows here, not in a GPU session:
#   1. nvcc (where it is on PATH): a cubin for $ARCH with every warning an error; lists the entry points.
#   2. NVRTC, the compiler the addon runs at run time (native/fused.cc, same options), through Python's
#      ctypes with Debian trixie's libnvrtc12 (CUDA 12.4, non-free) unpacked into the cache, nothing
#      installed (NVRTC=0 skips it; the first run downloads 18 MB from deb.debian.org or $DEBIAN_MIRROR).
#   bash scripts/check-kernels.sh            ARCH=sm_90 (default), e.g. ARCH=sm_80
# Not part of CI (no nvcc there); test/fused/kernels-nvcc.test.ts runs step 1 where nvcc exists.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${ARCH:-sm_90}
SRC=native/kernels/fused.cu
log() { echo "check-kernels: $*" >&2; }
fail=0
if command -v nvcc >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  if nvcc -arch="$ARCH" --cubin -Werror all-warnings -o "$tmp/fused.cubin" "$SRC" 2>"$tmp/nvcc.log"; then
    n=$(nvcc -arch="$ARCH" --ptx -o - "$SRC" 2>/dev/null | grep -c '^.visible .entry' || true)
    log "ok   nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') $ARCH: $n kernels"
  else
    fail=1
    log "FAIL nvcc $ARCH"
    cat "$tmp/nvcc.log" >&2
  fi
  rm -rf "$tmp"
else
  log "skip nvcc (not on PATH)"
fi

if [ "${NVRTC:-1}" != 0 ]; then
  MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  CACHE=${SEMAIM_NVRTC_CACHE:-$HOME/.cache/semaim/nvrtc}
  mkdir -p "$CACHE/root"
  source scripts/debian-package.sh
  index=$(debian_index trixie non-free "$CACHE") || exit 1
  for pkg in libnvrtc12 libnvrtc-builtins12.4; do
    deb=$(debian_deb "$index" "$pkg" "$CACHE/debs") || exit 1
    dpkg-deb -x "$deb" "$CACHE/root"
  done
  lib=$(ls "$CACHE"/root/usr/lib/x86_64-linux-gnu/libnvrtc.so.12* | head -n1)
  builtins=$(ls "$CACHE"/root/usr/lib/x86_64-linux-gnu/libnvrtc-builtins.so.12* | head -n1)
  # The options of compileFor() in native/fused.cc.
  if python3 - "$lib" "$builtins" "$SRC" "$ARCH" <<'PY'
import ctypes, sys
lib_path, builtins_path, src_path, arch = sys.argv[1:]
ctypes.CDLL(builtins_path, mode=ctypes.RTLD_GLOBAL)
nvrtc = ctypes.CDLL(lib_path)
major, minor = ctypes.c_int(), ctypes.c_int()
nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
prog = ctypes.c_void_p()
src = open(src_path, 'rb').read()
assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, b'fused.cu', 0, None, None) == 0
opts = [b'--gpu-architecture=' + arch.encode(), b'--std=c++17']
r = nvrtc.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
size = ctypes.c_size_t()
nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
log = ctypes.create_string_buffer(size.value)
nvrtc.nvrtcGetProgramLog(prog, log)
text = log.value.decode(errors='replace').strip()
if r != 0:
    nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
    print(f'check-kernels: FAIL NVRTC {major.value}.{minor.value} {arch}: {nvrtc.nvrtcGetErrorString(r).decode()}\n{text}', file=sys.stderr)
    sys.exit(1)
cubin = ctypes.c_size_t()
nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(cubin))
print(f'check-kernels: ok   NVRTC {major.value}.{minor.value} {arch}: cubin of {cubin.value} bytes' + (f' (log: {text})' if text else ''), file=sys.stderr)
PY
  then :; else fail=1; fi
fi
[ "$fail" = 0 ] || { log "the kernels do not compile"; exit 1; }
