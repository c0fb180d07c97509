//! Safe removal: unmount everything below the target first (deepest first), refuse if
//! anything stays mounted, then remove with a walk that never crosses into another
//! filesystem. The reference's `rmtree` after a failed unmount deleted through bind
//! mounts; this cannot.
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use walkdir::WalkDir;

use crate::error::{Error, IoContext, Result};
use crate::sys::mount::umount_below;
use crate::sys::mountinfo;
use crate::sys::runner::Runner;

/// Removes `path` and everything below it, safely. Missing path: nothing to do.
pub fn remove_tree(r: &Runner, path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if !path.is_absolute() {
        return Err(Error::invalid(format!(
            "refusing to remove relative path {}",
            path.display()
        )));
    }
    if path.parent().is_none() {
        return Err(Error::invalid("refusing to remove /"));
    }
    umount_below(r, path)?;
    if r.dry_run() {
        r.note(format!("remove {}", path.display()));
        return Ok(());
    }
    if let Some(m) = mountinfo::anything_below(path)? {
        return Err(Error::StillMounted {
            path: path.to_path_buf(),
            mount: m,
        });
    }
    if !meta.is_dir() {
        return fs::remove_file(path).at(path);
    }
    let root_dev = meta.dev();
    tracing::info!("remove {}", path.display());
    for entry in WalkDir::new(path)
        .same_file_system(true)
        .follow_links(false)
        .contents_first(true)
    {
        let entry = entry.map_err(|e| {
            let p = e.path().unwrap_or(path).to_path_buf();
            Error::io(p, e.into())
        })?;
        let p = entry.path();
        let m = entry.metadata().map_err(|e| Error::io(p, e.into()))?;
        if m.dev() != root_dev {
            return Err(Error::CrossesFilesystem {
                path: p.to_path_buf(),
                root: path.to_path_buf(),
            });
        }
        if entry.file_type().is_dir() {
            match fs::remove_dir(p) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                    // Something walkdir did not descend into: a mount point of another
                    // filesystem that appeared meanwhile. Refuse rather than guess.
                    let mount = mountinfo::anything_below(p)?.unwrap_or_else(|| p.to_path_buf());
                    return Err(Error::StillMounted {
                        path: path.to_path_buf(),
                        mount,
                    });
                }
                Err(e) => return Err(Error::io(p, e)),
            }
        } else {
            fs::remove_file(p).at(p)?;
        }
    }
    Ok(())
}

/// Empties a directory (keeps it), with the same guarantees.
pub fn clear_dir(r: &Runner, dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    umount_below(r, dir)?;
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        remove_tree(r, &e.path())?;
    }
    Ok(())
}
