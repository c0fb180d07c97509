#!/usr/bin/env bash
# Boot benchmark (issue 11): the quick-start image (Debian core, native layout, own
# initramfs) booted in QEMU under TCG through iPXE from `disklessset serve`, RUNS times;
# prints each phase with its time since power-on, from the serial console (each line
# time-stamped as it arrives) and the server's request log, then the total. Target:
# power-on -> marker <= 25 s.
#
#   scripts/bench-boot.sh [RUNS]      (default 3; run as root)
#
# Env: STORE (default ./store, the quick start's: its image is reused when present,
# else built), IMAGE (quickstart), BIN (the disklessset binary; default
# target/release/disklessset, else target/debug), PORT (8095).
# The load average is printed with every run: under TCG the figures follow the load.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "run as root (mounts, loop devices, VMs)" >&2; exit 1; fi
RUNS=${1:-3}
STORE=${STORE:-$PWD/store}
IMAGE=${IMAGE:-quickstart}
PORT=${PORT:-8095}
TD=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${BIN:-}" ]; then
  BIN=$TD/release/disklessset
  [ -x "$BIN" ] || BIN=$TD/debug/disklessset
fi
[ -x "$BIN" ] || { echo "no disklessset binary: cargo build --release (or BIN=...)" >&2; exit 1; }
MAC=52:54:00:00:0b:01
mkdir -p "$STORE"
STORE=$(cd "$STORE" && pwd)
dls() { "$BIN" --root "$STORE" "$@"; }

if ! dls show "$IMAGE" >/dev/null 2>&1; then
  echo "== building livenet image $IMAGE (Debian bookworm, core, native layout, own initramfs)"
  dls livenet create "$IMAGE" --type core
fi
if ! grep -q 'dl.sha256=' "$STORE/www/diskless/images/$IMAGE/boot.ipxe"; then
  # an image built by an older binary: its initramfs and boot script predate this one
  echo "== regenerating the initramfs of $IMAGE with $BIN"
  dls initramfs "$IMAGE" >/dev/null
fi
SQ=$STORE/www/diskless/images/$IMAGE/squashfs.img
echo "== image $IMAGE: squashfs $(( $(stat -c %s "$SQ") / 1000000 )) MB; binary $BIN"

