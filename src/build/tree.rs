//! Editing a root tree from outside, safely: paths are resolved the way a chroot would
//! resolve them (symlinks followed, absolute link targets re-rooted at the tree, `..`
//! never above it), so a link such as `etc/os-release -> ../usr/lib/os-release` is
//! written where it points inside the tree and a link to `/etc/shadow` never reaches the
//! host's file. Every write is dry-run aware.
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::sys::runner::Runner;

const MAX_LINKS: usize = 40;

/// The host path of `rel` inside `root`, symlinks resolved inside the tree.
/// With `follow_last` false the last component is not followed (to replace a link).
pub fn resolve(root: &Path, rel: &str, follow_last: bool) -> Result<PathBuf> {
    let mut todo: Vec<OsString> = comps(Path::new(rel));
    todo.reverse(); // a stack: next component at the end
    let mut cur: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let candidate = join(root, &cur).join(&c);
        let is_last = todo.is_empty();
        let meta = fs::symlink_metadata(&candidate);
        if (!is_last || follow_last) && meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
            hops += 1;
            if hops > MAX_LINKS {
                return Err(Error::Tree {
                    tree: root.to_path_buf(),
                    msg: format!("{rel}: too many levels of symbolic links"),
                });
            }
            let target = fs::read_link(&candidate).at(&candidate)?;
            if target.is_absolute() {
                cur.clear();
            }
            let mut t = comps(&target);
            t.reverse();
            todo.extend(t);
            continue;
        }
        cur.push(c);
    }
    Ok(join(root, &cur))
}

fn comps(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, cur: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in cur {
        p.push(c);
    }
    p
}

/// Reads a file of the tree; None when it does not exist.
pub fn read(root: &Path, rel: &str) -> Result<Option<String>> {
    let p = resolve(root, rel, true)?;
    match fs::read(&p) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(p, e)),
    }
}

/// Whether a path exists in the tree (links resolved inside it).
pub fn exists(root: &Path, rel: &str) -> bool {
    resolve(root, rel, true).is_ok_and(|p| p.exists())
}

/// Creates a directory (and parents) in the tree with `mode` for the ones it creates.
pub fn mkdir(r: &Runner, root: &Path, rel: &str, mode: u32) -> Result<PathBuf> {
    let p = resolve(root, rel, true)?;
    if r.dry_run() {
        if !p.is_dir() {
            r.note(format!("mkdir {}", p.display()));
        }
        return Ok(p);
    }
    if !p.is_dir() {
        fs::create_dir_all(&p).at(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).at(&p)?;
    }
    Ok(p)
}

/// Writes a file of the tree atomically. An existing file keeps its owner, group and
/// mode (`etc/shadow` stays root:shadow 0640); a new one gets `mode`, owned by root.
pub fn write(r: &Runner, root: &Path, rel: &str, data: &[u8], mode: u32, what: &str) -> Result<()> {
    let p = resolve(root, rel, true)?;
    if r.dry_run() {
        r.note(format!("write {} ({what})", p.display()));
        return Ok(());
    }
    let old = fs::metadata(&p).ok();
    let dir = p
        .parent()
        .ok_or_else(|| Error::invalid(format!("{}: no parent directory", p.display())))?;
    fs::create_dir_all(dir).at(dir)?;
    let (mode, owner) = match &old {
        Some(m) => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
        None => (mode, None),
    };
    let tmp = fsutil::temp_path_for(&p);
    let res = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at(&tmp)?;
        f.write_all(data).at(&tmp)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).at(&tmp)?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))
            .at(&tmp)?;
        f.sync_all().at(&tmp)?;
        drop(f);
        fs::rename(&tmp, &p).at(&p)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Creates (or replaces) the symlink `rel` -> `target` in the tree.
pub fn symlink(r: &Runner, root: &Path, rel: &str, target: &str) -> Result<()> {
    let p = resolve(root, rel, false)?;
    if r.dry_run() {
        r.note(format!("symlink {} -> {target}", p.display()));
        return Ok(());
    }
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    match fs::symlink_metadata(&p) {
        Ok(m) if m.file_type().is_symlink() || m.is_file() => fs::remove_file(&p).at(&p)?,
        Ok(m) if m.is_dir() => {
            return Err(Error::Tree {
                tree: root.to_path_buf(),
                msg: format!("{rel} is a directory where a symlink to {target} is expected"),
            })
        }
        _ => {}
    }
    std::os::unix::fs::symlink(target, &p).at(&p)
}

/// Removes a regular file or symlink of the tree if present (the link itself).
pub fn remove(r: &Runner, root: &Path, rel: &str) -> Result<()> {
    let p = resolve(root, rel, false)?;
    if fs::symlink_metadata(&p).is_err() {
        return Ok(());
    }
    if r.dry_run() {
        r.note(format!("remove {}", p.display()));
        return Ok(());
    }
    fs::remove_file(&p).at(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        fs::create_dir_all(t.join("usr/lib")).unwrap();
        fs::create_dir_all(t.join("etc")).unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", t.join("etc/os-release")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", t.join("etc/evil")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/passwd", t.join("etc/evil2")).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.join("lib")).unwrap();
        std::os::unix::fs::symlink("loop", t.join("etc/loop")).unwrap();
        assert_eq!(
            resolve(t, "etc/os-release", true).unwrap(),
            t.join("usr/lib/os-release")
        );
        assert_eq!(
            resolve(t, "etc/os-release", false).unwrap(),
            t.join("etc/os-release")
        );
        assert_eq!(resolve(t, "/etc/evil", true).unwrap(), t.join("etc/shadow"));
        assert_eq!(resolve(t, "etc/evil2", true).unwrap(), t.join("etc/passwd"));
        assert_eq!(
            resolve(t, "lib/systemd/system", true).unwrap(),
            t.join("usr/lib/systemd/system")
        );
        assert!(resolve(t, "etc/loop", true).is_err());
    }

    #[test]
    fn write_keeps_owner_and_mode_and_follows_links() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        let r = Runner::new(false);
        fs::create_dir_all(t.join("usr/lib")).unwrap();
        fs::create_dir_all(t.join("etc")).unwrap();
        fs::write(t.join("usr/lib/os-release"), "ID=debian\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", t.join("etc/os-release")).unwrap();
        write(&r, t, "etc/os-release", b"ID=x\n", 0o644, "test").unwrap();
        assert!(fs::symlink_metadata(t.join("etc/os-release"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_to_string(t.join("usr/lib/os-release")).unwrap(),
            "ID=x\n"
        );
        fs::write(t.join("etc/shadow"), "root:*:1::::::\n").unwrap();
        fs::set_permissions(t.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
        write(&r, t, "etc/shadow", b"root:x:1::::::\n", 0o600, "test").unwrap();
        assert_eq!(
            fs::metadata(t.join("etc/shadow")).unwrap().mode() & 0o7777,
            0o640
        );
        // dry-run writes nothing and records the step
        let dr = Runner::new(true);
        write(&dr, t, "etc/new", b"x", 0o644, "a new file").unwrap();
        assert!(!t.join("etc/new").exists());
        assert!(dr.plan()[0].contains("a new file"));
    }
}
