#!/usr/bin/env bash
# The time of `run --rm IMAGE true` through podman, ctr (containerd) and docker (dockerd), with the
# OCI runtime under test and with runc, side by side in one run (median of RUNS, two runtimes
# alternating): tests/oci_clients_bench.rs, an ignored test, built with the release profile. Each
# client gets private roots and its own daemons, stopped when it is done.
# Usage: scripts/bench-oci-clients.sh [RUNS]
#   POC_OCI_RUNTIME=/abs/path   the runtime under test (default: the release build of poc)
set -euo pipefail
cd "$(dirname "$0")/.."
export POC_OCI_BENCH_RUNS=${1:-10}
if [ "$(id -u)" -ne 0 ]; then
  echo "bench-oci-clients.sh: run as root (the clients create namespaces, cgroups and mounts)" >&2
  exit 1
fi
log=$(mktemp /var/tmp/poc-bench-oci-XXXXXX.log)
trap 'rm -f "$log"' EXIT
if ! cargo test --release --test oci_clients_bench -- --ignored --nocapture --test-threads=1 >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
sed -n '/^median of/,/^docker run/p' "$log"
