//! Kernel modules an own (busybox) initramfs needs, resolved from an image
//! tree's `lib/modules/KVER` (or `usr/lib/modules/KVER`).
//!
//! Reads `modules.dep` (hard dependencies), `modules.builtin` (wanted modules
//! built into the kernel are skipped silently), and, when present,
//! `modules.softdep` + `modules.alias` (e.g. `softdep ext4 pre: crypto-crc32c`:
//! without `crc32c` an ext4 with metadata checksums does not mount). Names are
//! compared with `-` and `_` folded to `_`. The result lists every module once,
//! dependencies first, i.e. in `insmod` order.
//!
//! Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`) are decompressed in pure
//! Rust, because busybox `insmod` passes the file to `init_module(2)` as is.
//! (Debian 12's kernel ships plain `.ko`; Debian 13, Fedora and EL ship `.ko.xz`.)
//!
//! All paths inside the image are resolved with the image root as `/`, so an
//! absolute symlink in the image (e.g. `lib -> /usr/lib`) never escapes to the
//! host's files.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Modules wanted by default for a livenet boot, by name.
///
/// - virtio (QEMU/KVM and most clouds): `virtio_pci`, `virtio_net`, `virtio_blk`, `virtio_scsi`;
/// - common wired NICs of compute nodes, all small and firmware-free
///   (1.5 MB gzipped together): `e1000` (QEMU default), `e1000e` (Intel client/Q35),
///   `igb` (Intel 1G server), `ixgbe` (Intel 10G), `i40e` (Intel 10/25/40G),
///   `tg3` (Broadcom 1G on Dell/HPE), `bnxt_en` (Broadcom 10-200G), `r8169` (Realtek);
///   Mellanox `mlx5_core` (4 MB with deps) and `ice` (needs its DDP firmware) are left
///   to the extra modules;
/// - `af_packet` for `udhcpc` (built in on Debian, then skipped);
/// - the live root: `loop`, `squashfs`, `overlay`, `ext4` (compat `LiveOS/rootfs.img`;
///   its `crc32c` soft dependency comes along).
pub const DEFAULT_WANTED: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "i40e",
    "tg3",
    "bnxt_en",
    "r8169",
    "af_packet",
    "loop",
    "squashfs",
    "overlay",
    "ext4",
];

/// Modules wanted for an NFS root or NFS upper layer (NFSv4 client; 1.1 MB
/// gzipped with dependencies, about 1 s of `insmod` under TCG, so the init
/// only loads them for `root=nfs:`/`dl.upper=nfs:`).
pub const NFS_WANTED: &[&str] = &["nfsv4", "sunrpc"];

/// Modules for a local disk (boot type `install` and an installed node's local root):
/// SATA/NVMe disks, and the ESP's FAT with its code pages.
pub const DISK_WANTED: &[&str] = &[
    "ahci",
    "sd_mod",
    "nvme",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
];

/// Errors while resolving or reading kernel modules.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// The kernel version is not a plain directory name.
    #[error(
        "invalid kernel version {kver:?}: expected a single directory name such as 6.1.0-28-amd64"
    )]
    InvalidKernelVersion {
        /// The rejected version.
        kver: String,
    },
    /// Neither `lib/modules/KVER` nor `usr/lib/modules/KVER` exists.
    #[error(
        "kernel modules dir {} not found (nor {}): the image has no kernel for version {kver}",
        .root.join("lib/modules").join(.kver).display(),
        .root.join("usr/lib/modules").join(.kver).display()
    )]
    ModulesDirNotFound {
        /// Image tree root.
        root: PathBuf,
        /// Kernel version.
        kver: String,
    },
    /// Reading a file of the image failed.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A malformed line in `modules.dep` & co.
    #[error("{}:{line}: {reason}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A wanted module is neither in `modules.dep` nor built in.
    #[error(
        "kernel module {module} is neither in {} nor built into kernel {kver} (modules.builtin)",
        .modules_dep.display()
    )]
    Missing {
        /// The wanted module name.
        module: String,
        /// Kernel version.
        kver: String,
        /// The `modules.dep` that was searched.
        modules_dep: PathBuf,
    },
    /// `modules.dep` names a dependency that has no line of its own.
    #[error(
        "{}: module {module} depends on {dep}, which has no entry of its own (run depmod {kver} in the image)",
        .modules_dep.display()
    )]
    DanglingDependency {
        /// The module.
        module: String,
        /// The dependency path as written.
        dep: String,
        /// Kernel version.
        kver: String,
        /// The `modules.dep` file.
        modules_dep: PathBuf,
    },
    /// Hard dependency cycle in `modules.dep`.
    #[error("dependency cycle in {}: {}", .modules_dep.display(), .chain.join(" -> "))]
    Cycle {
        /// The modules in the cycle.
        chain: Vec<String>,
        /// The `modules.dep` file.
        modules_dep: PathBuf,
    },
    /// A compressed module could not be decompressed.
    #[error("cannot decompress kernel module {} ({format}): {reason}", .path.display())]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// `xz`, `zstd` or `gzip`.
        format: &'static str,
        /// Decoder message.
        reason: String,
    },
}

