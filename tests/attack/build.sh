#!/bin/sh
# Builds the static programs the escape tests run inside containers (test images are busybox: no
# libc to link against): every tests/attack/*.c into OUTDIR, when missing or older than its source.
# Run by the tests themselves on the host, and by scripts/vm-test.sh before the guest boots (the
# guest has no compiler; it sees the repository, and so the binaries, at the same path).
set -eu
out=${1:?usage: tests/attack/build.sh OUTDIR}
src=$(dirname "$0")
mkdir -p "$out"
for c in "$src"/*.c; do
  bin=$out/$(basename "$c" .c)
  if [ ! -x "$bin" ] || [ "$c" -nt "$bin" ]; then
    cc -static -O2 -Wall -o "$bin.tmp" "$c" && mv "$bin.tmp" "$bin"
  fi
done
