//! `diff A B` (issue 15): two livenet images, or two generations (`NAME@3`), compared
//! by their package manifests and their files. Equal sha256: identical, nothing is
//! opened. Otherwise both squashfs files are loop-mounted read-only (the compat
//! layout's inner `LiveOS/rootfs.img` too) in a private directory of the work dir and
//! walked: added, removed, changed files (type, mode, owner, size, link target, then the
//! content of files whose metadata match, compared byte by byte), and the files whose
//! only difference is their time. Nothing is computed at pack time.
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::build::pkglist::{self, Package};
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::pack::generations;
use crate::store::{self, ImageClass};
use crate::sys::mount::{self, MountGuard, MountStack};

/// One side of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub spec: String,
    pub image: String,
    pub generation: u32,
    #[serde(skip)]
    pub path: PathBuf,
    pub sha256: Option<String>,
}

/// A package in both, at another version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackageChange {
    pub name: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PackageDiff {
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    pub changed: Vec<PackageChange>,
}

/// A file in both that differs: its path and what differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileChange {
    pub path: String,
    pub what: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<FileChange>,
    /// Files equal in everything but their modification time.
    pub timestamps: Vec<String>,
}

/// What `diff` found.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub a: Side,
    pub b: Side,
    pub identical: bool,
    /// Different files whose trees differ in nothing but times (file times or the
    /// filesystem's own creation time).
    pub only_timestamps: bool,
    pub packages: PackageDiff,
    pub files: FileDiff,
}

impl DiffReport {
    /// The lines a person reads.
    pub fn lines(&self) -> Vec<String> {
        let name = |s: &Side| format!("{}@{}", s.image, s.generation);
        let (a, b) = (name(&self.a), name(&self.b));
        if self.identical {
            return vec![format!(
                "{a} and {b} are bit-identical (sha256 {})",
                self.a.sha256.as_deref().unwrap_or("?")
            )];
        }
        if self.only_timestamps {
            return vec![format!(
                "{a} and {b} differ only in timestamps ({} files with other times; same packages, same content)",
                self.files.timestamps.len()
            )];
        }
        let p = &self.packages;
        let f = &self.files;
        let mut v = vec![
            format!("{a} and {b} differ"),
            format!(
                "packages: {} added, {} removed, {} changed",
                p.added.len(),
                p.removed.len(),
                p.changed.len()
            ),
        ];
        for x in &p.added {
            v.push(format!("  + {} {} {}", x.name, x.version, x.arch));
        }
        for x in &p.removed {
            v.push(format!("  - {} {} {}", x.name, x.version, x.arch));
        }
        for x in &p.changed {
            v.push(format!("  ~ {} {} -> {}", x.name, x.from, x.to));
        }
        v.push(format!(
            "files: {} added, {} removed, {} changed, {} with only another time",
            f.added.len(),
            f.removed.len(),
            f.changed.len(),
            f.timestamps.len()
        ));
        for x in &f.added {
            v.push(format!("  + {x}"));
        }
        for x in &f.removed {
            v.push(format!("  - {x}"));
        }
        for x in &f.changed {
            v.push(format!("  ~ {} ({})", x.path, x.what));
        }
        v
    }
}

