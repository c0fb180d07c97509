#!/bin/sh
# disklessset installer (boot type `install`): sourced by /init with dl.install=1 once
# the image's root tree is mounted read-only; `install_to_disk TREE` never returns.
#
# Kernel parameters (written by bootset into the node script):
#   dl.install=1                 install mode
#   dl.install.disk=NAME         disk of /sys/block (default: the first non-removable)
#   dl.install.wipe=1            allow a disk that holds partitions or a signature
#   dl.install.layout=esp:256,swap:1024,root:rest   partitions in MiB, in order
#   dl.install.kernel=URL dl.install.initramfs=URL     what the disk boots
#   dl.install.report=URL        POSTed to when the disk is ready (the server then
#                                flips the node to `disk`)
# Layout on the disk (GPT): the ESP (FAT32) holds the kernel, the initramfs, systemd-boot
# at the removable path \EFI\BOOT\BOOTX64.EFI (UEFI) and extlinux (BIOS, with
# gptmbr.bin in the protective MBR and the ESP flagged LegacyBIOSBootable), so the disk
# boots under either firmware. Root is ext4, mounted by UUID by this same initramfs
# (root=UUID=...), fstab by UUID.
# Tools: sfdisk, mkfs.ext4, mkfs.vfat, extlinux copied from the build host with their
# libraries (src/kernel/own.rs), busybox for the rest.

DLI_SHARE=/usr/share/disklessset-install

# Partition N of disk NAME: vda1, nvme0n1p1, mmcblk0p1.
part_dev() {
    case "$1" in
        *[0-9]) echo "/dev/${1}p$2" ;;
        *) echo "/dev/$1$2" ;;
    esac
}

first_disk() {
    for _b in /sys/block/*; do
        _n=${_b##*/}
        case "$_n" in loop*|ram*|sr*|fd*|zram*|dm-*|md*|nbd*) continue ;; esac
        [ "$(cat "$_b/removable" 2>/dev/null)" = 0 ] || continue
        [ "$(cat "$_b/size" 2>/dev/null)" -gt 0 ] 2>/dev/null || continue
        echo "$_n"
        return 0
    done
    return 1
}

new_uuid() { cat /proc/sys/kernel/random/uuid; }

install_to_disk() {
    _tree=$1
    for _t in sfdisk mkfs.ext4 mkfs.vfat; do
        command -v "$_t" >/dev/null 2>&1 \
            || die "install: $_t is not in this initramfs (rebuild it with \`disklessset initramfs IMAGE\` on a host with fdisk, e2fsprogs, dosfstools installed)"
    done
    if [ -d /sys/firmware/efi ]; then FW=uefi; else FW=bios; fi
    info "install: booted under $FW firmware"

    DISK=${DL_INSTALL_DISK#/dev/}
    if [ -z "$DISK" ]; then
        _i=0
        while ! DISK=$(first_disk) && [ "$_i" -lt 20 ]; do sleep 0.5; _i=$((_i + 1)); done
        [ -n "$DISK" ] || die "install: no non-removable disk in /sys/block (set install_disk in the node's vars)"
    fi
    DEV=/dev/$DISK
    _i=0
    while [ ! -b "$DEV" ] && [ "$_i" -lt 20 ]; do sleep 0.5; _i=$((_i + 1)); done
    [ -b "$DEV" ] || die "install: disk $DEV does not exist (install_disk=$DL_INSTALL_DISK)"

    # A disk holding partitions (or any signature in its first sectors) is refused
    # unless --wipe: nothing is written to it.
    _parts=
    for _p in /sys/block/"$DISK"/"$DISK"*; do [ -e "$_p" ] && _parts="$_parts ${_p##*/}"; done
    _sig=
    if [ -z "$_parts" ]; then
        # MBR/GPT magic 55aa at byte 510, or anything non-zero in the first MiB.
        [ -n "$(dd if="$DEV" bs=1M count=1 2>/dev/null | tr -d '\000' | head -c 1)" ] && _sig=" (its first MiB is not empty)"
    fi
    if [ -n "$_parts$_sig" ] && [ -z "$DL_INSTALL_WIPE" ]; then
        echo "$P: install: REFUSED: disk $DEV holds partitions${_parts:+:$_parts}$_sig; it is left untouched (bootset -b install --wipe to overwrite it, or set install_disk)"
        DL_SHELL=
        die "install: refused disk $DEV"
    fi

    # --- partitions ---
    _spec="label: gpt"
    _n=0 ESP_N= SWAP_N= ROOT_N=
    _oifs=$IFS; IFS=,
    for _item in ${DL_INSTALL_LAYOUT:-esp:256,root:rest}; do
        IFS=$_oifs
        _role=${_item%%:*} _size=${_item#*:}
        _n=$((_n + 1))
        case "$_size" in rest) _sz= ;; *[!0-9]*|'') die "install: bad size '$_size' in dl.install.layout=$DL_INSTALL_LAYOUT" ;; *) _sz="size=${_size}MiB, " ;; esac
        case "$_role" in
            esp) ESP_N=$_n; _spec="$_spec
