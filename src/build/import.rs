//! Root trees from elsewhere (`create --from`): a directory, a tarball (`.tar`,
//! `.tar.gz`, `.tar.zst`: what `mmdebstrap --format=tar` writes), an OCI image layout
//! directory, or a `docker save` / OCI archive tarball (layers applied in order, `.wh.`
//! whiteouts and `.wh..wh..opq` opaque directories honoured).
//!
//! Everything is a sequence of tar streams (a directory is walked into one, on the same
//! filesystem only). Each source is read twice: [`check`] reads it without writing
//! anything and refuses hostile input naming the entry (absolute or `..` paths, device
//! nodes outside `dev/`, hard links to what is not in the tree, symbolic links leaving the
//! tree or entries written through an absolute one), before the image's name is even
//! reserved, so a refusal leaves nothing in the store; [`import`] then writes the tree,
//! every parent resolved inside the tree the way a chroot would (`build::tree`), an
//! existing link replaced, never followed.
//!
//! The entry walk is our own: the `tar` crate's `unpack_in` skips `..` silently and
//! knows no whiteouts; only the creation of one entry (`Entry::unpack`) is delegated.
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::sys::remove::remove_tree;
use crate::sys::runner::Runner;

/// Where a tree comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A root tree directory, copied (same filesystem only).
    Dir(PathBuf),
    /// A tarball of a root tree (plain, gzip or zstd).
    Tarball(PathBuf),
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).
    OciLayout(PathBuf),
    /// A `docker save` tarball (`manifest.json`) or an OCI layout in a tarball.
    ImageArchive(PathBuf),
}

impl Source {
    /// What the path is, from its content (not its name).
    pub fn detect(path: &Path) -> Result<Source> {
        let meta = fs::metadata(path)
            .map_err(|e| Error::invalid(format!("--from {}: {e}", path.display())))?;
        if meta.is_dir() {
            if path.join("oci-layout").is_file() && path.join("index.json").is_file() {
                return Ok(Source::OciLayout(path.to_path_buf()));
            }
            return Ok(Source::Dir(path.to_path_buf()));
        }
        if !meta.is_file() {
            return Err(Error::invalid(format!(
                "--from {}: neither a directory nor a file (a root tree, a .tar/.tar.gz/.tar.zst, an OCI layout or a docker-archive tarball)",
                path.display()
            )));
        }
        // An image archive has its manifest at the top; a root tree never does.
        let mut top = HashSet::new();
        let mut ar = tar::Archive::new(open_maybe_compressed(path)?);
        for e in ar.entries().map_err(|e| bad_tar(path, e))? {
            let e = e.map_err(|e| bad_tar(path, e))?;
            let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let p = p.trim_start_matches("./").to_string();
            if !p.contains('/') {
                top.insert(p);
            }
            if top.len() > 64 {
                break;
            }
        }
        if top.contains("manifest.json") || top.contains("oci-layout") {
            Ok(Source::ImageArchive(path.to_path_buf()))
        } else {
            Ok(Source::Tarball(path.to_path_buf()))
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Source::Dir(p)
            | Source::Tarball(p)
            | Source::OciLayout(p)
            | Source::ImageArchive(p) => p,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Source::Dir(_) => "directory",
            Source::Tarball(_) => "tarball",
            Source::OciLayout(_) => "OCI layout",
            Source::ImageArchive(_) => "image archive",
        }
    }
}

fn bad_tar(path: &Path, e: io::Error) -> Error {
    Error::invalid(format!(
        "--from {}: not a readable tar archive: {e}",
        path.display()
    ))
}

fn refuse(src: &Path, entry: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "--from {}: entry {entry:?} refused: {why}; nothing was imported",
        src.display()
    ))
}

/// A file, decompressed by its magic number (gzip, zstd or plain).
fn open_maybe_compressed(path: &Path) -> Result<Box<dyn Read + Send>> {
    let mut f =
        File::open(path).map_err(|e| Error::invalid(format!("--from {}: {e}", path.display())))?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut f, &mut magic).at(path)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let r = BufReader::new(head.chain(f));
    decompress(r, &magic[..n], path)
}

fn decompress<R: Read + Send + 'static>(
    r: R,
    magic: &[u8],
    path: &Path,
) -> Result<Box<dyn Read + Send>> {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::StreamingDecoder::new(r).map_err(|e| {
            Error::invalid(format!("--from {}: bad zstd stream: {e}", path.display()))
        })?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(r))
    }
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// One tar stream of the source, in application order.
enum Layer {
    File(PathBuf),
    Dir(PathBuf),
}

