//! Customisation mounts and generations: the image as a writable overlay in the work
//! dir (`livenet mount`), repacked into a new generation when unmounted; rollback; the
//! compat layout's resize.
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{require_livenet, state_of, SizeSpec, WorkPaths};
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::pack::{self, generations};
use crate::store::{self, lock, ImageRecord, Layout, State};
use crate::sys::mount::{self, MountGuard, MountStack};
use crate::sys::mountinfo;
use crate::sys::remove::remove_tree;

/// Mounts the published squashfs read-only at `ro` (and, for compat, its rootfs.img at
/// `ro_ext4`); returns the guards (innermost last) and the lower tree.
pub fn mount_readonly(
    ctx: &Ctx,
    rec: &ImageRecord,
    ro: &Path,
    ro_ext4: &Path,
) -> Result<(MountStack, PathBuf)> {
    let img = generations::current_path(&ctx.cfg, &rec.name);
    if !ctx.runner.dry_run() && !img.is_file() {
        return Err(Error::WrongState {
            name: rec.name.clone(),
            state: "corrupted".into(),
            hint: format!("{} is missing; rebuild or `rollback` it", img.display()),
        });
    }
    let mut guards = MountStack::new();
    for d in [ro, ro_ext4] {
        if !ctx.runner.dry_run() {
            std::fs::create_dir_all(d).at(d)?;
        }
    }
    mount::mount(
        &ctx.runner,
        Some("squashfs"),
        &img.to_string_lossy(),
        ro,
        &["loop", "ro"],
    )?;
    guards.push(MountGuard::new(&ctx.runner, ro));
    let mut lower = ro.to_path_buf();
    if rec.layout == Some(Layout::Compat) {
        let inner = ro.join("LiveOS/rootfs.img");
        if !ctx.runner.dry_run() && !inner.is_file() {
            return Err(Error::invalid(format!(
                "image {}: compat layout but no LiveOS/rootfs.img inside {}",
                rec.name,
                img.display()
            )));
        }
        mount::mount(
            &ctx.runner,
            Some("ext4"),
            &inner.to_string_lossy(),
            ro_ext4,
            &["loop", "ro", "noload"],
        )?;
        guards.push(MountGuard::new(&ctx.runner, ro_ext4));
        lower = ro_ext4.to_path_buf();
    }
    Ok((guards, lower))
}

/// The Ansible chroot inventory line for a mounted tree.
pub fn inventory_line(mnt: &Path) -> String {
    format!(
        "{} ansible_connection=community.general.chroot ansible_python_interpreter=/usr/bin/python3\n",
        mnt.display()
    )
}

