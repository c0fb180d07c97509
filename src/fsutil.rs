//! File helpers: atomic writes (temp file in the same directory, fsync, rename, fsync dir).
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Prefix of every temp file the tool writes; `recover` removes stale ones.
pub const TMP_PREFIX: &str = ".disklessset-tmp.";

/// A temp path next to `dest`, unique to this process.
pub fn temp_path_for(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rnd = [0u8; 4];
    // A failed getrandom only makes the name less unique; the pid keeps it distinct.
    let _ = getrandom::fill(&mut rnd);
    let tag = u32::from_le_bytes(rnd);
    dest.with_file_name(format!(
        "{TMP_PREFIX}{}.{tag:08x}.{name}",
        std::process::id()
    ))
}

/// Writes `data` to `dest` atomically with the given mode.
pub fn write_atomic(dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = dest
        .parent()
        .ok_or_else(|| Error::invalid(format!("{}: no parent directory", dest.display())))?;
    fs::create_dir_all(dir).at(dir)?;
    let tmp = temp_path_for(dest);
    let res = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .at(&tmp)?;
        f.write_all(data).at(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .at(&tmp)?;
        f.sync_all().at(&tmp)?;
        drop(f);
        fs::rename(&tmp, dest).at(dest)?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Publishes an already-written file by rename (after fsync), atomically replacing `dest`.
pub fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    File::open(tmp).and_then(|f| f.sync_all()).at(tmp)?;
    fs::rename(tmp, dest).at(dest)?;
    if let Some(dir) = dest.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Starts writing `f`'s dirty pages to disk without waiting for them (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`); a later fsync has less to wait for.
/// Best effort: an error only means the fsync does it all.
pub fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a file descriptor `f` keeps open; no memory is
    // passed.
    let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Creates a directory and its parents with the given mode for the last component.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).at(dir)
}

/// Total size in bytes of the regular files below `dir`, not crossing filesystems.
pub fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Human size: 1.5G, 700M, 12K.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else if v >= 100.0 {
        format!("{v:.0}{}", UNITS[u])
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// Parses `700M`, `1.5G`, `512` (MiB), `2048K`, `100MiB` into MiB.
pub fn parse_size_mib(s: &str) -> Result<u64> {
    let t = s.trim();
    let bad = || {
        Error::invalid(format!(
            "size {s:?} is not valid: write a number with an optional unit K, M or G (e.g. 700M, 1.5G; a bare number is MiB)"
        ))
    };
    let lower = t.to_ascii_lowercase();
    let lower = lower.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1.0 / 1024.0),
        Some('m') => (&lower[..lower.len() - 1], 1.0),
        Some('g') => (&lower[..lower.len() - 1], 1024.0),
        Some('t') => (&lower[..lower.len() - 1], 1024.0 * 1024.0),
        Some(c) if c.is_ascii_digit() => (lower, 1.0),
        _ => return Err(bad()),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(bad());
    }
    Ok((n * mult).ceil() as u64)
}