impl Layer {
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            Layer::File(p) => open_maybe_compressed(p),
            Layer::Dir(d) => dir_stream(d),
        }
    }
}

/// A directory as a tar stream, written by a thread into a pipe: the same filesystem
/// only (another one mounted inside is not part of the tree), links kept as links,
/// hard links kept as hard links (the second path of an inode is a link entry to the
/// first), extended attributes kept as PAX `SCHILY.xattr.` records (what GNU tar and
/// the `tar` crate's unpacking read: `security.capability` of ping, ...; not the
/// host's SELinux label nor ACLs), sockets left out.
fn dir_stream(dir: &Path) -> Result<Box<dyn Read + Send>> {
    let (reader, writer) = io::pipe().at(dir)?;
    let dir = dir.to_path_buf();
    let failed: Arc<Mutex<Option<String>>> = Arc::default();
    let report = failed.clone();
    std::thread::spawn(move || {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        // A sparse file (holes: `cp -a` to a tmpfs makes them) is streamed with its
        // zeros: the tar crate would write a GNU sparse entry, which the import
        // refuses as an unsupported type.
        b.sparse(false);
        match write_dir(&mut b, &dir).and_then(|()| b.finish()) {
            Ok(()) => {}
            Err(e) => {
                if let Ok(mut f) = report.lock() {
                    *f = Some(e.to_string());
                }
            }
        }
    });
    Ok(Box::new(DirReader {
        pipe: reader,
        failed,
    }))
}

/// The reading end of a directory stream: a failure of the writing thread is an error
/// at the end of the stream, never a silently shorter tree.
struct DirReader {
    pipe: io::PipeReader,
    failed: Arc<Mutex<Option<String>>>,
}

impl Read for DirReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(e) = self.failed.lock().ok().and_then(|f| f.clone()) {
                return Err(io::Error::other(format!("reading the directory: {e}")));
            }
        }
        Ok(n)
    }
}

fn write_dir<W: io::Write>(b: &mut tar::Builder<W>, dir: &Path) -> io::Result<()> {
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let walk = walkdir::WalkDir::new(dir)
        .same_file_system(true)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for e in walk {
        let e = e.map_err(io::Error::from)?;
        let ft = e.file_type();
        if ft.is_socket() {
            continue;
        }
        let rel = e.path().strip_prefix(dir).map_err(io::Error::other)?;
        let meta = e.metadata().map_err(io::Error::from)?;
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = inodes.get(&key) {
                let mut h = tar::Header::new_gnu();
                h.set_metadata(&meta);
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, rel, first)
                    .map_err(|e| io::Error::other(format!("{}: {e}", rel.display())))?;
                continue;
            }
            inodes.insert(key, rel.to_path_buf());
        }
        if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            // Written here: the crate's path for special files failed on device nodes
            // (and the stream ended there).
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&meta);
            h.set_size(0);
            h.set_entry_type(if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = meta.rdev();
            h.set_device_major(libc::major(rdev))?;
            h.set_device_minor(libc::minor(rdev))?;
            b.append_data(&mut h, rel, io::empty())
                .map_err(|e| io::Error::other(format!("{}: {e}", rel.display())))?;
            continue;
        }
        if ft.is_file() || ft.is_dir() {
            append_xattrs(b, e.path(), rel)?;
        }
        b.append_path_with_name(e.path(), rel)
            .map_err(|e| io::Error::other(format!("{}: {e}", rel.display())))?;
    }
    Ok(())
}

/// The PAX header carrying the extended attributes of `path` (none: nothing written).
fn append_xattrs<W: io::Write>(b: &mut tar::Builder<W>, path: &Path, rel: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut data: Vec<u8> = Vec::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(_) => return Ok(()), // a filesystem without xattrs
    };
    for name in names {
        let n = name.as_bytes();
        if n.starts_with(b"system.") || n == b"security.selinux" {
            continue;
        }
        let Ok(Some(value)) = xattr::get(path, &name) else {
            continue;
        };
        let mut body = b"SCHILY.xattr.".to_vec();
        body.extend_from_slice(n);
        body.push(b'=');
        body.extend_from_slice(&value);
        body.push(b'\n');
        // "LEN body": LEN counts itself and the space.
        let mut len = body.len() + 2;
        while len.to_string().len() + 1 + body.len() != len {
            len += 1;
        }
        data.extend_from_slice(format!("{len} ").as_bytes());
        data.extend_from_slice(&body);
    }
    if data.is_empty() {
        return Ok(());
    }
    let mut h = tar::Header::new_ustar();
    let name = format!("PaxHeaders/{}", rel.display());
    let short: String = name.chars().take(99).collect();
    h.set_path(short.trim_end_matches('/'))?;
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data.as_slice())
}