/// How a module file is stored in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleCompression {
    /// `.ko`
    None,
    /// `.ko.xz`
    Xz,
    /// `.ko.zst`
    Zstd,
    /// `.ko.gz`
    Gzip,
}

impl ModuleCompression {
    /// Detect from a file name; `None` if it is not a kernel module name.
    fn from_name(name: &str) -> Option<(ModuleCompression, &str)> {
        [
            (".ko", ModuleCompression::None),
            (".ko.xz", ModuleCompression::Xz),
            (".ko.zst", ModuleCompression::Zstd),
            (".ko.gz", ModuleCompression::Gzip),
        ]
        .into_iter()
        .find_map(|(suffix, c)| name.strip_suffix(suffix).map(|stem| (c, stem)))
    }

    fn suffix_len(self) -> usize {
        match self {
            ModuleCompression::None => 0,
            ModuleCompression::Xz => 3,
            ModuleCompression::Zstd => 4,
            ModuleCompression::Gzip => 3,
        }
    }
}

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelModule {
    /// Normalised name (`_` for `-`), e.g. `virtio_net`.
    pub name: String,
    /// Path relative to the modules dir as written in `modules.dep`,
    /// e.g. `kernel/drivers/net/virtio_net.ko.xz`.
    pub rel_path: String,
    /// File in the image tree (symlinks resolved inside the tree).
    pub path: PathBuf,
    /// Storage compression.
    pub compression: ModuleCompression,
}

impl KernelModule {
    /// Relative path of the decompressed module, e.g. `kernel/drivers/net/virtio_net.ko`.
    pub fn plain_rel_path(&self) -> &str {
        &self.rel_path[..self.rel_path.len() - self.compression.suffix_len()]
    }

    /// Read the module and decompress it if needed.
    pub fn read_plain(&self) -> Result<Vec<u8>, KmodError> {
        let data = std::fs::read(&self.path).map_err(|source| KmodError::Read {
            path: self.path.clone(),
            source,
        })?;
        decompress(&data, self.compression, &self.path)
    }
}

/// The resolved module set.
#[derive(Debug, Clone)]
pub struct ModuleSet {
    /// Kernel version.
    pub kver: String,
    /// The modules dir in the image tree (resolved).
    pub dir: PathBuf,
    /// Modules in load order (dependencies first).
    pub modules: Vec<KernelModule>,
    /// Wanted modules skipped because they are built into the kernel.
    pub builtin: Vec<String>,
}

/// Fold `-` to `_` as the kernel does for module names.
pub fn normalise_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Resolve `rel` inside `root` as if `root` were `/`: every symlink met on the
/// way is followed with absolute targets re-rooted at `root` and `..` clamped
/// at `root`. The returned path has no symlink components left.
pub fn resolve_in_root(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: usize = 40;
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, rel);
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            cur.pop();
            continue;
        }
        let candidate = cur.join(&comp);
        let full = root.join(&candidate);
        let meta = std::fs::symlink_metadata(&full)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::other(format!(
                    "too many levels of symbolic links at {}",
                    full.display()
                )));
            }
            let target = std::fs::read_link(&full)?;
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            push_components(&mut pending, &target);
        } else {
            cur = candidate;
        }
    }
    Ok(root.join(cur))
}

