//! iPXE scripts: the one writer of an image's `boot.ipxe` and the pieces every image
//! script shares (the `dls-*` defaults the chain may have set, the kernel/initrd/boot
//! tail). Each module renders its own script from these (through the `Module` trait);
//! nothing else writes `boot.ipxe`.
use std::path::Path;

use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::store::ImageRecord;

/// The name of an image's boot script in its image directory.
pub const BOOT_SCRIPT: &str = "boot.ipxe";

/// A path under the web root as the URL path the boot tree serves it at.
pub fn rel_to_web(cfg: &Config, p: &Path) -> String {
    p.strip_prefix(&cfg.web_root)
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

/// The base URL written into static scripts: the configured one, else next-server.
pub fn static_base(cfg: &Config) -> String {
    cfg.base_url
        .clone()
        .unwrap_or_else(|| "http://${next-server}".to_string())
}

/// What an image's script boots: everything but the module's own lines.
pub struct ImageScript<'a> {
    /// The comment line after `#!ipxe` (without `# `).
    pub comment: String,
    /// Module lines after the shared `isset` defaults (each ending in `\n`).
    pub prelude: String,
    /// The `echo` line shown before the kernel loads (without `echo `).
    pub echo: String,
    /// The image's kernel command line (root=, image name, ...).
    pub cmdline: String,
    pub rec: &'a ImageRecord,
}

/// The kernel version and initramfs file an image boots, or why it cannot boot yet.
pub fn kernel_and_initrd(rec: &ImageRecord, fix: &str) -> Result<(String, String)> {
    let kver = rec
        .kernel_version()
        .ok_or_else(|| Error::invalid(format!("image {} has no kernel set", rec.name)))?
        .to_string();
    let initrd = rec
        .image
        .clone()
        .ok_or_else(|| Error::invalid(format!("image {} has no initramfs: {fix}", rec.name)))?;
    Ok((kver, initrd))
}

/// Renders an image script. `${dls-base}` is the boot tree's absolute URL: set by the
/// chain (the built-in server derives it from the request's Host), else the configured
/// `base_url`, else `http://${next-server}`. No fixed sleeps anywhere.
pub fn render_image(cfg: &Config, s: &ImageScript, fix: &str) -> Result<String> {
    let (kver, initrd) = kernel_and_initrd(s.rec, fix)?;
    let kernels = rel_to_web(cfg, &cfg.kernels_dir);
    Ok(format!(
        "#!ipxe\n\
         # {comment}\n\
         isset ${{dls-base}} || set dls-base {fallback}\n\
         isset ${{dls-console}} || set dls-console console=tty0 console=ttyS0,115200n8\n\
         isset ${{dls-ip}} || set dls-ip ip=dhcp\n\
         {prelude}\
         echo {echo}\n\
         kernel ${{dls-base}}/{kernels}/vmlinuz-{kver} initrd={initrd} {cmdline} ${{dls-ip}} ${{dls-console}} ${{dls-kernel-args}}\n\
         initrd ${{dls-base}}/{kernels}/{initrd}\n\
         boot\n",
        comment = s.comment,
        fallback = static_base(cfg),
        prelude = s.prelude,
        echo = s.echo,
        cmdline = s.cmdline,
    ))
}

/// Writes an image's `boot.ipxe` atomically (a dry run notes it).
pub fn write_boot_script(ctx: &Ctx, name: &str, text: &str) -> Result<()> {
    let p = ctx.cfg.image_dir(name).join(BOOT_SCRIPT);
    if ctx.runner.dry_run() {
        ctx.runner.note(format!("write {}", p.display()));
        return Ok(());
    }
    fsutil::write_atomic(&p, text.as_bytes(), 0o644)
}