/// A temporary directory for unpacked image archives; removed on drop.
struct Scratch(Option<tempfile::TempDir>);

/// The layers of a source. Image archives are unpacked (their blobs only) in `scratch`.
fn layers(src: &Source, scratch_in: &Path, scratch: &mut Scratch) -> Result<Vec<Layer>> {
    match src {
        Source::Dir(d) => Ok(vec![Layer::Dir(d.clone())]),
        Source::Tarball(p) => Ok(vec![Layer::File(p.clone())]),
        Source::OciLayout(d) => oci_layers(d, d),
        Source::ImageArchive(p) => {
            fs::create_dir_all(scratch_in).at(scratch_in)?;
            let t = tempfile::Builder::new()
                .prefix(".import-")
                .tempdir_in(scratch_in)
                .at(scratch_in)?;
            unpack_archive(p, t.path())?;
            let dir = t.path().to_path_buf();
            scratch.0 = Some(t);
            if dir.join("index.json").is_file() {
                oci_layers(&dir, p)
            } else {
                docker_layers(&dir, p)
            }
        }
    }
}

/// Unpacks an image archive's plain files and directories (nothing else has a place in
/// one), paths checked.
fn unpack_archive(p: &Path, dst: &Path) -> Result<()> {
    let mut ar = tar::Archive::new(open_maybe_compressed(p)?);
    for e in ar.entries().map_err(|e| bad_tar(p, e))? {
        let mut e = e.map_err(|e| bad_tar(p, e))?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let Some(rel) = clean(&name).map_err(|why| refuse(p, &name, why))? else {
            continue;
        };
        let out = dst.join(&rel);
        match e.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&out).at(&out)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = out.parent() {
                    fs::create_dir_all(parent).at(parent)?;
                }
                let mut f = File::create(&out).at(&out)?;
                io::copy(&mut e, &mut f).at(&out)?;
            }
            tar::EntryType::Symlink if rel == "blobs" || rel.starts_with("blobs/") => {
                return Err(refuse(p, &name, "a link among the blobs"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn json_file(p: &Path, origin: &Path) -> Result<Value> {
    let text = fs::read_to_string(p).map_err(|e| {
        Error::invalid(format!("--from {}: {}: {e}", origin.display(), p.display()))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("--from {}: {}: {e}", origin.display(), p.display())))
}

/// A blob of an OCI layout by digest, its sha256 checked.
fn blob(dir: &Path, digest: &str, origin: &Path) -> Result<PathBuf> {
    let (alg, hex) = digest.split_once(':').unwrap_or(("", ""));
    if alg != "sha256" || hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!(
            "--from {}: unsupported or malformed digest {digest:?} (sha256:<64 hex> expected)",
            origin.display()
        )));
    }
    let p = dir.join("blobs").join(alg).join(hex);
    let mut f = File::open(&p)
        .map_err(|e| Error::invalid(format!("--from {}: blob {digest}: {e}", origin.display())))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).at(&p)?;
    let got = hex_of(&h.finalize());
    if got != hex {
        return Err(Error::invalid(format!(
            "--from {}: blob {digest} is corrupt (its content hashes to sha256:{got})",
            origin.display()
        )));
    }
    Ok(p)
}

pub fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn oci_layers(dir: &Path, origin: &Path) -> Result<Vec<Layer>> {
    let mut doc = json_file(&dir.join("index.json"), origin)?;
    // An index may point at another index (multi-platform): follow to a manifest.
    for _ in 0..4 {
        if doc.get("layers").is_some() {
            break;
        }
        let manifests = doc
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let arch = crate::build::Arch::host()
            .deb()
            .replace("ppc64el", "ppc64le");
        let pick = if manifests.len() == 1 {
            manifests.first()
        } else {
            manifests.iter().find(|m| {
                m.pointer("/platform/architecture").and_then(Value::as_str) == Some(&arch)
            })
        };
        let Some(m) = pick else {
            return Err(Error::invalid(format!(
                "--from {}: the index names {} manifests and none for linux/{arch}",
                origin.display(),
                manifests.len()
            )));
        };
        let digest = m.get("digest").and_then(Value::as_str).unwrap_or_default();
        doc = json_file(&blob(dir, digest, origin)?, origin)?;
    }
    let layers = doc.get("layers").and_then(Value::as_array).ok_or_else(|| {
        Error::invalid(format!(
            "--from {}: the manifest has no layers",
            origin.display()
        ))
    })?;
    layers
        .iter()
        .map(|l| {
            let d = l.get("digest").and_then(Value::as_str).unwrap_or_default();
            Ok(Layer::File(blob(dir, d, origin)?))
        })
        .collect()
}