${_sz}type=U, name=esp, attrs=\"LegacyBIOSBootable\"" ;;
            swap) SWAP_N=$_n; _spec="$_spec
${_sz}type=S, name=swap" ;;
            root) ROOT_N=$_n; _spec="$_spec
${_sz}type=L, name=root" ;;
            *) die "install: unknown role '$_role' in dl.install.layout=$DL_INSTALL_LAYOUT" ;;
        esac
        IFS=,
    done
    IFS=$_oifs
    [ -n "$ESP_N" ] && [ -n "$ROOT_N" ] || die "install: dl.install.layout=$DL_INSTALL_LAYOUT needs esp and root"
    info "install: partitioning $DEV ($(($(cat /sys/block/$DISK/size) / 2048)) MiB): $DL_INSTALL_LAYOUT"
    echo "$_spec" | sfdisk -q --wipe always --wipe-partitions always "$DEV" \
        || die "install: sfdisk of $DEV failed"
    ESP=$(part_dev "$DISK" "$ESP_N")
    ROOTDEV=$(part_dev "$DISK" "$ROOT_N")
    _i=0
    while { [ ! -b "$ESP" ] || [ ! -b "$ROOTDEV" ]; } && [ "$_i" -lt 40 ]; do sleep 0.25; _i=$((_i + 1)); done
    [ -b "$ROOTDEV" ] || die "install: $ROOTDEV did not appear after partitioning $DEV"

    # --- file systems (UUIDs chosen here: busybox has no blkid) ---
    ROOT_UUID=$(new_uuid)
    ESP_ID=$(new_uuid | tr -d - | cut -c1-8 | tr a-f A-F)
    ESP_UUID="$(echo "$ESP_ID" | cut -c1-4)-$(echo "$ESP_ID" | cut -c5-8)"
    mkfs.vfat -F 32 -n ESP -i "$ESP_ID" "$ESP" >/dev/null || die "install: mkfs.vfat of $ESP failed"
    mkfs.ext4 -q -F -L root -U "$ROOT_UUID" "$ROOTDEV" || die "install: mkfs.ext4 of $ROOTDEV failed"
    SWAP_LINE=
    if [ -n "$SWAP_N" ]; then
        SWAPDEV=$(part_dev "$DISK" "$SWAP_N")
        SWAP_UUID=$(new_uuid)
        mkswap -U "$SWAP_UUID" "$SWAPDEV" >/dev/null 2>&1 || mkswap "$SWAPDEV" >/dev/null || die "install: mkswap of $SWAPDEV failed"
        SWAP_LINE="UUID=$SWAP_UUID none swap sw,nofail 0 0"
        # busybox mkswap may ignore -U: then use the partition's path.
        findfs "UUID=$SWAP_UUID" >/dev/null 2>&1 || SWAP_LINE="$SWAPDEV none swap sw,nofail 0 0"
    fi

    # --- root tree ---
    T=/run/initramfs/target
    mkdir -p "$T"
    mount -t ext4 "$ROOTDEV" "$T" || die "install: mount of $ROOTDEV (ext4) failed"
    info "install: copying the image's root tree to $ROOTDEV"
    cp -a "$_tree/." "$T/" || die "install: copy of the image tree to $ROOTDEV failed (disk full?)"
    info "install: root tree copied ($(df -k "$T" | tail -n 1 | awk '{print $3}') KiB used)"
    mkdir -p "$T/boot/efi"
    {
        echo "# written by the disklessset installer"
        echo "UUID=$ROOT_UUID / ext4 defaults,errors=remount-ro 0 1"
        echo "UUID=$ESP_UUID /boot/efi vfat umask=0077,nofail 0 2"
        [ -n "$SWAP_LINE" ] && echo "$SWAP_LINE"
    } > "$T/etc/fstab"

    # --- boot: kernel, initramfs, loaders on the ESP ---
    E=/run/initramfs/esp
    mkdir -p "$E"
    mount -t vfat "$ESP" "$E" || die "install: mount of the ESP $ESP (vfat) failed: vfat/nls modules missing?"
    fetch "$DL_INSTALL_KERNEL" "$E/vmlinuz"
    fetch "$DL_INSTALL_INITRAMFS" "$E/initrd.img"
    # The installed system's command line: this one without the network boot's args.
    _args="root=UUID=$ROOT_UUID rw"
    set -f
    for _a in $CMDLINE; do
        case "$_a" in root=*|ip=*|dl.*|BOOTIF=*|initrd=*|rw|ro) ;; *) _args="$_args $_a" ;; esac
    done
    set +f
    mkdir -p "$E/EFI/BOOT" "$E/loader/entries"
    if [ -f "$DLI_SHARE/BOOTX64.EFI" ]; then
        cp "$DLI_SHARE/BOOTX64.EFI" "$E/EFI/BOOT/BOOTX64.EFI"
        printf 'timeout 0\ndefault disklessset.conf\n' > "$E/loader/loader.conf"
        printf 'title disklessset installed image\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$_args" \
            > "$E/loader/entries/disklessset.conf"
        info "install: systemd-boot at \\EFI\\BOOT\\BOOTX64.EFI (UEFI removable path)"
    elif [ "$FW" = uefi ]; then
        die "install: no systemd-boot in this initramfs (install systemd-boot-efi on the build host, rebuild the initramfs)"
    fi
    if command -v extlinux >/dev/null 2>&1 && [ -f "$DLI_SHARE/gptmbr.bin" ]; then
        mkdir -p "$E/syslinux"
        printf 'DEFAULT dls\nPROMPT 0\nTIMEOUT 0\nLABEL dls\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' "$_args" \
            > "$E/syslinux/syslinux.cfg"
        extlinux --install "$E/syslinux" >/dev/null 2>&1 || die "install: extlinux --install on the ESP failed"
        dd if="$DLI_SHARE/gptmbr.bin" of="$DEV" bs=440 count=1 conv=notrunc 2>/dev/null \
            || die "install: writing gptmbr.bin to $DEV failed"
        info "install: extlinux on the ESP, gptmbr.bin in the MBR (BIOS)"
    elif [ "$FW" = bios ]; then
        die "install: no extlinux in this initramfs (install extlinux and syslinux-common on the build host, rebuild the initramfs)"
    fi
    sync
    umount "$E" || die "install: umount of the ESP failed"
    umount "$T" || die "install: umount of $ROOTDEV failed"
    sync
    info "install: image written to $DEV (root UUID=$ROOT_UUID, $FW)"
    if [ -n "$DL_INSTALL_REPORT" ]; then
        _r=0
        until wget -q -O /tmp/report.out --post-data "disk=$DEV firmware=$FW root=$ROOT_UUID" "$DL_INSTALL_REPORT"; do
            _r=$((_r + 1))
            [ "$_r" -lt "$DL_RETRIES" ] || die "install: the report to $DL_INSTALL_REPORT failed: the disk is ready, but the node is still \`install\` on the server"
            sleep 2
        done
        info "install: reported to $DL_INSTALL_REPORT: $(cat /tmp/report.out)"
    fi
    info "install: done; rebooting"
    reboot -f
    while :; do sleep 3600; done
}