/// Writes many files atomically with two flushes in all instead of two per file: every
/// temp file is written, the filesystem is synced once (`syncfs`), then each temp is
/// renamed over its destination and the directories are synced. A crash leaves each
/// destination either old or new, never partial.
pub fn write_atomic_batch(items: &[(PathBuf, Vec<u8>)], mode: u32) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut temps: Vec<(PathBuf, &Path)> = Vec::with_capacity(items.len());
    let cleanup = |temps: &[(PathBuf, &Path)]| {
        for (t, _) in temps {
            let _ = fs::remove_file(t);
        }
    };
    // One random tag for the batch (a counter makes each name unique), and no chmod
    // when the umask leaves `mode` as it is: fewer syscalls per file (issue 13, scale).
    let mut rnd = [0u8; 4];
    let _ = getrandom::fill(&mut rnd);
    let tag = u32::from_le_bytes(rnd);
    let pid = std::process::id();
    let old_mask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old_mask);
    let chmod = mode & old_mask.bits() != 0;
    for (i, (dest, data)) in items.iter().enumerate() {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dest.with_file_name(format!("{TMP_PREFIX}{pid}.{tag:08x}-{i}.{name}"));
        let res = (|| -> Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
                .at(&tmp)?;
            f.write_all(data).at(&tmp)?;
            if chmod {
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .at(&tmp)?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            cleanup(&temps);
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        temps.push((tmp, dest.as_path()));
    }
    // One flush of the whole filesystem holding the temps.
    let first = &temps[0].0;
    let f = File::open(first).at(first)?;
    if let Err(e) = nix::unistd::syncfs(&f) {
        cleanup(&temps);
        return Err(Error::io(first, std::io::Error::from(e)));
    }
    let mut dirs: Vec<&Path> = Vec::new();
    for (i, (tmp, dest)) in temps.iter().enumerate() {
        if let Err(e) = fs::rename(tmp, dest) {
            cleanup(&temps[i..]);
            return Err(Error::io(*dest, e));
        }
        if let Some(d) = dest.parent() {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    for d in dirs {
        sync_dir(d)?;
    }
    Ok(())
}

/// The host path of `rel` inside the image tree `root`, its parent directory resolved by
/// the kernel as a process chrooted in `root` would (`openat2(RESOLVE_IN_ROOT)`:
/// absolute symlinks re-rooted at the tree, `..` clamped there), so a write to the
/// result never lands on the host through a symlink such as `etc -> /etc`. The last
/// component is not followed (callers replace it, never write through it). An error
/// when the parent does not exist in the tree. Where the kernel lacks `openat2`, the
/// parent is canonicalized and must stay below the canonical root.
pub fn path_in_root(root: &Path, rel: &str) -> std::io::Result<PathBuf> {
    use nix::errno::Errno;
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::AsRawFd;
    let rel = rel.trim_start_matches('/');
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(std::io::Error::other(format!("{rel}: not a file name")));
    }
    let parent = if parent.is_empty() { "." } else { parent };
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let real_parent = match openat2(&root_fd, parent, how) {
        Ok(fd) => fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?,
        Err(Errno::ENOSYS) => {
            let real_root = root.canonicalize()?;
            let p = root.join(parent).canonicalize()?;
            if !p.starts_with(&real_root) {
                return Err(std::io::Error::other(format!(
                    "{parent} leads out of {}",
                    root.display()
                )));
            }
            p
        }
        Err(e) => return Err(e.into()),
    };
    Ok(real_parent.join(name))
}

/// Write `data` as the file `rel` of the image tree `root` (see [`path_in_root`]),
/// replacing whatever entry (file or symlink) was there, never following it.
pub fn write_in_root(root: &Path, rel: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    let p = path_in_root(root, rel)?;
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => {
            return Err(std::io::Error::other(format!(
                "{} is a directory",
                p.display()
            )))
        }
        Ok(_) => fs::remove_file(&p)?,
        Err(_) => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)?;
    f.write_all(data)?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
}

/// The directory `rel` of the image tree `root`, resolved inside it (a mount target):
/// created when absent, an error when it resolves to something else than a directory.
pub fn dir_in_root(root: &Path, rel: &str) -> std::io::Result<PathBuf> {
    let p = path_in_root(root, rel)?;
    match fs::symlink_metadata(&p) {
        Err(_) => fs::create_dir(&p)?,
        Ok(m) if m.file_type().is_symlink() => {
            // a link to a directory of the tree: resolve it inside the tree too
            let target = path_in_root(root, &format!("{}/_", rel.trim_end_matches('/')))
                .ok()
                .and_then(|t| t.parent().map(Path::to_path_buf));
            return match target {
                Some(t) if t.is_dir() => Ok(t),
                _ => Err(std::io::Error::other(format!(
                    "{rel} in {} is not a directory",
                    root.display()
                ))),
            };
        }
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{rel} in {} is not a directory",
                root.display()
            )))
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------- digests (issue 11)

/// The sidecar holding a published file's sha256: `FILE.sha256`, in `sha256sum` format.
pub fn digest_sidecar(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// The sha256 of a file's content, lower-case hex.
pub fn sha256_file(p: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = File::open(p).at(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).at(p)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The digest recorded next to `p` (its sidecar), if there is a well-formed one.
pub fn read_digest(p: &Path) -> Option<String> {
    let text = fs::read_to_string(digest_sidecar(p)).ok()?;
    let hex = text.split_whitespace().next()?.to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Records `hex` as the digest of `p` (atomically, `sha256sum -c` compatible).
pub fn write_digest(p: &Path, hex: &str) -> Result<()> {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    write_atomic(
        &digest_sidecar(p),
        format!("{hex}  {name}\n").as_bytes(),
        0o644,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.yml");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("700M").unwrap(), 700);
        assert_eq!(parse_size_mib("1.5G").unwrap(), 1536);
        assert_eq!(parse_size_mib("512").unwrap(), 512);
        assert_eq!(parse_size_mib("2048K").unwrap(), 2);
        assert_eq!(parse_size_mib("1GiB").unwrap(), 1024);
        assert!(parse_size_mib("abc").is_err());
        assert!(parse_size_mib("-5M").is_err());
        assert_eq!(human_size(1536 * 1024 * 1024), "1.5G");
    }
}
