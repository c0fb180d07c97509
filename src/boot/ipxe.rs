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
/// `base_url`, else `http://${next-server}`; the kernel gets it as `dl.base=` (the own
/// initramfs fetches the node's secrets bundle there, issue 12). No fixed sleeps anywhere.
pub fn render_image(cfg: &Config, s: &ImageScript, fix: &str) -> Result<String> {
    let (kver, initrd) = kernel_and_initrd(s.rec, fix)?;
    let kernels = rel_to_web(cfg, &cfg.kernels_dir);
    let load = format!(
        "kernel ${{dls-base}}/{kernels}/vmlinuz-{kver} initrd={initrd} {cmdline} dl.base=${{dls-base}} ${{dls-ip}} ${{dls-console}} ${{dls-kernel-args}} && initrd ${{dls-base}}/{kernels}/{initrd} && boot",
        cmdline = s.cmdline,
    );
    Ok(format!(
        "#!ipxe\n\
         # {comment}\n\
         isset ${{dls-base}} || set dls-base {fallback}\n\
         isset ${{dls-console}} || set dls-console console=tty0 console=ttyS0,115200n8\n\
         isset ${{dls-ip}} || set dls-ip ip=dhcp\n\
         {prelude}\
         echo {echo}\n\
         {retries}",
        comment = s.comment,
        fallback = static_base(cfg),
        prelude = s.prelude,
        echo = s.echo,
        retries = load_with_retries(&load, &s.rec.name),
    ))
}

/// Back-off between the attempts to load an image's kernel and initramfs (seconds).
pub const LOAD_BACKOFF: &[u32] = &[2, 4];

/// `load` (kernel && initrd && boot) tried `1 + LOAD_BACKOFF.len()` times with back-off,
/// unrolled (no counters: only `goto` to labels that follow and `sleep`, which a build
/// without the sleep command skips), then one clear line and `exit 1`.
pub fn load_with_retries(load: &str, image: &str) -> String {
    let attempts = LOAD_BACKOFF.len() + 1;
    let mut out = String::new();
    for (i, wait) in LOAD_BACKOFF.iter().enumerate() {
        out.push_str(&format!("{load} || goto dls-retry-{}\n", i + 1));
        out.push_str("exit 0\n");
        out.push_str(&format!(":dls-retry-{}\n", i + 1));
        out.push_str(&format!(
            "echo disklessset: loading image {image} failed (attempt {}/{attempts}): retrying in {wait} s\n",
            i + 1
        ));
        out.push_str(&format!("sleep {wait} || echo\n"));
    }
    out.push_str(&format!("{load} || goto dls-failed\n"));
    out.push_str(":dls-failed\n");
    out.push_str(&format!(
        "echo disklessset: could not load the kernel and initramfs of image {image} from ${{dls-base}} after {attempts} attempts\n"
    ));
    out.push_str("exit 1\n");
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_retries_goto_existing_labels_only() {
        let t = load_with_retries("kernel k && initrd i && boot", "img");
        let labels: Vec<&str> = t.lines().filter_map(|l| l.strip_prefix(':')).collect();
        let mut gotos = 0;
        for l in t.lines() {
            if let Some((_, target)) = l.split_once("goto ") {
                gotos += 1;
                assert!(
                    labels.contains(&target.trim()),
                    "goto {target} has no label:\n{t}"
                );
            }
        }
        assert_eq!(gotos, LOAD_BACKOFF.len() + 1);
        assert_eq!(t.matches("kernel k && initrd i && boot").count(), 3);
        assert!(t.contains("sleep 2 || echo\n") && t.contains("sleep 4 || echo\n"));
        assert!(t.ends_with("after 3 attempts\nexit 1\n"), "{t}");
    }
}
