#!/usr/bin/env bash
# Networking figures, in one run: `poc bench net` with the release binary (see README.md, "poc bench"):
#   start time     poc run --rm --network none   vs  poc run --rm (bridge)  vs  docker run --rm
#   RTT            ping from a container to its gateway  vs  from a plain netns+veth made here to the host
#   TCP throughput iperf3 from a container to the host   vs  from that plain netns to the host
# All traffic stays between this host and namespaces the bench creates.
# Usage: scripts/bench-network.sh [RUNS] [poc bench options...]     Report files: $OUT (default: a
# temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
# RUNS (default 100, or fewer with --quick) only when the first argument is a number.
runs=()
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then runs=(--runs "$1"); shift; fi
scripts/setup.sh --bench
poc=${POC_BIN:-$(scripts/build-release.sh)}
out=${OUT:-$(mktemp -d /var/tmp/poc-bench-net-XXXXXX)}
"$poc" bench net "${runs[@]}" --out "$out" "$@"
echo "report: $out/report.md" >&2
