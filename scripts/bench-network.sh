#!/usr/bin/env bash
# Networking figures, in one run:
#   start time     poc run --rm --network none   vs  poc run --rm (bridge)  vs  docker run --rm
#   RTT            ping from a container to its gateway  vs  from a plain netns+veth made here to the host
#   TCP throughput iperf3 from a container to the host   vs  from that plain netns to the host
# dockerd is started by hand with its own roots, no iptables and no bridge (see ../shared/ENVIRONMENT.md),
# and stopped at the end. All traffic stays between this host and namespaces this script creates.
# Usage: scripts/bench-network.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
runs=${1:-100}
scripts/setup.sh --bench
poc=${POC_BIN:-$(scripts/build-release.sh)}
work=$(mktemp -d /var/tmp/poc-bench-XXXXXX)
id=$$
export POC_STORE=$work/store POC_STATE_ROOT=$work/state POC_CGROUP_PARENT=/poc-bench-$id
export POC_BRIDGE=pb$((id % 100000)) POC_SUBNET=10.$((150 + id % 50)).0.0/24
gw=10.$((150 + id % 50)).0.1
ns=pbns$id base_host=pbh$((id % 100000)) base_peer=pbp$((id % 100000))
base_net=10.$((150 + id % 50)).1
docker_pid=""
cleanup() {
  set +e
  "$poc" rm -f $("$poc" ps -aq) >/dev/null 2>&1
  "$poc" network rm >/dev/null 2>&1
  stop_dockerd
  unmount_under "$work"
  ip link del "$base_host" 2>/dev/null; ip netns del "$ns" 2>/dev/null
  remove_cgroup_parents "poc-bench-$id" "poc-bench-docker-$id"
  rm -rf "$work"
}
trap cleanup EXIT
median() { python3 -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['results'][0]['median']*1e3:.2f}\")" "$1"; }
h() { hyperfine -N --style none --warmup 5 --runs "$runs" --export-json "$@" >/dev/null 2>&1; }

"$poc" init busybox >/dev/null 2>&1
echo "building a debian image with iperf3 (debootstrap)..." >&2
"$poc" init debian --with iperf3 >/dev/null 2>&1

# Start time, once the image build's writeback is done (it slows every file operation of a start).
sync; sleep 3
"$poc" run --rm busybox true >/dev/null   # creates the bridge and its NAT once
h "$work/none.json" "$poc run --rm --network none busybox true"
h "$work/bridge.json" "$poc run --rm busybox true"
start_dockerd "$work" "/poc-bench-docker-$id"
tar -C "$POC_STORE/images/busybox/rootfs" -c . | "${docker[@]}" import - pocbench:busybox >/dev/null
h "$work/docker.json" "${docker[*]} run --rm pocbench:busybox true"

# A plain baseline: a netns and a veth pair to the host, nothing else.
ip netns add "$ns"
ip link add "$base_host" type veth peer name "$base_peer"
ip link set "$base_peer" netns "$ns"
ip addr add "$base_net.1/24" dev "$base_host"; ip link set "$base_host" up
ip -n "$ns" addr add "$base_net.2/24" dev "$base_peer"; ip -n "$ns" link set "$base_peer" up; ip -n "$ns" link set lo up
rtt() { sed -n 's|.*min/avg/max[^=]*= [0-9.]*/\([0-9.]*\)/.*|\1|p'; }
poc_rtt=$("$poc" run --rm busybox ping -q -c 500 -i 0.002 "$gw" | rtt)
base_rtt=$(ip netns exec "$ns" busybox ping -q -c 500 -i 0.002 "$base_net.1" | rtt)

# Throughput, container (or baseline netns) to host.
throughput() { python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['end']['sum_received']['bits_per_second']/1e9:.2f}\")"; }
iperf3 -s -1 -B "$gw" -p 5201 >/dev/null 2>&1 & sleep 0.3
poc_bw=$("$poc" run --rm debian iperf3 -c "$gw" -p 5201 -t 5 -J | throughput)
iperf3 -s -1 -B "$base_net.1" -p 5202 >/dev/null 2>&1 & sleep 0.3
base_bw=$(ip netns exec "$ns" iperf3 -c "$base_net.1" -p 5202 -t 5 -J | throughput)

none=$(median "$work/none.json"); bridge=$(median "$work/bridge.json"); dock=$(median "$work/docker.json")
printf '%-42s %10s\n' "what" "median"
printf '%-42s %7s ms\n' "poc run --rm --network none busybox true" "$none"
printf '%-42s %7s ms   (bridge adds %s ms)\n' "poc run --rm busybox true (bridge)" "$bridge" "$(python3 -c "print(f'{$bridge-$none:.2f}')")"
printf '%-42s %7s ms   (poc bridge / docker = %s)\n' "docker run --rm (no network)" "$dock" "$(python3 -c "print(f'{$bridge/$dock:.3f}')")"
printf '%-42s %7s ms   (baseline netns+veth %s ms)\n' "RTT container -> gateway (avg)" "$poc_rtt" "$base_rtt"
printf '%-42s %7s Gb/s (baseline netns+veth %s Gb/s)\n' "TCP container -> host (iperf3, 5 s)" "$poc_bw" "$base_bw"
