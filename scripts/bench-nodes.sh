#!/usr/bin/env bash
# Inventory at scale (issue 13): nodes add of 10,000 nodes with MACs and IPs, nodes
# list, bootset -s, and the first bootset of the 10,000 new nodes. Target <= 1 s each.
# Usage: scripts/bench-nodes.sh [BIN_DIR] (default: target/release; build it first).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-${CARGO_TARGET_DIR:-target}/release}
root=$(mktemp -d /var/tmp/dls-bench-nodes.XXXX); trap 'rm -rf "$root"' EXIT
mkdir -p "$root/www/diskless/images"
macs=()
for i in $(seq 1 10000); do macs+=(--mac "$(printf '52:54:01:%02x:%02x:%02x' $((i>>16)) $(((i>>8)&255)) $((i&255)))"); done
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf '%-45s %6.3f s\n' "$label" "$(echo "$e - $s" | bc)"; }
label="nodes add 'c[00001-10000]' (MACs, IPs)"; t "$B/disklessset" --root "$root" nodes add 'c[00001-10000]' "${macs[@]}" --ip 10.1.0.1 --group compute
label="nodes list (10,000)"; t "$B/disklessset" --root "$root" nodes list
label="first bootset -n 'c[00001-10000]' -b disk"; t "$B/bootset" --root "$root" -n 'c[00001-10000]' -b disk
label="bootset -s (10,000)"; t "$B/bootset" --root "$root" -s
label="nodes list after bootset"; t "$B/disklessset" --root "$root" nodes list
