# Sourced first by the scripts README's Quick start runs (setup.sh, test.sh), before they change
# directory: as root they go on; as another user they run again through sudo, with the user's Rust
# toolchain (rustup's and cargo's homes), so the same command works on a root-only machine without
# sudo and on one where you log in as yourself. Root then runs that toolchain, as `sudo -E` would:
# only the system's directories and the toolchain's own bin directory go on root's PATH (none of the
# user's other PATH entries, never a relative one), and the homes must be absolute directories.
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "$(basename "$0"): run as root (poc creates namespaces, cgroups and mounts)" >&2
    exit 1
  fi
  [ -n "${RUSTUP_HOME:-}" ] || [ ! -d "$HOME/.rustup" ] || RUSTUP_HOME=$HOME/.rustup
  [ -n "${CARGO_HOME:-}" ] || [ ! -d "$HOME/.cargo" ] || CARGO_HOME=$HOME/.cargo
  as_root_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  as_root_env=()
  for home in RUSTUP_HOME CARGO_HOME; do
    dir=${!home:-}
    [ -n "$dir" ] || continue
    if [[ "$dir" != /* ]] || [ ! -d "$dir" ]; then
      echo "$(basename "$0"): $home=$dir is not an absolute directory" >&2
      exit 1
    fi
    as_root_env+=("$home=$dir")
  done
  [ -z "${CARGO_HOME:-}" ] || [ ! -d "$CARGO_HOME/bin" ] || as_root_path=$as_root_path:$CARGO_HOME/bin
  echo "$(basename "$0"): not root: running it again with sudo" >&2
  exec sudo env "PATH=$as_root_path" "${as_root_env[@]}" "$0" "$@"
fi
