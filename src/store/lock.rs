//! Locks: one per image and one for the store. Exclusion is a `flock` (std's
//! `File::try_lock`; released by the
//! kernel when the holder dies, so a crash never leaves a lock that blocks); the file
//! names the holder (pid, process start time, operation) so a second operation fails
//! with that name, and `list` can tell a live holder from a dead or reused pid.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::sys::{proc, reaper};

/// How long a lock taker waits for the groups a dead holder left to die after SIGKILL.
const REAP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub const STORE_LOCK: &str = ".store";
pub const INVENTORY_LOCK: &str = ".inventory";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub pid: i32,
    pub start: u64,
    pub operation: String,
    /// Unix seconds when taken.
    pub since: u64,
}

impl LockInfo {
    /// Is the process named here still the one that wrote it?
    pub fn is_live(&self) -> bool {
        proc::is_alive(self.pid, self.start)
    }
}

/// A held lock; released (and its file emptied) on drop.
#[derive(Debug)]
#[must_use = "the lock is released when this guard is dropped"]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        reaper::stop_recording(&groups_path(&self.path));
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn lock_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.locks_dir().join(format!("{name}.lock"))
}

/// The process groups of the lock holder's running children (`sys::reaper`).
fn groups_path(lock: &Path) -> PathBuf {
    lock.with_extension("groups")
}

/// Kills what dead operations left running (their recorded process groups), for every
/// lock nobody holds: `recover`. Returns "NAME (pid P: groups G1 G2)" per lock.
pub fn reap_dead(cfg: &Config) -> Result<Vec<String>> {
    let dir = cfg.locks_dir();
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    for e in rd {
        let p = e.at(&dir)?.path();
        let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".groups"))
            .map(str::to_string)
        else {
            continue;
        };
        let Some(rec) = reaper::read_record(&p) else {
            continue;
        };
        if rec.pid == std::process::id() as i32 || proc::is_alive(rec.pid, rec.start) {
            continue;
        }
        // Only while nobody holds the lock: a new holder kills them itself.
        let lp = p.with_extension("lock");
        let Ok(f) = OpenOptions::new().read(true).write(true).open(&lp) else {
            continue;
        };
        if f.try_lock().is_ok() {
            let killed = reaper::kill_recorded(&p, REAP_WAIT);
            let _ = f.unlock();
            if !killed.is_empty() {
                let g: Vec<String> = killed.iter().map(i32::to_string).collect();
                out.push(format!("{stem} (pid {}: groups {})", rec.pid, g.join(" ")));
            }
        }
    }
    Ok(out)
}

/// Takes the lock of image `name` for `operation`, or fails at once naming the holder.
pub fn lock_image(cfg: &Config, name: &str, operation: &str) -> Result<Lock> {
    crate::names::image(name)?;
    acquire(&lock_path(cfg, name), operation).map_err(|e| match e {
        Acquire::Held(info) => Error::Locked {
            name: name.to_string(),
            pid: info.pid,
            operation: info.operation,
        },
        Acquire::Err(e) => e,
    })
}

/// Takes the store lock (creation of names, recover) or fails naming the holder.
pub fn lock_store(cfg: &Config, operation: &str) -> Result<Lock> {
    acquire(&lock_path(cfg, STORE_LOCK), operation).map_err(|e| match e {
        Acquire::Held(info) => Error::StoreLocked {
            pid: info.pid,
            operation: info.operation,
        },
        Acquire::Err(e) => e,
    })
}

/// The inventory lock (`nodes add|set|remove|import`, discovery): one writer of
/// nodes.yml at a time; a second fails at once naming the holder.
pub fn lock_inventory(cfg: &Config, operation: &str) -> Result<Lock> {
    acquire(&lock_path(cfg, INVENTORY_LOCK), operation).map_err(|e| match e {
        Acquire::Held(info) => Error::invalid(format!(
            "the inventory is locked by pid {} ({})",
            info.pid, info.operation
        )),
        Acquire::Err(e) => e,
    })
}

/// The live holder of image `name`'s lock, if any (never takes the lock).
pub fn holder(cfg: &Config, name: &str) -> Option<LockInfo> {
    read_info(&lock_path(cfg, name)).filter(LockInfo::is_live)
}

