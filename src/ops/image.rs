//! The generic image verbs: list, show, remove, clear, clone (what every module's
//! images share; a module adds its own part through the `Module` trait).
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::modules;
use crate::store::{self, lock, ImageInfo, ImageRecord, State};
use crate::sys::runner::{Cmd, Runner};
use crate::sys::{mount, mountinfo, remove};

// ---------------------------------------------------------------- list / show

pub fn list(ctx: &Ctx) -> Result<Vec<ImageInfo>> {
    store::require_store(&ctx.cfg)?;
    store::list(&ctx.cfg)
}

pub fn show(ctx: &Ctx, name: &str) -> Result<ImageInfo> {
    crate::names::image(name)?;
    store::require_store(&ctx.cfg)?;
    if !store::names(&ctx.cfg)?.iter().any(|n| n == name) {
        return Err(Error::NoSuchImage(name.to_string()));
    }
    let mounts = mountinfo::read()?;
    let mut info = store::info(&ctx.cfg, name, &mounts);
    info.build = super::rebuild::build_info(ctx, name);
    Ok(info)
}

// ---------------------------------------------------------------- remove / clear

/// Every path that belongs to an image, deepest concerns first: its work dir, what its
/// module owns elsewhere, its image dir.
fn image_paths(cfg: &Config, name: &str, rec: Option<&ImageRecord>) -> Vec<PathBuf> {
    let mut v = vec![cfg.image_workdir(name)];
    match rec.and_then(|r| modules::for_class(r.image_class).map(|m| (m, r))) {
        Some((m, r)) => v.extend(m.owned_paths(cfg, r)),
        None => {
            for m in modules::registry() {
                v.extend(m.candidate_paths(cfg, name));
            }
        }
    }
    v.push(cfg.image_dir(name));
    v
}

/// The paths `remove`/`clear` of image `name` would delete (its work dir, what its module
/// owns elsewhere, its image dir): what a confirmation must name.
pub fn removal_paths(cfg: &Config, name: &str) -> Vec<PathBuf> {
    let rec = store::load(cfg, name).ok();
    image_paths(cfg, name, rec.as_ref())
}

/// Unmounts everything below every path of the image, then checks nothing stays.
fn unmount_all(ctx: &Ctx, paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        mount::umount_below(&ctx.runner, p)?;
    }
    if ctx.runner.dry_run() {
        return Ok(());
    }
    for p in paths {
        if let Some(m) = mountinfo::anything_below(p)? {
            return Err(Error::StillMounted {
                path: p.clone(),
                mount: m,
            });
        }
    }
    Ok(())
}

fn remove_paths(ctx: &Ctx, name: &str, paths: &[PathBuf]) -> Result<()> {
    unmount_all(ctx, paths)?;
    // The record goes first: a crash from here on leaves a `corrupted` image that
    // `clear` finishes, never a half-removed image that looks fine.
    let data = ctx.cfg.image_data_file(name);
    if ctx.runner.dry_run() {
        ctx.runner.note(format!("remove {}", data.display()));
    } else if data.exists() {
        std::fs::remove_file(&data).at(&data)?;
    }
    for p in paths {
        remove::remove_tree(&ctx.runner, p)?;
    }
    Ok(())
}

/// Removes a created (or mounted) image and everything it owns.
pub fn remove(ctx: &Ctx, name: &str) -> Result<()> {
    crate::names::image(name)?;
    store::require_store(&ctx.cfg)?;
    let _l = lock::lock_image(&ctx.cfg, name, "remove")?;
    let info = show(ctx, name)?;
    match info.state {
        State::Created | State::Mounted => {}
        State::InCreation | State::Corrupted => {
            return Err(Error::WrongState {
                name: name.into(),
                state: info.state.to_string(),
                hint: format!("use `disklessset clear {name}` to force it out"),
            })
        }
    }
    let rec = info.record.ok_or_else(|| Error::NoSuchImage(name.into()))?;
    let module = modules::for_class(rec.image_class);
    if let Some(m) = &module {
        m.check_remove(ctx, &rec)?;
    }
    let paths = image_paths(&ctx.cfg, name, Some(&rec));
    remove_paths(ctx, name, &paths)?;
    if let Some(m) = &module {
        m.after_remove(ctx, &rec)?;
    }
    remove_secrets(ctx, name)?;
    tracing::info!("removed image {name}");
    Ok(())
}