/// Push the normal and `..` components of `p` onto `stack` so that popping
/// yields them in order.
fn push_components(stack: &mut Vec<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    stack.extend(comps.into_iter().rev());
}

fn check_kver(kver: &str) -> Result<(), KmodError> {
    let bad = kver.is_empty()
        || kver == "."
        || kver == ".."
        || kver.contains('/')
        || kver.contains('\0')
        || kver.chars().any(char::is_whitespace);
    if bad {
        return Err(KmodError::InvalidKernelVersion {
            kver: kver.to_string(),
        });
    }
    Ok(())
}

/// The modules dir for `kver` in the image tree at `root`
/// (`usr/lib/modules/KVER` or `lib/modules/KVER`).
pub fn modules_dir(root: &Path, kver: &str) -> Result<PathBuf, KmodError> {
    check_kver(kver)?;
    for base in ["usr/lib/modules", "lib/modules"] {
        let found = resolve_in_root(root, &Path::new(base).join(kver))
            .ok()
            .filter(|p| p.is_dir());
        if let Some(p) = found {
            return Ok(p);
        }
    }
    Err(KmodError::ModulesDirNotFound {
        root: root.to_path_buf(),
        kver: kver.to_string(),
    })
}

/// Read an optional metadata file of the modules dir (`None` if absent).
fn read_optional(root: &Path, dir: &Path, name: &str) -> Result<Option<String>, KmodError> {
    let rel = dir.strip_prefix(root).unwrap_or(dir).join(name);
    let path = match resolve_in_root(root, &rel) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KmodError::Read {
                path: dir.join(name),
                source,
            });
        }
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KmodError::Read { path, source }),
    }
}

/// A `modules.dep` entry.
struct DepEntry {
    rel: String,
    deps: Vec<String>,
}

/// Module name from a path as written in the metadata files.
fn name_of(rel: &str) -> Option<(String, ModuleCompression)> {
    let file = rel.rsplit('/').next()?;
    let (c, stem) = ModuleCompression::from_name(file)?;
    Some((normalise_name(stem), c))
}

/// A relative path from `modules.dep` made safe: old absolute forms
/// `/lib/modules/KVER/...` are made relative, `..` is refused.
fn clean_rel(rel: &str, kver: &str) -> Option<String> {
    let mut r = rel;
    for prefix in ["/usr/lib/modules/", "/lib/modules/"] {
        if let Some(rest) = r.strip_prefix(prefix) {
            r = rest.strip_prefix(kver)?.strip_prefix('/')?;
        }
    }
    if r.starts_with('/') || r.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    Some(r.to_string())
}

struct Db {
    kver: String,
    dep_file: PathBuf,
    deps: HashMap<String, DepEntry>,
    by_rel: HashMap<String, String>,
    builtin: HashSet<String>,
    aliases: HashMap<String, Vec<String>>,
    soft: HashMap<String, (Vec<String>, Vec<String>)>,
}

