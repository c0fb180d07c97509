#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, integration and VM boot tests.
# Run as root (the tests make real mounts and boot QEMU VMs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "run as root (real mounts, loop devices, VMs)" >&2; exit 1; fi
scripts/install-deps.sh
scripts/install-emulators.sh
cargo fmt --all -- --check
# clippy's incompatible_msrv lint holds std use to the declared rust-version.
cargo clippy --all-targets --quiet -- -D warnings
scripts/check-layers.py
scripts/check-msrv.sh
scripts/check-cli-docs.sh
cargo test --lib --bins -- --test-threads=2
# The integration tests build images and boot VMs: two lanes of test files in parallel.
scripts/run-tests.sh