/// `livenet mount NAME`: the image becomes a writable tree at `<workdir>/NAME/mnt` with
/// /proc /sys /dev /run bound, and the Ansible inventory is written.
pub fn mount_image(ctx: &Ctx, name: &str) -> Result<PathBuf> {
    crate::names::image(name)?;
    let _l = lock::lock_image(&ctx.cfg, name, "livenet mount")?;
    let mut rec = require_livenet(ctx, name)?;
    match state_of(ctx, name)? {
        State::Created => {}
        State::Mounted => {
            return Err(Error::WrongState {
                name: name.into(),
                state: "mounted".into(),
                hint: format!(
                    "it is already mounted at {}",
                    WorkPaths::new(&ctx.cfg, name).mnt.display()
                ),
            })
        }
        s => {
            return Err(Error::WrongState {
                name: name.into(),
                state: s.to_string(),
                hint: "only a created image can be mounted".into(),
            })
        }
    }
    let w = WorkPaths::new(&ctx.cfg, name);
    // Leftovers of an earlier crashed mount are unmounted and cleared first.
    remove_tree(&ctx.runner, &w.root)?;
    let (mut guards, lower) = mount_readonly(ctx, &rec, &w.ro, &w.ro_ext4)?;
    let upper = w.rw.join("upper");
    let work = w.rw.join("work");
    if !ctx.runner.dry_run() {
        for d in [&upper, &work, &w.mnt, &w.inventory] {
            std::fs::create_dir_all(d).at(d)?;
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount::mount(&ctx.runner, Some("overlay"), "overlay", &w.mnt, &[&opts])?;
    guards.push(MountGuard::new(&ctx.runner, &w.mnt));
    for sys in ["proc", "sys", "dev", "run"] {
        let target = w.mnt.join(sys);
        if !ctx.runner.dry_run() {
            std::fs::create_dir_all(&target).at(&target)?;
        }
        mount::bind(&ctx.runner, Path::new(&format!("/{sys}")), &target, true)?;
    }
    if ctx.runner.dry_run() {
        ctx.runner
            .note(format!("write {}", w.inventory.join("host").display()));
    } else {
        fsutil::write_atomic(
            &w.inventory.join("host"),
            inventory_line(&w.mnt).as_bytes(),
            0o644,
        )?;
        rec.is_mounted = true;
        store::save(&ctx.cfg, &rec)?;
    }
    // Success: the mounts outlive this process, on purpose.
    guards.keep();
    Ok(w.mnt)
}

/// What `livenet unmount` did.
#[derive(Debug, Clone, Serialize)]
pub struct UnmountReport {
    /// The new generation, or None when nothing changed / changes were discarded.
    pub generation: Option<u32>,
    pub changed: bool,
    pub size_bytes: u64,
}

/// Does the overlay's upper dir hold any change?
fn upper_has_changes(upper: &Path) -> bool {
    std::fs::read_dir(upper)
        .map(|mut rd| rd.next().is_some())
        .unwrap_or(false)
}

/// `livenet unmount NAME`: repack the customised tree into a new generation (unless
/// `discard`), then take every mount down. Nothing is repacked if an unmount fails.
pub fn unmount_image(ctx: &Ctx, name: &str, discard: bool) -> Result<UnmountReport> {
    crate::names::image(name)?;
    let _l = lock::lock_image(&ctx.cfg, name, "livenet unmount")?;
    let mut rec = require_livenet(ctx, name)?;
    let w = WorkPaths::new(&ctx.cfg, name);
    let mounts = mountinfo::read()?;
    if !mounts.iter().any(|m| m.mount_point == w.mnt) {
        if rec.is_mounted && !ctx.runner.dry_run() {
            rec.is_mounted = false;
            store::save(&ctx.cfg, &rec)?;
        }
        remove_tree(&ctx.runner, &w.root)?;
        return Err(Error::WrongState {
            name: name.into(),
            state: "not mounted".into(),
            hint: "nothing to unmount (stale leftovers were cleaned)".into(),
        });
    }
    // 1. Take down what is bound inside the tree (proc, sys, dev, run, anything the
    //    admin mounted). If that fails, stop here: nothing is repacked.
    for m in mountinfo::below(&mounts, &w.mnt) {
        if m.mount_point != w.mnt {
            mount::umount(&ctx.runner, &m.mount_point)?;
        }
    }
    if !ctx.runner.dry_run() {
        if let Some(m) = mountinfo::below(&mountinfo::read()?, &w.mnt)
            .iter()
            .find(|m| m.mount_point != w.mnt)
        {
            return Err(Error::StillMounted {
                path: w.mnt.clone(),
                mount: m.mount_point.clone(),
            });
        }
    }
    let changed = ctx.runner.dry_run() || upper_has_changes(&w.rw.join("upper"));
    let mut report = UnmountReport {
        generation: None,
        changed,
        size_bytes: 0,
    };
    // 2. Repack from the merged tree (still mounted, now without the binds).
    if changed && !discard {
        let gen = repack(ctx, &mut rec, &w.mnt)?;
        report.generation = Some(gen);
        report.size_bytes = std::fs::metadata(generations::current_path(&ctx.cfg, name))
            .map(|m| m.len())
            .unwrap_or(0);
    }
    // 3. Overlay, then the read-only layers, then the work dir.
    remove_tree(&ctx.runner, &w.root)?;
    if !ctx.runner.dry_run() {
        rec.is_mounted = false;
        store::save(&ctx.cfg, &rec)?;
    }
    Ok(report)
}

/// Packs `tree` per the image's layout into a staged file and publishes it as the next
/// generation; the record (generation) is saved. Returns the new generation.
pub fn repack(ctx: &Ctx, rec: &mut ImageRecord, tree: &Path) -> Result<u32> {
    repack_at(ctx, rec, tree, crate::build::reproducible::epoch()?)
}

/// [`repack`] at a given `SOURCE_DATE_EPOCH` (a build's; a repack of a customised
/// tree takes the environment's or now). The package manifest of the tree is stored
/// with the new generation (build::pkglist).
pub fn repack_at(ctx: &Ctx, rec: &mut ImageRecord, tree: &Path, epoch: u64) -> Result<u32> {
    let dest = generations::current_path(&ctx.cfg, &rec.name);
    let staged = pack::staging_path(&dest);
    let epoch = Some(epoch);
    let started = std::time::Instant::now();
    let pack_it = || match rec.layout.unwrap_or(Layout::Native) {
        Layout::Native => pack::pack_native_at(ctx, tree, &staged, epoch),
        Layout::Compat => {
            let size = rec
                .livenet_size
                .unwrap_or_else(|| pack::min_size_mib(tree) + ctx.cfg.resize_headroom_mib);
            let scratch = ctx.cfg.image_workdir(&rec.name).join("pack");
            pack::pack_compat_at(ctx, tree, size, &scratch, &staged, epoch)
        }
    };
    // issue 12: nothing secret is published (the previous generation stays served).
    // The check reads the tree while mksquashfs packs it (issue 15: the two readers
    // overlap instead of adding up); the staged file is published only if it passed.
    let (check, res) = if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "check {} for private keys, password hashes and BMC passwords",
            tree.display()
        ));
        (Ok(()), pack_it())
    } else {
        let (cfg, name) = (&ctx.cfg, rec.name.as_str());
        std::thread::scope(|sc| {
            let checker =
                sc.spawn(move || crate::build::secrets_scan::check_publish(cfg, name, tree));
            let res = pack_it();
            let check = checker.join().unwrap_or_else(|_| {
                Err(Error::invalid(format!(
                    "the publish check of {name} panicked: nothing published"
                )))
            });
            (check, res)
        })
    };
    if let Err(e) = check.and(res) {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "publish {} as generation {} (rename)",
            dest.display(),
            rec.generation + 1
        ));
        return Ok(rec.generation + 1);
    }
    let packed = started.elapsed().as_secs_f64();
    let gen = generations::publish(&ctx.cfg, &rec.name, &staged, rec.generation)?;
    crate::build::pkglist::record_generation(ctx, &rec.name, tree)?;
    rec.generation = gen;
    store::save(&ctx.cfg, rec)?;
    rewrite_boot_ipxe(ctx, rec)?;
    // scripts/bench-pack.sh reads this line: the pack's own figures, same run.
    tracing::info!(
        target: "pack",
        "{}: generation {gen} packed in {packed:.3}s, published (sha256, fsync, rename, record) in {:.3}s",
        rec.name,
        started.elapsed().as_secs_f64() - packed
    );
    Ok(gen)
}

