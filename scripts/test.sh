#!/usr/bin/env bash
# Runs every test, as root: formatting, lints, unit tests and the integration tests, which start real
# containers (namespaces, cgroups, overlay mounts) under their own state root, store and cgroup parent;
# then the integration tests again inside a pure cgroup v2 guest (scripts/vm-test.sh), since this host
# has cgroup v1 controllers and users' machines are pure v2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets 2>&1
scripts/vm-test.sh
