//! The NFS module: staging images (a root tree under `nfs_staging_dir`, customised in
//! place), golden images (a frozen copy under `nfs_golden_dir` that nodes boot from)
//! and per-node directories that cost what the node keeps, not a copy of the image.
//!
//! A node of a golden image mounts the golden tree read-only over NFS under a tmpfs
//! overlay (its writes stay in its RAM: they never reach the golden tree or another
//! node), and bind-mounts the paths it must keep across reboots (`nfs_persist_paths`:
//! /var/log, /etc/ssh with its own host keys, ...) from its own directory
//! `nfs_nodes_dir/GOLDEN/NODE`, exported read-write to that node only. The initramfs
//! seeds each path from the image on first boot (`dl.persist=`, `dl.persist_paths=`).
//! Adding a node creates an empty directory and one export: no copy.
pub mod exports;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::boot::ipxe::{self, ImageScript};
use crate::build::image::{self as bi, BuildOptions};
use crate::cluster::inventory::Inventory;
use crate::cluster::nodeset;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::kernel::{self, InitramfsReport};
use crate::modules::Module;
use crate::store::{self, lock, ImageClass, ImageRecord, State};
use crate::sys::mountinfo;
use crate::sys::remove::remove_tree;
use crate::sys::runner::Cmd;

pub use exports::ExportsReport;

pub struct Nfs;

impl Module for Nfs {
    fn name(&self) -> &'static str {
        "nfs"
    }
    fn description(&self) -> &'static str {
        "NFS images: staging trees, golden copies nodes boot read-only, per-node state"
    }
    fn classes(&self) -> &'static [ImageClass] {
        &[ImageClass::NfsStagingImage, ImageClass::NfsGoldenImage]
    }
    fn actions(&self) -> &'static [&'static str] {
        &[
            "staging create",
            "golden create",
            "nodes add",
            "nodes remove",
            "nodes list",
        ]
    }
    fn owned_paths(&self, cfg: &Config, rec: &ImageRecord) -> Vec<PathBuf> {
        match rec.image_class {
            ImageClass::NfsStagingImage => vec![staging_tree(cfg, &rec.name)],
            ImageClass::NfsGoldenImage => {
                vec![nodes_root(cfg, &rec.name), golden_tree(cfg, &rec.name)]
            }
            _ => Vec::new(),
        }
    }
    fn candidate_paths(&self, cfg: &Config, name: &str) -> Vec<PathBuf> {
        vec![
            nodes_root(cfg, name),
            golden_tree(cfg, name),
            staging_tree(cfg, name),
        ]
    }
    fn clone_extra(&self, ctx: &Ctx, src: &ImageRecord, dst: &mut ImageRecord) -> Result<()> {
        let (from, to) = match src.image_class {
            ImageClass::NfsStagingImage => (
                staging_tree(&ctx.cfg, &src.name),
                staging_tree(&ctx.cfg, &dst.name),
            ),
            ImageClass::NfsGoldenImage => (
                golden_tree(&ctx.cfg, &src.name),
                golden_tree(&ctx.cfg, &dst.name),
            ),
            _ => return Ok(()),
        };
        // Nodes belong to the source image (their state is theirs): a clone has none.
        dst.nodes = None;
        copy_tree(ctx, &from, &to)?;
        retag_os_release(ctx, &to, &dst.name)?;
        write_boot_ipxe(ctx, dst)?;
        if !ctx.runner.dry_run() {
            // The exports read the records: the clone's is saved by the caller next;
            // save it now so the refresh sees it.
            store::save(&ctx.cfg, dst)?;
        }
        exports::refresh(ctx)?;
        Ok(())
    }
    fn after_remove(&self, ctx: &Ctx, _rec: &ImageRecord) -> Result<()> {
        exports::refresh(ctx).map(|_| ())
    }
    fn boot_script(&self, cfg: &Config, rec: &ImageRecord) -> Result<Option<String>> {
        render_boot_ipxe(cfg, rec).map(Some)
    }
    fn initramfs(&self, ctx: &Ctx, name: &str, flavour: Option<&str>) -> Result<InitramfsReport> {
        initramfs(ctx, name, flavour)
    }
}

pub fn staging_tree(cfg: &Config, name: &str) -> PathBuf {
    cfg.nfs_staging_dir.join(name)
}

