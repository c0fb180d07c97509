//! The livenet module: squashfs images a node downloads into RAM over HTTP.
//!
//! Two layouts: **native** (the root tree is the squashfs; the node mounts it under a
//! tmpfs overlay, so its RAM cost is the compressed image plus its writes) and
//! **compat** (`LiveOS/rootfs.img`, an ext4 of `livenet_size`, the reference's layout,
//! bootable with the reference's dracut command line). Customisation mounts the image
//! as an overlay in the work dir; unmounting repacks into a new generation.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::kernel;
use crate::modules::Module;
use crate::ctx::Ctx;
use crate::pack::{self, generations};
use crate::store::{self, lock, ImageClass, ImageRecord, Layout, State};
use crate::sys::mount::{self, MountGuard, MountStack};
use crate::sys::mountinfo;
use crate::sys::remove::remove_tree;

pub struct Livenet;

impl Module for Livenet {
    fn name(&self) -> &'static str {
        "livenet"
    }
    fn description(&self) -> &'static str {
        "livenet images: a squashfs the node downloads into RAM over HTTP (native or compat layout)"
    }
    fn classes(&self) -> &'static [ImageClass] {
        &[ImageClass::LivenetImage]
    }
    fn actions(&self) -> &'static [&'static str] {
        &[
            "create",
            "mount",
            "unmount",
            "resize",
            "rollback",
            "initramfs",
            "kernel set",
        ]
    }
    /// The copied boot.ipxe names the source image: write the clone's own.
    fn clone_extra(&self, ctx: &Ctx, _src: &ImageRecord, dst: &mut ImageRecord) -> Result<()> {
        if dst.kernel.is_some() && dst.image.is_some() {
            write_boot_ipxe(ctx, dst)?;
        }
        Ok(())
    }
}

/// The work dir's parts for an image.
pub struct WorkPaths {
    pub root: PathBuf,
    /// squashfs mounted read-only
    pub ro: PathBuf,
    /// compat: LiveOS/rootfs.img mounted read-only
    pub ro_ext4: PathBuf,
    /// overlay upper and work dirs
    pub rw: PathBuf,
    /// the merged, writable tree (the reference's `mnt/`)
    pub mnt: PathBuf,
    pub inventory: PathBuf,
}

impl WorkPaths {
    pub fn new(cfg: &Config, name: &str) -> Self {
        let root = cfg.image_workdir(name);
        WorkPaths {
            ro: root.join("ro"),
            ro_ext4: root.join("ro-ext4"),
            rw: root.join("rw"),
            mnt: root.join("mnt"),
            inventory: root.join("inventory"),
            root,
        }
    }
}

fn require_livenet(ctx: &Ctx, name: &str) -> Result<ImageRecord> {
    let rec = store::load(&ctx.cfg, name)?;
    if rec.image_class != ImageClass::LivenetImage {
        return Err(Error::invalid(format!(
            "image {name} is a {} image, not a livenet image",
            rec.image_class.as_str()
        )));
    }
    Ok(rec)
}

fn state_of(ctx: &Ctx, name: &str) -> Result<State> {
    let mounts = mountinfo::read()?;
    Ok(store::info(&ctx.cfg, name, &mounts).state)
}

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
    let dest = generations::current_path(&ctx.cfg, &rec.name);
    let staged = pack::staging_path(&dest);
    let res = match rec.layout.unwrap_or(Layout::Native) {
        Layout::Native => pack::pack_native(ctx, tree, &staged),
        Layout::Compat => {
            let size = rec
                .livenet_size
                .unwrap_or_else(|| pack::min_size_mib(tree) + ctx.cfg.resize_headroom_mib);
            let scratch = ctx.cfg.image_workdir(&rec.name).join("pack");
            pack::pack_compat(ctx, tree, size, &scratch, &staged)
        }
    };
    if let Err(e) = res {
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
    let gen = generations::publish(&ctx.cfg, &rec.name, &staged, rec.generation)?;
    rec.generation = gen;
    store::save(&ctx.cfg, rec)?;
    Ok(gen)
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
    Ok(g)
}

/// A size request: a size in MiB or `auto` (content + configured headroom).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    Mib(u64),
    Auto,
}

