#!/usr/bin/env bash
# Proves the Vagrant VM's provisioning without a virtualisation provider (these machines have none):
#  1. `vagrant validate` of vagrant/Vagrantfile: the general settings, then the VirtualBox provider's
#     (a stand-in VBoxManage that only answers --version makes the provider usable for validation),
#     and a misspelled setting must be refused (the check is not vacuous). The libvirt block is not
#     validated: that needs the vagrant-libvirt plugin and a libvirt daemon.
#  2. The same vagrant/provision.sh the Vagrantfile runs, run inside the pure cgroup v2 qemu guest of
#     scripts/vm-test.sh, which has no network: so it is given the host's poc (POC_BIN), the sysbench
#     image as a rootfs tarball (sysbench and iperf3 from `poc init debian` with their libraries in a
#     busybox image, built here once and cached), the packages it checks are already in the guest
#     (apt is skipped), and small benchmark sizes.
# Fails when provisioning fails, or when the report is missing, report.json is not valid JSON, or
# has no suite with results. Caches: /var/tmp/poc-vagrant-check (the tarball; POC_VAGRANT_CACHE) and
# the guest's (POC_VM_CACHE). About 1.5 minutes here once both are built (the tarball takes about
# 2 minutes, once; the guest, rebuilt when its packages change, about 1.5).
# Environment: POC_BIN (default: the debug build, built if needed), POC_VAGRANT_BENCH_SUITE (default
# all, as in the VM), POC_VAGRANT_BENCH_ARGS (the bench's arguments in the guest),
# POC_VAGRANT_KEEP=DIR (keep the guest's report there).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$(date +%s)
say() { echo "vagrant-check: $* ($(($(date +%s) - started)) s)"; }
fail() {
  echo "vagrant-check: FAILED: $*" >&2
  exit 1
}

# 1. vagrant validate
scripts/setup.sh --vagrant
command -v vagrant >/dev/null || fail "vagrant is not installed (scripts/setup.sh --vagrant)"
work=$(mktemp -d /var/tmp/poc-vagrant-check-XXXXXX)
keep_work=false
trap '$keep_work || rm -rf "$work"' EXIT
export VAGRANT_HOME=$work/vagrant.d VAGRANT_DOTFILE_PATH=$work/dotfile VAGRANT_CHECKPOINT_DISABLE=1
mkdir -p "$work/bin" "$work/broken"
# shellcheck disable=SC2016 # the stand-in's own $1
printf '#!/bin/sh\n[ "$1" = --version ] && echo 7.0.14r161095\n' >"$work/bin/VBoxManage"
chmod 0755 "$work/bin/VBoxManage"
validate() { (cd "$1" && PATH="$work/bin:$PATH" VAGRANT_DEFAULT_PROVIDER=virtualbox vagrant validate "${@:2}" 2>&1); }
grep -q '/poc/vagrant/provision.sh' vagrant/Vagrantfile || fail "vagrant/Vagrantfile does not run vagrant/provision.sh"
out=$(validate vagrant --ignore-provider) || fail "vagrant validate --ignore-provider: $out"
out=$(validate vagrant) || fail "vagrant validate (VirtualBox provider): $out"
sed 's/vb\.memory = /vb.memroy = /' vagrant/Vagrantfile >"$work/broken/Vagrantfile"
! out=$(validate "$work/broken") || fail "vagrant validate accepted a misspelled VirtualBox setting"
grep -q memroy <<<"$out" || fail "vagrant validate refused the misspelled setting for another reason: $out"
say "vagrant $(vagrant --version | cut -d' ' -f2) validated vagrant/Vagrantfile (general and VirtualBox settings; a misspelled one refused)"

# 2. provision.sh in the cgroup v2 guest.
bash -n vagrant/provision.sh || fail "vagrant/provision.sh does not parse"
if [ -z "${POC_BIN:-}" ]; then
  cargo build --bin poc >&2
  POC_BIN=${CARGO_TARGET_DIR:-$repo/target}/debug/poc
fi
[ -x "$POC_BIN" ] || fail "no poc binary at $POC_BIN"

