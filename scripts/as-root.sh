# Sourced first by the scripts README's Quick start runs (setup.sh, test.sh), before they change
# directory: as root they go on; as another user they run again through sudo, with the user's Rust
# toolchain (PATH, rustup's and cargo's homes), so the same command works on a root-only machine
# without sudo and on one where you log in as yourself.
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "$(basename "$0"): run as root (poc creates namespaces, cgroups and mounts)" >&2
    exit 1
  fi
  as_root_env=("PATH=$PATH")
  [ -n "${RUSTUP_HOME:-}" ] || [ ! -d "$HOME/.rustup" ] || RUSTUP_HOME=$HOME/.rustup
  [ -n "${CARGO_HOME:-}" ] || [ ! -d "$HOME/.cargo" ] || CARGO_HOME=$HOME/.cargo
  [ -z "${RUSTUP_HOME:-}" ] || as_root_env+=("RUSTUP_HOME=$RUSTUP_HOME")
  [ -z "${CARGO_HOME:-}" ] || as_root_env+=("CARGO_HOME=$CARGO_HOME")
  echo "$(basename "$0"): not root: running it again with sudo" >&2
  exec sudo env "${as_root_env[@]}" "$0" "$@"
fi
