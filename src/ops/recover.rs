//! `recover`: cleans what crashes left store-wide.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::fsutil;
use crate::store::{self, lock, State};
use crate::sys::runner::Cmd;
use crate::sys::{mount, mountinfo, remove};

// ---------------------------------------------------------------- recover

/// What `recover` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    pub stale_locks: Vec<String>,
    /// Process groups dead operations left running, killed before unmounting.
    pub killed: Vec<String>,
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
    if !ctx.runner.dry_run() {
        rep.killed = lock::reap_dead(cfg)?;
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
