#!/usr/bin/env bash
# The OCI runtime-tools validation suite (every validation/*/*.t) against one or more runtimes, side
# by side; the first runtime is the reference the others are compared with.
# Usage: scripts/oci-validate.sh [--runtime NAME=/abs/path]... [--out DIR] [--timeout SECONDS]
#                                [--case NAME]... [--require-superset] [--min-pass N]
#   default runtimes: runc (from PATH) and poc ($POC_BIN, else target/debug/poc of this repository)
# runtime-tools is built once from ../shared/third_party/ (or $POC_THIRD_PARTY) into
# /var/tmp/poc-runtime-tools (or $POC_RUNTIME_TOOLS_CACHE), offline from its vendor/ directory.
# Each case runs in a directory of its own (its bundles go there through TMPDIR), in a mount
# namespace of its own (a slave of the host's), with a timeout; whatever it leaves behind
# (containers, processes, cgroups named by the cases, mounts) is removed and reported.
# Exit status: 0, or 1 when a requirement fails or something could not be cleaned, 2 for bad usage
# or a failed build.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

tarball_name=runtime-tools-260e151b.tar.gz
third_party=${POC_THIRD_PARTY:-$(dirname "$repo")/shared/third_party}
cache=${POC_RUNTIME_TOOLS_CACHE:-/var/tmp/poc-runtime-tools}
env_var=POC_OCI_VALIDATE_CASE # marks the processes of the case being run, to find stragglers