fn docker_layers(dir: &Path, origin: &Path) -> Result<Vec<Layer>> {
    let doc = json_file(&dir.join("manifest.json"), origin)?;
    let first = doc.as_array().and_then(|a| a.first()).ok_or_else(|| {
        Error::invalid(format!(
            "--from {}: manifest.json names no image",
            origin.display()
        ))
    })?;
    let layers = first
        .get("Layers")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::invalid(format!(
                "--from {}: manifest.json has no Layers",
                origin.display()
            ))
        })?;
    layers
        .iter()
        .map(|l| {
            let name = l.as_str().unwrap_or_default();
            let rel = clean(name)
                .ok()
                .flatten()
                .ok_or_else(|| refuse(origin, name, "a layer path outside the archive"))?;
            Ok(Layer::File(dir.join(rel)))
        })
        .collect()
}

/// An entry path made relative and checked: None for the root itself; Err(why) for an
/// absolute path or one with `..`.
fn clean(name: &str) -> std::result::Result<Option<String>, &'static str> {
    if name.starts_with('/') {
        return Err("an absolute path");
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("a path with `..`"),
            c => parts.push(c),
        }
    }
    Ok(if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    })
}

/// What the check learnt of a source.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub entries: u64,
    pub layers: usize,
    /// Kernel versions with both `usr/lib/modules/<v>/` (or `lib/modules`) and an image
    /// (`boot/vmlinuz-<v>` or `.../modules/<v>/vmlinuz`).
    pub kernels: Vec<String>,
}

/// The check's view of the tree: symbolic links by path, the other non-directories.
#[derive(Default)]
struct View {
    links: HashMap<String, String>,
    files: HashSet<String>,
    module_dirs: HashSet<String>,
    images: HashSet<String>,
}

impl View {
    /// Lexically resolves `rel` through the links seen; Err names a link that cannot be
    /// gone through (absolute or leaving the tree).
    fn through(&self, rel: &str) -> std::result::Result<String, String> {
        let mut cur: Vec<String> = Vec::new();
        let mut todo: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    if cur.pop().is_none() {
                        return Err(format!("{rel} leaves the tree"));
                    }
                    continue;
                }
                _ => {}
            }
            let mut cand = cur.clone();
            cand.push(c);
            let key = cand.join("/");
            // the last component is the entry itself: never followed
            if let (false, Some(t)) = (todo.is_empty(), self.links.get(&key)) {
                hops += 1;
                if hops > 40 || t.starts_with('/') {
                    return Err(format!("written through the symbolic link {key} -> {t}"));
                }
                todo.extend(t.split('/').rev().map(str::to_string));
                continue; // cur stays the link's directory
            }
            cur = cand;
        }
        Ok(cur.join("/"))
    }

    fn note(&mut self, rel: &str) {
        let parts: Vec<&str> = rel.split('/').collect();
        if let Some(pos) = parts.windows(2).position(|w| w == ["lib", "modules"]) {
            if parts.get(pos + 2).is_some() {
                let v = parts[pos + 2].to_string();
                if parts.len() == pos + 4 && parts[pos + 3] == "vmlinuz" {
                    self.images.insert(v.clone());
                }
                self.module_dirs.insert(v);
            }
        }
        if let ["boot", f] = parts.as_slice() {
            if let Some(v) = f.strip_prefix("vmlinuz-") {
                self.images.insert(v.to_string());
            }
        }
    }

    fn forget(&mut self, rel: &str) {
        let pre = format!("{rel}/");
        self.links.retain(|k, _| k != rel && !k.starts_with(&pre));
        self.files.retain(|k| k != rel && !k.starts_with(&pre));
    }
}

