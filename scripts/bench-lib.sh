# Sourced by the bench-*.sh scripts: what each of them needs to leave the machine as it found it, and
# a dockerd of their own for the Docker comparisons (private roots and socket, no bridge, no iptables).

# Removes the cgroup parents NAME... (and the leaves under them) from every hierarchy.
remove_cgroup_parents() {
  local h name parent
  for h in /sys/fs/cgroup/*/; do
    for name in "$@"; do
      parent=$h$name
      [ -d "$parent" ] || continue
      find "$parent" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
      rmdir "$parent" 2>/dev/null || true
    done
  done
}

# Unmounts everything mounted under DIR, deepest first.
unmount_under() {
  grep " $1/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# Starts dockerd with its data under DIR, no iptables, no bridge, its containers under the cgroup
# parent PARENT; sets docker_pid and the docker client command array. stop_dockerd ends it.
start_dockerd() {
  local dir=$1 parent=$2
  /usr/sbin/dockerd --data-root "$dir/docker" --exec-root "$dir/docker-exec" -H "unix://$dir/docker.sock" \
    --pidfile "$dir/docker.pid" --iptables=false --ip6tables=false --bridge=none \
    --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent="$parent" >"$dir/dockerd.log" 2>&1 &
  docker_pid=$!
  docker=(/usr/bin/docker -H "unix://$dir/docker.sock")
  for _ in $(seq 1 100); do "${docker[@]}" info >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "dockerd did not start; its log: $dir/dockerd.log" >&2
  return 1
}

stop_dockerd() {
  [ -n "${docker_pid:-}" ] || return 0
  kill "$docker_pid" 2>/dev/null && while kill -0 "$docker_pid" 2>/dev/null; do sleep 0.1; done
  docker_pid=""
}
