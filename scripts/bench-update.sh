#!/usr/bin/env bash
# `poc update` as a user runs it (the whole process), against `docker update` on a container of a
# dockerd started by hand, and against a raw C program that opens, writes and closes the same cgroup
# file (also a whole process), in one run. Each writes the memory limit, alternating 64M and 128M.
# poc's state root is a tmpfs here, as /run is on typical hosts.
# Usage: scripts/bench-update.sh [RUNS per value]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
runs=${1:-300}
scripts/setup.sh --bench
poc=${POC_BIN:-$(scripts/build-release.sh)}
work=$(mktemp -d /var/tmp/poc-bench-XXXXXX)
id=$$
export POC_STORE=$work/store POC_STATE_ROOT=$work/state POC_CGROUP_PARENT=/poc-bench-$id
# The state root on a tmpfs, as /run/poc is on a typical host (on these VMs /run is on the disk, where
# the atomic rename of a state file alone costs about 0.3 ms).
mkdir -p "$work/state" && mount -t tmpfs -o size=64m poc-bench-state "$work/state"
docker_pid=""
cleanup() {
  set +e
  [ -n "$docker_pid" ] && "${docker[@]}" rm -f bench-update >/dev/null 2>&1
  "$poc" rm -f $("$poc" ps -aq) >/dev/null 2>&1
  stop_dockerd
  unmount_under "$work"
  remove_cgroup_parents "poc-bench-$id" "poc-bench-docker-$id"
  rm -rf "$work"
}
trap cleanup EXIT
"$poc" init busybox >/dev/null 2>&1
cid=$("$poc" run -d --network none --mem 128M busybox sleep 100000)
leaf=$(ls -d /sys/fs/cgroup/memory/poc-bench-$id/"$cid" 2>/dev/null || echo "/sys/fs/cgroup/poc-bench-$id/$cid")
file=$leaf/memory.limit_in_bytes; [ -e "$file" ] || file=$leaf/memory.max

cat >"$work/rawwrite.c" <<'C'
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_WRONLY);
    if (fd < 0 || write(fd, argv[2], strlen(argv[2])) < 0) return 1;
    return close(fd);
}
C
gcc -O2 -o "$work/rawwrite" "$work/rawwrite.c"

stats() { python3 - "$1" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
times = sorted(t for r in rows for t in r["times"])
print(f"{times[len(times)//2]*1e3:.3f} {times[int(len(times)*0.99)]*1e3:.3f}")
PY
}
h() { hyperfine -N --style none --warmup 10 --runs "$runs" --export-json "$@" >/dev/null 2>&1; }
h "$work/poc.json" -L mem 64M,128M "$poc update $cid --mem {mem}"
h "$work/raw.json" -L bytes 67108864,134217728 "$work/rawwrite $file {bytes}"

start_dockerd "$work" "/poc-bench-docker-$id"
tar -C "$POC_STORE/images/busybox/rootfs" -c . | "${docker[@]}" import - pocbench:busybox >/dev/null
"${docker[@]}" run -d --name bench-update --memory 128m --memory-swap -1 pocbench:busybox sleep 100000 >/dev/null
drun=$((runs / 3 > 30 ? runs / 3 : 30))
hyperfine -N --style none --warmup 3 --runs "$drun" --export-json "$work/docker.json" \
  -L mem 64m,128m "${docker[*]} update --memory {mem} --memory-swap -1 bench-update" >/dev/null 2>&1

read -r pm pp <<<"$(stats "$work/poc.json")"
read -r rm_ rp <<<"$(stats "$work/raw.json")"
read -r dm dp <<<"$(stats "$work/docker.json")"
printf '%-44s %10s %10s\n' "update of the memory limit (whole process)" "median ms" "p99 ms"
printf '%-44s %10s %10s\n' "poc update" "$pm" "$pp"
printf '%-44s %10s %10s\n' "raw C open/write/close" "$rm_" "$rp"
printf '%-44s %10s %10s\n' "docker update" "$dm" "$dp"
python3 -c "print(f'docker / poc = {$dm/$pm:.1f}x   poc / raw C = {$pm/$rm_:.2f}x')"
