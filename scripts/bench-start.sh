#!/usr/bin/env bash
# Container start time, side by side in one run: `poc run --rm --network none busybox true` (loopback only,
# like runc's default spec) against `runc run` and `crun run` of the same rootfs, with the same seccomp
# profile (Docker's default, as poc generates it: `runc spec` has none). crun 1.8 refuses hybrid
# cgroups, so it runs in a private mount namespace with the unified mount detached. The C floor
# (../shared/tools/floor.c: six namespaces, overlay root on the same disk as poc's layers, pivot_root,
# /proc, exec) is timed beside them. poc's state root is a tmpfs, as /run is on real hosts (on these
# VMs /run is on the disk, mounted with online discard, where every state directory removed waits for
# a discard: 2.7 ms more per start measured here, interleaved, and more while the disk is busy).
# Usage: scripts/bench-start.sh [RUNS]      Output: a table of medians and ratios, JSON in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
runs=${1:-200}
poc=${POC_BIN:-}
work=$(mktemp -d /var/tmp/poc-bench-XXXXXX)
out=${OUT:-$work/results.json}
export POC_STORE=$work/store POC_STATE_ROOT=$work/state POC_CGROUP_PARENT=/poc-bench-$$
mkdir -p "$work/state" && mount -t tmpfs -o size=64m poc-bench-state "$work/state"
cleanup() {
  unmount_under "$work"
  remove_cgroup_parents "poc-bench-$$" "runc-bench-$$" "crun-bench-$$"
  rm -rf "$work"
}
trap cleanup EXIT

scripts/setup.sh --bench
[ -n "$poc" ] || poc=$(scripts/build-release.sh)
"$poc" init busybox >/dev/null 2>&1

# One OCI bundle for runc and crun, with the same busybox rootfs poc runs and poc's seccomp profile
# (taken from the config.json of a container poc creates).
echo "== preparing the bundle" >&2
bundle=$work/bundle
mkdir -p "$bundle"
cp -a "$POC_STORE/images/busybox/rootfs" "$bundle/rootfs"
(cd "$bundle" && runc spec)
id=$("$poc" run -d --network none busybox sleep 60)
poc_config=$POC_STATE_ROOT/containers/$id/config.json
python3 - "$bundle/config.json" "$poc_config" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["true"]
spec["root"]["readonly"] = False
spec["linux"]["seccomp"] = json.load(open(sys.argv[2]))["linux"]["seccomp"]
json.dump(spec, open(path, "w"))
PY
"$poc" rm -f "$id" >/dev/null
floor_src=../shared/tools/floor.c
floor=""
if [ -e "$floor_src" ] && gcc -O2 -static -o "$work/floor" "$floor_src"; then
  floor=$work/floor
fi
echo "== timing poc, runc, crun${floor:+ and the floor} ($runs runs each)" >&2

hyperfine --style basic --warmup 10 --runs "$runs" -N --export-json "$work/poc.json" \
  -n poc "$poc run --rm --network none busybox true" >/dev/null
cfg=$bundle/config.json
python3 - "$cfg" "/runc-bench-$$/c" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1])); spec["linux"]["cgroupsPath"] = sys.argv[2]; json.dump(spec, open(sys.argv[1], "w"))
PY
hyperfine --style basic --warmup 10 --runs "$runs" -N --export-json "$work/runc.json" \
  -n runc "runc --root $work/runc run -b $bundle bench-runc" >/dev/null
python3 - "$cfg" "/crun-bench-$$/c" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1])); spec["linux"]["cgroupsPath"] = sys.argv[2]; json.dump(spec, open(sys.argv[1], "w"))
PY
unshare -m sh -c "umount /sys/fs/cgroup/unified 2>/dev/null; hyperfine --style basic --warmup 10 --runs $runs -N \
  --export-json $work/crun.json -n crun 'crun --root $work/crun run -b $bundle bench-crun'" >/dev/null

if [ -n "$floor" ]; then
  hyperfine --style basic --warmup 10 --runs "$runs" -N --export-json "$work/floor.json" \
    -n floor "$floor $POC_STORE/images/busybox/rootfs $POC_STORE/floor-work" >/dev/null
fi

python3 - "$work" "$out" <<'PY'
import json, sys, os
work, out = sys.argv[1], sys.argv[2]
rows = {}
for name in ["poc", "runc", "crun", "floor"]:
    if not os.path.exists(os.path.join(work, name + ".json")):
        continue
    r = json.load(open(os.path.join(work, name + ".json")))["results"][0]
    times = sorted(r["times"])
    rows[name] = {"median_ms": r["median"] * 1e3, "mean_ms": r["mean"] * 1e3,
                  "p90_ms": times[int(len(times) * 0.9)] * 1e3, "runs": len(times)}
print(f"{'runtime':<8} {'median ms':>10} {'p90 ms':>8} {'poc/x':>7}")
for name, row in rows.items():
    print(f"{name:<8} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f} {rows['poc']['median_ms'] / row['median_ms']:>7.2f}")
json.dump(rows, open(out, "w"), indent=2)
PY
[ -n "${OUT:-}" ] && echo "results: $out"
