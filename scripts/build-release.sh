#!/usr/bin/env bash
# Builds the release binary, statically linked (glibc's crt-static), and prints its path.
# Static linking skips the dynamic loader's relocations and symbol lookups: about 0.6 ms of every
# poc invocation on these machines, which is most of what separates `poc run` from crun, and much of
# a sub-millisecond `poc update`. The explicit --target keeps proc-macros dynamically linked.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo build --release --target "$host" >&2
echo "$PWD/target/$host/release/poc"