# The sysbench image the guest imports: the sysbench and iperf3 of the image `poc bench` builds
# (`poc init debian --with sysbench,iperf3`), with the libraries they load, in a busybox image. The
# whole Debian image (190 MiB) took 5 minutes to import in the emulated guest; this one takes seconds.
cache=${POC_VAGRANT_CACHE:-/var/tmp/poc-vagrant-check}
tarball=$cache/sysbench-bookworm-lean.tar.gz
if [ ! -s "$tarball" ]; then
  say "building the sysbench image tarball $tarball (debootstrap, about a minute, once)"
  mkdir -p "$cache"
  scratch=$(mktemp -d "$cache/build-XXXXXX")
  export POC_STORE=$scratch/store POC_STATE_ROOT=$scratch/state
  if ! "$POC_BIN" init debian --with sysbench,iperf3 --name debian >"$scratch/init.log" 2>&1 ||
    ! "$POC_BIN" init busybox --name lean >>"$scratch/init.log" 2>&1; then
    tail -20 "$scratch/init.log" >&2
    rm -rf "$scratch"
    fail "poc init debian --with sysbench,iperf3 or poc init busybox failed"
  fi
  full=$scratch/store/images/debian/rootfs lean=$scratch/store/images/lean/rootfs
  for program in /usr/bin/sysbench /usr/bin/iperf3; do
    for f in "$program" $(chroot "$full" ldd "$program" | grep -o '/[^ ]*'); do
      mkdir -p "$lean$(dirname "$f")"
      cp -L "$full$f" "$lean$f"
    done
  done
  chroot "$lean" /usr/bin/sysbench --version >/dev/null || { rm -rf "$scratch"; fail "sysbench does not run in the lean image"; }
  tar -C "$lean" -czf "$scratch/sysbench.tar.gz" .
  mv "$scratch/sysbench.tar.gz" "$tarball"
  unset POC_STORE POC_STATE_ROOT
  rm -rf "$scratch"
fi

# Small sizes: under TCG everything is about ten times slower.
bench_suite=${POC_VAGRANT_BENCH_SUITE:-all}
bench_args=${POC_VAGRANT_BENCH_ARGS:---against host,poc --runs 2 --repeat 1 --time 1 --file-size 8M}
cat >"$work/guest.sh" <<EOF
#!/bin/sh
# In the guest: the store on tmpfs (an overlay's upper directory cannot be on the guest's overlay root).
mkdir -p /var/tmp/poc
export POC_STORE=/var/tmp/poc/store POC_STATE_ROOT=/run/poc POC_CGROUP_PARENT=/poc-vagrant-check
export POC_BIN=/results/$(basename "$POC_BIN") POC_SYSBENCH_TARBALL=/results/$(basename "$tarball") POC_SETUP_ARGS=--runtime
export POC_BENCH_OUT=/var/tmp/poc/bench POC_REPORT_DIR=/results/report
export POC_BENCH_SUITE=$bench_suite POC_BENCH_ARGS="$bench_args"
exec bash vagrant/provision.sh
EOF
mkdir -p "$work/results"
say "running vagrant/provision.sh in the cgroup v2 guest (poc bench $bench_suite --quick $bench_args)"
rc=0
POC_VM_RESULTS=$work/results scripts/vm-test.sh --run "$work/guest.sh" "$POC_BIN" "$tarball" || rc=$?
report=$work/results/report
check() {
  [ "$rc" -eq 0 ] || { echo "provision.sh failed in the guest (exit $rc)"; return; }
  [ -s "$report/report.md" ] || { echo "no report.md"; return; }
  [ -s "$report/report.json" ] || { echo "no report.json"; return; }
  python3 - "$report/report.json" <<'PY' || { echo "report.json is not valid JSON or has no results"; return; }
import json, sys
report = json.load(open(sys.argv[1]))
suites = report["suites"]
assert suites and all(s["results"] for s in suites), "no suite with results"
print("report.json: " + ", ".join(f"{s['name']} ({len(s['results'])} results)" for s in suites), file=sys.stderr)
PY
}
problem=$(check)
if [ -n "${POC_VAGRANT_KEEP:-}" ] && [ -d "$report" ]; then
  mkdir -p "$POC_VAGRANT_KEEP" && cp -r "$report"/. "$POC_VAGRANT_KEEP"/
fi
if [ -n "$problem" ]; then
  keep_work=true
  fail "$problem (the guest's results are kept in $work/results)"
fi
say "OK: provisioning ran in the guest; its report: $(find "$report" -type f | wc -l) files, report.json $(stat -c %s "$report/report.json") bytes"
