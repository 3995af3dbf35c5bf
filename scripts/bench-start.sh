#!/usr/bin/env bash
# Container start time, side by side in one run: `poc bench start` with the release binary (poc vs
# runc, crun, docker, podman and the floor; see README.md, "poc bench").
# Usage: scripts/bench-start.sh [RUNS] [poc bench options...]     Report files: $OUT (default: a
# temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
[ $# -gt 0 ] && shift
scripts/setup.sh --bench
poc=${POC_BIN:-$(scripts/build-release.sh)}
out=${OUT:-$(mktemp -d /var/tmp/poc-bench-start-XXXXXX)}
"$poc" bench start --runs "$runs" --out "$out" "$@"
echo "report: $out/report.md" >&2
