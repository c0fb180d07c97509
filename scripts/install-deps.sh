#!/usr/bin/env bash
# Installs the system packages disklessset and its tests need (Debian/Ubuntu, as root).
# Idempotent: only missing packages are installed.
set -euo pipefail
PKGS=(
  mount util-linux coreutils e2fsprogs squashfs-tools zstd cpio
  mmdebstrap debootstrap
  busybox-static
  dracut dracut-live dracut-network isc-dhcp-client
  qemu-system-x86 ipxe-qemu
  nfs-ganesha nfs-ganesha-vfs
  xfsprogs
  tmux curl bc
  man-db groff-base bsdextrautils
  libcrypt-dev
  python3
  ansible
  ipmitool libvirt-daemon-system libvirt-clients python3-libvirt python3-venv
  rsync nginx openssh-client   # replicas: rsync pushes, nginx serves them in the tests (issue 17)
  wrk nginx   # issue 11: scripts/bench-storm.sh (storm of keep-alive clients, nginx for comparison)
  ovmf systemd-boot-efi extlinux syslinux-common dosfstools fdisk mtools  # issue 16: UEFI boots, install to disk
  libcap2-bin   # issue 15: setcap/getcap in tests/import_more.rs (capabilities kept by a directory import)
  dnsmasq-base iproute2   # issue 12: test network (netns, bridge, taps, DHCP reservations from the inventory)
  netcat-openbsd   # issue 12: the own initramfs fetches a node's secrets from a privileged source port (busybox nc cannot bind one)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # a mirror mid-sync or a dropped connection is retried, not a failed run
  apt-get -o Acquire::Retries=3 update -qq
  apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install a Rust toolchain (rustup) first" >&2
  exit 1
fi
