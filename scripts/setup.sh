#!/usr/bin/env bash
# Sets up poc on a fresh Debian/Ubuntu machine, as root (or through sudo): system packages, build, install to
# /usr/local/bin, the default image (Alpine; busybox when there is no internet) and a demo container.
#   scripts/setup.sh            everything
#   scripts/setup.sh --deps     only the system packages the build and the tests need
#   scripts/setup.sh --vm       only the packages of the cgroup v2 guest the tests also run in
#   scripts/setup.sh --bench    only the packages of the benchmarks (peers and timing tools)
#   scripts/setup.sh --oci      only the packages of the OCI work (peer runtimes and clients, runtime-tools)
#   scripts/setup.sh --runtime  only the packages poc itself runs with (images), for a machine given a built poc
#   scripts/setup.sh --vagrant  only vagrant, without its recommended packages (`vagrant validate` in the tests)
# The package options combine: scripts/setup.sh --deps --oci
set -euo pipefail
. "$(dirname "$0")/as-root.sh"   # as another user: again through sudo
cd "$(dirname "$0")/.."

# What each package is for (also in README.md):
build_packages=(gcc libc6-dev clang llvm libbpf-dev bpftool libseccomp-dev) # C for some crates (ring); the BPF programs of `poc trace` (clang, llvm-strip, libbpf headers, bpftool for vmlinux.h); libseccomp (its static library too) compiles containers' seccomp profiles
runtime_packages=(busybox-static debootstrap) # `poc init busybox` (offline image, tests); `poc init debian`
test_packages=(iproute2 nftables)           # tests only: a simulated upstream host; reading poc's nft table
vm_packages=(qemu-system-x86 cpio kmod python3) # tests only: the pure cgroup v2 guest (scripts/vm-test.sh)
bench_packages=(sysbench runc crun podman docker.io iperf3 gcc libc6-dev hyperfine python3) # `poc bench`: sysbench on the host (the suite's baseline), the peer runtimes, iperf3 (net suite), a C compiler and static libc for the start floor and the raw cgroup write; hyperfine and python3 for scripts/bench-lifecycle.sh and bench-trace.sh
vagrant_packages=(vagrant) # tests only: `vagrant validate` of vagrant/Vagrantfile (scripts/vagrant-check.sh); installed without recommends, which would bring systemd, a kernel and an NFS server
oci_packages=(runc podman containerd docker.io golang-go make gcc libc6-dev) # the reference runtime; the clients that call an OCI runtime (podman brings conmon); Go, make and cgo's C compiler build runtime-tools (scripts/oci-validate.sh)

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

install_packages() {
  local missing=() p
  for p in "$@"; do
    [ "$p" = --no-install-recommends ] || installed "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  apt-get update -qq
  # Ubuntu before 25.04 has no bpftool package: linux-tools-common's bpftool runs the one of the
  # running kernel's linux-tools package, which a box's old kernel may not have in the archive; any
  # version dumps BTF, so then the newest installed one is linked into /usr/local/sbin.
  local substituted=false
  if [[ " ${missing[*]} " == *" bpftool "* ]] && ! apt-cache show bpftool 2>/dev/null | grep -q '^Version:'; then
    missing=("${missing[@]/#bpftool/linux-tools-common}" linux-tools-generic)
    apt-cache show "linux-tools-$(uname -r)" >/dev/null 2>&1 && missing+=("linux-tools-$(uname -r)")
    echo "no bpftool package here: installing ${missing[*]} instead"
    substituted=true
  fi
  local options=()
  [[ " $* " != *" --no-install-recommends "* ]] || options+=(--no-install-recommends)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
  if $substituted && ! bpftool version >/dev/null 2>&1; then
    local newest
    newest=$(find /usr/lib/linux-tools/ -name bpftool 2>/dev/null | sort -V | tail -1)
    [ -n "$newest" ] || { echo "setup.sh: no bpftool in /usr/lib/linux-tools/*/" >&2; return 1; }
    ln -sf "$newest" /usr/local/sbin/bpftool
  fi
}

# docker.io's postinst would start dockerd (its own bridge and firewall rules) on this machine:
# forbid service starts while installing, with a policy of our own only if the host has none.
install_packages_no_start() {
  if [ -e /usr/sbin/policy-rc.d ]; then
    install_packages "$@"
    return
  fi
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  install_packages "$@"
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
}

if [ $# -gt 0 ]; then
  packages=()
  for arg in "$@"; do
    case "$arg" in
      --deps) packages+=("${build_packages[@]}" "${runtime_packages[@]}" "${test_packages[@]}") ;;
      --vm) packages+=("${vm_packages[@]}" "${runtime_packages[@]}") ;;
      --bench) packages+=("${bench_packages[@]}") ;;
      --oci) packages+=("${oci_packages[@]}") ;;
      --runtime) packages+=("${runtime_packages[@]}") ;;
      --vagrant) install_packages_no_start --no-install-recommends "${vagrant_packages[@]}"; continue ;;
      *) echo "usage: scripts/setup.sh [--deps] [--vm] [--bench] [--oci] [--runtime] [--vagrant]" >&2; exit 2 ;;
    esac
  done
  [ ${#packages[@]} -eq 0 ] || install_packages_no_start "${packages[@]}"
  exit 0
fi

install_packages "${build_packages[@]}" "${runtime_packages[@]}"
if ! command -v cargo >/dev/null; then
  echo "setup.sh: no Rust toolchain found; install one with rustup (stable, 1.95 or newer) and re-run" >&2
  exit 1
fi
install -m 0755 "$(scripts/build-release.sh)" /usr/local/bin/poc

image=alpine
if ! poc init; then
  echo "setup.sh: the Alpine mirror is unreachable; using the offline busybox image instead"
  image=busybox
  poc init busybox
fi
poc images
echo "demo: poc run --rm --mem 64M $image ..."
poc run --rm --mem 64M --hostname demo "$image" sh -c \
  'echo "hello from $(hostname): PID $$, $(ls /proc | grep -c "^[0-9]") processes visible, root is $(grep " / " /proc/mounts | cut -d" " -f3)"'