pub fn golden_tree(cfg: &Config, name: &str) -> PathBuf {
    cfg.nfs_golden_dir.join(name)
}

/// Where the nodes of golden image `name` keep their own state.
pub fn nodes_root(cfg: &Config, name: &str) -> PathBuf {
    cfg.nfs_nodes_dir.join(name)
}

/// The tree an NFS image's nodes mount.
pub fn tree_of(cfg: &Config, rec: &ImageRecord) -> Option<PathBuf> {
    match rec.image_class {
        ImageClass::NfsStagingImage => Some(staging_tree(cfg, &rec.name)),
        ImageClass::NfsGoldenImage => Some(golden_tree(cfg, &rec.name)),
        _ => None,
    }
}

/// `cp -a --reflink=auto --one-file-system FROM TO` into a temp name, then a rename:
/// a crash never leaves a half tree under the final name.
fn copy_tree(ctx: &Ctx, from: &Path, to: &Path) -> Result<()> {
    if !ctx.runner.dry_run() {
        if !from.is_dir() {
            return Err(Error::invalid(format!(
                "{} is missing: the source image's tree is gone (clear it)",
                from.display()
            )));
        }
        if to.exists() {
            return Err(Error::invalid(format!(
                "{} already exists: remove it by hand or choose another name",
                to.display()
            )));
        }
    }
    let parent = to
        .parent()
        .ok_or_else(|| Error::invalid(format!("{} has no parent", to.display())))?;
    let fname = to
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(
        "{}{}.{fname}",
        fsutil::TMP_PREFIX,
        std::process::id()
    ));
    if !ctx.runner.dry_run() {
        fsutil::ensure_dir(parent)?;
        remove_tree(&ctx.runner, &tmp)?;
    }
    ctx.runner.run(
        &Cmd::new("cp")
            .package("coreutils")
            .arg("-a")
            .arg("--reflink=auto")
            .arg("--one-file-system")
            .arg(from)
            .arg(&tmp),
    )?;
    if ctx.runner.dry_run() {
        ctx.runner
            .note(format!("rename {} to {}", tmp.display(), to.display()));
        return Ok(());
    }
    std::fs::rename(&tmp, to).at(to)?;
    fsutil::sync_dir(parent)
}

