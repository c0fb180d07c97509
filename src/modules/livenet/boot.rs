//! How a livenet image boots: its kernel command line per layout and initramfs flavour,
//! its `boot.ipxe`, and its initramfs built from the image's own kernel modules.
use crate::boot::ipxe::{self, ImageScript};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::Result;
use crate::kernel::{self, InitramfsReport};
use crate::store::{self, lock, ImageRecord, Layout};
use crate::sys::remove::remove_tree;

use super::mount::mount_readonly;
use super::{require_livenet, WorkPaths};

/// Kernel command line for an image's layout and initramfs flavour.
pub fn kernel_cmdline(rec: &ImageRecord, squashfs_url: &str) -> String {
    let flavour = rec.initramfs_flavour.as_deref().unwrap_or("own");
    let mut args = vec![format!("root=live:{squashfs_url}")];
    if flavour == "dracut" {
        args.push("rd.live.image".into());
        if rec.layout != Some(Layout::Compat) {
            args.push("rd.live.overlay.overlayfs=1".into());
        }
        args.push("rd.neednet=1".into());
        args.push("rd.net.timeout.carrier=30".into());
        args.push("rd.net.timeout.ifup=60".into());
        args.push("rd.net.dhcp.retry=4".into());
    }
    args.push(format!("selinux={}", u8::from(rec.selinux)));
    args.push(format!("disklessset.image={}", rec.name));
    args.join(" ")
}

/// Renders the image's `boot.ipxe` (see [`ipxe::render_image`]).
pub fn render_boot_ipxe(cfg: &Config, rec: &ImageRecord) -> Result<String> {
    let images = ipxe::rel_to_web(cfg, &cfg.images_dir);
    let squash = format!("${{dls-base}}/{images}/{}/squashfs.img", rec.name);
    let mut cmdline = kernel_cmdline(rec, &squash);
    // The own initramfs checks the download against it (issue 11); dracut ignores it.
    if let Some(d) = crate::pack::generations::current_digest(cfg, &rec.name) {
        cmdline.push_str(&format!(" dl.sha256={d}"));
    }
    ipxe::render_image(
        cfg,
        &ImageScript {
            comment: format!(
                "disklessset livenet image {} (layout {}, initramfs {})",
                rec.name,
                rec.layout.unwrap_or(Layout::Native).as_str(),
                rec.initramfs_flavour.as_deref().unwrap_or("own")
            ),
            prelude: String::new(),
            echo: format!("disklessset: booting image {} from ${{dls-base}}", rec.name),
            cmdline,
            rec,
        },
        &format!("run `disklessset initramfs {}`", rec.name),
    )
}

/// Writes the image's `boot.ipxe`.
pub fn write_boot_ipxe(ctx: &Ctx, rec: &ImageRecord) -> Result<()> {
    ipxe::write_boot_script(ctx, &rec.name, &render_boot_ipxe(&ctx.cfg, rec)?)
}

/// `initramfs NAME [--flavour own|dracut]`: builds the initramfs from the image's own
/// kernel modules, publishes its kernel, points the image at both, rewrites boot.ipxe.
pub fn initramfs(ctx: &Ctx, name: &str, flavour: Option<&str>) -> Result<InitramfsReport> {
    crate::names::image(name)?;
    let _l = lock::lock_image(&ctx.cfg, name, "initramfs")?;
    let mut rec = require_livenet(ctx, name)?;
    let flavour = flavour
        .map(str::to_string)
        .or_else(|| rec.initramfs_flavour.clone())
        .unwrap_or_else(|| "own".to_string());
    kernel::initramfs_name(&flavour, "x")?;
    let w = WorkPaths::new(&ctx.cfg, name);
    let inspect = w.root.join("inspect");
    let (guards, lower) = mount_readonly(ctx, &rec, &inspect.join("ro"), &inspect.join("ro-ext4"))?;
    let res = (|| -> Result<InitramfsReport> {
        let kver = match rec.kernel_version() {
            Some(k) if ctx.runner.dry_run() || lower.join("lib/modules").join(k).is_dir() => {
                k.to_string()
            }
            _ => crate::build::kernel_version(&lower)?,
        };
        kernel::publish_kernel(ctx, &lower, &kver)?;
        kernel::build_initramfs(ctx, &lower, &kver, &flavour)
    })();
    guards.unmount()?;
    let rep = res?;
    remove_tree(&ctx.runner, &inspect)?;
    rec.kernel = Some(format!("vmlinuz-{}", rep.kernel));
    rec.image = rep
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    rec.initramfs_flavour = Some(flavour);
    if !ctx.runner.dry_run() {
        store::save(&ctx.cfg, &rec)?;
    }
    write_boot_ipxe(ctx, &rec)?;
    Ok(rep)
}
