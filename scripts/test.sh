#!/usr/bin/env bash
# Runs every test, as root (or through sudo): formatting, lints (also of a build without `poc trace`
# and the BPF toolchain: cargo build --no-default-features), unit tests and the integration tests,
# which start real containers (namespaces, cgroups, overlay mounts) under their own state root,
# store and cgroup parent, and drive poc through real OCI clients (podman, containerd's ctr, dockerd) started with private
# roots; then OCI runtime-tools' validation suite against poc; then the integration tests again inside
# a pure cgroup v2 guest (scripts/vm-test.sh), since this host has cgroup v1 controllers and users'
# machines are pure v2; last, the Vagrant VM's provisioning (vagrant validate, and vagrant/provision.sh
# run in that guest: scripts/vagrant-check.sh). Takes about 25 minutes here (about 5 on the host,
# 20 in the emulated guest, 2 for the provisioning check; a first no-default-features build adds a few).
set -euo pipefail
. "$(dirname "$0")/as-root.sh"   # as another user: again through sudo
cd "$(dirname "$0")/.."
started=$(date +%s)
stage() { echo; echo "=== test.sh: $* ($(( $(date +%s) - started )) s)"; }
trap 'echo; echo "test.sh: FAILED after $(( $(date +%s) - started )) s (stage above)"' ERR

stage "packages (build, tests, OCI clients and runtime-tools, benchmark peers)"
scripts/setup.sh --deps --oci --bench
stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy"
cargo clippy --all-targets -- -D warnings
stage "a build without the trace feature, on a PATH without clang, llvm-strip and bpftool"
# What `cargo build --no-default-features` promises: a Rust toolchain and cc are enough. A PATH of
# just those (so a build step that reached for the BPF toolchain would fail), its own target dir.
# The lints need no bare PATH (the build above ran build.rs under it), so they run with the
# dependencies the first clippy stage checked already instead of checking them all again.
bare_path=$(mktemp -d /var/tmp/poc-test-path-XXXXXX)
trap 'rm -rf "$bare_path"' EXIT
for tool in cargo rustc rustup cc gcc ld as ar; do
  if found=$(command -v "$tool"); then ln -s "$found" "$bare_path/$tool"; fi
done
bare=(env -u POC_VMLINUX_BTF PATH="$bare_path" CARGO_TARGET_DIR=target/no-bpf)
"${bare[@]}" cargo build --no-default-features
cargo clippy --no-default-features --bins -- -D warnings
# `poc trace` is still a command, which says in one line why it cannot run.
trace_status=0
trace_error=$(target/no-bpf/debug/poc trace anything --mem 2>&1 >/dev/null) || trace_status=$?
if [ "$trace_status" != 125 ] || [[ "$trace_error" != *"built without the \`trace\` feature"* ]]; then
  echo "poc trace without the trace feature: exit $trace_status, said: $trace_error" >&2
  false
fi
stage "unit and integration tests on this host"
# What the OCI clients make outside the private roots the tests give them (containerd's shim socket
# directory, dockerd's plugin directory, podman's network and blob-cache directories): removed
# after the tests when it was not there before them.
outside=(/run/containerd /run/docker /run/containers /var/lib/containers)
absent=()
for d in "${outside[@]}"; do [ -e "$d" ] || absent+=("$d"); done
cargo test --all-targets 2>&1
for d in "${absent[@]}"; do rm -rf "$d"; done
stage "OCI runtime-tools validation against poc"
# poc passed 33 of the 58 cases here when this was written (runc 1.1.5: 31); a few cases are
# timing-dependent for every runtime (pidfile, killsig), hence the margin.
validation=$(mktemp -d /var/tmp/poc-test-validation-XXXXXX)
scripts/oci-validate.sh --runtime "poc=$PWD/target/debug/poc" --min-pass 32 --out "$validation"
rm -rf "$validation"   # kept when the stage fails: each case's TAP, stderr and runtime calls
stage "the integration tests in a pure cgroup v2 guest"
scripts/vm-test.sh
stage "the Vagrant VM: vagrant validate, and vagrant/provision.sh in the cgroup v2 guest"
scripts/vagrant-check.sh
trap - ERR
echo
echo "test.sh: all tests passed in $(( $(date +%s) - started )) s"
