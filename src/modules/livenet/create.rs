//! `livenet create`: the shared build (`build::image::build_tree`), then what is the
//! livenet module's own: the layout, the squashfs as generation 1, the initramfs, the
//! boot script.

use serde::Serialize;

use super::boot::write_boot_ipxe;
use super::mount::repack_at;
use super::SizeSpec;
use crate::build::image::{self as bi, BuildOptions};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::kernel::{self, InitramfsReport};
use crate::pack::{self, generations};
use crate::store::{self, ImageClass, Layout};
use crate::sys::remove::remove_tree;

// ---------------------------------------------------------------- create

/// Options of `livenet create` (also what parameters files produce).
#[derive(Debug, Clone, PartialEq)]
pub struct LivenetCreate {
    pub name: String,
    /// What both `livenet create` and `nfs staging create` take.
    pub build: BuildOptions,
    pub layout: Layout,
    /// Compat layout only: the rootfs.img size (default auto).
    pub size: Option<SizeSpec>,
    /// `size` is a floor: when the content needs more, the rootfs.img grows to fit (plus
    /// the configured headroom) with a warning. Reference parameters files: their sizes
    /// were chosen for EL images and must keep working unchanged.
    pub size_at_least: bool,
    /// `own` (default) or `dracut`.
    pub initramfs: String,
}

impl LivenetCreate {
    pub fn new(name: &str) -> Self {
        LivenetCreate {
            name: name.to_string(),
            build: BuildOptions::default(),
            layout: Layout::Native,
            size: None,
            size_at_least: false,
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
    let cfg = &ctx.cfg;
    let dry = ctx.runner.dry_run();
    if o.layout == Layout::Native && o.size.is_some() {
        return Err(Error::invalid(
            "--size applies to the compat layout only: a native image needs no size (its RAM cost is the compressed image plus writes)",
        ));
    }
    let total = 7;
    let mut built = bi::build_tree(
        ctx,
        &o.build,
        &bi::Pipeline {
            name: &o.name,
            class: ImageClass::LivenetImage,
            operation: "livenet create",
            initramfs: &o.initramfs,
            plan: format!(
                "create livenet image {} ({} {{release}}, {} type, {} layout)",
                o.name,
                o.build.distro,
                o.build.livenet_type.as_str(),
                o.layout.as_str()
            ),
            total_steps: total,
            setup_label: "set the image up (password, ssh key, os-release, console)",
            setup_plan: "set up {tree}: root password hash, ssh key, os-release tags, networkd, serial getty, ready unit".into(),
            nfs_root: false,
            generation: Some(1),
        },
    )?;
    built.rec.layout = Some(o.layout);
    built.rec.initramfs_flavour = Some(o.initramfs.clone());
    let tree_bytes = if dry {
        0
    } else {
        pack::content_bytes(&built.tree)
    };

    // 4. The kernel, next to the others.
    ctx.progress
        .step(4, total, &format!("publish kernel {}", built.kver));
    kernel::publish_kernel(ctx, &built.tree, &built.kver)?;
    built.rec.kernel = Some(format!("vmlinuz-{}", built.kver));

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
        built.rec.livenet_size = Some(match o.size.unwrap_or(SizeSpec::Auto) {
            SizeSpec::Mib(m) if o.size_at_least && !dry => {
                let min = pack::min_size_mib(&built.tree);
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
            SizeSpec::Auto => pack::min_size_mib(&built.tree) + cfg.resize_headroom_mib,
        });
    }
    let t = std::time::Instant::now();
    repack_at(ctx, &mut built.rec, &built.tree, built.epoch)?;
    let pack_seconds = t.elapsed().as_secs_f64();

    // 6. The initramfs, from the image's own modules.
    ctx.progress
        .step(6, total, &format!("build the {} initramfs", o.initramfs));
    let initramfs = kernel::build_initramfs(ctx, &built.tree, &built.kver, &o.initramfs)?;
    built.rec.image = initramfs
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());

    // 7. boot.ipxe, the record, clean up.
    ctx.progress
        .step(7, total, "write boot.ipxe and image_data.yml");
    write_boot_ipxe(ctx, &built.rec)?;
    if !dry {
        record_build(ctx, o, &built, &initramfs.file)?;
    }
    if let Some(g) = built.guard {
        g.unmount()?;
    }
    remove_tree(&ctx.runner, &built.work)?;
    let squashfs_bytes = std::fs::metadata(generations::current_path(cfg, &o.name))
        .map(|m| m.len())
        .unwrap_or(0);
    if let Some(c) = built.creation {
        store::save(cfg, &built.rec)?;
        c.finish()?;
    }
    Ok(CreateReport {
        name: o.name.clone(),
        kernel: built.kver,
        squashfs_bytes,
        tree_bytes,
        build_seconds: built.build_seconds,
        pack_seconds,
        initramfs,
        on_tmpfs: built.on_tmpfs,
    })
}

/// The build record (issue 15, `build.yml`): the declaration, the epoch, the digests of
/// what the build gave and its package manifest; what `rebuild` reads.
fn record_build(
    ctx: &Ctx,
    o: &LivenetCreate,
    built: &bi::Built,
    initramfs: &std::path::Path,
) -> Result<()> {
    let mut r = built.build_record(ctx, &o.build, initramfs)?;
    r.layout = Some(o.layout.as_str().into());
    r.size_mib = built.rec.livenet_size;
    r.initramfs = Some(o.initramfs.clone());
    r.squashfs_sha256 = generations::current_digest(&ctx.cfg, &o.name);
    crate::build::reproducible::save_record(&ctx.cfg, &o.name, &r)
}
