#!/usr/bin/env bash
# Runs the integration tests again inside a pure cgroup v2 guest: qemu (TCG; /dev/kvm is not usable
# here), Debian's kernel booted directly with cgroup_no_v1=all, a busybox initramfs that loads the
# virtio, 9p and overlay modules, and a debootstrap root shared read-only over 9p with a tmpfs overlay.
# The test binaries built on the host run in the guest from the repository, shared at the same path.
# The guest is built once and cached (POC_VM_CACHE, default /var/tmp/poc-vm); a guest that does not
# boot fails the run with its serial log. Success is decided from a marker and an rc file the guest
# writes, because qemu exits 0 even when it is killed.
# Usage: scripts/vm-test.sh [TEST-BINARY-NAME...]     (default: every integration test but debian)
#        scripts/vm-test.sh --run SCRIPT [FILE...]     run a shell script in the guest instead (from
#                                                      the repository, which the guest sees at its path);
#                                                      each FILE is copied to the guest's /results
# POC_VM_RESULTS=DIR: the guest's /results is DIR (an existing directory, kept) instead of a temporary one.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${POC_VM_CACHE:-/var/tmp/poc-vm}
scripts/setup.sh --vm

# What the guest is made of; a change rebuilds it.
kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1; }
kernel_pkg=$(kernel_package)
[ -n "$kernel_pkg" ] || { apt-get update -qq; kernel_pkg=$(kernel_package); }
[ -n "$kernel_pkg" ] || { echo "vm-test: no linux-image-amd64 in the package lists" >&2; exit 1; }
kver=${kernel_pkg#linux-image-}
guest_packages=kmod,iproute2,nftables,busybox-static,debootstrap,sysbench,iperf3 # sysbench, iperf3, debootstrap: vagrant/provision.sh's benchmark (scripts/vagrant-check.sh)

build_guest() {
  echo "building the guest in $cache ($kernel_pkg; debootstrap takes a minute)" >&2
  rm -rf "$cache" && mkdir -p "$cache"
  (cd "$cache" && apt-get download "$kernel_pkg" >/dev/null)
  dpkg-deb -x "$cache"/linux-image-*.deb "$cache/kernel"
  depmod -b "$cache/kernel" "$kver"   # the package's postinst would have run it
  debootstrap --variant=minbase --include="$guest_packages" bookworm "$cache/root" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  mkdir -p "$cache/root/lib/modules"
  cp -a "$cache/kernel/lib/modules/$kver" "$cache/root/lib/modules/"   # veth, bridge, nf_tables on demand
  install -m 0755 /dev/stdin "$cache/root/sbin/poc-vm-init" <<'EOF'
#!/bin/sh
# The guest's init: the mounts a host has, then the tests named in /results/tests; power off.
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for d in /tmp /var/tmp /run; do mount -t tmpfs tmpfs "$d"; done
mkdir -p /run/netns /results
mount -t 9p -o trans=virtio,version=9p2000.L results /results
repo=$(cat /results/repo)
mkdir -p "$repo"; mount -t 9p -o trans=virtio,version=9p2000.L,ro repo "$repo"
ip link set lo up; hostname poc-guest
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
echo "guest up: $(uname -r), cgroup controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
cd "$repo"; rc=0
if [ -f /results/script ]; then
  sh /results/script >/results/output.txt 2>&1 || rc=1
else
  for t in $(cat /results/tests); do
    # (rc set here would be lost in the pipe's subshell: the line below is what the grep finds.)
    echo "== $t"; "$t" --test-threads=2 2>&1 || echo "vm-test: $t FAILED (exit $?)"
  done | tee /results/output.txt
  grep -q "FAILED\|panicked\|error: test failed" /results/output.txt && rc=1
fi
echo "$rc" > /results/rc; echo done > /results/marker; sync
echo o > /proc/sysrq-trigger
EOF
  # initramfs: busybox, the modules to reach the root, and an init that mounts it.
  local ird=$cache/initrd mods=$cache/kernel/lib/modules/$kver
  mkdir -p "$ird"/{bin,proc,sys,dev,lower,upper,newroot,lib/modules/$kver}
  cp /bin/busybox "$ird/bin/busybox"
  cp "$mods"/modules.dep "$mods"/modules.alias "$ird/lib/modules/$kver/"
  for m in virtio_pci 9p 9pnet_virtio overlay; do
    for f in $(modprobe -d "$cache/kernel" -S "$kver" --show-depends "$m" 2>/dev/null | awk '/^insmod/ {print $2}'); do
      mkdir -p "$ird$(dirname "${f#"$cache/kernel"}")"; cp "$f" "$ird${f#"$cache/kernel"}"
    done
  done
  cat >"$ird/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
modprobe -a virtio_pci 9p 9pnet_virtio overlay
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 root /lower
mount -t tmpfs tmpfs /upper; mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot
umount /proc /sys /dev
exec switch_root /newroot /sbin/poc-vm-init
EOF
  chmod 0755 "$ird/init"
  (cd "$ird" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$cache/initrd.gz"
  cp "$cache/kernel/boot/vmlinuz-$kver" "$cache/vmlinuz"
  echo "$recipe" >"$cache/ready"
}

# The cache is keyed by what goes into the guest: the kernel, the packages and how it is built.
recipe="$kernel_pkg $guest_packages $(declare -f build_guest | sha256sum | cut -c1-16)"
started=$(date +%s)
[ "$(cat "$cache/ready" 2>/dev/null)" = "$recipe" ] || build_guest
built=$(date +%s)

script=""
files=()
if [ "${1:-}" = --run ]; then
  script=${2:?"--run needs a script"}
  [ -f "$script" ] || { echo "vm-test: no script $script" >&2; exit 1; }
  shift 2
  for f in "$@"; do [ -f "$f" ] || { echo "vm-test: no file $f" >&2; exit 1; }; done
  files=("$@")
  set --
fi
# The host's test binaries (cargo prints where they are).
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  # Every integration test but debian (it needs the package archive, which the guest cannot reach).
  for f in tests/*.rs; do t=$(basename "$f" .rs); [ "$t" = debian ] || names+=("$t"); done
fi
if [ -n "${POC_VM_RESULTS:-}" ]; then
  results=$POC_VM_RESULTS
  [ -d "$results" ] || { echo "vm-test: POC_VM_RESULTS=$results is not a directory" >&2; exit 1; }
else
  results=$(mktemp -d /var/tmp/poc-vm-results-XXXXXX)
  trap 'rm -rf "$results"' EXIT
fi
[ -z "$script" ] || cp "$script" "$results/script"
[ ${#files[@]} -eq 0 ] || cp "${files[@]}" "$results/"
[ -n "$script" ] || cargo test --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
wanted = set(sys.argv[1:])
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"] and m["target"]["name"] in wanted:
        print(m["executable"])' "${names[@]}" >"$results/tests"
echo "$repo" >"$results/repo"
# The guest sees only the repository: test binaries built elsewhere (a CARGO_TARGET_DIR outside it)
# would be "not found" there.
if [ -z "$script" ]; then
  [ -s "$results/tests" ] || { echo "vm-test: no test binaries for: ${names[*]}" >&2; exit 1; }
  while read -r t; do
    case "$t" in "$repo"/*) ;; *) echo "vm-test: $t is outside $repo, which is all the guest sees (CARGO_TARGET_DIR?)" >&2; exit 1 ;; esac
  done <"$results/tests"
fi
# The static programs the escape tests run in containers: the guest has no compiler.
[ -n "$script" ] || tests/attack/build.sh "${CARGO_TARGET_DIR:-target}/tmp/attack"

# Variables for the tests, passed on the kernel command line (the kernel gives init the NAME=VALUE
# words it does not know, and the guest's init passes its environment on): the guest has no podman,
# containerd or dockerd, so the OCI client tests say they are skipped, and no network to build an
# image from Debian's archive (the sysbench suite's test says it is skipped); its CPUs are emulated,
# so tests that compare microseconds ask only for the right order of magnitude there.
guest_env="POC_SKIP_OCI_CLIENTS=the-v2-guest-has-no-podman-containerd-or-dockerd POC_SKIP_ARCHIVE=the-v2-guest-has-no-network POC_EMULATED_CPU=qemu-tcg"
# The guest's console as it comes, so that each test's name shows as it finishes: from the guest's
# first line on, without the kernel's own messages (an OOM kill's report; all in serial.log) and the
# serial line's carriage returns.
# The firmware's escape sequences may lead that first line. One unbuffered sed, and a range that
# never ends rather than one to `$`, which would hold each line back until the next one came.
guest_output() { sed -u -n 's/\r//g; /guest up:/,/^\n/ { /^\[ *[0-9]*\.[0-9]*\]/d; s/^.*guest up:/guest up:/; p; }'; }
echo "vm-test: booting the guest; the tests' results follow as they finish (every test file: about 20 minutes)"
timeout 3000 qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 3072 -nographic -no-reboot -net none \
  -kernel "$cache/vmlinuz" -initrd "$cache/initrd.gz" \
  -append "console=ttyS0 panic=-1 cgroup_no_v1=all quiet $guest_env" \
  -virtfs "local,path=$cache/root,mount_tag=root,security_model=none,readonly=on" \
  -virtfs "local,path=$repo,mount_tag=repo,security_model=none,readonly=on" \
  -virtfs "local,path=$results,mount_tag=results,security_model=none" \
  </dev/null 2>&1 | tee "$results/serial.log" | guest_output || true
finished=$(date +%s)

if [ ! -f "$results/marker" ]; then
  echo "vm-test: the guest did not finish; its serial log:" >&2
  tail -60 "$results/serial.log" >&2
  exit 1
fi
rc=$(cat "$results/rc")
timing="guest build $((built - started)) s, boot and tests $((finished - built)) s"
if [ -n "$script" ]; then
  cat "$results/output.txt"
  if [ "$rc" = 0 ]; then echo "vm-test: the script passed ($timing)"; else echo "vm-test: the script FAILED ($timing)"; fi
  exit "$rc"
fi
# The verdict: libtest's "test result:" lines added up, and the binaries that failed.
read -r passed failed ignored < <(awk '/^test result:/ {
  for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i }
} END { print p + 0, f + 0, g + 0 }' "$results/output.txt")
counts="$(wc -l <"$results/tests") test binaries: $passed passed, $failed failed, $ignored ignored"
if [ "$rc" = 0 ]; then
  echo "vm-test: all passed in the v2 guest: $counts ($timing)"
else
  failed_files=$(sed -n 's|^vm-test: .*/\([^/]*\)-[0-9a-f]* FAILED.*|\1|p' "$results/output.txt" | paste -sd' ')
  echo "vm-test: FAILED in the v2 guest: ${failed_files:-see above}; $counts ($timing)"
fi
exit "$rc"
