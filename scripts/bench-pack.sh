#!/usr/bin/env bash
# Pack benchmark (issue 15): the tool's pack against a bare mksquashfs of the same tree
# with the same options, side by side; target ratio tool / bare <= 1.1.
#
# Usage (root): scripts/bench-pack.sh [BIN] (default: $CARGO_TARGET_DIR/release/disklessset)
#   TREE=/path/to/tree   use this root tree (copied to a tmpfs first)
#   RUNS=3               runs of each measure (the median is printed)
# Without TREE the quick-start image's tree is used: unpacked from
# $QS_IMAGE (default /var/tmp/qs-store/www/diskless/images/quickstart/squashfs.img) when
# present, else built like scripts/quickstart.sh does (`mmdebstrap`, core bookworm with
# a kernel, ~30 s).
#
# What is timed:
# - create: `livenet create NAME --from TREE --json` reports `pack_seconds`, the tool's
#   own measure of its pack step (mksquashfs to a staged file, sha256, fsync, rename as
#   the new generation, record and boot script). Bare: `mksquashfs TREE OUT` with the
#   options the tool passes (src/pack: -noappend -no-progress -quiet -processors N
#   -comp zstd -Xcompression-level L -wildcards -e RUNTIME_EXCLUDES), same source
#   filesystem (tmpfs), output on the store's filesystem.
# - unmount: `livenet mount`, one file changed, then the bare mksquashfs of the mounted
#   tree (the overlay the tool repacks from), then the wall time of the whole
#   `livenet unmount` (repack, publish, overlay teardown).
# The page cache is warm for both (each bare run reads the same tree right before).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/disklessset}
RUNS=${RUNS:-3}
QS_IMAGE=${QS_IMAGE:-/var/tmp/qs-store/www/diskless/images/quickstart/squashfs.img}
[ "$(id -u)" = 0 ] || { echo "bench-pack: run as root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bench-pack: no binary $BIN (cargo build --release first)" >&2; exit 2; }

work=$(mktemp -d /var/tmp/dls-bench-pack.XXXX)
cleanup() {
    "$BIN" --root "$work/store" --yes remove bench >/dev/null 2>&1 || true
    umount "$work/src" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/src" "$work/store/www/diskless/images"
mount -t tmpfs -o size=3g,mode=0755 tmpfs "$work/src"
tree=$work/src/tree
if [ -n "${TREE:-}" ]; then
    cp -a "$TREE" "$tree"
elif [ -f "$QS_IMAGE" ]; then
    unsquashfs -q -n -d "$tree" "$QS_IMAGE" >/dev/null
else
    INITRD=No mmdebstrap --quiet --variant=minbase \
        --include=systemd,systemd-sysv,udev,dbus,kmod,openssh-server,iproute2,linux-image-amd64 \
        bookworm "$tree" http://deb.debian.org/debian
fi
echo "tree: $(du -sm "$tree" | cut -f1) MB, $(find "$tree" | wc -l) inodes; binary $BIN"

level=3 # the config's default compression_level (zstd), which the store here uses
excludes=(proc/* sys/* dev/* run/* tmp/* var/tmp/* 'var/cache/apt/archives/*.deb' 'var/lib/apt/lists/*')
bare() { # SRC OUT -> "seconds seconds-with-fsync"
    local s m e
    rm -f "$2"
    s=$(date +%s.%N)
    mksquashfs "$1" "$2" -noappend -no-progress -quiet -processors "$(nproc)" -comp zstd \
        -Xcompression-level "$level" -wildcards -e "${excludes[@]}" >/dev/null
    m=$(date +%s.%N)
    sync "$2" # the tool makes its published file durable; the second figure does too
    e=$(date +%s.%N)
    rm -f "$2"
    echo "$(echo "$m - $s" | bc) $(echo "$e - $s" | bc)"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
out=$work/store/bare.img

c_tool=(); c_bare=(); c_sync=(); u_tool=(); u_bare=(); u_sync=()
for i in $(seq 1 "$RUNS"); do
    read -r b f < <(bare "$tree" "$out"); c_bare+=("$b"); c_sync+=("$f")
    "$BIN" --root "$work/store" --yes remove bench >/dev/null 2>&1 || true
    j=$("$BIN" --root "$work/store" --json livenet create bench --from "$tree")
    c_tool+=("$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pack_seconds"])')")
    "$BIN" --root "$work/store" livenet mount bench >/dev/null
    mnt=$work/store/workdir/bench/mnt
    [ -d "$mnt" ] || mnt=$("$BIN" --root "$work/store" show bench --json | python3 -c 'import json,sys; print([m for m in json.load(sys.stdin)["mounts"] if m.endswith("/mnt")][0])')
    date > "$mnt/etc/bench-pack-change"
    read -r b f < <(bare "$mnt" "$out"); u_bare+=("$b"); u_sync+=("$f")
    s=$(date +%s.%N)
    "$BIN" --root "$work/store" livenet unmount bench >/dev/null
    e=$(date +%s.%N)
    u_tool+=("$(echo "$e - $s" | bc)")
done
size=$(stat -c %s "$work/store/www/diskless/images/bench/squashfs.img")
# The tool's own split of each pack (same run, so the machine's load cancels out): the
# time in mksquashfs and the time after it (sha256, fsync, rename, record).
inside=$(grep -ho 'packed in [0-9.]*s, published ([^)]*) in [0-9.]*s' "$work"/store/log/*.log 2>/dev/null \
    | awk '{p=$3; q=$NF; sub("s","",p); sub("s","",q); n++; tp+=p; tq+=q} END {if (n) printf "%d packs: mksquashfs %.2f s, after it %.2f s on average, ratio %.3f", n, tp/n, tq/n, (tp+tq)/tp}')
row() { # label tool bare bare+fsync
    printf '%-26s %8.2f s %10.2f s %6.3f %12.2f s %6.3f\n' "$1" "$2" "$3" \
        "$(echo "$2 / $3" | bc -l)" "$4" "$(echo "$2 / $4" | bc -l)"
}
echo "squashfs $((size / 1000000)) MB, zstd level $level, median of $RUNS runs"
printf '%-26s %10s %12s %6s %14s %6s\n' "" "tool" "mksquashfs" "ratio" "+fsync" "ratio"
row "livenet create: pack" "$(median "${c_tool[@]}")" "$(median "${c_bare[@]}")" "$(median "${c_sync[@]}")"
row "livenet unmount: repack" "$(median "${u_tool[@]}")" "$(median "${u_bare[@]}")" "$(median "${u_sync[@]}")"
echo "runs: create tool ${c_tool[*]} / bare ${c_bare[*]} (+fsync ${c_sync[*]})"
echo "      unmount tool ${u_tool[*]} / bare ${u_bare[*]} (+fsync ${u_sync[*]})"
echo "inside the tool: ${inside:-no pack line in the log (binary older than this script)}"