/// Rewrites the image name in a copied tree's os-release (the boot marker and
/// `DISKLESSSET_IMAGE_NAME` tell which image a node runs).
fn retag_os_release(ctx: &Ctx, tree: &Path, name: &str) -> Result<()> {
    use crate::build::tree as t;
    if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "set DISKLESSSET_IMAGE_NAME={name} in {}",
            tree.display()
        ));
        return Ok(());
    }
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        if std::fs::symlink_metadata(tree.join(rel)).is_ok_and(|m| m.file_type().is_symlink()) {
            continue; // the file it points to is handled on its own
        }
        let Some(old) = t::read(tree, rel)? else {
            continue;
        };
        if !old.contains("DISKLESSSET_IMAGE_NAME=") {
            continue;
        }
        let new: String = old
            .lines()
            .map(|l| {
                if l.starts_with("DISKLESSSET_IMAGE_NAME=") {
                    format!("DISKLESSSET_IMAGE_NAME=\"{name}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        t::write(
            &ctx.runner,
            tree,
            rel,
            new.as_bytes(),
            0o644,
            "os-release image name",
        )?;
    }
    Ok(())
}

fn require_class(ctx: &Ctx, name: &str, class: ImageClass) -> Result<ImageRecord> {
    let rec = store::load(&ctx.cfg, name)?;
    if rec.image_class != class {
        return Err(Error::invalid(format!(
            "image {name} is a {} image, not an {} image",
            rec.image_class.as_str(),
            class.as_str()
        )));
    }
    let st = store::info(&ctx.cfg, name, &mountinfo::read()?).state;
    if !matches!(st, State::Created | State::Mounted) {
        return Err(Error::WrongState {
            name: name.into(),
            state: st.to_string(),
            hint: "only a created image can be used".into(),
        });
    }
    Ok(rec)
}

// ---------------------------------------------------------------- boot.ipxe

/// The kernel command line an NFS image's nodes boot with.
pub fn kernel_cmdline(cfg: &Config, rec: &ImageRecord) -> Result<String> {
    let tree = tree_of(cfg, rec)
        .ok_or_else(|| Error::invalid(format!("image {} is not an NFS image", rec.name)))?;
    let mut args = vec![format!("root=nfs:${{dls-nfs-server}}:{}", tree.display())];
    if let Some(o) = &cfg.nfs_mount_options {
        args.push(format!("dl.nfs_opts={o}"));
    }
    if rec.image_class == ImageClass::NfsGoldenImage {
        args.push("${dls-persist}".into());
    }
    args.push(format!("selinux={}", u8::from(rec.selinux)));
    // The ready marker names the image it booted from this (clones included).
    args.push(format!("disklessset.image={}", rec.name));
    Ok(args.join(" "))
}

/// Renders an NFS image's `boot.ipxe`. The NFS server is `${dls-nfs-server}` (set by
/// the chain), else the config's `nfs_server`, else the DHCP next-server. A golden
/// image's node (`${dls-node}`, set by bootset's node script) gets its own directory
/// for the persistent paths.
pub fn render_boot_ipxe(cfg: &Config, rec: &ImageRecord) -> Result<String> {
    let server = cfg
        .nfs_server
        .clone()
        .unwrap_or_else(|| "${next-server}".to_string());
    let kind = match rec.image_class {
        ImageClass::NfsGoldenImage => "golden",
        _ => "staging",
    };
    let mut prelude = format!("isset ${{dls-nfs-server}} || set dls-nfs-server {server}\n");
    if rec.image_class == ImageClass::NfsGoldenImage {
        prelude.push_str(&format!(
            "isset ${{dls-node}} && goto dls-persist || echo disklessset: no dls-node set (boot through bootset): nothing of this node persists\n\
             goto dls-boot\n\
             :dls-persist\n\
             set dls-persist dl.persist=nfs:${{dls-nfs-server}}:{nodes}/${{dls-node}} dl.persist_paths={paths}\n\
             :dls-boot\n",
            nodes = nodes_root(cfg, &rec.name).display(),
            paths = cfg.nfs_persist_paths.join(","),
        ));
    }
    ipxe::render_image(
        cfg,
        &ImageScript {
            comment: format!(
                "disklessset NFS {kind} image {} (initramfs {})",
                rec.name,
                rec.initramfs_flavour.as_deref().unwrap_or("own")
            ),
            prelude,
            echo: format!(
                "disklessset: booting NFS image {} from ${{dls-nfs-server}}",
                rec.name
            ),
            cmdline: kernel_cmdline(cfg, rec)?,
            rec,
        },
        "recreate it (nfs staging create)",
    )
}

/// Writes the image's `boot.ipxe`.
pub fn write_boot_ipxe(ctx: &Ctx, rec: &ImageRecord) -> Result<()> {
    ipxe::write_boot_script(ctx, &rec.name, &render_boot_ipxe(&ctx.cfg, rec)?)
}

// ---------------------------------------------------------------- staging create

/// Options of `nfs staging create` (the build options of `livenet create`).
#[derive(Debug, Clone, PartialEq)]
pub struct StagingCreate {
    pub name: String,
    pub build: BuildOptions,
    /// `own` (the only flavour that boots an NFS root here).
    pub initramfs: String,
}

impl StagingCreate {
    pub fn new(name: &str) -> Self {
        StagingCreate {
            name: name.to_string(),
            build: BuildOptions::default(),
            initramfs: "own".into(),
        }
    }
}

/// What `nfs staging create` produced.
#[derive(Debug, Clone, Serialize)]
pub struct StagingReport {
    pub name: String,
    pub tree: PathBuf,
    pub kernel: String,
    pub tree_bytes: u64,
    pub build_seconds: f64,
    pub initramfs: InitramfsReport,
    pub exports: ExportsReport,
}

/// `nfs staging create`: build the tree (on a tmpfs when RAM allows), set it up as an
/// NFS root (no SSH host keys: each node makes its own), move it under
/// `nfs_staging_dir`, publish its kernel, build its initramfs, write boot.ipxe and the
/// exports. On failure the image is left `corrupted` (clearable).
pub fn create_staging(ctx: &Ctx, o: &StagingCreate) -> Result<StagingReport> {
    let cfg = &ctx.cfg;
    let dry = ctx.runner.dry_run();
    if o.initramfs != "own" {
        return Err(Error::invalid(format!(
            "--initramfs {}: NFS images boot with the own initramfs (read-only NFS root under a tmpfs overlay, per-node kept paths); dracut has no overlay for NFS roots: use --initramfs own",
            o.initramfs
        )));
    }
    crate::names::image(&o.name)?;
    let dest = staging_tree(cfg, &o.name);
    if !dry && dest.exists() {
        return Err(Error::invalid(format!(
            "{} already exists (a tree left by hand?): remove it or choose another name",
            dest.display()
        )));
    }
    let total = 6;
    let mut built = bi::build_tree(
        ctx,
        &o.build,
        &bi::Pipeline {
            name: &o.name,
            class: ImageClass::NfsStagingImage,
            operation: "nfs staging create",
            initramfs: &o.initramfs,
            plan: format!(
                "create NFS staging image {} ({} {{release}}, {} type) in {}",
                o.name,
                o.build.distro,
                o.build.livenet_type.as_str(),
                dest.display()
            ),
            total_steps: total,
            setup_label: "set the image up as an NFS root",
            setup_plan: "set up {tree} as an NFS root: password hash, ssh key (no host keys), os-release, networkd, serial getty, ready unit".into(),
            nfs_root: true,
            generation: None,
        },
    )?;
    built.rec.initramfs_flavour = Some(o.initramfs.clone());

    // 4. Kernel and initramfs (the own initramfs carries the NFS client).
    ctx.progress.step(
        4,
        total,
        &format!(
            "publish kernel {}, build the {} initramfs",
            built.kver, o.initramfs
        ),
    );
    kernel::publish_kernel(ctx, &built.tree, &built.kver)?;
    built.rec.kernel = Some(format!("vmlinuz-{}", built.kver));
    let initramfs = kernel::build_initramfs(ctx, &built.tree, &built.kver, &o.initramfs)?;
    built.rec.image = initramfs
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());

    // issue 15: the build record and package manifest, as livenet images keep them
    // (read from the tree before it moves; saved with the image record)
    let build_record = if dry {
        None
    } else {
        Some(built.build_record(ctx, &o.build, &initramfs.file)?)
    };

    // issue 12: an exported root carries nothing secret
    if dry {
        ctx.runner.note(format!(
            "check {} for private keys, password hashes and BMC passwords",
            built.tree.display()
        ));
    } else {
        crate::build::secrets_scan::check_publish(cfg, &o.name, &built.tree)?;
    }
    // 5. The tree under the NFS root: a rename when on the same file system, else a copy.
    ctx.progress
        .step(5, total, &format!("move the tree to {}", dest.display()));
    let tree_bytes = if dry {
        0
    } else {
        fsutil::tree_size(&built.tree)
    };
    let moved = !dry && !built.on_tmpfs && {
        fsutil::ensure_dir(&cfg.nfs_staging_dir)?;
        std::fs::rename(&built.tree, &dest).is_ok()
    };
    if !moved {
        copy_tree(ctx, &built.tree, &dest)?;
    }
    if let Some(g) = built.guard {
        g.unmount()?;
    }
    remove_tree(&ctx.runner, &built.work)?;

    // 6. boot.ipxe, the record, the exports.
    ctx.progress
        .step(6, total, "write boot.ipxe, image_data.yml and the exports");
    write_boot_ipxe(ctx, &built.rec)?;
    if !dry {
        store::save(cfg, &built.rec)?;
    }
    if let Some(r) = &build_record {
        crate::build::reproducible::save_record(cfg, &o.name, r)?;
    }
    let exports = exports::refresh(ctx)?;
    if let Some(c) = built.creation {
        c.finish()?;
    }
    Ok(StagingReport {
        name: o.name.clone(),
        tree: dest,
        kernel: built.kver,
        tree_bytes,
        build_seconds: built.build_seconds,
        initramfs,
        exports,
    })
}