/// Does the relative link target `t` of the link at `rel` leave the tree?
fn leaves(rel: &str, t: &str) -> bool {
    if t.starts_with('/') {
        return false; // re-rooted at the tree, as in a chroot
    }
    let mut depth: i64 = rel.split('/').count() as i64 - 1;
    for c in t.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// What to do with one entry.
enum Act {
    Skip,
    Opaque,
    Whiteout,
    HardLink { to: String },
    Unpack,
}

/// Checks one entry against the view (and records it there).
fn judge(
    v: &mut View,
    src: &Path,
    name: &str,
    e: &tar::Entry<'_, impl Read>,
    whiteouts: bool,
) -> Result<(Option<String>, Act)> {
    let Some(rel) = clean(name).map_err(|why| refuse(src, name, why))? else {
        return Ok((None, Act::Skip));
    };
    let resolved = v.through(&rel).map_err(|why| refuse(src, name, why))?;
    let base = resolved.rsplit('/').next().unwrap_or_default().to_string();
    let dir = resolved
        .rsplit_once('/')
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    if whiteouts {
        if base == ".wh..wh..opq" {
            let pre = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            v.links.retain(|k, _| !k.starts_with(&pre));
            v.files.retain(|k| !k.starts_with(&pre));
            return Ok((Some(dir), Act::Opaque));
        }
        if let Some(gone) = base.strip_prefix(".wh.") {
            let target = if dir.is_empty() {
                gone.to_string()
            } else {
                format!("{dir}/{gone}")
            };
            clean(&target).map_err(|why| refuse(src, name, why))?;
            v.forget(&target);
            return Ok((Some(target), Act::Whiteout));
        }
    }
    let h = e.header();
    let t = h.entry_type();
    let act = match t {
        tar::EntryType::Directory => {
            v.forget_links_at(&resolved);
            Act::Unpack
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Fifo => {
            v.forget(&resolved);
            v.files.insert(resolved.clone());
            Act::Unpack
        }
        tar::EntryType::Symlink => {
            let target = e
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if target.is_empty() {
                return Err(refuse(src, name, "a symbolic link with no target"));
            }
            if leaves(&resolved, &target) {
                return Err(refuse(
                    src,
                    name,
                    format!("a symbolic link -> {target}, which leaves the tree"),
                ));
            }
            v.forget(&resolved);
            v.links.insert(resolved.clone(), target);
            Act::Unpack
        }
        tar::EntryType::Link => {
            let to = e
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let to_rel = clean(&to)
                .map_err(|why| refuse(src, name, format!("a hard link to {to:?}: {why}")))?
                .ok_or_else(|| refuse(src, name, "a hard link to the root"))?;
            let to_res = v
                .through(&to_rel)
                .map_err(|why| refuse(src, name, format!("a hard link to {to}: {why}")))?;
            if !v.files.contains(&to_res) {
                return Err(refuse(
                    src,
                    name,
                    format!("a hard link to {to}, which is not a file of the tree before it"),
                ));
            }
            v.forget(&resolved);
            v.files.insert(resolved.clone());
            Act::HardLink { to: to_res }
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            if resolved == "dev" || resolved.starts_with("dev/") {
                // the booted system mounts devtmpfs on /dev: nothing to keep
                Act::Skip
            } else {
                return Err(refuse(
                    src,
                    name,
                    format!(
                        "a device node ({} {},{}) outside dev/",
                        if t == tar::EntryType::Char {
                            "char"
                        } else {
                            "block"
                        },
                        h.device_major().ok().flatten().unwrap_or(0),
                        h.device_minor().ok().flatten().unwrap_or(0)
                    ),
                ));
            }
        }
        tar::EntryType::XGlobalHeader
        | tar::EntryType::XHeader
        | tar::EntryType::GNULongName
        | tar::EntryType::GNULongLink => Act::Skip,
        other => {
            return Err(refuse(
                src,
                name,
                format!("an unsupported entry type {other:?}"),
            ));
        }
    };
    v.note(&resolved);
    Ok((Some(resolved), act))
}

impl View {
    fn forget_links_at(&mut self, rel: &str) {
        self.links.remove(rel);
        self.files.remove(rel);
    }
}

/// Reads the whole source without writing anything (an image archive's blobs excepted,
/// in a temporary directory under `scratch`), refusing hostile input.
pub fn check(src: &Source, scratch: &Path) -> Result<Checked> {
    let mut s = Scratch(None);
    let layers = layers(src, scratch, &mut s)?;
    let whiteouts = matches!(src, Source::OciLayout(_) | Source::ImageArchive(_));
    let mut v = View::default();
    let mut out = Checked {
        layers: layers.len(),
        ..Checked::default()
    };
    for l in &layers {
        let mut ar = tar::Archive::new(l.open()?);
        for e in ar.entries().map_err(|e| bad_tar(src.path(), e))? {
            let e = e.map_err(|e| bad_tar(src.path(), e))?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            judge(&mut v, src.path(), &name, &e, whiteouts)?;
            out.entries += 1;
        }
    }
    let mut k: Vec<String> = v
        .module_dirs
        .iter()
        .filter(|m| v.images.contains(*m))
        .cloned()
        .collect();
    k.sort_by(|a, b| crate::build::version_cmp(a, b));
    out.kernels = k;
    Ok(out)
}

/// Writes the source into `tree` (created; must not exist or be empty).
pub fn import(r: &Runner, src: &Source, tree: &Path, scratch: &Path) -> Result<Checked> {
    let mut s = Scratch(None);
    let layers = layers(src, scratch, &mut s)?;
    let whiteouts = matches!(src, Source::OciLayout(_) | Source::ImageArchive(_));
    fs::create_dir_all(tree).at(tree)?;
    let mut v = View::default();
    let mut out = Checked {
        layers: layers.len(),
        ..Checked::default()
    };
    for l in &layers {
        // What this layer wrote: an opaque directory hides the layers below only.
        let mut written: HashSet<String> = HashSet::new();
        let mut ar = tar::Archive::new(l.open()?);
        ar.set_preserve_permissions(true);
        ar.set_preserve_ownerships(true);
        ar.set_preserve_mtime(true);
        ar.set_unpack_xattrs(true);
        for e in ar.entries().map_err(|e| bad_tar(src.path(), e))? {
            let mut e = e.map_err(|e| bad_tar(src.path(), e))?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let (rel, act) = judge(&mut v, src.path(), &name, &e, whiteouts)?;
            out.entries += 1;
            let Some(rel) = rel else { continue };
            if matches!(act, Act::Unpack | Act::HardLink { .. }) {
                written.insert(rel.clone());
            }
            match act {
                Act::Skip => {}
                Act::Opaque => {
                    let d = crate::build::tree::resolve(tree, &rel, true)?;
                    clear_lower(r, &d, &rel, &written)?;
                }
                Act::Whiteout => {
                    let p = crate::build::tree::resolve(tree, &rel, false)?;
                    remove_tree(r, &p)?;
                }
                Act::HardLink { to } => {
                    let dst = place(r, tree, &rel, false)?;
                    let from = crate::build::tree::resolve(tree, &to, false)?;
                    fs::hard_link(&from, &dst).at(&dst)?;
                }
                Act::Unpack => {
                    let is_dir = e.header().entry_type() == tar::EntryType::Directory;
                    let dst = place(r, tree, &rel, is_dir)?;
                    e.unpack(&dst).at(&dst)?;
                }
            }
        }
    }
    Ok(out)
}

/// Empties `dir` (at `rel` in the tree) of what the layers below put there, keeping
/// what the current layer wrote (`written`), whatever the entries' order.
fn clear_lower(r: &Runner, dir: &Path, rel: &str, written: &HashSet<String>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for c in fs::read_dir(dir).at(dir)? {
        let c = c.at(dir)?;
        let name = c.file_name().to_string_lossy().into_owned();
        let crel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let pre = format!("{crel}/");
        let kept_below = written.iter().any(|w| w.starts_with(&pre));
        if kept_below && c.file_type().at(dir)?.is_dir() {
            clear_lower(r, &c.path(), &crel, written)?;
        } else if !written.contains(&crel) {
            remove_tree(r, &c.path())?;
        }
    }
    Ok(())
}

/// The host path an entry is written at: its parent resolved inside the tree (and
/// created), whatever stands there removed unless both are directories.
fn place(r: &Runner, tree: &Path, rel: &str, is_dir: bool) -> Result<PathBuf> {
    let (dir, base) = rel.rsplit_once('/').unwrap_or(("", rel));
    let parent = if dir.is_empty() {
        tree.to_path_buf()
    } else {
        crate::build::tree::resolve(tree, dir, true)?
    };
    if !crate::store::is_inside(&parent, tree) && parent != tree {
        return Err(Error::Tree {
            tree: tree.to_path_buf(),
            msg: format!("{rel}: its directory resolves outside the tree"),
        });
    }
    fs::create_dir_all(&parent).at(&parent)?;
    let dst = parent.join(base);
    if let Ok(m) = fs::symlink_metadata(&dst) {
        if !(is_dir && m.is_dir()) {
            if m.is_dir() {
                remove_tree(r, &dst)?;
            } else {
                fs::remove_file(&dst).at(&dst)?;
            }
        }
    }
    Ok(dst)
}

/// The size of a tree on disk, for messages (bytes of regular files).
pub fn tree_bytes(tree: &Path) -> u64 {
    walkdir::WalkDir::new(tree)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.size())
        .sum()
}

/// A source checked before the creation begins, and where its kernel comes from.
pub struct Prepared {
    pub source: Source,
    pub checked: Checked,
    /// `--kernel-from`: (image, kernel version, its squashfs).
    pub kernel_from: Option<(String, String, PathBuf)>,
}

/// Checks `--from` (and `--kernel-from`) before anything is written: hostile entries,
/// a tree without a kernel, flags that need the repositories.
pub fn prepare(
    ctx: &crate::ctx::Ctx,
    name: &str,
    o: &crate::build::image::BuildOptions,
    from: &Path,
) -> Result<Prepared> {
    if !o.packages.is_empty() {
        return Err(Error::invalid(format!(
            "--packages cannot be installed into an imported tree (--from {}): install them afterwards with `disklessset exec {name} -- apt-get install ...` or an ansible playbook",
            from.display()
        )));
    }
    let from = std::path::absolute(from)
        .map_err(|e| Error::invalid(format!("--from {}: {e}", from.display())))?;
    let source = Source::detect(&from)?;
    let work = ctx.cfg.image_workdir(name);
    let scratch = work.parent().unwrap_or(&work).to_path_buf();
    let checked = check(&source, &scratch)?;
    let kernel_from = match &o.kernel_from {
        Some(img) => {
            let rec = crate::store::load(&ctx.cfg, img)
                .map_err(|e| Error::invalid(format!("--kernel-from {img}: {e}")))?;
            let kver = rec.kernel_version().map(str::to_string).ok_or_else(|| {
                Error::invalid(format!("--kernel-from {img}: the image records no kernel"))
            })?;
            let sq = crate::pack::generations::current_path(&ctx.cfg, img);
            if rec.image_class != crate::store::ImageClass::LivenetImage || !sq.is_file() {
                return Err(Error::invalid(format!(
                    "--kernel-from {img}: not a livenet image with a squashfs (the kernel and modules are taken from one)"
                )));
            }
            Some((img.clone(), kver, sq))
        }
        None if checked.kernels.is_empty() => {
            return Err(Error::invalid(format!(
                "--from {}: the tree has no kernel (no usr/lib/modules/<version> with boot/vmlinuz-<version>): add --kernel-from IMAGE to take the kernel and modules of a livenet image, or install a kernel package in the source",
                from.display()
            )));
        }
        None => None,
    };
    Ok(Prepared {
        source,
        checked,
        kernel_from,
    })
}

/// Step 2 of an imported creation: the tree from the source, the kernel of
/// `--kernel-from` added, the record told where it came from.
pub fn apply(
    ctx: &crate::ctx::Ctx,
    p: &Prepared,
    tree: &Path,
    work: &Path,
    rec: &mut crate::store::ImageRecord,
) -> Result<()> {
    let r = &ctx.runner;
    if r.dry_run() {
        r.note(format!(
            "import the {} {} into {} ({} entries in {} layer(s) checked)",
            p.source.kind(),
            p.source.path().display(),
            tree.display(),
            p.checked.entries,
            p.checked.layers
        ));
        return Ok(());
    }
    import(r, &p.source, tree, work)?;
    if let Some((img, kver, sq)) = &p.kernel_from {
        let k = work.join("kernel-from");
        remove_tree(r, &k)?;
        r.run(
            &crate::sys::runner::Cmd::new("unsquashfs")
                .args(["-no-progress", "-n", "-d"])
                .arg(&k)
                .arg(sq)
                .arg(format!("usr/lib/modules/{kver}"))
                .package("squashfs-tools"),
        )?;
        let boot = k.join("boot");
        fs::create_dir_all(&boot).at(&boot)?;
        let src = crate::kernel::vmlinuz_path(&ctx.cfg, kver);
        let dst = boot.join(format!("vmlinuz-{kver}"));
        fs::copy(&src, &dst).at(&src)?;
        import(r, &Source::Dir(k.clone()), tree, work)?;
        remove_tree(r, &k)?;
        rec.extra
            .insert("kernel_from".into(), yaml_serde::Value::from(img.as_str()));
    }
    let os = crate::build::tree::read(tree, "etc/os-release")?.unwrap_or_default();
    let field = |k: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    };
    rec.distro = field("ID").or(rec.distro.take());
    rec.release_version = field("VERSION_CODENAME")
        .or_else(|| field("VERSION_ID"))
        .or(rec.release_version.take());
    let mut m = yaml_serde::Mapping::new();
    m.insert("kind".into(), p.source.kind().into());
    m.insert("path".into(), p.source.path().display().to_string().into());
    rec.extra
        .insert("source".into(), yaml_serde::Value::Mapping(m));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_refuses_absolute_and_dotdot() {
        assert_eq!(clean("./etc/x").unwrap().as_deref(), Some("etc/x"));
        assert_eq!(clean("./").unwrap(), None);
        assert!(clean("/etc/x").is_err());
        assert!(clean("a/../../b").is_err());
    }

    #[test]
    fn links_leaving() {
        assert!(leaves("a", "../x"));
        assert!(!leaves("a/b", "../x"));
        assert!(!leaves("etc/localtime", "/usr/share/zoneinfo/UTC"));
        assert!(leaves("etc/x", "../../../etc"));
    }

    #[test]
    fn through_links() {
        let mut v = View::default();
        v.links.insert("lib".into(), "usr/lib".into());
        v.links.insert("out".into(), "/etc".into());
        assert_eq!(v.through("lib/modules/x").unwrap(), "usr/lib/modules/x");
        assert!(v.through("out/passwd").unwrap_err().contains("out -> /etc"));
        // the entry itself is not followed
        assert_eq!(v.through("out").unwrap(), "out");
    }

    #[test]
    fn directory_source_keeps_hard_links_and_xattrs() {
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("usr/bin")).unwrap();
        fs::write(src.join("usr/bin/a"), b"same inode").unwrap();
        fs::hard_link(src.join("usr/bin/a"), src.join("usr/bin/b")).unwrap();
        fs::write(src.join("usr/bin/ping"), b"ping").unwrap();
        // the user namespace works unprivileged; security.capability needs root
        let have_user = xattr::set(src.join("usr/bin/a"), "user.dls", b"v1").is_ok();
        // cap_net_raw+ep, VFS_CAP_REVISION_2
        let cap: [u8; 20] = [
            0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let have_cap = xattr::set(src.join("usr/bin/ping"), "security.capability", &cap).is_ok();
        let tree = d.path().join("tree");
        let r = Runner::new(false);
        import(
            &r,
            &Source::Dir(src.clone()),
            &tree,
            &d.path().join("scratch"),
        )
        .unwrap();
        let a = fs::metadata(tree.join("usr/bin/a")).unwrap();
        let b = fs::metadata(tree.join("usr/bin/b")).unwrap();
        assert_eq!(a.ino(), b.ino(), "the hard link stays one inode");
        assert_eq!(a.nlink(), 2);
        assert_eq!(fs::read(tree.join("usr/bin/b")).unwrap(), b"same inode");
        if have_user {
            assert_eq!(
                xattr::get(tree.join("usr/bin/a"), "user.dls")
                    .unwrap()
                    .as_deref(),
                Some(&b"v1"[..])
            );
        }
        if have_cap {
            assert_eq!(
                xattr::get(tree.join("usr/bin/ping"), "security.capability")
                    .unwrap()
                    .as_deref(),
                Some(&cap[..])
            );
        }
        assert!(
            have_user || have_cap,
            "no xattr could be set: the test proves nothing"
        );
    }

    #[test]
    fn directory_stream_carries_device_nodes_and_goes_on() {
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("dev")).unwrap();
        fs::create_dir_all(src.join("usr")).unwrap();
        fs::write(src.join("usr/after"), b"x").unwrap();
        let made = nix::sys::stat::mknod(
            &src.join("dev/null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .is_ok();
        let mut ar = tar::Archive::new(dir_stream(&src).unwrap());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                format!(
                    "{:?} {}",
                    e.header().entry_type(),
                    e.path().unwrap().display()
                )
            })
            .collect();
        assert!(names.iter().any(|n| n.ends_with("usr/after")), "{names:?}");
        if made {
            assert!(names.iter().any(|n| n == "Char dev/null"), "{names:?}");
        }
    }

    #[test]
    fn directory_source_with_a_sparse_file_is_imported() {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("usr/bin")).unwrap();
        // data, a 1 MiB hole, data: what `cp -a` to a tmpfs makes of a binary
        let mut f = fs::File::create(src.join("usr/bin/holey")).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        let m = fs::metadata(src.join("usr/bin/holey")).unwrap();
        assert!(
            m.blocks() * 512 < m.len(),
            "no hole made: the test proves nothing"
        );
        let tree = d.path().join("tree");
        import(
            &Runner::new(false),
            &Source::Dir(src.clone()),
            &tree,
            &d.path().join("scratch"),
        )
        .unwrap();
        let got = fs::read(tree.join("usr/bin/holey")).unwrap();
        assert_eq!(got.len(), (1 << 20) + 4);
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[(1 << 20)..], b"tail");
        assert!(got[4..(1 << 20)].iter().all(|b| *b == 0));
    }
}
