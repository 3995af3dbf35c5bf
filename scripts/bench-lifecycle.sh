#!/usr/bin/env bash
# Lifecycle figures, side by side with runc in one run:
#   run -d until the id is printed   poc run -d --rm busybox true     vs  runc run -d (+ delete, untimed)
#   ps with 50 containers            poc ps                           vs  runc list
#   exec                             poc exec ID true                 vs  runc exec ID true
#   the monitor's memory             VmRSS and PSS of 50 poc monitors
# Usage: scripts/bench-lifecycle.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
runs=${1:-100}
scripts/setup.sh --bench
poc=${POC_BIN:-$(scripts/build-release.sh)}
work=$(mktemp -d /var/tmp/poc-bench-XXXXXX)
export POC_STORE=$work/store POC_STATE_ROOT=$work/state POC_CGROUP_PARENT=/poc-bench-$$
export POC_BRIDGE=pl$(($$ % 100000)) POC_SUBNET=10.$((100 + $$ % 50)).0.0/24
runc_root=$work/runc
cleanup() {
  "$poc" rm -f $("$poc" ps -aq) >/dev/null 2>&1 || true
  "$poc" network rm >/dev/null 2>&1 || true
  for c in $(runc --root "$runc_root" list -q 2>/dev/null); do runc --root "$runc_root" delete -f "$c" >/dev/null 2>&1 || true; done
  remove_cgroup_parents "poc-bench-$$" "runc-bench-$$"
  rm -rf "$work"
}
trap cleanup EXIT
"$poc" init busybox >/dev/null 2>&1

bundle=$work/bundle
mkdir -p "$bundle"
cp -a "$POC_STORE/images/busybox/rootfs" "$bundle/rootfs"
(cd "$bundle" && runc spec)
set_args() {
  python3 - "$bundle/config.json" "$@" <<'PY'
import json, sys
path, args = sys.argv[1], sys.argv[2:]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = args
spec["root"]["readonly"] = False
spec["linux"]["cgroupsPath"] = ""
json.dump(spec, open(path, "w"))
PY
}
median() { python3 -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['results'][0]['median']*1e3:.2f}\")" "$1"; }
h() { hyperfine -N --style none --warmup 5 --runs "$runs" --export-json "$@" >/dev/null 2>&1; }

# run -d: until the id is printed (the container removes itself; runc's is deleted before the next run).
set_args true
h "$work/poc-rund.json" "$poc run -d --rm busybox true"
h "$work/runc-rund.json" --prepare "runc --root $runc_root delete -f bench-d" \
  "runc --root $runc_root run -d -b $bundle bench-d"
runc --root "$runc_root" delete -f bench-d >/dev/null 2>&1 || true

# 50 running containers each.
set_args sleep 1000
for i in $(seq 1 50); do
  "$poc" run -d busybox sleep 1000 >/dev/null
  runc --root "$runc_root" run -d -b "$bundle" "r$i" >/dev/null 2>&1 </dev/null
done
h "$work/poc-ps.json" "$poc ps"
h "$work/runc-ps.json" "runc --root $runc_root list"
target=$("$poc" ps -q | sed -n 1p)
h "$work/poc-exec.json" "$poc exec $target true"
h "$work/runc-exec.json" "runc --root $runc_root exec r1 true"

rss=0; pss=0; n=0
for id in $("$poc" ps -q); do
  mpid=$("$poc" inspect "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["MonitorPid"])')
  rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$mpid/status")))
  pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$mpid/smaps_rollup")))
  n=$((n + 1))
done

printf '%-34s %10s %10s %8s\n' "what (median)" "poc" "runc" "poc/runc"
row() { printf '%-34s %8s ms %8s ms %8s\n' "$1" "$2" "$3" "$(python3 -c "print(f'{$2/$3:.2f}')")"; }
row "run -d (until the id)" "$(median "$work/poc-rund.json")" "$(median "$work/runc-rund.json")"
row "ps / list, 50 containers" "$(median "$work/poc-ps.json")" "$(median "$work/runc-ps.json")"
row "exec true" "$(median "$work/poc-exec.json")" "$(median "$work/runc-exec.json")"
echo "monitor memory, mean of $n: VmRSS $((rss / n)) KiB, PSS $((pss / n)) KiB"