SLOG=$STORE/log/disklessset.log
dls serve --listen "127.0.0.1:$PORT" > "$STORE/bench-serve.out" 2>&1 &
SERVE=$!
QEMU=
cleanup() { [ -n "$QEMU" ] && kill "$QEMU" 2>/dev/null; kill "$SERVE" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
printf '\xf8\x03' > "$STORE/sercon"

# first line of FILE matching a fixed string: its time stamp (seconds since power-on)
at() { grep -a -m1 -F -- "$2" "$1" | cut -d' ' -f1; }
# seconds since power-on of the server log's request for PATH (logged when answered)
served_at() { # LOG T0 PATH -> "END_S BYTES MS"
  local line ts ms bytes
  line=$(grep -a -F "path=\"$3\"" "$1" | tail -1) || return 0
  [ -n "$line" ] || return 0
  ts=$(date -d "$(echo "$line" | cut -d' ' -f1)" +%s.%N)
  ms=$(echo "$line" | sed -n 's/.* ms=\([0-9.]*\).*/\1/p')
  bytes=$(echo "$line" | sed -n 's/.* bytes=\([0-9]*\).*/\1/p')
  awk -v a="$ts" -v b="$2" -v n="$bytes" -v m="$ms" 'BEGIN { printf "%.2f %d %s\n", a - b, n, m }'
}
row() { printf '  %-34s %7s s  %s\n' "$1" "${2:-?}" "${3:-}"; }
fmt() { [ -n "${1:-}" ] && printf '%.1f' "$1" || echo "?"; }

boot_once() { # IMAGE RUN
  local img=$1 n=$2 log=$STORE/bench-serial-$1-$2.log mark="disklessset: image $1 booted"
  local entry=bench-boot-$1.ipxe
  printf '#!ipxe\nset dls-base http://10.0.2.2:%s\nchain ${dls-base}/diskless/images/%s/boot.ipxe\n' \
    "$PORT" "$img" > "$STORE/www/$entry"
  : > "$log"
  : > "$SLOG.bench"
  local lines0
  lines0=$(wc -l < "$SLOG" 2>/dev/null || echo 0)
  local load
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  local t0 t0us
  t0=$EPOCHREALTIME t0us=${EPOCHREALTIME/./}
  # -serial stdio: every console line is stamped with the time it arrives
  qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 -display none -nodefaults \
    -no-reboot -serial stdio -fw_cfg "name=etc/sercon-port,file=$STORE/sercon" \
    -netdev "user,id=n0,bootfile=http://10.0.2.2:$PORT/$entry" \
    -device "virtio-net-pci,netdev=n0,mac=$MAC" -boot n < /dev/null 2>"$STORE/bench-qemu.err" \
    | while IFS= read -r line; do
        d=$(( ${EPOCHREALTIME/./} - t0us ))
        printf '%d.%02d %s\n' $((d / 1000000)) $((d % 1000000 / 10000)) "${line//$'\r'/}"
      done > "$log" &
  local pipe=$!
  QEMU=$(pgrep -n -f "bootfile=http://10.0.2.2:$PORT/$entry" || true)
  local ok=0
  for _ in $(seq 1200); do
    if grep -a -q -F "$mark" "$log"; then ok=1; break; fi
    [ -n "$QEMU" ] && ! kill -0 "$QEMU" 2>/dev/null && break
    [ -z "$QEMU" ] && QEMU=$(pgrep -n -f "bootfile=http://10.0.2.2:$PORT/$entry" || true)
    sleep 0.25
  done
  [ -n "$QEMU" ] && kill "$QEMU" 2>/dev/null || true
  wait "$pipe" 2>/dev/null || true
  QEMU=
  tail -n +"$((lines0 + 1))" "$SLOG" > "$SLOG.bench" 2>/dev/null || true
  echo
  echo "== $img run $n (load average before: $load)"
  if [ "$ok" != 1 ]; then
    echo "  the VM did not reach its marker; last console lines ($log):"
    tail -15 "$log" | sed 's/^/    /'
    return 1
  fi
  local initrd sq
  initrd=$(grep -a -o 'diskless/kernels/initr[^ ]*' "$STORE/www/diskless/images/$img/boot.ipxe" | tail -1)
  sq=$(served_at "$SLOG.bench" "$t0" "/diskless/images/$img/squashfs.img")
  local ir
  ir=$(served_at "$SLOG.bench" "$t0" "/$initrd")
  row "power-on" 0.0
  row "iPXE start" "$(at "$log" 'iPXE')"
  row "boot script fetched" "$(at "$log" "disklessset: booting image $img")"
  row "kernel+initrd loaded (server)" "$(fmt "${ir%% *}")" "$initrd $(echo "$ir" | cut -d' ' -f2) bytes"
  row "kernel console up" "$(at "$log" 'Linux version')"
  local init_at
  init_at=$(at "$log" 'disklessset-init: [')
  [ -n "$init_at" ] || init_at=$(at "$log" 'dracut')
  row "initramfs start" "$init_at"
  local d0 d1
  d0=$(at "$log" 'downloading http')
  d1=$(at "$log" 'complete: checking its sha256')
  [ -n "$d1" ] || d1=$(fmt "${sq%% *}")
  row "squashfs download start" "$d0"
  if [ -n "$sq" ]; then
    local bytes ms
    bytes=$(echo "$sq" | cut -d' ' -f2) ms=$(echo "$sq" | cut -d' ' -f3)
    row "squashfs downloaded" "$d1" "$(awk -v n="$bytes" -v m="$ms" 'BEGIN { printf "%d MB, sent by the server in %.1f s = %.0f MB/s", n / 1e6, m / 1000, n / 1000 / m }')"
  else
    row "squashfs downloaded" "$d1"
  fi
  row "sha256 verified" "$(at "$log" ' verified')"
  row "switch_root" "$(at "$log" 'switching root to')"
  local total
  total=$(at "$log" "$mark")
  row "marker (total)" "$total" "target <= 25 s"
  echo "$img $total" >> "$STORE/bench-totals"
}

: > "$STORE/bench-totals"
images=("$IMAGE")
for n in $(seq "$RUNS"); do
  for img in "${images[@]}"; do
    boot_once "$img" "$n" || true
  done
done
echo
echo "== power-on -> marker (s), $RUNS run(s) each, load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
for img in "${images[@]}"; do
  printf '  %-24s %s\n' "$img" "$(grep "^$img " "$STORE/bench-totals" | cut -d' ' -f2 | tr '\n' ' ')"
done