// ---------------------------------------------------------------- golden create

/// What `nfs golden create` produced.
#[derive(Debug, Clone, Serialize)]
pub struct GoldenReport {
    pub name: String,
    pub source_image: String,
    pub tree: PathBuf,
    pub copy_seconds: f64,
    pub exports: ExportsReport,
}

/// `nfs golden create NAME --from STAGING`: a frozen copy of the staging tree (reflinks
/// where the file system allows) that nodes boot read-only.
pub fn create_golden(ctx: &Ctx, name: &str, from: &str) -> Result<GoldenReport> {
    let cfg = &ctx.cfg;
    crate::names::image(name)?;
    crate::names::image(from)?;
    store::require_store(cfg)?;
    let _src_lock = lock::lock_image(cfg, from, &format!("nfs golden create {name}"))?;
    let src = require_class(ctx, from, ImageClass::NfsStagingImage)?;
    let dest = golden_tree(cfg, name);
    if !ctx.runner.dry_run() && dest.exists() {
        return Err(Error::invalid(format!(
            "{} already exists (a tree left by hand?): remove it or choose another name",
            dest.display()
        )));
    }
    let creation = if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "create NFS golden image {name} from staging image {from}"
        ));
        None
    } else {
        Some(store::begin_creation(cfg, name, "nfs golden create")?)
    };
    let t = std::time::Instant::now();
    copy_tree(ctx, &staging_tree(cfg, from), &dest)?;
    retag_os_release(ctx, &dest, name)?;
    if !ctx.runner.dry_run() {
        if let Err(e) = crate::build::secrets_scan::check_publish(cfg, name, &dest) {
            // not exported: the copy goes, the staging image stays as it is
            let _ = remove_tree(&ctx.runner, &dest);
            return Err(e);
        }
    }
    let copy_seconds = t.elapsed().as_secs_f64();
    let mut rec = src.clone();
    rec.name = name.to_string();
    rec.image_class = ImageClass::NfsGoldenImage;
    rec.source_image = Some(from.to_string());
    rec.nodes = None;
    rec.is_mounted = false;
    rec.creation_date = Some(store::record::today());
    write_boot_ipxe(ctx, &rec)?;
    if !ctx.runner.dry_run() {
        store::save(cfg, &rec)?;
        // issue 15: the staging image's build inputs, with the packages the frozen copy
        // holds (the staging tree may have been customised since its build)
        if let Some(mut r) = crate::build::reproducible::load_record(cfg, from)? {
            r.manifest = crate::build::pkglist::read_tree(ctx, &dest)?;
            crate::build::reproducible::save_record(cfg, name, &r)?;
        }
    }
    let exports = exports::refresh(ctx)?;
    if let Some(c) = creation {
        c.finish()?;
    }
    Ok(GoldenReport {
        name: name.to_string(),
        source_image: from.to_string(),
        tree: dest,
        copy_seconds,
        exports,
    })
}

