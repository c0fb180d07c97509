#!/usr/bin/env bash
# Inventory at scale (issue 13): nodes add of 10,000 nodes with MACs and IPs, nodes
# list, bootset -s, and the first bootset of the 10,000 new nodes. Target <= 1 s each.
# Side by side: what a hand-made script does instead (a Python loop writing the same
# files, neither atomic nor synced; `grep` on the YAML for the listing).
# Usage: scripts/bench-nodes.sh [BIN_DIR] (default: target/release; build it first).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-${CARGO_TARGET_DIR:-target}/release}
D=${BENCH_DIR:-/var/tmp}   # BENCH_DIR: e.g. a fresh ext4 mount, away from other deletes
root=$(mktemp -d "$D/dls-bench-nodes.XXXX"); root2=$(mktemp -d "$D/dls-bench-nodes.XXXX")
hand=$(mktemp -d "$D/dls-bench-nodes.XXXX")
trap 'rm -rf "$root" "$root2" "$hand"' EXIT
mkdir -p "$root/www/diskless/images" "$root2/www/diskless/images"
printf 'mac_aliases: false\n' > "$root2/config.yaml"
macs=()
for i in $(seq 1 10000); do macs+=(--mac "$(printf '52:54:01:%02x:%02x:%02x' $((i>>16)) $(((i>>8)&255)) $((i&255)))"); done
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf '%-52s %6.3f s\n' "$label" "$(echo "$e - $s" | bc)"; }
label="nodes add 'c[00001-10000]' (MACs, IPs)"; t "$B/disklessset" --root "$root" nodes add 'c[00001-10000]' "${macs[@]}" --ip 10.1.0.1 --group compute
label="  by hand: python appends 10,000 lines to nodes.yml"
t python3 -c "
with open('$hand/nodes.yml','w') as f:
    for i in range(1,10001):
        f.write(f\"c{i:05d}: {{mac: '52:54:01:{i>>16:02x}:{i>>8&255:02x}:{i&255:02x}', ip: 10.1.{(i-1)>>8&255}.{(i-1)&255+1}, groups: [compute]}}\n\")"
label="nodes list (10,000)"; t "$B/disklessset" --root "$root" nodes list
label="  by hand: grep -c mac nodes.yml"; t grep -c mac "$hand/nodes.yml"
cp "$root/nodes.yml" "$root2/nodes.yml"
label="first bootset -n 'c[00001-10000]' -b disk"; t "$B/bootset" --root "$root" -n 'c[00001-10000]' -b disk
label="first bootset, mac_aliases: false (serve only)"; t "$B/bootset" --root "$root2" --config "$root2/config.yaml" -n 'c[00001-10000]' -b disk
label="  by hand: python writes 10,000 scripts + MAC links"
t python3 -c "
import os
os.makedirs('$hand/nodes')
for i in range(1,10001):
    n=f'c{i:05d}'
    with open(f'$hand/nodes/{n}.ipxe','w') as f: f.write('#!ipxe\nset dls-node '+n+'\nexit\n')
    os.symlink(n+'.ipxe', f'$hand/nodes/52-54-01-{i>>16:02x}-{i>>8&255:02x}-{i&255:02x}.ipxe')"
label="bootset -s (10,000)"; t "$B/bootset" --root "$root" -s
label="nodes list after bootset"; t "$B/disklessset" --root "$root" nodes list
echo "files in www/nodes: $(ls "$root/www/nodes" | wc -l) (scripts + MAC aliases), $(ls "$root2/www/nodes" | wc -l) with mac_aliases: false"