/// A lock file naming a process that is gone: an operation that crashed.
pub fn stale(cfg: &Config, name: &str) -> Option<LockInfo> {
    read_info(&lock_path(cfg, name)).filter(|i| !i.is_live())
}

/// Empties stale lock files (content only; the files stay so flock keeps working).
pub fn clear_stale(cfg: &Config) -> Result<Vec<(String, LockInfo)>> {
    let dir = cfg.locks_dir();
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    for e in rd {
        let e = e.at(&dir)?;
        let p = e.path();
        let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".lock"))
            .map(str::to_string)
        else {
            continue;
        };
        if let Some(info) = read_info(&p) {
            if !info.is_live() {
                // Only empty it if nobody holds the flock right now.
                if let Ok(f) = OpenOptions::new().read(true).write(true).open(&p) {
                    if f.try_lock().is_ok() {
                        f.set_len(0).at(&p)?;
                        let _ = f.unlock();
                        out.push((stem, info));
                    }
                }
            }
        }
    }
    Ok(out)
}

enum Acquire {
    Held(LockInfo),
    Err(Error),
}

fn acquire(path: &Path, operation: &str) -> std::result::Result<Lock, Acquire> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).at(dir).map_err(Acquire::Err)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)
        .map_err(Acquire::Err)?;
    // std's file lock is flock(2) on Linux: released by the kernel when the holder dies.
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            // The holder writes its name right after taking the lock: give it a moment.
            for _ in 0..20 {
                if let Some(info) = read_info(path) {
                    return Err(Acquire::Held(info));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            return Err(Acquire::Held(LockInfo {
                pid: 0,
                start: 0,
                operation: "unknown operation".into(),
                since: 0,
            }));
        }
        Err(std::fs::TryLockError::Error(err)) => return Err(Acquire::Err(Error::io(path, err))),
    }
    // A dead holder's children may still run (its watchdog died with it): kill what it
    // recorded before anything of ours touches its mounts.
    let groups = groups_path(path);
    let killed = reaper::kill_recorded(&groups, REAP_WAIT);
    if !killed.is_empty() {
        tracing::info!(
            "killed {} process group(s) left by the previous holder of {}",
            killed.len(),
            path.display()
        );
    }
    let info = LockInfo {
        pid: std::process::id() as i32,
        start: proc::self_start_time(),
        operation: operation.to_string(),
        since: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let text = serde_json::to_string(&info).unwrap_or_default();
    let write = (|| -> std::io::Result<()> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_data()
    })();
    write.at(path).map_err(Acquire::Err)?;
    reaper::record_into(&groups);
    Ok(Lock {
        file,
        path: path.to_path_buf(),
    })
}

fn read_info(path: &Path) -> Option<LockInfo> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    serde_json::from_str(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_holder() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::under_root(d.path()).unwrap();
        let l = lock_image(&cfg, "img", "livenet create").unwrap();
        // flock is per open file description: a second open in the same process conflicts.
        let e = lock_image(&cfg, "img", "remove").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "image img is locked by pid {} (livenet create)",
                std::process::id()
            )
        );
        assert!(holder(&cfg, "img").is_some());
        drop(l);
        assert!(holder(&cfg, "img").is_none());
        let _l2 = lock_image(&cfg, "img", "remove").unwrap();
    }

    #[test]
    fn dead_holder_is_stale_not_live() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::under_root(d.path()).unwrap();
        let p = lock_path(&cfg, "img");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let me = std::process::id() as i32;
        // Our own pid with another start time: a reused pid must not look alive.
        let fake = LockInfo {
            pid: me,
            start: proc::self_start_time() + 7,
            operation: "create".into(),
            since: 0,
        };
        std::fs::write(&p, serde_json::to_string(&fake).unwrap()).unwrap();
        assert!(holder(&cfg, "img").is_none());
        assert_eq!(stale(&cfg, "img"), Some(fake));
        let cleared = clear_stale(&cfg).unwrap();
        assert_eq!(cleared.len(), 1);
        assert!(stale(&cfg, "img").is_none());
    }
}
