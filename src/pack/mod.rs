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
    /// `SOURCE_DATE_EPOCH` for mksquashfs (issue 15): the superblock's time, and every
    /// newer file time clamped to it.
    pub epoch: Option<u64>,
}

impl SquashOptions {
    pub fn from_config(cfg: &Config) -> Self {
        SquashOptions {
            compression: cfg.compression,
            level: cfg.compression_level,
            excludes: Vec::new(),
            epoch: None,
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
    if let Some(e) = opts.epoch {
        c = c.env("SOURCE_DATE_EPOCH", e.to_string());
    }
    if ctx.runner.dry_run() {
        ctx.runner.run(&c)?;
        return Ok(());
    }
    with_writeback(out, || ctx.runner.run(&c))?;
    Ok(())
}

/// Runs `f` (mksquashfs writing `out`) while a thread starts the writeback of what is
/// already written, every 200 ms: the fsync of the publish then waits for the last
/// pages only, instead of for the whole file (issue 15: pack time next to a bare
/// mksquashfs). The writeback is asynchronous (`SYNC_FILE_RANGE_WRITE`): it never
/// waits for the disk, and mksquashfs keeps its cores.
fn with_writeback<T>(out: &Path, f: impl FnOnce() -> T) -> T {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let flusher = s.spawn(|| {
            let mut file: Option<std::fs::File> = None;
            while !done.load(Ordering::Acquire) {
                if file.is_none() {
                    file = std::fs::File::open(out).ok();
                }
                if let Some(f) = &file {
                    crate::fsutil::start_writeback(f);
                }
                std::thread::park_timeout(std::time::Duration::from_millis(200));
            }
        });
        let r = f();
        done.store(true, Ordering::Release);
        flusher.thread().unpark();
        r
    })
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
    pack_native_at(ctx, tree, out, None)
}

/// [`pack_native`] with mksquashfs's `SOURCE_DATE_EPOCH` (issue 15).
pub fn pack_native_at(ctx: &Ctx, tree: &Path, out: &Path, epoch: Option<u64>) -> Result<()> {
    let mut o = SquashOptions::from_config(&ctx.cfg);
    o.epoch = epoch;
    o.excludes = RUNTIME_EXCLUDES.iter().map(|s| s.to_string()).collect();
    mksquashfs(ctx, tree, out, &o)
}

/// Compat layout: `LiveOS/rootfs.img` (ext4 of `size_mib`, built with `mkfs.ext4 -d`, no
/// loop mount of the ext4) inside the squashfs. `scratch` is a work directory (emptied
/// first).
pub fn pack_compat(
    ctx: &Ctx,
    tree: &Path,
    size_mib: u64,
    scratch: &Path,
    out: &Path,
) -> Result<()> {
    pack_compat_at(ctx, tree, size_mib, scratch, out, None)
}

/// [`pack_compat`] at a `SOURCE_DATE_EPOCH` (issue 15): the same tree at the same epoch
/// gives the same file, bit for bit, whatever filesystem the tree is on and whatever
/// order its directories list in. `mkfs.ext4 -d` copies what it reads: the order of
/// `readdir` (inode numbers, directory blocks, data placement), every inode's atime and
/// ctime (which no one can set on the tree), and stamps a random UUID and hash seed and
/// the wall-clock time. So the ext4 is made from a **sorted, time-normalised view** of
/// the tree: an uncompressed squashfs of it (mksquashfs sorts every directory, clamps
/// times to the epoch, and a squashfs has a single time per inode, so atime = ctime =
/// mtime), loop-mounted read-only. The UUID and the directory hash seed are taken from
/// the sha256 of that view (a digest of the tree's content, names, modes, owners, times
/// and xattrs), every time mkfs stamps is the epoch (`E2FSPROGS_FAKE_TIME`), and the
/// wrapping squashfs's two entries have fixed modes and clamped times.
pub fn pack_compat_at(
    ctx: &Ctx,
    tree: &Path,
    size_mib: u64,
    scratch: &Path,
    out: &Path,
    epoch: Option<u64>,
) -> Result<()> {
    let dry = ctx.runner.dry_run();
    let wrap = scratch.join("wrap");
    let liveos = wrap.join("LiveOS");
    let view_file = scratch.join("tree.sqfs");
    let view = scratch.join("tree");
    if !dry {
        crate::sys::remove::remove_tree(&ctx.runner, scratch)?;
        for d in [scratch, &wrap, &liveos, &view] {
            std::fs::create_dir_all(d).at(d)?;
            set_mode(d, 0o755)?;
        }
    }
    let img = liveos.join("rootfs.img");
    let res = (|| {
        let mounted = sorted_view(ctx, tree, &view_file, &view, epoch)?;
        let ids = if dry {
            Ext4Ids::placeholder()
        } else {
            Ext4Ids::from_digest(&crate::fsutil::sha256_file(&view_file)?)
        };
        make_ext4(ctx, tree, &view, &img, size_mib, &ids, epoch)?;
        if !dry {
            set_mode(&img, 0o644)?;
        }
        mounted.unmount()?;
        let mut o = SquashOptions::from_config(&ctx.cfg);
        o.epoch = epoch;
        mksquashfs(ctx, &wrap, out, &o)
    })();
    // the view and the ext4 are scratch, whatever the outcome (never across a mount)
    let cleaned = if dry {
        Ok(())
    } else {
        crate::sys::remove::remove_tree(&ctx.runner, scratch)
    };
    res.and(cleaned)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).at(p)
}