usage() {
  sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

names=() paths=()
add_runtime() {
  local name=${1%%=*} path=${1#*=}
  if [ "$name" = "$1" ] || ! [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || [[ $path != /* ]]; then
    echo "oci-validate: --runtime wants NAME=/absolute/path, got '$1'" >&2
    exit 2
  fi
  for n in "${names[@]}"; do
    [ "$n" != "$name" ] || { echo "oci-validate: runtime '$name' given twice" >&2; exit 2; }
  done
  names+=("$name")
  paths+=("$path")
}

out="" timeout_s=60 require_superset="" min_pass="" only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) [ $# -ge 2 ] || usage; add_runtime "$2"; shift 2 ;;
    --runtime=*) add_runtime "${1#*=}"; shift ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --timeout) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || usage; timeout_s=$2; shift 2 ;;
    --case) [ $# -ge 2 ] || usage; only+=("$2"); shift 2 ;;
    --require-superset) require_superset=1; shift ;;
    --min-pass) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || usage; min_pass=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) usage ;;
  esac
done
if [ ${#names[@]} -eq 0 ]; then
  add_runtime "runc=$(command -v runc || echo /usr/sbin/runc)"
  add_runtime "poc=${POC_BIN:-$repo/target/debug/poc}"
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "oci-validate: run as root (the cases create containers, cgroups and mounts)" >&2
  exit 2
fi
for i in "${!names[@]}"; do
  if [ ! -x "${paths[$i]}" ]; then
    echo "oci-validate: ${names[$i]}: ${paths[$i]} is not an executable (build it, or give --runtime ${names[$i]}=/abs/path)" >&2
    exit 2
  fi
done

own_out=""
if [ -n "$out" ]; then
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
else
  out=$(mktemp -d "${TMPDIR:-/tmp}/poc-oci-validate.XXXXXX")
  own_out=1
fi
report=$out/report.txt
: >"$report"
# Prints like printf, to the terminal and to the report.
say() {
  local s
  # shellcheck disable=SC2059 # the format is the caller's
  printf -v s "$@"
  printf '%s' "$s"
  printf '%s' "$s" >>"$report"
}
now_us() { echo "${EPOCHREALTIME/./}"; }
seconds() { printf '%d.%d' $(($1 / 1000000)) $(($1 / 100000 % 10)); } # microseconds -> "12.3"

### Stage 1: build runtime-tools (once per tarball)
say '== runtime-tools: %s ==\n' "$tarball_name"
tarball=$third_party/$tarball_name
if [ ! -f "$tarball" ]; then
  echo "oci-validate: $tarball not found (set POC_THIRD_PARTY to the directory that holds it)" >&2
  exit 2
fi
build=$cache/${tarball_name%.tar.gz}
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one build at a time; a second run waits and then finds it built
t0=$(now_us)
if [ "$(cat "$build/.built" 2>/dev/null)" = "$sum" ]; then
  say 'cached in %s\n' "$build"
else
  if ! command -v go >/dev/null || ! command -v make >/dev/null; then
    echo "oci-validate: Go and make are needed to build runtime-tools: scripts/setup.sh --oci" >&2
    exit 2
  fi
  say 'building into %s (%s) ...\n' "$build" "$(go version | cut -d' ' -f3)"
  tmp=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$tarball" -C "$tmp"
  if ! (cd "$tmp/runtime-tools" && GOFLAGS=-mod=vendor GOPROXY=off GOSUMDB=off GOCACHE="$cache/go-build" \
    make -j"$(nproc)" runtimetest validation-executables) >"$tmp/build.log" 2>&1; then
    cp "$tmp/build.log" "$out/build.log"
    tail -n 30 "$out/build.log" >&2
    echo "oci-validate: building runtime-tools failed; the whole log: $out/build.log" >&2
    exit 2
  fi
  rm -rf "$build"
  mv "$tmp/runtime-tools" "$build"
  mv "$tmp/build.log" "$build/.build.log"
  rmdir "$tmp"
  trap - EXIT
  echo "$sum" >"$build/.built"
  say 'built in %s s\n' "$(seconds $(($(now_us) - t0)))"
fi
exec 9>&-

for c in "${only[@]}"; do
  if [ ! -x "$build/validation/$c/$c.t" ]; then
    echo "oci-validate: no case '$c' (the cases are the directories of $build/validation)" >&2
    [ -z "$own_out" ] || rm -rf "$out"
    exit 2
  fi
done
cases=()
for t in "$build"/validation/*/*.t; do
  c=$(basename "$t" .t)
  if [ ${#only[@]} -gt 0 ]; then
    keep=""
    for o in "${only[@]}"; do [ "$o" = "$c" ] && keep=1; done
    [ -n "$keep" ] || continue
  fi
  cases+=("$c")
done

### Cleaning up after a case
work=$(mktemp -d "${TMPDIR:-/tmp}/poc-oci-validate-work.XXXXXX")
chmod 755 "$work" # a container with a user namespace (linux_uid_mappings) must reach its bundle
cur_pid="" cur_dir="" cur_rt="" cur_calls="" cur_token="" cur_cg_before="" cur_log=""
# poc's defaults (runc ignores them): containers whose config names no cgroupsPath go under a
# parent of this run's, removed at the end; its state (the cases give no --root) and seccomp cache
# stay in the work directory.
poc_cgroup_parent=poc-oci-validate-$$
export POC_CGROUP_PARENT=/$poc_cgroup_parent POC_STORE=$work/poc-store POC_STATE_ROOT=$work/poc-state

# The cgroup directories the cases name (absolute /cgrouptest, relative testdir/cgrouptest/container),
# plus those named IDS..., in every hierarchy.
case_cgroups() {
  local args=(-name cgrouptest -o -name testdir) id
  for id in "$@"; do args+=(-o -name "$id"); done
  find /sys/fs/cgroup -mindepth 1 -type d \( "${args[@]}" \) -prune -print 2>/dev/null | sort
}

# The container ids a case used: every id given to create, and every UUID in its calls.
case_ids() {
  [ -s "$1" ] || return 0
  { awk '$1 == "create" { print $NF }' "$1"
    grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' "$1"; } | sort -u
}

# Pids of the processes that carry the case's marker in their environment.
token_pids() {
  grep -lsxzF "$env_var=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
}

# Mount points under DIR, deepest first.
mounts_under() {
  awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# Removes what the case left behind: its containers (through the runtime), its processes, the cgroups
# it named that did not exist before it, mounts under its directory, the directory. Writes what it
# found to the log file, one line each.
clean_case() {
  local dir=$1 rt=$2 calls=$3 token=$4 cg_before=$5 log=$6 id state pid d sub n
  local ids=() pids=() cgroups=() subs=()
  mapfile -t ids < <(case_ids "$calls")
  for id in "${ids[@]}"; do
    [[ $id =~ ^[A-Za-z0-9._-]+$ ]] || continue
    state=$(timeout 10 "$rt" state "$id" 2>/dev/null) || continue
    echo "container $id: $(tr -d '\n' <<<"$state" | grep -o '"status": *"[a-z]*"' | head -1)" >>"$log"
    timeout 10 "$rt" delete --force "$id" >/dev/null 2>&1 || true
    if state=$(timeout 10 "$rt" state "$id" 2>/dev/null); then
      pid=$(tr -d '\n' <<<"$state" | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$' | head -1)
      if [ -n "$pid" ] && [ "$pid" -gt 1 ] && ! grep -qs '^State:.*zombie' "/proc/$pid/status"; then
        kill -KILL "$pid" 2>/dev/null && echo "container $id: killed its process $pid" >>"$log"
        sleep 0.2
      fi
      timeout 10 "$rt" delete --force "$id" >/dev/null 2>&1 || true
      if timeout 10 "$rt" state "$id" >/dev/null 2>&1; then
        echo "REMAINS container $id: $rt delete --force failed" >>"$log"
      fi
    fi
  done
  for n in 1 2 3 4 5; do
    mapfile -t pids < <(token_pids "$token")
    [ ${#pids[@]} -gt 0 ] || break
    [ "$n" -gt 1 ] || echo "processes ${pids[*]}" >>"$log"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.2
  done
  mapfile -t pids < <(token_pids "$token")
  [ ${#pids[@]} -eq 0 ] || echo "REMAINS processes ${pids[*]}" >>"$log"
  mapfile -t cgroups < <(case_cgroups "${ids[@]}" | sort -r)
  for d in "${cgroups[@]}"; do
    grep -qxF "$d" <<<"$cg_before" && continue
    echo "cgroup $d" >>"$log"
    mapfile -t subs < <(find "$d" -depth -type d 2>/dev/null)
    for sub in "${subs[@]}"; do
      [ ! -w "$sub/freezer.state" ] || echo THAWED 2>/dev/null >"$sub/freezer.state" || true
      for n in 1 2 3 4 5 6 7 8 9 10; do
        rmdir "$sub" 2>/dev/null && break
        mapfile -t pids 2>/dev/null <"$sub/cgroup.procs" || pids=()
        if [ ${#pids[@]} -gt 0 ]; then
          [ "$n" -gt 1 ] || echo "processes in $sub: ${pids[*]}" >>"$log"
          kill -KILL "${pids[@]}" 2>/dev/null || true
        fi
        sleep 0.2
      done
      [ ! -d "$sub" ] || echo "REMAINS cgroup $sub" >>"$log"
    done
  done
  for d in $(mounts_under "$dir"); do
    echo "mount $d" >>"$log"
    umount "$d" 2>/dev/null || umount -l "$d" 2>/dev/null || echo "REMAINS mount $d" >>"$log"
  done
  if [ -z "$(mounts_under "$dir")" ]; then
    rm -rf --one-file-system "$dir"
  else
    echo "REMAINS directory $dir (mounts under it)" >>"$log"
  fi
}

finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$cur_pid" ]; then
    kill -TERM "$cur_pid" 2>/dev/null || true
    wait "$cur_pid" 2>/dev/null || true
  fi
  if [ -n "$cur_dir" ]; then
    clean_case "$cur_dir" "$cur_rt" "$cur_calls" "$cur_token" "$cur_cg_before" "$cur_log"
    grep -h . "$cur_log" 2>/dev/null | sed 's/^/left behind: /' >&2 || true
  fi
  local parent
  for parent in /sys/fs/cgroup/"$poc_cgroup_parent" /sys/fs/cgroup/*/"$poc_cgroup_parent"; do
    [ ! -d "$parent" ] || rmdir "$parent" 2>/dev/null || echo "oci-validate: $parent remains" >&2
  done
  if [ -z "$(mounts_under "$work")" ]; then
    rm -rf --one-file-system "$work"
  else
    echo "oci-validate: mounts remain under $work" >&2
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

### Stage 2: the cases
# Errors that a case reports in a YAML diagnostic attached to no test line (one before the first
# test line, or a second one after a test's): the hooks cases report their failures only that way
# (with a plan of 1..0), so TAP alone would count them as passed. A test line's description may
# go on over several lines ("Refer to: ...") before its diagnostic.
orphan_errors() {
  awk '/^(not )?ok([^a-z]|$)/ { attached = 1; next }
    /^  ---$/ { inyaml = 1; orphan = !attached; next }
    /^  \.\.\.$/ { inyaml = 0; attached = 0; next }
    inyaml && orphan && /^ *"error":/ { n++ }
    END { print n + 0 }' "$1"
}

# Runs in the case's own mount namespace: the .t, then lists the mounts still under the case's
# directory there (a runtime's leak, gone with the namespace).
# shellcheck disable=SC2016 # expanded by that shell
in_namespace='dir=$1 list=$2; shift 2; "$@"; rc=$?
awk -v d="$dir/" "index(\$5, d) == 1 { print \$5 }" /proc/self/mountinfo >"$list"; exit $rc'

# Runs case C with runtime number I; sets res_* (status, ok, not ok, skip, orphan errors,
# microseconds, whether it left something behind) and appends a line to results.tsv.
run_case() {
  local i=$1 c=$2 f dir o rc t0 m
  local name=${names[i]} rt=${paths[i]}
  dir=$work/$name/$c
  o=$out/$name/$c
  mkdir -p "$dir/cwd" "$dir/tmp" "$out/$name"
  # The .t programs read runtimetest and rootfs-<arch>.tar.gz from their working directory.
  for f in "$build/runtimetest" "$build"/rootfs-*.tar.gz; do
    ln "$f" "$dir/cwd/" 2>/dev/null || cp "$f" "$dir/cwd/"
  done
  # RUNTIME is a wrapper that records each call (to find the case's containers) and execs the runtime.
  # shellcheck disable=SC2016 # "$@" is the wrapper's
  printf '#!/bin/bash\nprintf "%%q " "$@" >>%q; echo >>%q\nexec %q "$@"\n' \
    "$o.calls" "$o.calls" "$rt" >"$dir/runtime"
  chmod 755 "$dir/runtime"
  : >"$o.calls"
  : >"$o.cleanup"
  cur_rt=$rt cur_calls=$o.calls cur_log=$o.cleanup
  cur_token=$name.$c.$$.$RANDOM$RANDOM
  cur_cg_before=$(case_cgroups)
  cur_dir=$dir
  t0=$(now_us)
  # A mount namespace per case, a slave of the host's. A case that runs its container in the
  # caller's mount namespace (linux_ns_itype) has the runtime work in that namespace: runc mounts
  # /proc, /sys and /dev under the bundle and makes / rslave; a runtime that pivot_roots there gives
  # every process of the namespace the bundle as /. None of that may reach the host.
  (cd "$dir/cwd" && exec env TMPDIR="$dir/tmp" RUNTIME="$dir/runtime" "$env_var=$cur_token" \
    timeout -k 5 "$timeout_s" unshare --mount --propagation slave \
    sh -c "$in_namespace" sh "$dir" "$dir/mounts" "$build/validation/$c/$c.t") \
    >"$o.tap" 2>"$o.stderr" </dev/null &
  cur_pid=$!
  rc=0
  wait "$cur_pid" || rc=$?
  cur_pid=""
  res_us=$(($(now_us) - t0))
  if [ -s "$dir/mounts" ]; then
    while read -r m; do echo "ns-mount $m (in the case's mount namespace, gone with it)"; done <"$dir/mounts" >>"$o.cleanup"
  fi
  clean_case "$dir" "$rt" "$o.calls" "$cur_token" "$cur_cg_before" "$o.cleanup"
  cur_dir=""
  res_skip=$(grep -ciE '^ok\b.*#[[:space:]]*skip' "$o.tap" || true)
  res_ok=$(($(grep -c '^ok\b' "$o.tap" || true) - res_skip))
  res_nok=$(grep -c '^not ok\b' "$o.tap" || true)
  res_err=$(orphan_errors "$o.tap")
  res_left=0
  if [ -s "$o.cleanup" ]; then res_left=1; else rm -f "$o.cleanup"; fi
  res_tap_pass=""
  if [ "$rc" -eq 0 ] && [ "$res_nok" -eq 0 ]; then res_tap_pass=1; fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    res_status=TIMEOUT
  elif [ -n "$res_tap_pass" ] && [ "$res_err" -eq 0 ]; then
    res_status=pass
  else
    res_status=FAIL
  fi
  printf '%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\n' "$c" "$name" "$res_status" "$rc" "$res_ok" "$res_nok" \
    "$res_skip" "$res_err" "$(seconds "$res_us")" "$res_left" >>"$out/results.tsv"
}

width=8
for c in "${cases[@]}"; do [ ${#c} -lt "$width" ] || width=$((${#c} + 1)); done
say '\n== cases: %d, each with %s (timeout %d s) ==\n' "${#cases[@]}" "${names[*]}" "$timeout_s"
say 'A case passes when its .t exits 0 and its TAP has no "not ok" and no error diagnostic outside a test\n'
say '(yaml-err: how the hooks cases report failures). left: it left something behind, now removed.\n'
say '%-*s' "$width" "case"
for n in "${names[@]}"; do say ' | %-7s %-15s %7s %-13s' "$n" "ok/not ok/skip" "time" ""; done
say '\n'
printf 'case\truntime\tresult\texit\tok\tnot_ok\tskip\tyaml_errors\tseconds\tleft_behind\n' >"$out/results.tsv"
declare -A passed=()
pass_count=() tap_pass_count=() ok_sum=() nok_sum=() skip_sum=() us_sum=() left_sum=()
for i in "${!names[@]}"; do
  pass_count[i]=0 tap_pass_count[i]=0 ok_sum[i]=0 nok_sum[i]=0 skip_sum[i]=0 us_sum[i]=0 left_sum[i]=0
done
t_run=$(now_us)
for c in "${cases[@]}"; do
  say '%-*s' "$width" "$c"
  for i in "${!names[@]}"; do
    run_case "$i" "$c"
    [ "$res_status" != pass ] || { passed[$i.$c]=1; pass_count[i]=$((pass_count[i] + 1)); }
    [ -z "$res_tap_pass" ] || tap_pass_count[i]=$((tap_pass_count[i] + 1))
    ok_sum[i]=$((ok_sum[i] + res_ok)) nok_sum[i]=$((nok_sum[i] + res_nok)) skip_sum[i]=$((skip_sum[i] + res_skip))
    us_sum[i]=$((us_sum[i] + res_us)) left_sum[i]=$((left_sum[i] + res_left))
    mark=()
    [ "$res_err" -eq 0 ] || mark+=(yaml-err)
    [ "$res_left" -eq 0 ] || mark+=(left)
    say ' | %-7s %-15s %7s %-13s' "$res_status" "$res_ok/$res_nok/$res_skip" "$(seconds "$res_us")s" \
      "$(IFS=,; echo "${mark[*]}")"
  done
  say '\n'
done
t_run=$(($(now_us) - t_run))

### Stage 3: totals and comparison
say '\n== totals (%d cases, %s s in all) ==\n' "${#cases[@]}" "$(seconds "$t_run")"
for i in "${!names[@]}"; do
  say '%-10s %3d of %d cases passed (%d by exit status and "not ok" alone)   TAP: %d ok, %d not ok, %d skip   %s s   left something: %d\n' \
    "${names[i]}" "${pass_count[i]}" "${#cases[@]}" "${tap_pass_count[i]}" "${ok_sum[i]}" "${nok_sum[i]}" \
    "${skip_sum[i]}" "$(seconds "${us_sum[i]}")" "${left_sum[i]}"
done

ref=${names[0]}
regressions=0
for i in "${!names[@]}"; do
  [ "$i" -gt 0 ] || continue
  lost=() gained=()
  for c in "${cases[@]}"; do
    if [ -n "${passed[0.$c]:-}" ] && [ -z "${passed[$i.$c]:-}" ]; then lost+=("$c"); fi
    if [ -z "${passed[0.$c]:-}" ] && [ -n "${passed[$i.$c]:-}" ]; then gained+=("$c"); fi
  done
  regressions=$((regressions + ${#lost[@]}))
  say '\n== pass with %s, fail with %s: %d ==\n' "$ref" "${names[i]}" "${#lost[@]}"
  for c in "${lost[@]}"; do say '  %s\n' "$c"; done
  if [ ${#gained[@]} -gt 0 ]; then
    say '(fail with %s, pass with %s: %s)\n' "$ref" "${names[i]}" "${gained[*]}"
  fi
done

### Stage 4: nothing left behind
say '\n== left behind ==\n'
cleaned=()
for n in "${names[@]}"; do
  for c in "${cases[@]}"; do [ ! -f "$out/$n/$c.cleanup" ] || cleaned+=("$out/$n/$c.cleanup"); done
done
remains=""
if [ ${#cleaned[@]} -eq 0 ]; then
  say 'nothing: no case left a container, process, cgroup or mount\n'
else
  remains=$(cat "${cleaned[@]}" | grep '^REMAINS' || true)
  for f in "${cleaned[@]}"; do
    say '%-45s %s\n' "${f#"$out"/}:" "$(awk '{ n[$1]++ } END { for (k in n) printf "%s %d  ", k, n[k] }' "$f")"
  done
fi

### Verdict
verdict=ok why=()
for i in "${!names[@]}"; do why+=("${names[i]} ${pass_count[i]}/${#cases[@]}"); done
if [ -n "$remains" ]; then
  verdict=FAIL
  why+=("some leftovers could not be removed")
fi
if [ ${#names[@]} -gt 1 ]; then
  if [ -n "$require_superset" ] && [ "$regressions" -gt 0 ]; then
    verdict=FAIL
    why+=("$regressions case(s) pass with $ref only (--require-superset)")
  elif [ "$regressions" -gt 0 ]; then
    why+=("$regressions case(s) pass with $ref only (not required)")
  else
    why+=("every case that passes with $ref passes with the others")
  fi
fi
if [ -n "$min_pass" ]; then
  for i in "${!names[@]}"; do
    if [ "${pass_count[i]}" -lt "$min_pass" ]; then
      verdict=FAIL
      why+=("${names[i]} passes fewer than $min_pass (--min-pass)")
    fi
  done
fi
say '\nTAP, stderr and the runtime calls of each case: %s/<runtime>/<case>.{tap,stderr,calls}; table: %s/results.tsv\n' "$out" "$out"
joined=$(printf '%s; ' "${why[@]}")
say 'verdict: %s (%s)\n' "$verdict" "${joined%; }"
[ "$verdict" = ok ]
