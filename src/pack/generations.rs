//! Published generations of a livenet image: `squashfs.img` is the current one, replaced
//! by rename (never rewritten in place, so a node downloading it keeps a consistent
//! file); the previous ones are kept as hard links in `generations/` for rollback.
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

pub const IMAGE_FILE: &str = "squashfs.img";

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub number: u32,
    pub path: PathBuf,
    pub size: u64,
    pub current: bool,
    /// sha256 of the file, computed when it was published.
    pub sha256: Option<String>,
}

pub fn current_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.image_dir(name).join(IMAGE_FILE)
}

fn gen_dir(cfg: &Config, name: &str) -> PathBuf {
    cfg.image_dir(name).join("generations")
}

fn gen_path(cfg: &Config, name: &str, n: u32) -> PathBuf {
    gen_dir(cfg, name).join(format!("{IMAGE_FILE}.{n}"))
}

/// The file of kept generation `n` (issue 15: `gc` removes surplus ones).
pub fn kept_path(cfg: &Config, name: &str, n: u32) -> PathBuf {
    gen_path(cfg, name, n)
}

/// Kept generations (not the current one), oldest first.
pub fn kept(cfg: &Config, name: &str) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(gen_dir(cfg, name))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(&format!("{IMAGE_FILE}."))?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    v
}

/// All generations with sizes.
pub fn list(cfg: &Config, name: &str, current: u32) -> Vec<Generation> {
    let mut out: Vec<Generation> = kept(cfg, name)
        .into_iter()
        .filter(|n| *n != current)
        .map(|n| {
            let path = gen_path(cfg, name, n);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            Generation {
                number: n,
                sha256: fsutil::read_digest(&path),
                path,
                size,
                current: false,
            }
        })
        .collect();
    let cur = current_path(cfg, name);
    if let Ok(m) = fs::metadata(&cur) {
        out.push(Generation {
            number: current,
            sha256: fsutil::read_digest(&cur),
            path: cur,
            size: m.len(),
            current: true,
        });
    }
    out
}

/// The sha256 of the current generation (its sidecar), if recorded.
pub fn current_digest(cfg: &Config, name: &str) -> Option<String> {
    fsutil::read_digest(&current_path(cfg, name))
}

/// The digest of `p`: its sidecar's, else computed from the content.
fn digest_of(p: &Path) -> Result<String> {
    match fsutil::read_digest(p) {
        Some(d) => Ok(d),
        None => fsutil::sha256_file(p),
    }
}

/// Keeps the current file (and its digest) as generation `n` in `generations/`.
fn keep_current(cfg: &Config, name: &str, n: u32) -> Result<()> {
    let cur = current_path(cfg, name);
    let keep = gen_path(cfg, name, n);
    if cur.exists() && !keep.exists() {
        fsutil::ensure_dir(&gen_dir(cfg, name))?;
        fs::hard_link(&cur, &keep).at(&keep)?;
    }
    if keep.exists() && fsutil::read_digest(&keep).is_none() {
        fsutil::write_digest(&keep, &digest_of(&keep)?)?;
    }
    Ok(())
}

/// Removes a kept generation and its digest sidecar.
fn remove_kept(p: &Path) -> Result<()> {
    let _ = fs::remove_file(fsutil::digest_sidecar(p));
    fs::remove_file(p).at(p)
}

/// Publishes `staged` (a complete file in the image dir) as generation `current + 1`:
/// the current file is kept as a hard link, then `staged` is renamed over it. Its
/// sha256 is computed first and written next to it (`squashfs.img.sha256`): the boot
/// script carries it so a node refuses a torn or corrupted download.
/// Returns the new generation number.
pub fn publish(cfg: &Config, name: &str, staged: &Path, current: u32) -> Result<u32> {
    let cur = current_path(cfg, name);
    if cur.exists() && current > 0 {
        keep_current(cfg, name, current)?;
    }
    fs::set_permissions(staged, std::os::unix::fs::PermissionsExt::from_mode(0o644)).at(staged)?;
    // The digest is read from the page cache while the file is flushed to disk: the two
    // overlap instead of adding up (issue 15, pack time close to a bare mksquashfs).
    let digest = std::thread::scope(|s| {
        let hashing = s.spawn(|| fsutil::sha256_file(staged));
        let synced = fs::File::open(staged).and_then(|f| f.sync_all()).at(staged);
        let digest = hashing
            .join()
            .unwrap_or_else(|_| Err(Error::invalid("internal: the hashing thread panicked")));
        synced.and(digest)
    })?;
    fsutil::publish(staged, &cur)?;
    fsutil::write_digest(&cur, &digest)?;
    let next = current + 1;
    // A stale kept file with the new number (from a rolled-back branch) is superseded.
    let _ = remove_kept(&gen_path(cfg, name, next));
    prune(cfg, name, next)?;
    Ok(next)
}