/// `tree` as an uncompressed squashfs `file` (sorted directories, times clamped to the
/// epoch), loop-mounted read-only at `at`; unmounted when the guard drops.
fn sorted_view(
    ctx: &Ctx,
    tree: &Path,
    file: &Path,
    at: &Path,
    epoch: Option<u64>,
) -> Result<crate::sys::mount::MountGuard> {
    // No compression and no duplicate search: the view is read once, by mkfs, and
    // removed; hard links stay hard links (one inode), xattrs are kept.
    let mut c = Cmd::new("mksquashfs")
        .package("squashfs-tools")
        .arg(tree)
        .arg(file)
        .args([
            "-noappend",
            "-no-progress",
            "-quiet",
            "-noI",
            "-noD",
            "-noF",
            "-noX",
            "-no-duplicates",
            "-processors",
        ])
        .arg(processors().to_string());
    if let Some(e) = epoch {
        c = c.env("SOURCE_DATE_EPOCH", e.to_string());
    }
    ctx.runner.run(&c)?;
    crate::sys::mount::mount(
        &ctx.runner,
        Some("squashfs"),
        &file.to_string_lossy(),
        at,
        &["loop", "ro"],
    )?;
    Ok(crate::sys::mount::MountGuard::new(&ctx.runner, at))
}

/// The UUID and directory hash seed of a compat image's ext4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Ids {
    pub uuid: String,
    pub hash_seed: String,
}

impl Ext4Ids {
    /// From a sha256 (hex): its first 16 bytes make the UUID, the next 16 the seed, each
    /// shaped as a random (version 4, RFC 4122 variant) UUID.
    pub fn from_digest(hex: &str) -> Ext4Ids {
        let uuid_of = |h: &str| -> String {
            let mut b: Vec<u8> = (0..16)
                .map(|i| {
                    u8::from_str_radix(h.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0)
                })
                .collect();
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let x: String = b.iter().map(|v| format!("{v:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &x[0..8],
                &x[8..12],
                &x[12..16],
                &x[16..20],
                &x[20..32]
            )
        };
        Ext4Ids {
            uuid: uuid_of(hex.get(0..32).unwrap_or("")),
            hash_seed: uuid_of(hex.get(32..64).unwrap_or("")),
        }
    }

    /// What a dry run shows (the digest is not computed).
    fn placeholder() -> Ext4Ids {
        Ext4Ids {
            uuid: "UUID-FROM-SHA256-OF-TREE".into(),
            hash_seed: "SEED-FROM-SHA256-OF-TREE".into(),
        }
    }
}

fn check_fits(tree: &Path, size_mib: u64, dry: bool) -> Result<()> {
    let need = min_size_mib(tree);
    if !dry && size_mib < need {
        return Err(Error::invalid(format!(
            "size {size_mib}M is too small for the image content: at least {need}M is needed (use a larger --size, or --size auto)"
        )));
    }
    Ok(())
}

fn truncate(ctx: &Ctx, img: &Path, size_mib: u64) -> Result<()> {
    ctx.runner.run(
        &Cmd::new("truncate")
            .package("coreutils")
            .arg("-s")
            .arg(format!("{size_mib}M"))
            .arg(img),
    )?;
    Ok(())
}

fn mkfs_ext4() -> Cmd {
    Cmd::new("mkfs.ext4")
        .package("e2fsprogs")
        .args(["-q", "-F", "-L", "rootfs", "-m", "0"])
}

/// The ext4 image file (`size_mib`) of the compat layout, made from `view` (the sorted
/// view of `tree`, see [`pack_compat_at`]), with `ids` and, at `epoch`, every time mkfs
/// stamps (superblock, root, lost+found, journal, inode creation times) set to it.
/// Refuses, naming the minimum, if the content of `tree` does not fit.
pub fn make_ext4(
    ctx: &Ctx,
    tree: &Path,
    view: &Path,
    img: &Path,
    size_mib: u64,
    ids: &Ext4Ids,
    epoch: Option<u64>,
) -> Result<()> {
    check_fits(tree, size_mib, ctx.runner.dry_run())?;
    truncate(ctx, img, size_mib)?;
    let mut c = mkfs_ext4()
        .arg("-U")
        .arg(&ids.uuid)
        .arg("-E")
        .arg(format!("root_owner=0:0,hash_seed={}", ids.hash_seed))
        .arg("-d")
        .arg(view)
        .arg(img);
    if let Some(e) = epoch {
        c = c.env("E2FSPROGS_FAKE_TIME", e.to_string());
    }
    ctx.runner.run(&c)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext4_ids_are_uuids_from_the_digest() {
        let d = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";
        let ids = Ext4Ids::from_digest(d);
        // version 4, RFC 4122 variant
        assert_eq!(ids.uuid, "00112233-4455-4677-8899-aabbccddeeff");
        assert_eq!(ids.hash_seed, "01234567-89ab-4def-bedc-ba9876543210");
        assert_eq!(Ext4Ids::from_digest(d), ids);
        let other = Ext4Ids::from_digest(&d.replace("00112233", "00112234"));
        assert_ne!(other.uuid, ids.uuid);
    }
}
