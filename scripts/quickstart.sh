#!/usr/bin/env bash
# Quick start on the embedded default: a local store under ./store, no config needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "run as root (mounts)" >&2; exit 1; fi
scripts/install-deps.sh
cargo build --release --quiet
BIN=target/release/disklessset
STORE=${STORE:-$PWD/store}
mkdir -p "$STORE"
"$BIN" --root "$STORE" demo create hello --message "my first image" 2>/dev/null || true
"$BIN" --root "$STORE" list
