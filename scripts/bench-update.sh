#!/usr/bin/env bash
# `poc update` as a user runs it (the whole process), against a raw C program that opens, writes and
# closes the same cgroup file and against `docker update` on a container of a private dockerd, all
# interleaved in one run: `poc bench update` with the release binary (see README.md, "poc bench").
# Usage: scripts/bench-update.sh [RUNS] [poc bench options...]     Report files: $OUT (default: a
# temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
# RUNS (default 300, or fewer with --quick) only when the first argument is a number.
runs=()
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then runs=(--runs "$1"); shift; fi
scripts/setup.sh --bench
poc=${POC_BIN:-$(scripts/build-release.sh)}
out=${OUT:-$(mktemp -d /var/tmp/poc-bench-update-XXXXXX)}
"$poc" bench update "${runs[@]}" --out "$out" "$@"
echo "report: $out/report.md" >&2
