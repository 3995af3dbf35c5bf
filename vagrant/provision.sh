#!/usr/bin/env bash
# Provisions a machine to reproduce poc's benchmarks, as root: what the Vagrantfile runs in its VM,
# and what scripts/vagrant-check.sh runs in the emulated cgroup v2 guest to prove it works.
# Stages: packages (scripts/setup.sh), a Rust toolchain when cargo is missing (rustup, default
# profile: rustfmt and clippy for scripts/test.sh), the release binary built outside the repository
# and installed as /usr/local/bin/poc, the busybox and sysbench images, `poc bench all --quick`, and
# the report copied into the repository (vagrant/report/ by default; the VM's /poc is the host's
# checkout). Each stage prints a banner; the last line says OK or which stage FAILED.
#
# Environment (all optional):
#   POC_BIN=PATH               install this poc binary: no toolchain, no build, no build packages
#   POC_SETUP_ARGS="..."       scripts/setup.sh's package options (default --deps --bench, or
#                              --runtime --bench with POC_BIN); apt runs only for missing packages
#   POC_BUILD_DIR=DIR          cargo's target directory (default /var/lib/poc-build)
#   POC_SYSBENCH_TARBALL=PATH  import the sysbench image from this rootfs tarball (no debootstrap)
#   POC_BENCH_FULL=1           the full benchmark suite instead of --quick (about an hour)
#   POC_BENCH_SUITE=NAME       the suite to run instead of all (sysbench-suite, start, update, net)
#   POC_BENCH_ARGS="..."       more arguments for the bench (e.g. --against host,poc --runs 1)
#   POC_BENCH_OUT=DIR          where the bench writes (default /var/lib/poc-bench/TIMESTAMP)
#   POC_REPORT_DIR=DIR         where the report is copied (default REPO/vagrant/report)
#   POC_STORE, POC_STATE_ROOT, POC_CGROUP_PARENT   poc's own (store, state root, cgroup parent)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
started=$(date +%s)
current=start
stage() {
  current=$1
  echo
  echo "=== provision: $1 ($(($(date +%s) - started)) s)"
}
die() {
  echo "provision: $*" >&2
  exit 1
}
# The verdict of a failure: the stage it failed in (set -e ends the script on the failing command).
verdict() {
  local rc=$?
  [ "$rc" -eq 0 ] || echo "=== provision: FAILED in stage \"$current\" after $(($(date +%s) - started)) s (exit $rc)" >&2
}
trap verdict EXIT
os_field() { sed -n "s/^$1=//p" /etc/os-release | tr -d '"'; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo vagrant/provision.sh): poc creates namespaces, cgroups and mounts"
if [ ! -f "$repo/Cargo.toml" ] || [ ! -x "$repo/scripts/setup.sh" ]; then
  die "$repo is not poc's repository"
fi
export PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root # rustup's toolchain is root's (a sudo that keeps the user's HOME would put it there)

stage "machine"
echo "$(os_field PRETTY_NAME), kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  echo "cgroup v2: $(cat /sys/fs/cgroup/cgroup.controllers)"
else
  echo "not a pure cgroup v2 machine (poc works on both; the VM is meant to be v2)"
fi

stage "packages"
if [ -n "${POC_BIN:-}" ]; then default_setup="--runtime --bench"; else default_setup="--deps --bench"; fi
read -r -a setup_args <<<"${POC_SETUP_ARGS:-$default_setup}"
echo "scripts/setup.sh ${setup_args[*]}"
"$repo/scripts/setup.sh" "${setup_args[@]}"

if [ -n "${POC_BIN:-}" ]; then
  stage "poc from POC_BIN"
  [ -x "$POC_BIN" ] || die "POC_BIN=$POC_BIN is not an executable file"
  install -m 0755 "$POC_BIN" /usr/local/bin/poc
else
  stage "Rust toolchain"
  if command -v cargo >/dev/null; then
    echo "found $(cargo --version)"
  else
    if ! command -v curl >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl ca-certificates >/dev/null
    fi
    echo "installing rustup's stable toolchain (default profile: rustfmt and clippy too)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile default --no-modify-path >/dev/null
    for tool in cargo rustc rustup rustfmt cargo-fmt cargo-clippy clippy-driver; do
      ln -sf "/root/.cargo/bin/$tool" /usr/local/bin/
    done
    echo "installed $(cargo --version)"
  fi

  stage "build"
  export CARGO_TARGET_DIR=${POC_BUILD_DIR:-/var/lib/poc-build}
  echo "cargo's target directory: $CARGO_TARGET_DIR (the first build takes several minutes)"
  built=$("$repo/scripts/build-release.sh")
  install -m 0755 "$built" /usr/local/bin/poc
fi
echo "/usr/local/bin/poc: $(poc --version)"

stage "images"
has_image() { poc images | awk 'NR > 1 {print $1}' | grep -qx "$1"; }
poc init busybox
if has_image sysbench; then
  echo "image sysbench is already present"
elif [ -n "${POC_SYSBENCH_TARBALL:-}" ]; then
  [ -f "$POC_SYSBENCH_TARBALL" ] || die "POC_SYSBENCH_TARBALL=$POC_SYSBENCH_TARBALL is not a file"
  poc init --from "$POC_SYSBENCH_TARBALL" sysbench
elif [ "$(os_field ID)" = debian ]; then
  poc init debian --with sysbench,iperf3 --name sysbench
else
  # Elsewhere (Ubuntu) debootstrap's default archive is the machine's own, and sysbench is in universe.
  codename=$(os_field VERSION_CODENAME)
  [ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release: give POC_SYSBENCH_TARBALL"
  work=$(mktemp -d /var/tmp/poc-provision-XXXXXX)
  echo "debootstrap $codename with sysbench and iperf3 (a minute or two)"
  debootstrap --variant=minbase --components=main,universe --include=sysbench,iperf3 \
    "$codename" "$work/rootfs" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; rm -rf "$work"; die "debootstrap $codename failed"; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$work/rootfs" -czf "$work/sysbench.tar.gz" .
  poc init --from "$work/sysbench.tar.gz" sysbench
  rm -rf "$work"
fi
poc images

stage "benchmarks"
mode=--quick
[ "${POC_BENCH_FULL:-0}" = 1 ] && mode=""
out=${POC_BENCH_OUT:-/var/lib/poc-bench/$(date +%Y%m%d-%H%M%S)}
read -r -a bench_args <<<"${POC_BENCH_ARGS:-}"
suite=${POC_BENCH_SUITE:-all}
poc bench --help >/dev/null 2>&1 || die "this poc has no bench command (poc bench all ...): build a newer poc"
echo "poc bench $suite ${mode:+$mode }--out $out ${bench_args[*]}"
poc bench "$suite" ${mode:+"$mode"} --out "$out" "${bench_args[@]}"

stage "report"
dest=${POC_REPORT_DIR:-$repo/vagrant/report}
for f in report.md report.json; do
  [ -s "$out/$f" ] || die "the bench wrote no $out/$f"
done
if command -v python3 >/dev/null; then
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$out/report.json" ||
    die "$out/report.json is not valid JSON"
fi
mkdir -p "$dest"
rm -f "$dest"/report.md "$dest"/report.json "$dest"/*.svg
cp -r "$out"/. "$dest"/
echo "the report: $dest/report.md (and report.json, $(find "$dest" -maxdepth 1 -name '*.svg' | wc -l) SVG charts)"
case "$dest" in
  /poc/*) echo "on the host: ${dest#/poc/} in your checkout" ;;
esac
current=finished
echo
echo "=== provision: OK in $(($(date +%s) - started)) s: the report is in $dest"
