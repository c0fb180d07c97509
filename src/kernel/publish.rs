//! Publishing what a node boots from an image tree: its kernel (copied to the kernels
//! dir when missing or different) and its initramfs (own or dracut), built from the
//! tree's own modules. Shared by every module whose images boot a kernel.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::kernel;

/// What `initramfs NAME` built.
#[derive(Debug, Clone, Serialize)]
pub struct InitramfsReport {
    pub flavour: String,
    pub kernel: String,
    pub file: PathBuf,
    pub size_bytes: u64,
    pub seconds: f64,
    pub modules: usize,
}

/// Copies the tree's kernel to the kernels dir (atomically, only if missing or different).
pub fn publish_kernel(ctx: &Ctx, tree: &Path, kver: &str) -> Result<PathBuf> {
    let src = tree.join("boot").join(format!("vmlinuz-{kver}"));
    let dst = kernel::vmlinuz_path(&ctx.cfg, kver);
    if ctx.runner.dry_run() {
        ctx.runner
            .note(format!("copy {} to {}", src.display(), dst.display()));
        return Ok(dst);
    }
    let data = std::fs::read(&src).at(&src)?;
    if std::fs::read(&dst).map(|d| d == data).unwrap_or(false) {
        return Ok(dst);
    }
    fsutil::write_atomic(&dst, &data, 0o644)?;
    Ok(dst)
}

/// Builds the initramfs of `flavour` for `kver` from `tree` into the kernels dir.
pub fn build_initramfs(
    ctx: &Ctx,
    tree: &Path,
    kver: &str,
    flavour: &str,
) -> Result<InitramfsReport> {
    let file = ctx
        .cfg
        .kernels_dir
        .join(kernel::initramfs_name(flavour, kver)?);
    if !ctx.runner.dry_run() {
        fsutil::ensure_dir(&ctx.cfg.kernels_dir)?;
    }
    let (seconds, modules) = match flavour {
        "dracut" => (super::dracut::build(ctx, tree, kver, &file)?, 0),
        _ => {
            if ctx.runner.dry_run() {
                ctx.runner.note(format!(
                    "assemble the own initramfs {} (busybox, /init, modules of {kver})",
                    file.display()
                ));
                (0.0, 0)
            } else {
                let opts = super::own::OwnInitramfsOptions::new(tree, kver, &file);
                let rep = super::own::build_own_initramfs(&opts)
                    .map_err(|e| Error::Module(e.to_string()))?;
                (rep.build_time.as_secs_f64(), rep.module_count)
            }
        }
    };
    let size_bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    Ok(InitramfsReport {
        flavour: flavour.to_string(),
        kernel: kver.to_string(),
        file,
        size_bytes,
        seconds,
        modules,
    })
}