impl Db {
    fn load(root: &Path, dir: &Path, kver: &str) -> Result<Db, KmodError> {
        let dep_file = dir.join("modules.dep");
        let dep_text = read_optional(root, dir, "modules.dep")?.ok_or_else(|| KmodError::Read {
            path: dep_file.clone(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("no modules.dep: run `depmod {kver}` inside the image"),
            ),
        })?;
        let mut deps = HashMap::new();
        let mut by_rel = HashMap::new();
        for (i, line) in dep_text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parse_err = |reason: String| KmodError::Parse {
                path: dep_file.clone(),
                line: i + 1,
                reason,
            };
            let (module, rest) = line
                .split_once(':')
                .ok_or_else(|| parse_err(format!("expected `module: deps...`, got {line:?}")))?;
            let rel = clean_rel(module.trim(), kver)
                .ok_or_else(|| parse_err(format!("unsafe module path {module:?}")))?;
            let (name, _) = name_of(&rel)
                .ok_or_else(|| parse_err(format!("{rel:?} is not a .ko[.xz|.zst|.gz] file")))?;
            let mut list = Vec::new();
            for d in rest.split_whitespace() {
                list.push(
                    clean_rel(d, kver)
                        .ok_or_else(|| parse_err(format!("unsafe dependency path {d:?}")))?,
                );
            }
            by_rel.insert(rel.clone(), name.clone());
            deps.insert(name, DepEntry { rel, deps: list });
        }
        let builtin = read_optional(root, dir, "modules.builtin")?
            .unwrap_or_default()
            .lines()
            .filter_map(|l| name_of(l.trim()).map(|(n, _)| n))
            .collect();
        let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
        for line in read_optional(root, dir, "modules.alias")?
            .unwrap_or_default()
            .lines()
        {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(alias), Some(module)) = (w.next(), w.next(), w.next()) {
                // Only exact aliases (softdeps name things like crypto-crc32c).
                if !alias.contains(['*', '?', '[']) {
                    aliases
                        .entry(alias.to_string())
                        .or_default()
                        .push(normalise_name(module));
                }
            }
        }
        let mut soft: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
        for line in read_optional(root, dir, "modules.softdep")?
            .unwrap_or_default()
            .lines()
        {
            let mut w = line.split_whitespace();
            if w.next() != Some("softdep") {
                continue;
            }
            let Some(module) = w.next() else { continue };
            let entry = soft.entry(normalise_name(module)).or_default();
            let mut mode = 0; // 0 = none (ignored, as kmod does), 1 = pre, 2 = post
            for t in w {
                match t {
                    "pre:" => mode = 1,
                    "post:" => mode = 2,
                    t if mode == 1 => entry.0.push(t.to_string()),
                    t if mode == 2 => entry.1.push(t.to_string()),
                    _ => {}
                }
            }
        }
        Ok(Db {
            kver: kver.to_string(),
            dep_file,
            deps,
            by_rel,
            builtin,
            aliases,
            soft,
        })
    }

    /// Module names (present in modules.dep) a name or alias stands for.
    fn lookup(&self, wanted: &str) -> Option<Vec<String>> {
        let n = normalise_name(wanted);
        if self.deps.contains_key(&n) {
            return Some(vec![n]);
        }
        let targets: Vec<String> = self
            .aliases
            .get(wanted)
            .or_else(|| self.aliases.get(&n))?
            .iter()
            .filter(|m| self.deps.contains_key(*m))
            .cloned()
            .collect();
        (!targets.is_empty()).then_some(targets)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Visiting,
    Done,
}

struct Walk<'a> {
    db: &'a Db,
    dir: &'a Path,
    root: &'a Path,
    marks: HashMap<String, Mark>,
    stack: Vec<String>,
    out: Vec<KernelModule>,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str, hard: bool) -> Result<(), KmodError> {
        match self.marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) if hard => {
                let start = self.stack.iter().position(|s| s == name).unwrap_or(0);
                let mut chain = self.stack[start..].to_vec();
                chain.push(name.to_string());
                return Err(KmodError::Cycle {
                    chain,
                    modules_dep: self.db.dep_file.clone(),
                });
            }
            Some(Mark::Visiting) => return Ok(()),
            None => {}
        }
        let db = self.db;
        let Some(entry) = db.deps.get(name) else {
            return Ok(()); // builtin or absent soft dependency
        };
        self.marks.insert(name.to_string(), Mark::Visiting);
        self.stack.push(name.to_string());
        let (pre, post) = db.soft.get(name).cloned().unwrap_or_default();
        for s in &pre {
            for m in db.lookup(s).unwrap_or_default() {
                self.visit(&m, false)?;
            }
        }
        for d in &entry.deps {
            let dep = db
                .by_rel
                .get(d)
                .ok_or_else(|| KmodError::DanglingDependency {
                    module: name.to_string(),
                    dep: d.clone(),
                    kver: db.kver.clone(),
                    modules_dep: db.dep_file.clone(),
                })?
                .clone();
            self.visit(&dep, true)?;
        }
        let rel_in_root = self
            .dir
            .strip_prefix(self.root)
            .unwrap_or(self.dir)
            .join(&entry.rel);
        let path = resolve_in_root(self.root, &rel_in_root).map_err(|source| KmodError::Read {
            path: self.dir.join(&entry.rel),
            source,
        })?;
        let compression = name_of(&entry.rel)
            .map(|(_, c)| c)
            .unwrap_or(ModuleCompression::None);
        self.out.push(KernelModule {
            name: name.to_string(),
            rel_path: entry.rel.clone(),
            path,
            compression,
        });
        self.stack.pop();
        self.marks.insert(name.to_string(), Mark::Done);
        for s in &post {
            for m in db.lookup(s).unwrap_or_default() {
                self.visit(&m, false)?;
            }
        }
        Ok(())
    }
}