/// Keeps at most `keep_generations` previous generations.
fn prune(cfg: &Config, name: &str, current: u32) -> Result<()> {
    let mut old: Vec<u32> = kept(cfg, name)
        .into_iter()
        .filter(|n| *n < current)
        .collect();
    let keep = cfg.keep_generations as usize;
    while old.len() > keep {
        let n = old.remove(0);
        remove_kept(&gen_path(cfg, name, n))?;
    }
    Ok(())
}

/// Restores the newest kept generation older than `current`; returns its number.
pub fn rollback(cfg: &Config, name: &str, current: u32) -> Result<u32> {
    let prev = kept(cfg, name)
        .into_iter()
        .filter(|n| *n < current)
        .max()
        .ok_or_else(|| {
            Error::invalid(format!(
                "image {name} has no previous generation to roll back to (generation {current} is the oldest kept)"
            ))
        })?;
    let cur = current_path(cfg, name);
    keep_current(cfg, name, current)?;
    let src = gen_path(cfg, name, prev);
    let digest = digest_of(&src)?;
    let staged = fsutil::temp_path_for(&cur);
    fs::hard_link(&src, &staged).at(&staged)?;
    fs::rename(&staged, &cur).at(&cur)?;
    fsutil::sync_dir(&cfg.image_dir(name))?;
    fsutil::write_digest(&cur, &digest)?;
    // The restored generation is current again: it no longer needs a kept copy.
    remove_kept(&src)?;
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_keep_and_rollback() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::under_root(d.path()).unwrap();
        fs::create_dir_all(cfg.image_dir("a")).unwrap();
        let mut g = 0;
        for content in ["one", "two", "three", "four"] {
            let st = fsutil::temp_path_for(&current_path(&cfg, "a"));
            fs::write(&st, content).unwrap();
            g = publish(&cfg, "a", &st, g).unwrap();
        }
        assert_eq!(g, 4);
        assert_eq!(fs::read_to_string(current_path(&cfg, "a")).unwrap(), "four");
        // keep_generations defaults to 2
        assert_eq!(kept(&cfg, "a"), vec![2, 3]);
        let g = rollback(&cfg, "a", g).unwrap();
        assert_eq!(g, 3);
        assert_eq!(
            fs::read_to_string(current_path(&cfg, "a")).unwrap(),
            "three"
        );
        let g = rollback(&cfg, "a", g).unwrap();
        assert_eq!(fs::read_to_string(current_path(&cfg, "a")).unwrap(), "two");
        let e = rollback(&cfg, "a", g).unwrap_err().to_string();
        assert!(e.contains("no previous generation"), "{e}");
        // republishing after a rollback supersedes the newer branch
        let st = fsutil::temp_path_for(&current_path(&cfg, "a"));
        fs::write(&st, "five").unwrap();
        let g = publish(&cfg, "a", &st, g).unwrap();
        assert_eq!(g, 3);
        assert_eq!(fs::read_to_string(current_path(&cfg, "a")).unwrap(), "five");
        let listed = list(&cfg, "a", g);
        assert!(listed.iter().any(|x| x.current && x.number == 3));
        // every generation carries the sha256 of its own content
        for x in &listed {
            let content = fs::read(&x.path).unwrap();
            let want: String = {
                use sha2::{Digest, Sha256};
                Sha256::digest(&content)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            };
            assert_eq!(x.sha256.as_deref(), Some(want.as_str()), "{x:?}");
        }
        assert_eq!(
            current_digest(&cfg, "a").unwrap(),
            fsutil::sha256_file(&current_path(&cfg, "a")).unwrap()
        );
        // after a rollback the current digest is the restored generation's
        rollback(&cfg, "a", g).unwrap();
        assert_eq!(fs::read_to_string(current_path(&cfg, "a")).unwrap(), "two");
        assert_eq!(
            current_digest(&cfg, "a").unwrap(),
            fsutil::sha256_file(&current_path(&cfg, "a")).unwrap()
        );
        // pruned generations leave no sidecar behind
        for e in fs::read_dir(gen_dir(&cfg, "a")).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(base) = n.strip_suffix(".sha256") {
                assert!(gen_dir(&cfg, "a").join(base).exists(), "orphan {n}");
            }
        }
    }
}