/// A new generation has a new digest: the boot script that carries it is rewritten
/// (when the image can boot yet: `create` writes it after its initramfs).
fn rewrite_boot_ipxe(ctx: &Ctx, rec: &ImageRecord) -> Result<()> {
    if rec.kernel.is_some() && rec.image.is_some() {
        super::boot::write_boot_ipxe(ctx, rec)?;
    }
    Ok(())
}

/// `rollback NAME`: the previous generation becomes current again.
pub fn rollback(ctx: &Ctx, name: &str) -> Result<u32> {
    crate::names::image(name)?;
    let _l = lock::lock_image(&ctx.cfg, name, "rollback")?;
    let mut rec = require_livenet(ctx, name)?;
    if state_of(ctx, name)? != State::Created {
        return Err(Error::WrongState {
            name: name.into(),
            state: state_of(ctx, name)?.to_string(),
            hint: "unmount it first (`livenet unmount`)".into(),
        });
    }
    if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "restore the generation before {} of {name}",
            rec.generation
        ));
        return Ok(rec.generation.saturating_sub(1));
    }
    let g = generations::rollback(&ctx.cfg, name, rec.generation)?;
    rec.generation = g;
    store::save(&ctx.cfg, &rec)?;
    rewrite_boot_ipxe(ctx, &rec)?;
    Ok(g)
}

/// What `livenet resize` did.
#[derive(Debug, Clone, Serialize)]
pub struct ResizeReport {
    pub old_mib: u64,
    pub new_mib: u64,
    pub content_mib: u64,
    pub min_mib: u64,
    pub generation: u32,
}

/// `livenet resize NAME SIZE`: grow or shrink `LiveOS/rootfs.img` (compat layout).
pub fn resize(ctx: &Ctx, name: &str, size: SizeSpec) -> Result<ResizeReport> {
    crate::names::image(name)?;
    let _l = lock::lock_image(&ctx.cfg, name, "livenet resize")?;
    let mut rec = require_livenet(ctx, name)?;
    if rec.layout != Some(Layout::Compat) {
        return Err(Error::invalid(format!(
            "image {name} has the native layout, which has no size to choose: a node's RAM holds the compressed image plus its writes (create it with --layout compat to size it)"
        )));
    }
    let st = state_of(ctx, name)?;
    if st != State::Created {
        return Err(Error::WrongState {
            name: name.into(),
            state: st.to_string(),
            hint: "unmount it first (`livenet unmount`)".into(),
        });
    }
    let w = WorkPaths::new(&ctx.cfg, name);
    remove_tree(&ctx.runner, &w.root)?;
    let (guards, lower) = mount_readonly(ctx, &rec, &w.ro, &w.ro_ext4)?;
    let content_mib = pack::content_bytes(&lower).div_ceil(1 << 20);
    let min_mib = pack::min_size_mib(&lower);
    let new_mib = match size {
        SizeSpec::Auto => min_mib.max(content_mib + ctx.cfg.resize_headroom_mib),
        SizeSpec::Mib(m) => m,
    };
    if new_mib < min_mib {
        drop(guards);
        return Err(Error::invalid(format!(
            "cannot resize {name} to {new_mib}M: its content needs at least {min_mib}M ({content_mib}M of files plus filesystem overhead)"
        )));
    }
    let old_mib = rec.livenet_size.unwrap_or(0);
    rec.livenet_size = Some(new_mib);
    let res = repack(ctx, &mut rec, &lower);
    guards.unmount()?;
    let generation = res?;
    remove_tree(&ctx.runner, &w.root)?;
    Ok(ResizeReport {
        old_mib,
        new_mib,
        content_mib,
        min_mib,
        generation,
    })
}
