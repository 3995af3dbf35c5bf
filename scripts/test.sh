#!/usr/bin/env bash
# Runs every test, as root: formatting, lints, unit tests and the integration tests, which start real
# containers (namespaces, cgroups, overlay mounts) under their own state root, store and cgroup parent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets 2>&1
