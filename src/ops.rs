//! One function per user action: what the TUI and the CLI both call. Nothing here knows
//! a terminal exists; long operations report progress through `Ctx::progress`.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
pub use crate::ctx::{Ctx, Progress, ProgressEvent};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::kernel::{self, KernelInfo};
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
    Ok(store::info(&ctx.cfg, name, &mounts))
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
    if let Some(c) = creation {
        store::save(&ctx.cfg, &rec)?;
        c.finish()?;
    }
    Ok(rec)
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

// ---------------------------------------------------------------- recover

/// What `recover` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    pub stale_locks: Vec<String>,
    pub unmounted: Vec<PathBuf>,
    pub loop_devices: Vec<String>,
    pub temp_files: Vec<PathBuf>,
    /// Images left corrupted: `clear NAME` removes them.
    pub corrupted: Vec<String>,
}

/// Cleans what crashes left behind, store-wide: stale locks, leaked mounts (not the
/// ones of an image mounted on purpose), loop devices, temp files.
pub fn recover(ctx: &Ctx) -> Result<RecoverReport> {
    store::require_store(&ctx.cfg)?;
    let cfg = &ctx.cfg;
    let _store = lock::lock_store(cfg, "recover")?;
    let mut rep = RecoverReport::default();
    // Locks of live operations are left alone; only dead holders are cleared.
    if !ctx.runner.dry_run() {
        rep.stale_locks = lock::clear_stale(cfg)?
            .into_iter()
            .map(|(n, i)| format!("{n} (pid {} {})", i.pid, i.operation))
            .collect();
    }
    let mounts = mountinfo::read()?;
    // Leaked mounts under the work dir: everything but a purposely mounted image's mnt.
    let mut keep: Vec<PathBuf> = Vec::new();
    let mut busy: Vec<PathBuf> = Vec::new();
    for n in store::names(cfg)? {
        let info = store::info(cfg, &n, &mounts);
        if info.holder.is_some() {
            busy.push(cfg.image_workdir(&n));
            continue;
        }
        if info.state == State::Corrupted {
            rep.corrupted.push(n.clone());
        }
        if info.record.as_ref().map(|r| r.is_mounted).unwrap_or(false) {
            keep.push(cfg.image_workdir(&n).join("mnt"));
        }
    }
    let leaked: Vec<PathBuf> = mountinfo::below(&mounts, &cfg.work_dir)
        .into_iter()
        .map(|m| m.mount_point.clone())
        .filter(|p| !keep.iter().any(|k| p.starts_with(k)))
        .filter(|p| !busy.iter().any(|b| p.starts_with(b)))
        .collect();
    for p in leaked {
        mount::umount(&ctx.runner, &p)?;
        rep.unmounted.push(p);
    }
    rep.loop_devices = detach_store_loops(ctx, &busy)?;
    rep.temp_files = remove_temp_files(ctx)?;
    rep.temp_files.extend(remove_exec_dirs(ctx)?);
    Ok(rep)
}

/// Loop devices backed by files of the store that nothing has mounted.
fn detach_store_loops(ctx: &Ctx, busy: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Ok(out);
    };
    let mounts = mountinfo::read()?;
    let roots = [
        ctx.cfg.images_dir.clone(),
        ctx.cfg.work_dir.clone(),
        ctx.cfg.kernels_dir.clone(),
    ];
    for e in rd.flatten() {
        let dev = e.file_name().to_string_lossy().into_owned();
        if !dev.starts_with("loop") {
            continue;
        }
        let bf = e.path().join("loop/backing_file");
        let Ok(backing) = std::fs::read_to_string(&bf) else {
            continue;
        };
        let backing = PathBuf::from(backing.trim().trim_end_matches(" (deleted)"));
        if !roots.iter().any(|r| backing.starts_with(r))
            || busy.iter().any(|b| backing.starts_with(b))
        {
            continue;
        }
        let devpath = format!("/dev/{dev}");
        if mounts.iter().any(|m| m.source == devpath) {
            continue;
        }
        ctx.runner
            .run(&Cmd::new("losetup").package("mount").arg("-d").arg(&devpath))?;
        out.push(format!("{devpath} ({})", backing.display()));
    }
    Ok(out)
}

/// Scratch dirs of `exec`/`shell` runs whose process is gone (`<work_dir>/.exec-NAME-PID`).
fn remove_exec_dirs(ctx: &Ctx) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&ctx.cfg.work_dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = n.strip_prefix(".exec-") else {
            continue;
        };
        let pid: i32 = rest
            .rsplit('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid > 0 && Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        remove::remove_tree(&ctx.runner, &e.path())?;
        out.push(e.path());
    }
    Ok(out)
}

/// Temp files of dead processes (`.disklessset-tmp.PID.*`) in the store's directories.
fn remove_temp_files(ctx: &Ctx) -> Result<Vec<PathBuf>> {
    let cfg = &ctx.cfg;
    let mut out = Vec::new();
    // (root, depth): the NFS dirs hold whole trees, so only their top level is looked at
    // (where an interrupted golden copy or clone leaves its temp tree).
    let roots = [
        (cfg.images_dir.clone(), 3),
        (cfg.kernels_dir.clone(), 3),
        (cfg.nodes_ipxe_dir.clone(), 3),
        (cfg.state_dir.clone(), 3),
        (cfg.web_root.clone(), 3),
        (cfg.nfs_staging_dir.clone(), 1),
        (cfg.nfs_golden_dir.clone(), 1),
        (cfg.nfs_nodes_dir.clone(), 2),
    ];
    for (root, depth) in roots {
        if !root.is_dir() {
            continue;
        }
        for e in walkdir::WalkDir::new(&root)
            .max_depth(depth)
            .same_file_system(true)
            .into_iter()
            .flatten()
        {
            let n = e.file_name().to_string_lossy();
            let Some(rest) = n.strip_prefix(fsutil::TMP_PREFIX) else {
                continue;
            };
            let pid: i32 = rest
                .split('.')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue; // its writer is still running
            }
            let p = e.path().to_path_buf();
            if !out.contains(&p) {
                remove::remove_tree(&ctx.runner, &p)?;
                out.push(p);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- kernels / modules

pub fn kernels(ctx: &Ctx) -> Result<Vec<KernelInfo>> {
    store::require_store(&ctx.cfg)?;
    kernel::list(&ctx.cfg)
}

pub fn module_infos() -> Vec<modules::ModuleInfo> {
    modules::infos()
}

// ---------------------------------------------------------------- params / inside

/// `create --params FILE` (see [`crate::params`]).
pub use crate::params::{create_from_params, ParamsOptions, ParamsReport};

/// `ansible`, `exec`, `shell` (see [`crate::inside`]).
pub use crate::inside::{ansible, exec, shell, AnsibleOptions, AnsibleReport, ExecOutcome};
