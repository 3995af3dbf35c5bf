#!/usr/bin/env bash
# `poc trace --net` against an independent method, and what it costs, in one run:
#  1. a busybox container on a private bridge is pinged from its own network namespace (the host's
#     busybox, via nsenter) and a plain namespace joined to the host by a veth is pinged the same
#     way, in interleaved rounds, while `poc trace --net` runs: the RTT difference (median) is what
#     the bridge adds per round trip, compared with trace's two bridge segments (and its veth
#     segments are printed);
#  2. iperf3 from the container's namespace to the gateway, without and with `trace --net`,
#     interleaved; Gbit/s per run and the ratio of medians.
# Usage: scripts/bench-trace-net.sh [PINGS per round] [ROUNDS] [IPERF runs each]
set -euo pipefail
cd "$(dirname "$0")/.."
pings=${1:-200}
rounds=${2:-5}
runs=${3:-6}
poc=${POC_BIN:-$(scripts/build-release.sh)}
work=$(mktemp -d /var/tmp/poc-bench-XXXXXX)
id=$$
export POC_STORE=$work/store POC_STATE_ROOT=$work/state POC_CGROUP_PARENT=/poc-bench-$id
export POC_BRIDGE=pbt$((id % 100000)) POC_SUBNET=10.252.$((id % 256)).0/24
gateway=10.252.$((id % 256)).1
netns=pbtplain$id host_if=pbth$((id % 100000)) peer_if=pbtp$((id % 100000))
plain_net=10.253.$((id % 256))
cleanup() {
  set +e
  "$poc" rm -f netbench >/dev/null 2>&1
  "$poc" network rm >/dev/null 2>&1
  ip link del "$host_if" 2>/dev/null
  ip netns del "$netns" 2>/dev/null
  for c in /sys/fs/cgroup/*/poc-bench-$id /sys/fs/cgroup/poc-bench-$id; do rmdir "$c" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
"$poc" init busybox >/dev/null
"$poc" run -d --name netbench busybox sleep 100000 >/dev/null
pid=$(python3 -c 'import json,sys,glob; print(json.load(open(glob.glob(sys.argv[1] + "/containers/*/state.json")[0]))["init"]["pid"])' "$POC_STATE_ROOT")
ip netns add "$netns"
ip link add "$host_if" type veth peer name "$peer_if" netns "$netns"
ip addr add "$plain_net.1/30" dev "$host_if" && ip link set "$host_if" up
ip -n "$netns" addr add "$plain_net.2/30" dev "$peer_if" && ip -n "$netns" link set "$peer_if" up

times() { nsenter --net="$1" busybox ping -c "$pings" -i 0.005 "$2" | sed -n 's/.*time=\([0-9.]*\) ms/\1/p'; }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}'; }

# One interval that holds all the pings (about 7 ms each): one histogram per segment.
secs=$((rounds * pings * 2 * 7 / 1000 + 3))
"$poc" trace netbench --net --json --interval "${secs}s" --duration "${secs}s" >"$work/trace.json" 2>/dev/null &
trace=$!
sleep 1
for _ in $(seq "$rounds"); do
  times "/proc/$pid/ns/net" "$gateway" >>"$work/bridge.txt"
  times "/run/netns/$netns" "$plain_net.1" >>"$work/plain.txt"
done
wait "$trace"
bridge=$(median <"$work/bridge.txt")
plain=$(median <"$work/plain.txt")
echo "RTT medians: container->gateway $bridge us, plain netns+veth $plain us ($(wc -l <"$work/bridge.txt") pings each): the bridge adds $(echo "$bridge - $plain" | bc) us"
python3 - "$work/trace.json" <<'PY'
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[0])
o, i = s["from_container"], s["to_container"]
seg = lambda l: f'{l["median_us"]} us median, p99 {l["p99_us"]} (n={l["n"]})'
print(f'trace --net: out veth {seg(o["veth"])}; out bridge {seg(o["bridge"])}')
print(f'             in bridge {seg(i["bridge"])}; in veth {seg(i["veth"])}')
print(f'             bridge per round trip: {o["bridge"]["median_us"] + i["bridge"]["median_us"]:.1f} us')
PY

iperf() {
  iperf3 -s -1 -B "$gateway" -p 5299 >/dev/null 2>&1 &
  local server=$!
  sleep 0.5
  nsenter --net="/proc/$pid/ns/net" iperf3 -c "$gateway" -p 5299 -t 5 -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
  wait "$server"
}
for r in $(seq "$runs"); do
  echo "untraced $(iperf)" >>"$work/iperf.txt"
  "$poc" trace netbench --net --interval 1s --duration 8s >/dev/null 2>&1 &
  trace=$!
  sleep 1
  echo "traced $(iperf)" >>"$work/iperf.txt"
  wait "$trace"
done
python3 - "$work/iperf.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    mode, gbits = line.split()
    runs.setdefault(mode, []).append(float(gbits))
for mode, v in runs.items():
    print(f'iperf3 {mode}: median {statistics.median(v):.2f} Gbit/s, runs {", ".join(f"{x:.2f}" for x in v)}')
print(f'traced / untraced: {statistics.median(runs["traced"]) / statistics.median(runs["untraced"]):.3f}')
PY