/// Forces out a corrupted or stuck image: its mounts, work dir, owned trees, marker.
pub fn clear(ctx: &Ctx, name: &str) -> Result<()> {
    crate::names::image(name)?;
    store::require_store(&ctx.cfg)?;
    if !store::names(&ctx.cfg)?.iter().any(|n| n == name) && !ctx.cfg.image_workdir(name).exists() {
        return Err(Error::NoSuchImage(name.to_string()));
    }
    let _l = lock::lock_image(&ctx.cfg, name, "clear").map_err(|e| match e {
        Error::Locked { pid, operation, .. } => Error::invalid(format!(
            "image {name} is locked by pid {pid} ({operation}): that process is alive; stop it (kill {pid}) before clearing"
        )),
        e => e,
    })?;
    let rec = store::load(&ctx.cfg, name).ok();
    let paths = image_paths(&ctx.cfg, name, rec.as_ref());
    remove_paths(ctx, name, &paths)?;
    if let Some(r) = &rec {
        if let Some(m) = modules::for_class(r.image_class) {
            m.after_remove(ctx, r)?;
        }
    }
    remove_secrets(ctx, name)?;
    if !ctx.runner.dry_run() {
        store::drop_marker(&ctx.cfg, name)?;
    }
    tracing::info!("cleared image {name}");
    Ok(())
}

// ---------------------------------------------------------------- clone

pub fn clone(ctx: &Ctx, src: &str, dst: &str) -> Result<ImageRecord> {
    crate::names::image(src)?;
    crate::names::image(dst)?;
    store::require_store(&ctx.cfg)?;
    let _l = lock::lock_image(&ctx.cfg, src, &format!("clone to {dst}"))?;
    let info = show(ctx, src)?;
    if !matches!(info.state, State::Created | State::Mounted) {
        return Err(Error::WrongState {
            name: src.into(),
            state: info.state.to_string(),
            hint: "only a created image can be cloned".into(),
        });
    }
    let src_rec = info.record.ok_or_else(|| Error::NoSuchImage(src.into()))?;
    if ctx.runner.dry_run() {
        ctx.runner
            .note(format!("create image {dst} as a copy of {src}"));
    }
    let creation = if ctx.runner.dry_run() {
        None
    } else {
        Some(store::begin_creation(
            &ctx.cfg,
            dst,
            &format!("clone of {src}"),
        )?)
    };
    let src_dir = ctx.cfg.image_dir(src);
    let dst_dir = ctx.cfg.image_dir(dst);
    copy_dir_contents(&ctx.runner, &src_dir, &dst_dir, &["image_data.yml"])?;
    let mut rec = src_rec.clone();
    rec.name = dst.to_string();
    rec.is_mounted = false;
    rec.creation_date = Some(store::record::today());
    if let Some(m) = modules::for_class(src_rec.image_class) {
        m.clone_extra(ctx, &src_rec, &mut rec)?;
    }
    if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "copy the secrets of {src} (root hash, authorized keys) to {}",
            store::secrets::image_dir(&ctx.cfg, dst).display()
        ));
    } else {
        store::secrets::copy_image_secrets(&ctx.cfg, src, dst)?;
    }
    if let Some(c) = creation {
        store::save(&ctx.cfg, &rec)?;
        c.finish()?;
    }
    Ok(rec)
}

/// Removes an image's secrets dir (issue 12) with the image.
fn remove_secrets(ctx: &Ctx, name: &str) -> Result<()> {
    let dir = store::secrets::image_dir(&ctx.cfg, name);
    if ctx.runner.dry_run() {
        if dir.exists() {
            ctx.runner.note(format!("remove {}", dir.display()));
        }
        return Ok(());
    }
    store::secrets::remove_image_secrets(&ctx.cfg, name)
}

/// Copies the entries of `src` into `dst` (reflinks where the filesystem allows), skipping
/// the names in `skip`. Never crosses into other filesystems.
pub fn copy_dir_contents(r: &Runner, src: &Path, dst: &Path, skip: &[&str]) -> Result<()> {
    if !r.dry_run() {
        fsutil::ensure_dir(dst)?;
    }
    let rd = std::fs::read_dir(src).at(src)?;
    for e in rd {
        let e = e.at(src)?;
        let n = e.file_name();
        let ns = n.to_string_lossy();
        if skip.contains(&ns.as_ref()) || ns.starts_with(fsutil::TMP_PREFIX) {
            continue;
        }
        r.run(
            &Cmd::new("cp")
                .package("coreutils")
                .arg("-a")
                .arg("--reflink=auto")
                .arg("--one-file-system")
                .arg(e.path())
                .arg(dst.join(&n)),
        )?;
    }
    Ok(())
}
