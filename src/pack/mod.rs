//! Packing root trees: squashfs (mksquashfs, zstd on all cores by default), the two
//! livenet layouts, and published generations (replace by rename, keep N, rollback).
pub mod generations;

use std::path::{Path, PathBuf};

use crate::config::{Compression, Config};
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::sys::runner::Cmd;

/// What mksquashfs is asked for.
#[derive(Debug, Clone)]
pub struct SquashOptions {
    pub compression: Compression,
    pub level: u32,
    /// Paths (relative to the source, mksquashfs wildcards) left out.
    pub excludes: Vec<String>,
}

impl SquashOptions {
    pub fn from_config(cfg: &Config) -> Self {
        SquashOptions {
            compression: cfg.compression,
            level: cfg.compression_level,
            excludes: Vec::new(),
        }
    }
}

/// What a live system regenerates and a packed image must not carry.
pub const RUNTIME_EXCLUDES: &[&str] = &[
    "proc/*",
    "sys/*",
    "dev/*",
    "run/*",
    "tmp/*",
    "var/tmp/*",
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*",
];

fn processors() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `mksquashfs SRC OUT -noappend -comp C ...` — OUT must not be a published file.
pub fn mksquashfs(ctx: &Ctx, src: &Path, out: &Path, opts: &SquashOptions) -> Result<()> {
    let mut c = Cmd::new("mksquashfs")
        .package("squashfs-tools")
        .arg(src)
        .arg(out)
        .arg("-noappend")
        .arg("-no-progress")
        .arg("-quiet")
        .arg("-processors")
        .arg(processors().to_string())
        .arg("-comp")
        .arg(opts.compression.as_str());
    match opts.compression {
        Compression::Zstd | Compression::Gzip => {
            c = c.arg("-Xcompression-level").arg(opts.level.to_string());
        }
        Compression::Xz | Compression::Lz4 | Compression::Lzo => {}
    }
    if !opts.excludes.is_empty() {
        c = c.arg("-wildcards").arg("-e").args(&opts.excludes);
    }
    ctx.runner.run(&c)?;
    Ok(())
}

/// Size in bytes of the content of a tree (allocated blocks, not crossing filesystems).
pub fn content_bytes(tree: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(tree)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// Native layout: the root tree itself is the squashfs.
pub fn pack_native(ctx: &Ctx, tree: &Path, out: &Path) -> Result<()> {
    let mut o = SquashOptions::from_config(&ctx.cfg);
    o.excludes = RUNTIME_EXCLUDES.iter().map(|s| s.to_string()).collect();
    mksquashfs(ctx, tree, out, &o)
}

/// Compat layout: `LiveOS/rootfs.img` (ext4 of `size_mib`, built with `mkfs.ext4 -d`, no
/// loop mount) inside the squashfs. `scratch` is a work directory (emptied first).
pub fn pack_compat(
    ctx: &Ctx,
    tree: &Path,
    size_mib: u64,
    scratch: &Path,
    out: &Path,
) -> Result<()> {
    let liveos = scratch.join("LiveOS");
    if !ctx.runner.dry_run() {
        crate::sys::remove::remove_tree(&ctx.runner, scratch)?;
        std::fs::create_dir_all(&liveos).at(&liveos)?;
    }
    let img = liveos.join("rootfs.img");
    make_ext4(ctx, tree, &img, size_mib)?;
    mksquashfs(ctx, scratch, out, &SquashOptions::from_config(&ctx.cfg))?;
    if !ctx.runner.dry_run() {
        crate::sys::remove::remove_tree(&ctx.runner, scratch)?;
    }
    Ok(())
}

/// An ext4 image file of `size_mib` holding `tree`; refuses, naming the minimum, if the
/// content does not fit.
pub fn make_ext4(ctx: &Ctx, tree: &Path, img: &Path, size_mib: u64) -> Result<()> {
    let need = min_size_mib(tree);
    if !ctx.runner.dry_run() && size_mib < need {
        return Err(Error::invalid(format!(
            "size {size_mib}M is too small for the image content: at least {need}M is needed (use a larger --size, or --size auto)"
        )));
    }
    ctx.runner.run(
        &Cmd::new("truncate")
            .package("coreutils")
            .arg("-s")
            .arg(format!("{size_mib}M"))
            .arg(img),
    )?;
    ctx.runner.run(
        &Cmd::new("mkfs.ext4")
            .package("e2fsprogs")
            .args([
                "-q",
                "-F",
                "-L",
                "rootfs",
                "-m",
                "0",
                "-E",
                "root_owner=0:0",
                "-d",
            ])
            .arg(tree)
            .arg(img),
    )?;
    Ok(())
}

/// The smallest ext4 that holds `tree`: its content plus ext4 overhead (inode tables,
/// journal, metadata), measured conservatively.
pub fn min_size_mib(tree: &Path) -> u64 {
    let bytes = content_bytes(tree);
    let inodes = walkdir::WalkDir::new(tree)
        .same_file_system(true)
        .into_iter()
        .count() as u64;
    // 256-byte inodes with a 16 KiB/inode ratio, 32 MiB journal+metadata floor, 5% slack.
    let mib = bytes / (1 << 20) + inodes * 256 / (1 << 20) + 32;
    mib + mib / 20 + 1
}

/// A path for a new file next to a published one, cleaned by `recover` if we die.
pub fn staging_path(dest: &Path) -> PathBuf {
    crate::fsutil::temp_path_for(dest)
}
