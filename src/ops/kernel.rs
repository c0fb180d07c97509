//! Kernels: the list, `kernel set` (generic: the image's module renders the boot script
//! again) and `initramfs` (the image's module builds it).
use crate::boot::ipxe;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::kernel::{self, InitramfsReport, KernelInfo};
use crate::modules;
use crate::store::{self, lock, ImageRecord};

pub fn kernels(ctx: &Ctx) -> Result<Vec<KernelInfo>> {
    store::require_store(&ctx.cfg)?;
    kernel::list(&ctx.cfg)
}

/// Rewrites an image's boot script through its module (images that do not boot have none).
fn write_boot_script(ctx: &Ctx, rec: &ImageRecord) -> Result<()> {
    let Some(m) = modules::for_class(rec.image_class) else {
        return Ok(());
    };
    match m.boot_script(&ctx.cfg, rec)? {
        Some(text) => ipxe::write_boot_script(ctx, &rec.name, &text),
        None => Ok(()),
    }
}

/// `kernel set NAME VERSION`: refused unless that kernel has an initramfs.
pub fn kernel_set(ctx: &Ctx, name: &str, version: &str) -> Result<ImageRecord> {
    crate::names::image(name)?;
    crate::names::kernel(version)?;
    let version = version.strip_prefix("vmlinuz-").unwrap_or(version);
    let _l = lock::lock_image(&ctx.cfg, name, "kernel set")?;
    let mut rec = store::load(&ctx.cfg, name)?;
    let k = kernel::list(&ctx.cfg)?
        .into_iter()
        .find(|k| k.version == version)
        .ok_or_else(|| {
            Error::invalid(format!(
                "kernel {version} is not in {} (see `disklessset kernels`)",
                ctx.cfg.kernels_dir.display()
            ))
        })?;
    let flavour = rec
        .initramfs_flavour
        .clone()
        .unwrap_or_else(|| "own".into());
    let (fl, file) = k
        .initramfs
        .iter()
        .find(|(f, _)| *f == flavour)
        .or_else(|| k.initramfs.first())
        .cloned()
        .ok_or_else(|| {
            Error::invalid(format!(
                "kernel {version} has no initramfs: generate one first with `disklessset initramfs IMAGE` for an image carrying that kernel"
            ))
        })?;
    rec.kernel = Some(format!("vmlinuz-{version}"));
    rec.image = Some(file);
    rec.initramfs_flavour = Some(fl);
    if !ctx.runner.dry_run() {
        store::save(&ctx.cfg, &rec)?;
    }
    write_boot_script(ctx, &rec)?;
    Ok(rec)
}

/// `initramfs NAME [--flavour F]`: the image's module builds it (livenet: own or
/// dracut; NFS: own only).
pub fn initramfs(ctx: &Ctx, name: &str, flavour: Option<&str>) -> Result<InitramfsReport> {
    crate::names::image(name)?;
    store::require_store(&ctx.cfg)?;
    let rec = store::load(&ctx.cfg, name)?;
    let m = modules::for_class(rec.image_class).ok_or_else(|| {
        Error::invalid(format!(
            "image {name}: no module handles its class {}",
            rec.image_class.as_str()
        ))
    })?;
    m.initramfs(ctx, name, flavour)
}