// ---------------------------------------------------------------- nodes

/// What `nfs nodes add|remove` did.
#[derive(Debug, Clone, Serialize)]
pub struct NodesReport {
    pub image: String,
    /// Folded node sets.
    pub changed: String,
    pub unchanged: String,
    pub nodes: String,
    pub count: usize,
    pub seconds: f64,
    pub exports: ExportsReport,
}

/// One node of a golden image.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEntry {
    pub node: String,
    pub dir: PathBuf,
    pub exists: bool,
    /// Bytes the node keeps (files of its directory).
    pub bytes: u64,
    /// Its address in the inventory (the export is restricted to it).
    pub ip: Option<String>,
}

pub use crate::cluster::expand_nodes;

/// `nfs nodes add GOLDEN NODESET`: an empty directory and a read-write export per node.
pub fn nodes_add(ctx: &Ctx, image: &str, set: &str) -> Result<NodesReport> {
    let t = std::time::Instant::now();
    crate::names::image(image)?;
    let _l = lock::lock_image(&ctx.cfg, image, "nfs nodes add")?;
    let mut rec = require_class(ctx, image, ImageClass::NfsGoldenImage)?;
    let wanted = expand_nodes(&ctx.cfg, set)?;
    let mut have = exports::record_nodes(rec.nodes.as_deref())?;
    let root = nodes_root(&ctx.cfg, image);
    let (mut added, mut already) = (Vec::new(), Vec::new());
    if !ctx.runner.dry_run() {
        fsutil::ensure_dir(&root)?;
    }
    for n in wanted {
        let dir = root.join(&n);
        if ctx.runner.dry_run() {
            ctx.runner.note(format!("create {}", dir.display()));
        } else {
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        if have.contains(&n) {
            already.push(n);
        } else {
            have.push(n.clone());
            added.push(n);
        }
    }
    rec.nodes = if have.is_empty() {
        None
    } else {
        Some(nodeset::fold(&have))
    };
    if !ctx.runner.dry_run() {
        fsutil::sync_dir(&root)?;
        store::save(&ctx.cfg, &rec)?;
    }
    let exports = exports::refresh(ctx)?;
    Ok(NodesReport {
        image: image.into(),
        changed: nodeset::fold(&added),
        unchanged: nodeset::fold(&already),
        nodes: rec.nodes.clone().unwrap_or_default(),
        count: have.len(),
        seconds: t.elapsed().as_secs_f64(),
        exports,
    })
}

/// `nfs nodes remove GOLDEN NODESET`: unexport, then remove the nodes' directories
/// (safely: never across a mount point). Nodes not in the image are refused.
pub fn nodes_remove(ctx: &Ctx, image: &str, set: &str) -> Result<NodesReport> {
    let t = std::time::Instant::now();
    crate::names::image(image)?;
    let _l = lock::lock_image(&ctx.cfg, image, "nfs nodes remove")?;
    let mut rec = require_class(ctx, image, ImageClass::NfsGoldenImage)?;
    let wanted = expand_nodes(&ctx.cfg, set)?;
    let have = exports::record_nodes(rec.nodes.as_deref())?;
    let unknown: Vec<String> = wanted
        .iter()
        .filter(|n| !have.contains(n))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(Error::invalid(format!(
            "{} not nodes of image {image} (it has {}): nothing was removed",
            nodeset::fold(&unknown),
            rec.nodes.as_deref().unwrap_or("none")
        )));
    }
    let keep: Vec<String> = have
        .iter()
        .filter(|n| !wanted.contains(n))
        .cloned()
        .collect();
    rec.nodes = if keep.is_empty() {
        None
    } else {
        Some(nodeset::fold(&keep))
    };
    if !ctx.runner.dry_run() {
        store::save(&ctx.cfg, &rec)?;
    }
    // Unexport first: no node writes into a directory being removed.
    let exports = exports::refresh(ctx)?;
    let root = nodes_root(&ctx.cfg, image);
    for n in &wanted {
        remove_tree(&ctx.runner, &root.join(n))?;
    }
    Ok(NodesReport {
        image: image.into(),
        changed: nodeset::fold(&wanted),
        unchanged: String::new(),
        nodes: rec.nodes.clone().unwrap_or_default(),
        count: keep.len(),
        seconds: t.elapsed().as_secs_f64(),
        exports,
    })
}