/// `NAME` (its current generation) or `NAME@N` (a kept generation).
pub fn resolve(ctx: &Ctx, spec: &str) -> Result<Side> {
    let (name, gen) = match spec.rsplit_once('@') {
        Some((n, g)) => {
            let g: u32 = g.parse().map_err(|_| {
                Error::invalid(format!(
                    "{spec:?}: write NAME or NAME@GENERATION (a number, e.g. {n}@2)"
                ))
            })?;
            (n, Some(g))
        }
        None => (spec, None),
    };
    crate::names::image(name)?;
    let rec = store::load(&ctx.cfg, name)?;
    if rec.image_class != ImageClass::LivenetImage {
        return Err(Error::invalid(format!(
            "image {name} is a {} image: diff compares livenet images (squashfs generations)",
            rec.image_class.as_str()
        )));
    }
    let gens = generations::list(&ctx.cfg, name, rec.generation);
    let want = gen.unwrap_or(rec.generation);
    let g = gens.iter().find(|g| g.number == want).ok_or_else(|| {
        Error::invalid(format!(
            "image {name} has no generation {want}: kept generations are {}",
            gens.iter()
                .map(|g| g.number.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok(Side {
        spec: spec.to_string(),
        image: name.to_string(),
        generation: want,
        path: g.path.clone(),
        sha256: g.sha256.clone(),
    })
}

/// `diff A B`.
pub fn diff(ctx: &Ctx, a: &str, b: &str) -> Result<DiffReport> {
    let a = resolve(ctx, a)?;
    let b = resolve(ctx, b)?;
    let sa = match &a.sha256 {
        Some(d) => d.clone(),
        None => crate::fsutil::sha256_file(&a.path)?,
    };
    let sb = match &b.sha256 {
        Some(d) => d.clone(),
        None => crate::fsutil::sha256_file(&b.path)?,
    };
    if sa == sb {
        return Ok(DiffReport {
            a,
            b,
            identical: true,
            only_timestamps: false,
            packages: PackageDiff::default(),
            files: FileDiff::default(),
        });
    }
    // Named like exec's scratch dirs: `recover` unmounts what a killed diff left and
    // removes the dir once its process is gone.
    let base = ctx
        .cfg
        .work_dir
        .join(format!(".exec-diff-{}", std::process::id()));
    crate::sys::remove::remove_tree(&ctx.runner, &base)?;
    let res = compare_mounted(ctx, &a, &b, &sa, &sb, &base);
    let cleanup = crate::sys::remove::remove_tree(&ctx.runner, &base);
    let (packages, files) = res?;
    cleanup?;
    let only_timestamps = packages == PackageDiff::default()
        && files.added.is_empty()
        && files.removed.is_empty()
        && files.changed.is_empty();
    Ok(DiffReport {
        a,
        b,
        identical: false,
        only_timestamps,
        packages,
        files,
    })
}

fn compare_mounted(
    ctx: &Ctx,
    a: &Side,
    b: &Side,
    sa: &str,
    sb: &str,
    base: &Path,
) -> Result<(PackageDiff, FileDiff)> {
    let mut guards = MountStack::new();
    let ta = mount_side(ctx, &a.path, &base.join("a"), &mut guards)?;
    let tb = mount_side(ctx, &b.path, &base.join("b"), &mut guards)?;
    let manifest = |s: &Side, d: &str, t: &Path| -> Result<Vec<Package>> {
        match pkglist::load(&ctx.cfg, &s.image, d)? {
            Some(m) => Ok(m),
            None => pkglist::read_tree(ctx, t),
        }
    };
    let packages = diff_packages(&manifest(a, sa, &ta)?, &manifest(b, sb, &tb)?);
    let files = diff_files(&walk(&ta)?, &walk(&tb)?, &ta, &tb)?;
    guards.unmount()?;
    Ok((packages, files))
}

/// Mounts a squashfs read-only at `at`; a compat image's `LiveOS/rootfs.img` too.
/// Returns the root of the tree.
fn mount_side(ctx: &Ctx, img: &Path, at: &Path, guards: &mut MountStack) -> Result<PathBuf> {
    let sq = at.join("sq");
    std::fs::create_dir_all(&sq).at(&sq)?;
    mount::mount(
        &ctx.runner,
        Some("squashfs"),
        &img.to_string_lossy(),
        &sq,
        &["loop", "ro"],
    )?;
    guards.push(MountGuard::new(&ctx.runner, &sq));
    let inner = sq.join("LiveOS/rootfs.img");
    if inner.is_file() && !sq.join("etc").exists() {
        let ext = at.join("ext4");
        std::fs::create_dir_all(&ext).at(&ext)?;
        mount::mount(
            &ctx.runner,
            Some("ext4"),
            &inner.to_string_lossy(),
            &ext,
            &["loop", "ro", "noload"],
        )?;
        guards.push(MountGuard::new(&ctx.runner, &ext));
        return Ok(ext);
    }
    Ok(sq)
}

/// Packages added, removed and changed from `a` to `b` (by name and arch).
pub fn diff_packages(a: &[Package], b: &[Package]) -> PackageDiff {
    let key = |p: &Package| (p.name.clone(), p.arch.clone());
    let ma: BTreeMap<_, _> = a.iter().map(|p| (key(p), p)).collect();
    let mb: BTreeMap<_, _> = b.iter().map(|p| (key(p), p)).collect();
    let mut d = PackageDiff::default();
    for (k, p) in &mb {
        match ma.get(k) {
            None => d.added.push((*p).clone()),
            Some(o) if o.version != p.version => d.changed.push(PackageChange {
                name: p.name.clone(),
                from: o.version.clone(),
                to: p.version.clone(),
            }),
            _ => {}
        }
    }
    for (k, p) in &ma {
        if !mb.contains_key(k) {
            d.removed.push((*p).clone());
        }
    }
    d
}

/// What the walk keeps of an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `file`, `dir`, `link`, `char`, `block`, `fifo`, `socket`.
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub rdev: u64,
    pub target: Option<PathBuf>,
}

/// Every entry below `root` by path relative to it (`/` for the root itself).
pub fn walk(root: &Path) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).same_file_system(true) {
        let e = e.map_err(|e| Error::Tree {
            tree: root.to_path_buf(),
            msg: format!("cannot walk it: {e}"),
        })?;
        let m = std::fs::symlink_metadata(e.path()).at(e.path())?;
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_symlink() {
            "link"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let rel = e.path().strip_prefix(root).unwrap_or(e.path());
        let key = format!("/{}", rel.to_string_lossy());
        out.insert(
            key,
            Entry {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if kind == "file" { m.len() } else { 0 },
                mtime: m.mtime(),
                rdev: m.rdev(),
                target: if kind == "link" {
                    std::fs::read_link(e.path()).ok()
                } else {
                    None
                },
            },
        );
    }
    Ok(out)
}

/// What differs between two entries of the same path, metadata only (None: equal
/// but for the time).
pub fn meta_change(x: &Entry, y: &Entry) -> Option<String> {
    let mut what = Vec::new();
    if x.kind != y.kind {
        what.push(format!("{} -> {}", x.kind, y.kind));
    } else {
        if x.mode != y.mode {
            what.push(format!("mode {:04o} -> {:04o}", x.mode, y.mode));
        }
        if (x.uid, x.gid) != (y.uid, y.gid) {
            what.push(format!("owner {}:{} -> {}:{}", x.uid, x.gid, y.uid, y.gid));
        }
        if x.size != y.size {
            what.push(format!("size {} -> {}", x.size, y.size));
        }
        if x.target != y.target {
            what.push("link target".into());
        }
        if x.rdev != y.rdev && matches!(x.kind, "char" | "block") {
            what.push("device number".into());
        }
    }
    (!what.is_empty()).then(|| what.join(", "))
}

fn diff_files(
    a: &BTreeMap<String, Entry>,
    b: &BTreeMap<String, Entry>,
    ta: &Path,
    tb: &Path,
) -> Result<FileDiff> {
    let mut d = FileDiff::default();
    for (p, y) in b {
        let Some(x) = a.get(p) else {
            d.added.push(p.clone());
            continue;
        };
        if let Some(what) = meta_change(x, y) {
            d.changed.push(FileChange {
                path: p.clone(),
                what,
            });
            continue;
        }
        if x.kind == "file" && x.size > 0 {
            let rel = p.trim_start_matches('/');
            if !same_content(&ta.join(rel), &tb.join(rel))? {
                d.changed.push(FileChange {
                    path: p.clone(),
                    what: "content".into(),
                });
                continue;
            }
        }
        if x.mtime != y.mtime {
            d.timestamps.push(p.clone());
        }
    }
    for p in a.keys() {
        if !b.contains_key(p) {
            d.removed.push(p.clone());
        }
    }
    Ok(d)
}

/// Byte-by-byte comparison of two files of the same size.
fn same_content(x: &Path, y: &Path) -> Result<bool> {
    let mut fx = std::fs::File::open(x).at(x)?;
    let mut fy = std::fs::File::open(y).at(y)?;
    let mut bx = vec![0u8; 1 << 16];
    let mut by = vec![0u8; 1 << 16];
    loop {
        let n = read_full(&mut fx, &mut bx).at(x)?;
        let m = read_full(&mut fy, &mut by).at(y)?;
        if n != m || bx[..n] != by[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(n: &str, v: &str) -> Package {
        Package {
            name: n.into(),
            version: v.into(),
            arch: "amd64".into(),
        }
    }

    #[test]
    fn packages_added_removed_changed() {
        let a = vec![pkg("bash", "5.2"), pkg("gone", "1"), pkg("libc6", "2.36-9")];
        let b = vec![
            pkg("bash", "5.2"),
            pkg("hello", "2.10"),
            pkg("libc6", "2.36-10"),
        ];
        let d = diff_packages(&a, &b);
        assert_eq!(d.added, vec![pkg("hello", "2.10")]);
        assert_eq!(d.removed, vec![pkg("gone", "1")]);
        assert_eq!(
            d.changed,
            vec![PackageChange {
                name: "libc6".into(),
                from: "2.36-9".into(),
                to: "2.36-10".into()
            }]
        );
        assert_eq!(diff_packages(&a, &a), PackageDiff::default());
    }

    #[test]
    fn files_by_metadata_content_and_time() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (da.path(), db.path());
        for t in [a, b] {
            std::fs::create_dir_all(t.join("etc")).unwrap();
            std::fs::write(t.join("etc/same"), "x").unwrap();
            std::fs::write(t.join("etc/time"), "t").unwrap();
        }
        std::fs::write(a.join("etc/content"), "aaa").unwrap();
        std::fs::write(b.join("etc/content"), "bbb").unwrap();
        std::fs::write(a.join("etc/size"), "a").unwrap();
        std::fs::write(b.join("etc/size"), "bb").unwrap();
        std::fs::write(a.join("old"), "").unwrap();
        std::fs::write(b.join("new"), "").unwrap();
        std::os::unix::fs::symlink("x", b.join("etc/link")).unwrap();
        std::fs::write(a.join("etc/link"), "").unwrap();
        // same times everywhere but etc/time
        for t in [a, b] {
            crate::build::reproducible::clamp_mtimes(t, 1_000_000).unwrap();
        }
        crate::build::reproducible::clamp_mtimes(&b.join("etc/time"), 999_000).unwrap();
        let d = diff_files(&walk(a).unwrap(), &walk(b).unwrap(), a, b).unwrap();
        assert_eq!(d.added, vec!["/new"]);
        assert_eq!(d.removed, vec!["/old"]);
        let changed: Vec<(&str, &str)> = d
            .changed
            .iter()
            .map(|c| (c.path.as_str(), c.what.as_str()))
            .collect();
        assert_eq!(
            changed,
            vec![
                ("/etc/content", "content"),
                ("/etc/link", "file -> link"),
                ("/etc/size", "size 1 -> 2"),
            ]
        );
        assert_eq!(d.timestamps, vec!["/etc/time"]);
    }
}
