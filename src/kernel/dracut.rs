//! The dracut initramfs (the reference's way: livenet + dmsquash-live), built on the
//! host with the image's own kernel modules (`--kmoddir`). dracut 059 needs
//! `network-legacy` (dhclient) for livenet: `systemd-networkd` never triggers the
//! download. Every dracut initramfs carries `initramfs/dracut-secrets.sh` as a
//! pre-pivot hook: the node's per-node secrets bundle (issue 12), fetched with curl
//! from a privileged port as the own init does with nc.
use std::path::Path;
use std::time::Instant;

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::sys::runner::Cmd;

/// dracut modules of a livenet/NFS initramfs (measured minimal list).
pub const DRACUT_MODULES: &str = "bash systemd systemd-initrd dracut-systemd base fs-lib img-lib udev-rules rootfs-block network-legacy network url-lib livenet dmsquash-live overlayfs";

/// Drivers always added: virtual and common NICs, the filesystems a live root needs.
pub const DRACUT_DRIVERS: &str = "virtio_pci virtio_net virtio_blk virtio_scsi e1000 e1000e igb ixgbe tg3 bnx2 r8169 loop squashfs overlay ext4 xfs";

/// The pre-pivot hook fetching the node's secrets bundle (issue 12).
pub const SECRETS_HOOK: &str = include_str!("../../initramfs/dracut-secrets.sh");

/// Where the hook goes inside the initramfs (dracut-pre-pivot.service sources it).
pub const SECRETS_HOOK_PATH: &str = "/lib/dracut/hooks/pre-pivot/90-disklessset-secrets.sh";

/// What the hook needs beyond the modules' own tools (curl comes with url-lib).
pub const SECRETS_HOOK_TOOLS: &str = "tar base64 head tail grep";

/// Builds `out` with dracut from `tree`'s modules for kernel `kver`; returns seconds.
pub fn build(ctx: &Ctx, tree: &Path, kver: &str, out: &Path) -> Result<f64> {
    let kmoddir = tree.join("lib/modules").join(kver);
    if !ctx.runner.dry_run() && !kmoddir.is_dir() {
        return Err(Error::invalid(format!(
            "kernel modules {} not found: the image carries no kernel {kver}",
            kmoddir.display()
        )));
    }
    let t = Instant::now();
    let tmp = crate::fsutil::temp_path_for(out);
    // The hook as a file for --include, at a fixed path of the store's work dir: dracut
    // records its arguments in the initramfs, so a random name would make two builds
    // differ (issue 15). Same content for every build: concurrent writers are harmless.
    let hook = ctx.cfg.work_dir.join(".dracut-secrets-hook.sh");
    if !ctx.runner.dry_run() {
        crate::fsutil::ensure_dir(&ctx.cfg.work_dir)?;
        crate::fsutil::write_atomic(&hook, SECRETS_HOOK.as_bytes(), 0o644)?;
    }
    let res = ctx.runner.run(
        &Cmd::new("dracut")
            .package("dracut dracut-live dracut-network isc-dhcp-client")
            .args([
                "--no-hostonly",
                "--no-hostonly-cmdline",
                "--force",
                "--zstd",
                "--nolvmconf",
                // issue 15: sorted cpio, fixed owners, SOURCE_DATE_EPOCH when set.
                "--reproducible",
            ])
            .arg("--kver")
            .arg(kver)
            .arg("--kmoddir")
            .arg(&kmoddir)
            .arg("-m")
            .arg(DRACUT_MODULES)
            .arg("--omit")
            .arg("systemd-networkd")
            .arg("--add-drivers")
            .arg(DRACUT_DRIVERS)
            .arg("--install")
            .arg(SECRETS_HOOK_TOOLS)
            .arg("--include")
            .arg(&hook)
            .arg(SECRETS_HOOK_PATH)
            .arg(&tmp),
    );
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if ctx.runner.dry_run() {
        return Ok(0.0);
    }
    // dracut writes 0600; nodes fetch it over HTTP.
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).at(&tmp)?;
    crate::fsutil::publish(&tmp, out)?;
    Ok(t.elapsed().as_secs_f64())
}
