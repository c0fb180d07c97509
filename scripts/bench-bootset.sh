#!/usr/bin/env bash
# Benchmark (not a test): bootset over 10,000 generated nodes, and -s over them.
# Targets: assignment <= 1 s, status <= 0.5 s. Prints wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
B=target/release/bootset
D=$(mktemp -d /var/tmp/dls-bench-bootset.XXXXXX)
trap 'rm -rf "$D"' EXIT
N=${N:-10000}
/usr/bin/python3 - "$D/nodes.yml" "$N" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(1, n + 1):
        f.write(f"c{i:05d}: {{mac: '52:54:{i>>24&255:02x}:{i>>16&255:02x}:{i>>8&255:02x}:{i&255:02x}', ip: 10.{i>>16&255}.{i>>8&255}.{i&255}, groups: [compute]}}\n")
    f.write("groups:\n  compute: {vars: {console: ttyS0, kernel_args: quiet}}\n")
PY
mkdir -p "$D/www/diskless/images"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf '%-48s %6.3f s\n' "$LABEL" "$(echo "$e - $s" | bc)"; }
SET="c[00001-$(printf %05d "$N")]"
LABEL="bootset -b disk, $N nodes (all written)"   t $B --root "$D" -n "$SET" -b disk
LABEL="bootset -b disk again (nothing changed)"   t $B --root "$D" -n "$SET" -b disk
LABEL="bootset -b next -f network (all rewritten)" t $B --root "$D" -n "$SET" -b next -f network
LABEL="bootset -s ($N nodes)"                      t $B --root "$D" -s
LABEL="bootset -s --json ($N nodes)"               t $B --root "$D" -s --json
echo "files written: $(ls "$D/www/nodes" | wc -l) (scripts + MAC aliases)"
