#!/usr/bin/env bash
# The cost of watching: sysbench cpu and memory in a container, alone and while `poc trace` runs in
# each mode (--limits, --mem, --sched) on that container; events per second and the ratio to the
# untraced runs, interleaved so drift hits every variant alike. Then the limit-enforcement figures
# of `poc trace --limits --experiment` on a busy container holding page cache.
# With POC_BENCH_VM=1, the experiment also runs in the pure cgroup v2 guest (scripts/vm-test.sh
# --run): emulated (TCG), so its times are the emulator's; its tmpfs-only disk has nothing to
# reclaim, so memory there is lowered above the usage.
# Usage: scripts/bench-trace.sh [ROUNDS] [SECONDS per sysbench run]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
rounds=${1:-5}
secs=${2:-10}
scripts/setup.sh --bench
poc=${POC_BIN:-$(scripts/build-release.sh)}
work=$(mktemp -d /var/tmp/poc-bench-XXXXXX)
id=$$
export POC_STORE=$work/store POC_STATE_ROOT=$work/state POC_CGROUP_PARENT=/poc-bench-$id
trace_pid=""
cleanup() {
  set +e
  [ -n "$trace_pid" ] && kill "$trace_pid" 2>/dev/null && wait "$trace_pid" 2>/dev/null
  "$poc" rm -f $("$poc" ps -aq) >/dev/null 2>&1
  unmount_under "$work"
  remove_cgroup_parents "poc-bench-$id"
  rm -rf "$work"
}
trap cleanup EXIT
echo "building a debian image with sysbench (debootstrap, about a minute)" >&2
"$poc" init debian --with sysbench >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; exit 1; }
cid=$("$poc" run -d --name bench --network none debian sleep 100000)

# The rate of one sysbench run inside the container: cpu events per second, memory MiB per second.
run_sysbench() {
  "$poc" exec bench sysbench "$1" --threads=1 --time="$secs" run 2>/dev/null |
    awk '/events per second/ {print $4} /MiB transferred/ {gsub(/[(]/, "", $4); print $4}'
}
declare -A sum count
for round in $(seq 1 "$rounds"); do
  for test in cpu memory; do
    for mode in none limits mem sched; do
      if [ "$mode" != none ]; then
        "$poc" trace bench --"$mode" --json >/dev/null 2>"$work/trace.err" &
        trace_pid=$!
        for _ in $(seq 1 100); do grep -q "watching\|tracing" "$work/trace.err" && break; sleep 0.1; done
      fi
      eps=$(run_sysbench "$test")
      if [ -n "$trace_pid" ]; then kill "$trace_pid"; wait "$trace_pid" 2>/dev/null || true; trace_pid=""; fi
      [ -n "$eps" ] || { echo "sysbench $test gave no result" >&2; exit 1; }
      sum[$test.$mode]=$(python3 -c "print(${sum[$test.$mode]:-0} + $eps)")
      count[$test.$mode]=$(( ${count[$test.$mode]:-0} + 1 ))
      echo "round $round $test $mode: $eps" >&2
    done
  done
done
printf '\n%-22s %14s %14s %10s\n' "sysbench in poc" "untraced" "traced" "overhead"
echo "(cpu: events/s; memory: MiB/s; each the mean of $rounds runs of $secs s)"
for test in cpu memory; do
  base=$(python3 -c "print(${sum[$test.none]} / ${count[$test.none]})")
  for mode in limits mem sched; do
    traced=$(python3 -c "print(${sum[$test.$mode]} / ${count[$test.$mode]})")
    python3 -c "b=$base; t=$traced; print(f'{\"$test, trace --$mode\":<22} {b:14.1f} {t:14.1f} {(b-t)/b*100:9.2f}%')"
  done
done

# Limit enforcement: a busy container with 96 MiB of page cache, memory lowered to 48 MiB and back,
# CPU quota lowered to 10% and back.
"$poc" run -d --name lab --network none --mem 256M debian sh -c \
  'dd if=/dev/zero of=/tmp/fill bs=1M count=96 2>/dev/null; while :; do cat /tmp/fill >/dev/null; done' >/dev/null
sleep 3
echo
"$poc" trace lab --limits --experiment --iterations "${EXPERIMENT_ITERATIONS:-200}" --mem-low 48M

if [ "${POC_BENCH_VM:-0}" = 1 ]; then
  cat >"$work/guest.sh" <<GUEST
set -e
export POC_STORE=/var/tmp/poc-store POC_STATE_ROOT=/run/poc-bench POC_CGROUP_PARENT=/poc-bench
$poc init busybox >/dev/null
# Without a CPU limit (the quota goes from max and back: bandwidth control is switched on and off),
# then with one (between two finite quotas).
for cpus in "" "--cpus 1"; do
  echo "== container started with: --mem 256M \$cpus"
  $poc run -d --name lab --network none --mem 256M \$cpus busybox sh -c 'while :; do :; done' >/dev/null
  sleep 1
  $poc trace lab --limits --experiment --iterations ${EXPERIMENT_VM_ITERATIONS:-50} --mem-low 64M
  $poc rm -f lab >/dev/null
done
GUEST
  echo
  echo "the same in the pure cgroup v2 guest (emulated):"
  scripts/vm-test.sh --run "$work/guest.sh"
fi