/// `nfs nodes list GOLDEN [NODESET]`.
pub fn nodes_list(ctx: &Ctx, image: &str, set: Option<&str>) -> Result<Vec<NodeEntry>> {
    crate::names::image(image)?;
    store::require_store(&ctx.cfg)?;
    let rec = store::load(&ctx.cfg, image)?;
    if rec.image_class != ImageClass::NfsGoldenImage {
        return Err(Error::invalid(format!(
            "image {image} is a {} image: only golden images have nodes",
            rec.image_class.as_str()
        )));
    }
    let mut nodes = exports::record_nodes(rec.nodes.as_deref())?;
    if let Some(s) = set {
        let filter = expand_nodes(&ctx.cfg, s)?;
        nodes.retain(|n| filter.contains(n));
    }
    let inv = Inventory::load(&ctx.cfg).unwrap_or_default();
    let root = nodes_root(&ctx.cfg, image);
    Ok(nodes
        .into_iter()
        .map(|n| {
            let dir = root.join(&n);
            NodeEntry {
                exists: dir.is_dir(),
                bytes: fsutil::tree_size(&dir),
                ip: inv.nodes.get(&n).and_then(|x| x.ip.clone()),
                node: n,
                dir,
            }
        })
        .collect())
}

/// `initramfs NAME` for an NFS image: the own initramfs (the only flavour that can boot
/// an NFS root here) from the tree's own modules; the kernel is republished and
/// boot.ipxe rewritten.
pub fn initramfs(ctx: &Ctx, name: &str, flavour: Option<&str>) -> Result<InitramfsReport> {
    crate::names::image(name)?;
    if let Some(f) = flavour {
        if f != "own" {
            return Err(Error::invalid(format!(
                "--flavour {f}: NFS images boot with the own initramfs (dracut has no overlay for NFS roots)"
            )));
        }
    }
    let _l = crate::store::lock::lock_image(&ctx.cfg, name, "initramfs")?;
    let mut rec = crate::store::load(&ctx.cfg, name)?;
    let tree = tree_of(&ctx.cfg, &rec)
        .ok_or_else(|| Error::invalid(format!("image {name} is not an NFS image")))?;
    let kver = match rec.kernel_version() {
        Some(k) if tree.join("lib/modules").join(k).is_dir() => k.to_string(),
        _ => crate::build::kernel_version(&tree)?,
    };
    kernel::publish_kernel(ctx, &tree, &kver)?;
    let rep = kernel::build_initramfs(ctx, &tree, &kver, "own")?;
    rec.kernel = Some(format!("vmlinuz-{kver}"));
    rec.image = rep
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    rec.initramfs_flavour = Some("own".into());
    if !ctx.runner.dry_run() {
        crate::store::save(&ctx.cfg, &rec)?;
    }
    write_boot_ipxe(ctx, &rec)?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(cfg: &Config) -> ImageRecord {
        let _ = cfg;
        let mut r = ImageRecord::new("gold", ImageClass::NfsGoldenImage);
        r.kernel = Some("vmlinuz-6.1.0-9-amd64".into());
        r.image = Some("initramfs-own-6.1.0-9-amd64".into());
        r.initramfs_flavour = Some("own".into());
        r
    }

    #[test]
    fn golden_boot_script_mounts_the_tree_and_the_node_dir() {
        let mut cfg = Config::under_root(Path::new("/srv/dl")).unwrap();
        cfg.nfs_server = Some("10.0.2.2".into());
        cfg.nfs_mount_options = Some("vers=4.1,port=20490".into());
        let t = render_boot_ipxe(&cfg, &golden(&cfg)).unwrap();
        assert!(t.starts_with("#!ipxe\n"), "{t}");
        assert!(
            t.contains("isset ${dls-nfs-server} || set dls-nfs-server 10.0.2.2\n"),
            "{t}"
        );
        assert!(
            t.contains("root=nfs:${dls-nfs-server}:/srv/dl/nfsimages/golden/gold dl.nfs_opts=vers=4.1,port=20490 ${dls-persist}"),
            "{t}"
        );
        assert!(
            t.contains("set dls-persist dl.persist=nfs:${dls-nfs-server}:/srv/dl/nfsimages/nodes/gold/${dls-node} dl.persist_paths=/var/log,/etc/ssh,/var/lib/disklessset-persist\n"),
            "{t}"
        );
        // every line is an iPXE command, a label or a comment
        for l in t.lines() {
            assert!(!l.trim().is_empty(), "empty line in {t}");
        }
    }

    #[test]
    fn staging_boot_script_has_no_persistence() {
        let cfg = Config::under_root(Path::new("/srv/dl")).unwrap();
        let mut r = golden(&cfg);
        r.image_class = ImageClass::NfsStagingImage;
        let t = render_boot_ipxe(&cfg, &r).unwrap();
        assert!(t.contains("set dls-nfs-server ${next-server}"), "{t}");
        assert!(
            t.contains("root=nfs:${dls-nfs-server}:/srv/dl/nfsimages/staging/gold selinux=0 disklessset.image=gold"),
            "{t}"
        );
        assert!(!t.contains("persist"), "{t}");
    }

    #[test]
    fn owned_paths_cover_tree_and_nodes() {
        let cfg = Config::under_root(Path::new("/srv/dl")).unwrap();
        let g = golden(&cfg);
        let p = Nfs.owned_paths(&cfg, &g);
        assert!(p.contains(&PathBuf::from("/srv/dl/nfsimages/golden/gold")));
        assert!(p.contains(&PathBuf::from("/srv/dl/nfsimages/nodes/gold")));
        assert_eq!(Nfs.candidate_paths(&cfg, "x").len(), 3);
    }
}
