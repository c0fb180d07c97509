#!/usr/bin/env bash
# Quick start on the embedded default: a local store under ./store (no config file),
# a Debian livenet image built from the mirror, the built-in boot server, and a QEMU
# VM that boots the image through iPXE. Run as root. Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "run as root (mounts, loop devices, VMs)" >&2; exit 1; fi
scripts/install-deps.sh
echo "== building and installing disklessset (binaries, completions, man pages)"
scripts/install.sh
BIN=$PWD/target/release
STORE=${STORE:-$PWD/store}
IMAGE=${IMAGE:-quickstart}
PORT=${PORT:-8089}
MAC=52:54:00:00:00:01
mkdir -p "$STORE"
dls() { "$BIN/disklessset" --root "$STORE" "$@"; }

if ! dls show "$IMAGE" >/dev/null 2>&1; then
  echo "== building livenet image $IMAGE (Debian bookworm, core, native layout, own initramfs)"
  dls livenet create "$IMAGE" --type core
fi
dls list

echo "== assigning it to node vm1 ($MAC)"
[ -f "$STORE/nodes.yml" ] || printf 'vm1: {mac: "%s"}\n' "$MAC" > "$STORE/nodes.yml"
"$BIN/bootset" --root "$STORE" -n vm1 -b diskless -i "$IMAGE"
"$BIN/bootset" --root "$STORE" -s

echo "== serving the boot tree on 127.0.0.1:$PORT (the VM sees it as 10.0.2.2:$PORT)"
dls serve --listen "127.0.0.1:$PORT" > "$STORE/serve.log" 2>&1 &
SERVE=$!
LOG=$STORE/vm1-serial.log
QEMU=
cleanup() { [ -n "$QEMU" ] && kill "$QEMU" 2>/dev/null; kill "$SERVE" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

echo "== booting a VM through iPXE (QEMU, software emulation); serial log: $LOG"
printf '\xf8\x03' > "$STORE/sercon"
: > "$LOG"
START=$(date +%s)
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 -display none -nodefaults \
  -no-reboot -serial "file:$LOG" -fw_cfg "name=etc/sercon-port,file=$STORE/sercon" \
  -netdev "user,id=n0,bootfile=http://10.0.2.2:$PORT/boot.ipxe" \
  -device "virtio-net-pci,netdev=n0,mac=$MAC" -boot n &
QEMU=$!
MARK="disklessset: image $IMAGE booted"
for _ in $(seq 600); do
  if grep -q "$MARK" "$LOG"; then
    echo "== $(grep -a "$MARK" "$LOG" | head -1)"
    echo "== power-on to booted image: $(( $(date +%s) - START )) s"
    exit 0
  fi
  kill -0 "$QEMU" 2>/dev/null || break
  sleep 0.5
done
echo "the VM did not boot; last lines of $LOG:" >&2
tail -30 "$LOG" >&2
exit 1