/// Resolve `wanted` (module names or exact aliases) and their dependencies in
/// the image tree at `root` for kernel `kver`. Built-in modules are skipped;
/// a module that is neither available nor built in is an error.
pub fn resolve<S: AsRef<str>>(
    root: &Path,
    kver: &str,
    wanted: &[S],
) -> Result<ModuleSet, KmodError> {
    let dir = modules_dir(root, kver)?;
    let db = Db::load(root, &dir, kver)?;
    let mut walk = Walk {
        db: &db,
        dir: &dir,
        root,
        marks: HashMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    let mut builtin: Vec<String> = Vec::new();
    for w in wanted {
        let w = w.as_ref().trim();
        if w.is_empty() {
            continue;
        }
        if let Some(names) = db.lookup(w) {
            for n in names {
                walk.visit(&n, true)?;
            }
        } else if db.builtin.contains(&normalise_name(w)) {
            if !builtin.contains(&normalise_name(w)) {
                builtin.push(normalise_name(w));
            }
        } else {
            return Err(KmodError::Missing {
                module: w.to_string(),
                kver: kver.to_string(),
                modules_dep: db.dep_file.clone(),
            });
        }
    }
    let modules = walk.out;
    Ok(ModuleSet {
        kver: kver.to_string(),
        dir,
        modules,
        builtin,
    })
}

/// Decompress module bytes (`path` only names the file in errors).
pub fn decompress(
    data: &[u8],
    compression: ModuleCompression,
    path: &Path,
) -> Result<Vec<u8>, KmodError> {
    let err = |format: &'static str, reason: String| KmodError::Decompress {
        path: path.to_path_buf(),
        format,
        reason,
    };
    let mut out = Vec::with_capacity(data.len() * 4);
    match compression {
        ModuleCompression::None => return Ok(data.to_vec()),
        ModuleCompression::Xz => {
            lzma_rust2::XzReader::new(data, true)
                .read_to_end(&mut out)
                .map_err(|e| err("xz", e.to_string()))?;
        }
        ModuleCompression::Zstd => {
            let mut input = data;
            // A .zst file may hold several frames; decode them all.
            while !input.is_empty() {
                let mut dec = ruzstd::StreamingDecoder::new(&mut input)
                    .map_err(|e| err("zstd", e.to_string()))?;
                dec.read_to_end(&mut out)
                    .map_err(|e| err("zstd", e.to_string()))?;
            }
        }
        ModuleCompression::Gzip => {
            flate2::read::MultiGzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(|e| err("gzip", e.to_string()))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::process::{Command, Stdio};

    /// A fake image tree with a modules dir for `kver` under `usr/lib/modules`
    /// and the merged-usr symlink `lib -> usr/lib`.
    fn tree(kver: &str, dep: &str, builtin: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("usr/lib/modules").join(kver);
        fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.path().join("lib")).unwrap();
        fs::write(d.join("modules.dep"), dep).unwrap();
        fs::write(d.join("modules.builtin"), builtin).unwrap();
        for line in dep.lines() {
            if let Some((m, _)) = line.split_once(':') {
                let p = d.join(m.trim());
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, format!("module {m}")).unwrap();
            }
        }
        t
    }

    const DEP: &str = "\
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/crypto/crc32c_generic.ko:
kernel/drivers/scsi/some-thing.ko.xz:
";

    fn names(set: &ModuleSet) -> Vec<&str> {
        set.modules.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn closure_in_dependency_order() {
        let t = tree("6.1.0-1-amd64", DEP, "kernel/net/packet/af_packet.ko\n");
        let set = resolve(
            t.path(),
            "6.1.0-1-amd64",
            &["virtio_net", "virtio-pci", "af_packet", "virtio_net"],
        )
        .unwrap();
        assert_eq!(
            names(&set),
            [
                "failover",
                "net_failover",
                "virtio_ring",
                "virtio",
                "virtio_net",
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_pci"
            ]
        );
        assert_eq!(set.builtin, ["af_packet"]);
        // Every module comes after all its dependencies.
        let pos = |n: &str| names(&set).iter().position(|x| *x == n).unwrap();
        assert!(pos("virtio_ring") < pos("virtio") && pos("virtio") < pos("virtio_pci"));
        let m = &set.modules[0];
        assert_eq!(m.rel_path, "kernel/net/core/failover.ko");
        assert_eq!(
            m.read_plain().unwrap(),
            b"module kernel/net/core/failover.ko"
        );
        assert!(m.path.starts_with(t.path().join("usr/lib/modules")));
    }

    #[test]
    fn softdeps_through_aliases() {
        let t = tree("k", DEP, "");
        let d = t.path().join("usr/lib/modules/k");
        fs::write(
            d.join("modules.softdep"),
            "# comment\nsoftdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\nsoftdep cifs gcm\nsoftdep virtio_ring post: nonexistent\n",
        )
        .unwrap();
        fs::write(
            d.join("modules.alias"),
            "alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\nalias pci:v*d* virtio_pci\n",
        )
        .unwrap();
        let set = resolve(t.path(), "k", &["ext4"]).unwrap();
        assert_eq!(
            names(&set),
            ["crc32c_generic", "crc16", "mbcache", "jbd2", "ext4"]
        );
        // A wanted name may be an exact alias.
        let set = resolve(t.path(), "k", &["crc32c"]).unwrap();
        assert_eq!(names(&set), ["crc32c_generic"]);
    }

    #[test]
    fn missing_module_is_named() {
        let t = tree("k", DEP, "kernel/fs/overlayfs/overlay.ko\n");
        let err = resolve(t.path(), "k", &["overlay", "squashfs"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kernel module squashfs is neither in"),
            "{err}"
        );
        assert!(err.contains("modules.dep"), "{err}");
    }

    #[test]
    fn missing_kernel_version() {
        let t = tree("k", DEP, "");
        let err = resolve(t.path(), "6.1.0-9-amd64", &["ext4"]).unwrap_err();
        assert!(matches!(err, KmodError::ModulesDirNotFound { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("lib/modules/6.1.0-9-amd64 not found")
                && msg.contains("the image has no kernel for version 6.1.0-9-amd64"),
            "{msg}"
        );
        assert!(matches!(
            resolve(t.path(), "../k", &["ext4"]),
            Err(KmodError::InvalidKernelVersion { .. })
        ));
    }

    #[test]
    fn lib_modules_without_usr() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("lib/modules/k/kernel");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("loop.ko"), "x").unwrap();
        fs::write(d.parent().unwrap().join("modules.dep"), "kernel/loop.ko:\n").unwrap();
        // No modules.builtin at all: fine.
        let set = resolve(t.path(), "k", &["loop"]).unwrap();
        assert_eq!(names(&set), ["loop"]);
    }

    #[test]
    fn absolute_symlinks_stay_in_the_image() {
        let t = tempfile::tempdir().unwrap();
        // lib -> /usr/lib must resolve to <root>/usr/lib, not the host's.
        let d = t.path().join("usr/lib/modules/k");
        fs::create_dir_all(d.join("kernel")).unwrap();
        fs::write(d.join("kernel/real.ko"), "inside").unwrap();
        std::os::unix::fs::symlink("/usr/lib", t.path().join("lib")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/lib/modules/k/kernel/real.ko",
            d.join("kernel/loop.ko"),
        )
        .unwrap();
        fs::write(d.join("modules.dep"), "kernel/loop.ko:\n").unwrap();
        let p = resolve_in_root(t.path(), Path::new("lib/modules/k/../k/kernel/loop.ko")).unwrap();
        assert_eq!(p, t.path().join("usr/lib/modules/k/kernel/real.ko"));
        let set = resolve(t.path(), "k", &["loop"]).unwrap();
        assert_eq!(set.modules[0].read_plain().unwrap(), b"inside");
        // `..` cannot climb above the root.
        let p = resolve_in_root(t.path(), Path::new("../../usr/lib")).unwrap();
        assert_eq!(p, t.path().join("usr/lib"));
    }

    #[test]
    fn dangling_and_cycles_and_bad_lines() {
        let t = tree("k", "kernel/a.ko: kernel/b.ko\n", "");
        let err = resolve(t.path(), "k", &["a"]).unwrap_err().to_string();
        assert!(err.contains("depends on kernel/b.ko"), "{err}");

        let t = tree(
            "k",
            "kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n",
            "",
        );
        let err = resolve(t.path(), "k", &["a"]).unwrap_err().to_string();
        assert!(err.contains("a -> b -> a"), "{err}");

        let t = tree("k", "kernel/a.ko kernel/b.ko\n", "");
        let err = resolve(t.path(), "k", &["a"]).unwrap_err().to_string();
        assert!(err.contains("modules.dep:1:"), "{err}");

        let t = tree("k", "kernel/../../etc/x.ko:\n", "");
        let err = resolve(t.path(), "k", &["x"]).unwrap_err().to_string();
        assert!(err.contains("unsafe module path"), "{err}");
    }

    fn compress_with(tool: &[&str], data: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool[0])
            .args(&tool[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} must be installed for this test: {e}", tool[0]));
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(&input).unwrap();
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn decompresses_like_the_kernel_build_does() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let p = Path::new("m.ko");
        // scripts/Makefile.modinst: xz --check=crc32 --lzma2=dict=1MiB; zstd -T0; gzip -n
        let xz = compress_with(&["xz", "--check=crc32", "--lzma2=dict=1MiB", "-c"], &data);
        assert_eq!(decompress(&xz, ModuleCompression::Xz, p).unwrap(), data);
        let xz64 = compress_with(&["xz", "-c"], &data);
        assert_eq!(decompress(&xz64, ModuleCompression::Xz, p).unwrap(), data);
        let zst = compress_with(&["zstd", "-q", "-c", "-T0"], &data);
        assert_eq!(decompress(&zst, ModuleCompression::Zstd, p).unwrap(), data);
        let gz = compress_with(&["gzip", "-n", "-c"], &data);
        assert_eq!(decompress(&gz, ModuleCompression::Gzip, p).unwrap(), data);
        let err = decompress(b"garbage", ModuleCompression::Xz, p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.ko (xz)"), "{err}");
    }

    #[test]
    fn compressed_modules_in_a_tree() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("lib/modules/k");
        fs::create_dir_all(d.join("kernel/fs")).unwrap();
        fs::write(
            d.join("kernel/fs/squashfs.ko.zst"),
            compress_with(&["zstd", "-q", "-c"], b"squash"),
        )
        .unwrap();
        fs::write(
            d.join("kernel/fs/overlay.ko.xz"),
            compress_with(&["xz", "--check=crc32", "-c"], b"over"),
        )
        .unwrap();
        fs::write(
            d.join("modules.dep"),
            "kernel/fs/squashfs.ko.zst:\nkernel/fs/overlay.ko.xz: kernel/fs/squashfs.ko.zst\n",
        )
        .unwrap();
        let set = resolve(t.path(), "k", &["overlay"]).unwrap();
        assert_eq!(names(&set), ["squashfs", "overlay"]);
        assert_eq!(set.modules[0].plain_rel_path(), "kernel/fs/squashfs.ko");
        assert_eq!(set.modules[1].plain_rel_path(), "kernel/fs/overlay.ko");
        assert_eq!(set.modules[0].read_plain().unwrap(), b"squash");
        assert_eq!(set.modules[1].read_plain().unwrap(), b"over");
    }
}
