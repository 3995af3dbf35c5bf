#!/usr/bin/env bash
# `poc update` as a user runs it (the whole process), against a raw C program that opens, writes and
# closes the same cgroup file and against `docker update` on a container of a private dockerd, all
# interleaved in one run: a thin wrapper around `poc bench update` (src/bench/update.rs), which
# measures, writes the report and removes everything it made (also on Ctrl-C).
# Usage: scripts/bench-update.sh [RUNS] [poc bench options, e.g. --against poc --out DIR]
# The poc measured: $POC_BIN, or the static release build (built here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=()
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  runs=(--runs "$1")
  shift
fi
poc=${POC_BIN:-$("$root/scripts/build-release.sh")}
exec "$poc" bench update "${runs[@]}" "$@"