impl SizeSpec {
    pub fn parse(s: &str) -> Result<SizeSpec> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(SizeSpec::Auto);
        }
        let mib = fsutil::parse_size_mib(s)?;
        if !(100..=51_200).contains(&mib) {
            return Err(Error::invalid(format!(
                "size {s}: livenet sizes go from 100M to 50G"
            )));
        }
        Ok(SizeSpec::Mib(mib))
    }
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

// ---------------------------------------------------------------- kernels & boot

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

/// Renders the image's `boot.ipxe`. `${dls-base}` is the boot tree's absolute URL: set
/// by the chain (the built-in server derives it from the request's Host), else the
/// configured `base_url`, else `http://${next-server}`. No fixed sleeps anywhere.
pub fn render_boot_ipxe(cfg: &Config, rec: &ImageRecord) -> Result<String> {
    let kver = rec
        .kernel_version()
        .ok_or_else(|| Error::invalid(format!("image {} has no kernel set", rec.name)))?;
    let initrd = rec.image.clone().ok_or_else(|| {
        Error::invalid(format!(
            "image {} has no initramfs: run `disklessset initramfs {}`",
            rec.name, rec.name
        ))
    })?;
    let rel = |p: &Path| -> String {
        p.strip_prefix(&cfg.web_root)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| p.display().to_string())
    };
    let kernels = rel(&cfg.kernels_dir);
    let images = rel(&cfg.images_dir);
    let fallback = cfg
        .base_url
        .clone()
        .unwrap_or_else(|| "http://${next-server}".to_string());
    let squash = format!("${{dls-base}}/{images}/{}/squashfs.img", rec.name);
    Ok(format!(
        "#!ipxe\n\
         # disklessset livenet image {name} (layout {layout}, initramfs {flavour})\n\
         isset ${{dls-base}} || set dls-base {fallback}\n\
         isset ${{dls-console}} || set dls-console console=tty0 console=ttyS0,115200n8\n\
         isset ${{dls-ip}} || set dls-ip ip=dhcp\n\
         echo disklessset: booting image {name} from ${{dls-base}}\n\
         kernel ${{dls-base}}/{kernels}/vmlinuz-{kver} initrd={initrd} {cmdline} ${{dls-ip}} ${{dls-console}} ${{dls-kernel-args}}\n\
         initrd ${{dls-base}}/{kernels}/{initrd}\n\
         boot\n",
        name = rec.name,
        layout = rec.layout.unwrap_or(Layout::Native).as_str(),
        flavour = rec.initramfs_flavour.as_deref().unwrap_or("own"),
        cmdline = kernel_cmdline(rec, &squash),
    ))
}

