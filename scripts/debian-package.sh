# Sourced by scripts/check-cuda-build.sh, check-kernels.sh and check-libtorch2.sh: a Debian suite's package
# index and its binary packages, checksum-verified, without installing anything. The caller defines log()
# and sets MIRROR (e.g. http://deb.debian.org/debian).
#
#   index=$(debian_index trixie non-free "$CACHE")   # $CACHE/Packages-trixie-non-free.xz, refreshed daily
#   deb=$(debian_deb "$index" libnvrtc12 "$CACHE/debs")   # the verified .deb's path
# Both print the path on stdout and, on failure, a message through log() and return 1.

debian_index() {
  local suite=$1 component=$2 cache=$3
  local index=$cache/Packages-$suite-$component.xz
  mkdir -p "$cache"
  # A day-old index may name .debs the mirror has replaced; keep it only when no new one can be had.
  if [ ! -s "$index" ] || [ -n "$(find "$index" -mmin +1440)" ]; then
    if curl -sSfL -o "$index.part" "$MIRROR/dists/$suite/$component/binary-amd64/Packages.xz"; then
      mv "$index.part" "$index"
    elif [ -s "$index" ]; then
      log "cannot refresh the $suite/$component index; using the cached one"
    else
      log "cannot download the $suite/$component index from $MIRROR"
      return 1
    fi
  fi
  echo "$index"
}

debian_deb() {
  local index=$1 name=$2 debs=$3 file="" sha=""
  # (read fails on no line: `|| true` keeps the caller's set -e from ending it without the message below)
  read -r file sha < <(xz -dc "$index" | awk -v p="$name" '
    /^Package: /{ok = ($2 == p)} ok && /^Filename: /{f = $2} ok && /^SHA256: /{s = $2} /^$/{ if (ok && f) {print f, s; exit} ok = 0 }') || true
  [ -n "$file" ] || { log "$name is not in $(basename "$index") (delete it to fetch it again)"; return 1; }
  mkdir -p "$debs"
  local deb=$debs/$(basename "$file")
  if [ ! -f "$deb" ]; then
    log "downloading $(basename "$file")"
    curl -sSfL -o "$deb.part" "$MIRROR/$file" && mv "$deb.part" "$deb" || { log "cannot download $MIRROR/$file"; return 1; }
  fi
  echo "$sha  $deb" | sha256sum --quiet -c - >&2 || { log "checksum mismatch: $deb (delete it)"; return 1; }
  echo "$deb"
}
