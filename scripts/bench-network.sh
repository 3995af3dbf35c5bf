#!/usr/bin/env bash
# Networking figures, in one run: a thin wrapper around `poc bench net` (src/bench/net.rs), which
# measures, writes the report and removes everything it made (also on Ctrl-C):
#   start time     poc run --rm --network none   vs  poc run --rm (bridge)  vs  docker run --rm
#   RTT            ping from a container to its gateway  vs  from a plain netns+veth made here to the host
#   TCP throughput iperf3 from a container to the host   vs  from that plain netns to the host
# All traffic stays between this host and namespaces the bench creates.
# Usage: scripts/bench-network.sh [RUNS] [poc bench options, e.g. --quick --against poc --out DIR]
# The poc measured: $POC_BIN, or the static release build (built here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=()
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  runs=(--runs "$1")
  shift
fi
poc=${POC_BIN:-$("$root/scripts/build-release.sh")}
exec "$poc" bench net "${runs[@]}" "$@"