/// Writes `boot.ipxe` atomically.
pub fn write_boot_ipxe(ctx: &Ctx, rec: &ImageRecord) -> Result<()> {
    let text = render_boot_ipxe(&ctx.cfg, rec)?;
    let p = ctx.cfg.image_dir(&rec.name).join("boot.ipxe");
    if ctx.runner.dry_run() {
        ctx.runner.note(format!("write {}", p.display()));
        return Ok(());
    }
    fsutil::write_atomic(&p, text.as_bytes(), 0o644)
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
    match rec.image_class {
        ImageClass::LivenetImage => write_boot_ipxe(ctx, &rec)?,
        ImageClass::NfsStagingImage | ImageClass::NfsGoldenImage => {
            crate::modules::nfs::write_boot_ipxe(ctx, &rec)?
        }
        ImageClass::DemoImage => {}
    }
    Ok(rec)
}

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
        "dracut" => (kernel::dracut::build(ctx, tree, kver, &file)?, 0),
        _ => {
            if ctx.runner.dry_run() {
                ctx.runner.note(format!(
                    "assemble the own initramfs {} (busybox, /init, modules of {kver})",
                    file.display()
                ));
                (0.0, 0)
            } else {
                let opts = kernel::own::OwnInitramfsOptions::new(tree, kver, &file);
                let rep = kernel::own::build_own_initramfs(&opts)
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
        publish_kernel(ctx, &lower, &kver)?;
        build_initramfs(ctx, &lower, &kver, &flavour)
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

// ---------------------------------------------------------------- create

/// Options of `livenet create` (also what parameters files produce).
#[derive(Debug, Clone)]
pub struct LivenetCreate {
    pub name: String,
    pub distro: String,
    pub release: Option<String>,
    pub livenet_type: crate::store::LivenetType,
    pub layout: Layout,
    /// Compat layout only: the rootfs.img size (default auto).
    pub size: Option<SizeSpec>,
    /// `size` is a floor: when the content needs more, the rootfs.img grows to fit (plus
    /// the configured headroom) with a warning. Reference parameters files: their sizes
    /// were chosen for EL images and must keep working unchanged.
    pub size_at_least: bool,
    /// A crypt(3) SHA-512 hash (the clear password never reaches here).
    pub password_hash: Option<String>,
    /// Public key file; its text goes to /root/.ssh/authorized_keys.
    pub ssh_pub_key_file: Option<PathBuf>,
    pub selinux: bool,
    pub optimize: bool,
    pub packages: Vec<String>,
    pub mirror: Option<String>,
    /// `own` (default) or `dracut`.
    pub initramfs: String,
}

impl LivenetCreate {
    pub fn new(name: &str) -> Self {
        LivenetCreate {
            name: name.to_string(),
            distro: "debian".into(),
            release: None,
            livenet_type: crate::store::LivenetType::Core,
            layout: Layout::Native,
            size: None,
            size_at_least: false,
            password_hash: None,
            ssh_pub_key_file: None,
            selinux: false,
            optimize: false,
            packages: Vec::new(),
            mirror: None,
            initramfs: "own".into(),
        }
    }
}

/// What `livenet create` produced.
#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    pub name: String,
    pub kernel: String,
    pub squashfs_bytes: u64,
    pub tree_bytes: u64,
    pub build_seconds: f64,
    pub pack_seconds: f64,
    pub initramfs: InitramfsReport,
    pub on_tmpfs: bool,
}

/// `livenet create`: build the tree from repositories, set it up, pack it, publish its
/// kernel, build its initramfs, write boot.ipxe. On failure the image is left
/// `corrupted` (clearable) with nothing mounted.
pub fn create(ctx: &Ctx, o: &LivenetCreate) -> Result<CreateReport> {
    use crate::build;
    let cfg = &ctx.cfg;
    let dry = ctx.runner.dry_run();
    crate::names::image(&o.name)?;
    kernel::initramfs_name(&o.initramfs, "x")?;
    if o.layout == Layout::Native && o.size.is_some() {
        return Err(Error::invalid(
            "--size applies to the compat layout only: a native image needs no size (its RAM cost is the compressed image plus writes)",
        ));
    }
    let build::image::Checked {
        spec,
        release,
        ssh_key,
    } = build::image::check_inputs(
        ctx,
        &build::image::Inputs {
            distro: &o.distro,
            release: o.release.as_deref(),
            livenet_type: o.livenet_type,
            packages: &o.packages,
            optimize: o.optimize,
            mirror: o.mirror.as_deref(),
            ssh_pub_key_file: o.ssh_pub_key_file.as_deref(),
            password_hash: o.password_hash.as_deref(),
        },
    )?;
    let builder = build::builder_for(spec.distro);
    let total = 7;

    let creation = if dry {
        ctx.runner.note(format!(
            "create livenet image {} ({} {release}, {} type, {} layout)",
            o.name,
            o.distro,
            o.livenet_type.as_str(),
            o.layout.as_str()
        ));
        None
    } else {
        Some(store::begin_creation(cfg, &o.name, "livenet create")?)
    };
    let mut rec = ImageRecord::new(&o.name, ImageClass::LivenetImage);
    rec.livenet_type = Some(o.livenet_type);
    rec.layout = Some(o.layout);
    rec.distro = Some(o.distro.clone());
    rec.release_version = Some(release.clone());
    rec.password = o.password_hash.clone();
    rec.ssh_pub_key = o.ssh_pub_key_file.as_ref().map(|p| p.display().to_string());
    rec.selinux = o.selinux;
    rec.optimize = o.optimize;
    rec.additional_packages = o.packages.clone();
    rec.initramfs_flavour = Some(o.initramfs.clone());

    // 1. The build tree, in the work dir, on a tmpfs when RAM allows.
    ctx.progress.step(1, total, "prepare the build directory");
    let work = cfg.image_workdir(&o.name);
    let build::image::BuildDir {
        tree,
        guard,
        on_tmpfs,
    } = build::image::prepare_build_dir(ctx, &work, o.livenet_type)?;

    // 2. Packages from the repositories.
    ctx.progress.step(
        2,
        total,
        &format!(
            "install {} {release} ({}) with {}",
            o.distro,
            o.livenet_type.as_str(),
            builder.tool()
        ),
    );
    let t = std::time::Instant::now();
    builder.build(ctx, &spec, &tree)?;
    let build_seconds = t.elapsed().as_secs_f64();

    // 3. Password, key, os-release, network, console, ready unit.
    ctx.progress.step(
        3,
        total,
        "set the image up (password, ssh key, os-release, console)",
    );
    let kver = if dry {
        "KVER".to_string()
    } else {
        build::kernel_version(&tree)?
    };
    let mut setup = build::SetupSpec::new(&o.name);
    setup.password_hash = o.password_hash.clone();
    setup.ssh_pub_key = ssh_key;
    setup.selinux = o.selinux;
    setup.kernel = Some(kver.clone());
    setup.generation = Some(1);
    if dry {
        ctx.runner.note(format!(
            "set up {}: root password hash, ssh key, os-release tags, networkd, serial getty, ready unit",
            tree.display()
        ));
    } else {
        build::setup_tree(ctx, &tree, &setup)?;
    }
    let tree_bytes = if dry { 0 } else { pack::content_bytes(&tree) };

    // 4. The kernel, next to the others.
    ctx.progress
        .step(4, total, &format!("publish kernel {kver}"));
    publish_kernel(ctx, &tree, &kver)?;
    rec.kernel = Some(format!("vmlinuz-{kver}"));

    // 5. The squashfs, as generation 1.
    ctx.progress.step(
        5,
        total,
        &format!(
            "pack the {} layout ({} level {})",
            o.layout.as_str(),
            cfg.compression.as_str(),
            cfg.compression_level
        ),
    );
    if o.layout == Layout::Compat {
        rec.livenet_size = Some(match o.size.unwrap_or(SizeSpec::Auto) {
            SizeSpec::Mib(m) if o.size_at_least && !dry => {
                let min = pack::min_size_mib(&tree);
                if m < min {
                    let grown = min + cfg.resize_headroom_mib;
                    tracing::warn!(
                        "image {}: a size of {m}M is too small for its content (at least {min}M): its rootfs.img gets {grown}M",
                        o.name
                    );
                    grown
                } else {
                    m
                }
            }
            SizeSpec::Mib(m) => m,
            SizeSpec::Auto => pack::min_size_mib(&tree) + cfg.resize_headroom_mib,
        });
    }
    let t = std::time::Instant::now();
    repack(ctx, &mut rec, &tree)?;
    let pack_seconds = t.elapsed().as_secs_f64();

    // 6. The initramfs, from the image's own modules.
    ctx.progress
        .step(6, total, &format!("build the {} initramfs", o.initramfs));
    let initramfs = build_initramfs(ctx, &tree, &kver, &o.initramfs)?;
    rec.image = initramfs
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());

    // 7. boot.ipxe, the record, clean up.
    ctx.progress
        .step(7, total, "write boot.ipxe and image_data.yml");
    write_boot_ipxe(ctx, &rec)?;
    if let Some(g) = guard {
        g.unmount()?;
    }
    remove_tree(&ctx.runner, &work)?;
    let squashfs_bytes = std::fs::metadata(generations::current_path(cfg, &o.name))
        .map(|m| m.len())
        .unwrap_or(0);
    if let Some(c) = creation {
        store::save(cfg, &rec)?;
        c.finish()?;
    }
    Ok(CreateReport {
        name: o.name.clone(),
        kernel: kver,
        squashfs_bytes,
        tree_bytes,
        build_seconds,
        pack_seconds,
        initramfs,
        on_tmpfs,
    })
}
