#!/usr/bin/env bash
# Benchmark (not a test): what adding nodes to an NFS golden image costs, against the
# reference's full copy per node (`cp -a` of the golden tree into nodes/<node>).
#
#   sudo scripts/bench-nfs-nodes.sh [NODES]          # default 100 nodes
#   BENCH_DIR=/var/tmp/x sudo scripts/bench-nfs-nodes.sh
#
# It builds a real core bookworm staging image (~600 MB tree) with the tool in a
# scratch store (BENCH_DIR, default a new dir under /var/tmp), makes a golden image of
# it, then:
#   1. adds NODES nodes in one command (`nfs nodes add gold b[001-NODES]`),
#   2. adds 10 more nodes one command each (per-node latency, process start included),
#   3. copies the golden tree for REF_COPIES nodes the reference's way (`cp -a`) and
#      extrapolates to NODES.
# Disk use is measured with `du` (allocated blocks) and `df` on the store's file system.
set -euo pipefail
NODES=${1:-100}
REF_COPIES=${REF_COPIES:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# DISKLESSSET=path/to/disklessset to use a given binary (a debug build is fine: the
# work measured is file system work, not CPU).
BIN=${DISKLESSSET:-$HERE/target/release/disklessset}
if [ ! -x "$BIN" ]; then
  (cd "$HERE" && cargo build --release --bin disklessset >/dev/null)
fi
echo "binary: $BIN"
df -h --output=source,fstype,size,avail "$(dirname "${BENCH_DIR:-/var/tmp/x}")" | tail -n 1 | sed 's/^/file system: /'
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/dls-bench-nfs.XXXXXX)}
mkdir -p "$BENCH_DIR"
dl() { "$BIN" --root "$BENCH_DIR" "$@"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
used_kib() { df --output=used -k "$BENCH_DIR" | tail -n 1 | tr -d ' '; }
du_kib() { du -s -k "$@" | awk '{s += $1} END {print s + 0}'; }

if ! dl show bstage >/dev/null 2>&1; then
  echo "building a core bookworm staging image in $BENCH_DIR (about a minute)..."
  dl nfs staging create bstage --type core
fi
dl show bgold >/dev/null 2>&1 || dl nfs golden create bgold --from bstage
GOLD=$BENCH_DIR/nfsimages/golden/bgold
NODESDIR=$BENCH_DIR/nfsimages/nodes/bgold
tree_kib=$(du_kib "$GOLD")
files=$(find "$GOLD" -xdev | wc -l)
echo "golden tree: $GOLD, $((tree_kib / 1024)) MiB allocated, $files inodes"

# 1. NODES nodes in one command.
sync
u0=$(used_kib); t0=$(now)
dl nfs nodes add bgold "b[001-$NODES]" >/dev/null
sync
t1=$(now); u1=$(used_kib)
batch_s=$(calc "$t1 - $t0")
batch_du=$(du_kib "$NODESDIR")

# 2. ten nodes, one command each.
t0=$(now)
for i in $(seq 1 10); do dl nfs nodes add bgold "one$i" >/dev/null; done
t1=$(now)
single_s=$(calc "($t1 - $t0) / 10")

# 3. the reference: a full copy per node.
REF=$BENCH_DIR/ref-nodes
mkdir -p "$REF"
sync
ru0=$(used_kib); t0=$(now)
for i in $(seq 1 "$REF_COPIES"); do cp -a "$GOLD" "$REF/node$i"; done
sync
t1=$(now); ru1=$(used_kib)
ref_s=$(calc "($t1 - $t0) / $REF_COPIES")
ref_kib=$(( (ru1 - ru0) / REF_COPIES ))

printf '\n%-34s %14s %14s\n' "per node" "disklessset" "reference cp -a"
printf '%-34s %13.4fs %13.2fs\n' "time (batch of $NODES, per node)" "$(calc "$batch_s / $NODES")" "$ref_s"
printf '%-34s %13.4fs %14s\n' "time (one command per node)" "$single_s" "-"
printf '%-34s %12.1fKiB %11.1fMiB\n' "disk (du of node dirs)" "$(calc "$batch_du / $NODES")" "$(calc "$ref_kib / 1024")"
printf '%-34s %12.1fKiB %14s\n' "disk (df delta, incl. record)" "$(calc "($u1 - $u0) / $NODES")" "-"
printf '%-34s %13.2fs %13.0fs\n' "total for $NODES nodes" "$batch_s" "$(calc "$ref_s * $NODES")"
printf '%-34s %12.1fMiB %11.1fGiB\n' "disk for $NODES nodes" "$(calc "$batch_du / 1024")" "$(calc "$ref_kib * $NODES / 1048576")"
echo
echo "A node's kept state grows with what it writes in its persistent paths (first boot"
echo "seeds them from the image: measured in tests/nfs.rs, see README)."
echo "Cleanup: rm -rf $REF; $BIN --root $BENCH_DIR remove bgold --yes (or rm the whole $BENCH_DIR)"
rm -rf "$REF"
