//! Nothing keeps running after the tool dies (issue 11).
//!
//! Every command the runner starts (except interactive ones, which need the terminal's
//! foreground group) runs in its own process group, with `PR_SET_PDEATHSIG(SIGKILL)`
//! on the direct child. That alone would leave grandchildren (mmdebstrap -> apt ->
//! dpkg) alive after a `kill -9` of the tool, so the first such command also starts a
//! watchdog: this binary re-executed as `disklessset __reaper`, in a process group of
//! its own, reading a pipe whose write end only the tool holds (close-on-exec: no child
//! inherits it). The tool writes `+PGID` when a child starts and `-PGID` when it ends;
//! when the pipe reaches end-of-file (the tool exited, normally or killed) the reaper
//! sends SIGKILL to every group still recorded, a few times over a second (members
//! forking while the first signal lands), and exits.
//!
//! The watchdog can die too (killed with the tool by a `kill -9` of the whole session,
//! an OOM kill): so the groups are also recorded on disk, next to every lock the
//! operation holds (`locks/NAME.groups`, JSON, replaced atomically at each start and end
//! of a child; removed when the lock is released). Whoever takes that lock next while
//! its recorded holder is dead (`clear`, `recover`, a re-run) first kills the groups
//! still recorded, checking each is still ours (the group leader's start time, or, once
//! the leader is gone, members no older than it), and waits for them to exit.
//!
//! Not caught: a descendant that leaves its group with `setsid`/`setpgid` (none of
//! mmdebstrap, apt, dpkg, mksquashfs or ansible does); `clear` and `recover` still
//! refuse to unmount what such a process keeps busy, naming the mount.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The hidden subcommand.
pub const REAPER: &str = "__reaper";

static PIPE: Mutex<Option<ChildStdin>> = Mutex::new(None);
static TRIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `disklessset __reaper`: when this process is the watchdog, run it and return its
/// exit code.
pub fn maybe_reaper() -> Option<i32> {
    let first = std::env::args_os().nth(1)?;
    if first != REAPER {
        return None;
    }
    // Ctrl-C or a hang-up of the tool's terminal must not stop the watchdog early.
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGPIPE,
    ] {
        // SAFETY: setting a disposition to ignore; no handler function runs.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
    let mut groups = BTreeSet::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let (sign, num) = line.split_at(line.len().min(1));
        let Ok(pgid) = num.trim().parse::<i32>() else {
            continue;
        };
        if pgid <= 1 {
            continue;
        }
        match sign {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for _ in 0..5 {
        for pgid in &groups {
            kill_group(*pgid);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Some(0)
}

/// SIGKILL to a process group (gone already: nothing to do).
pub fn kill_group(pgid: i32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

fn send(line: &str) {
    if let Ok(mut guard) = PIPE.lock() {
        if let Some(w) = guard.as_mut() {
            if w.write_all(line.as_bytes())
                .and_then(|()| w.flush())
                .is_err()
            {
                *guard = None;
            }
        }
    }
}

/// Start the watchdog once per process (a failure is logged; commands still run).
fn ensure_started() {
    if cfg!(test) || TRIED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let mut c = Command::new(exe);
    c.arg(REAPER)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    match c.spawn() {
        Ok(mut child) => {
            if let Ok(mut g) = PIPE.lock() {
                *g = child.stdin.take();
            }
            // never waited for: it outlives us by design (init reaps it)
            std::mem::forget(child);
        }
        Err(e) => tracing::warn!("cannot start the process watchdog: {e}"),
    }
}

/// Put a command about to be spawned in its own process group, killed with its
/// parent (`PR_SET_PDEATHSIG`).
pub fn prepare(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    ensure_started();
    c.process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (prctl, getppid, kill on itself).
    unsafe {
        c.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                // the tool died between fork and prctl
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// A child started in its own group (its pid is the group id).
pub fn started(pid: u32) {
    send(&format!("+{pid}\n"));
    let start = super::proc::start_time(pid as i32).unwrap_or(0);
    if let Ok(mut r) = RECORD.lock() {
        r.groups.insert(pid as i32, start);
        r.write_all();
    }
}

/// The child ended: kill what it left in its group only when asked (cancellation);
/// otherwise forget the group.
pub fn ended(pid: u32, kill_rest: bool) {
    if kill_rest {
        kill_group(pid as i32);
    }
    send(&format!("-{pid}\n"));
    if let Ok(mut r) = RECORD.lock() {
        if r.groups.remove(&(pid as i32)).is_some() {
            r.write_all();
        }
    }
}

// ---------------------------------------------------------------- groups on disk

/// What `locks/NAME.groups` holds: the operation's process and its children's groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot), so a reused pid is not "alive".
    pub start: u64,
    pub groups: Vec<Group>,
}

/// One process group: its id and its leader's start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub pgid: i32,
    pub start: u64,
}

#[derive(Default)]
struct Record {
    files: Vec<PathBuf>,
    groups: BTreeMap<i32, u64>,
}

static RECORD: Mutex<Record> = Mutex::new(Record {
    files: Vec::new(),
    groups: BTreeMap::new(),
});

impl Record {
    fn content(&self) -> GroupRecord {
        GroupRecord {
            pid: std::process::id() as i32,
            start: super::proc::self_start_time(),
            groups: self
                .groups
                .iter()
                .map(|(&pgid, &start)| Group { pgid, start })
                .collect(),
        }
    }

    fn write_one(&self, file: &Path) {
        let text = serde_json::to_string(&self.content()).unwrap_or_default();
        if let Err(e) = crate::fsutil::write_atomic(file, text.as_bytes(), 0o644) {
            tracing::warn!("cannot record the process groups: {e}");
        }
    }

    fn write_all(&self) {
        for f in &self.files {
            self.write_one(f);
        }
    }
}

/// From now on, keep `file` up to date with the groups of the running children (a lock
/// was taken; `file` is its sidecar).
pub fn record_into(file: &Path) {
    if let Ok(mut r) = RECORD.lock() {
        if !r.files.iter().any(|f| f == file) {
            r.files.push(file.to_path_buf());
        }
        r.write_one(file);
    }
}

/// Stop recording into `file` and remove it (the lock is being released normally).
pub fn stop_recording(file: &Path) {
    if let Ok(mut r) = RECORD.lock() {
        r.files.retain(|f| f != file);
    }
    let _ = std::fs::remove_file(file);
}

/// Reads a groups file (absent or unreadable: `None`).
pub fn read_record(file: &Path) -> Option<GroupRecord> {
    let text = std::fs::read_to_string(file).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Live processes of group `g` that are still the ones we started: `None` when the
/// group id was recycled (its leader is another process), else the pids (maybe none).
fn members(g: Group) -> Option<Vec<i32>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir("/proc").ok()?;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if f.first() == Some(&"Z") {
            continue;
        }
        let pgrp: i32 = f.get(2).and_then(|x| x.parse().ok()).unwrap_or(0);
        if pgrp != g.pgid {
            continue;
        }
        let start: u64 = f.get(19).and_then(|x| x.parse().ok()).unwrap_or(0);
        if pid == g.pgid && start != g.start {
            return None;
        }
        if start < g.start {
            // older than our group: cannot be one of ours
            return None;
        }
        out.push(pid);
    }
    Some(out)
}

/// The groups a dead operation recorded in `file`: SIGKILL to each group still ours,
/// wait (up to `wait`) until none of their processes is left, then remove `file`.
/// Returns the groups that had processes left. A live holder: nothing is done.
pub fn kill_recorded(file: &Path, wait: Duration) -> Vec<i32> {
    let Some(rec) = read_record(file) else {
        let _ = std::fs::remove_file(file);
        return Vec::new();
    };
    if rec.pid == std::process::id() as i32 || super::proc::is_alive(rec.pid, rec.start) {
        return Vec::new();
    }
    let mut killed = Vec::new();
    let mut left: Vec<Group> = Vec::new();
    for g in &rec.groups {
        if g.pgid <= 1 {
            continue;
        }
        if let Some(m) = members(*g) {
            if !m.is_empty() {
                tracing::info!(
                    "killing process group {} left by pid {} ({} processes)",
                    g.pgid,
                    rec.pid,
                    m.len()
                );
                killed.push(g.pgid);
                left.push(*g);
            }
        }
    }
    let t = Instant::now();
    while !left.is_empty() {
        for g in &left {
            kill_group(g.pgid);
        }
        std::thread::sleep(Duration::from_millis(50));
        left.retain(|g| members(*g).is_some_and(|m| !m.is_empty()));
        if t.elapsed() > wait {
            tracing::warn!("process groups {left:?} survive SIGKILL (stuck in the kernel?)");
            break;
        }
    }
    let _ = std::fs::remove_file(file);
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_of_sleep() -> std::process::Child {
        let mut c = Command::new("sleep");
        c.arg("60");
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c.spawn().unwrap()
    }

    fn write(file: &Path, rec: &GroupRecord) {
        std::fs::write(file, serde_json::to_string(rec).unwrap()).unwrap();
    }

    #[test]
    fn a_dead_holders_groups_are_killed_only_if_still_ours() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("img.groups");
        let mut ours = group_of_sleep();
        let mut recycled = group_of_sleep();
        let pid = |c: &std::process::Child| c.id() as i32;
        let start = |c: &std::process::Child| super::super::proc::start_time(pid(c)).unwrap();
        // pid 1 with another start time: a holder that is gone
        let dead = GroupRecord {
            pid: 1,
            start: u64::MAX,
            groups: vec![
                Group {
                    pgid: pid(&ours),
                    start: start(&ours),
                },
                // the same group id now led by a process started at another time
                Group {
                    pgid: pid(&recycled),
                    start: start(&recycled) + 1,
                },
            ],
        };
        // a live holder (this process): nothing is touched, the file stays
        let live = GroupRecord {
            pid: std::process::id() as i32,
            start: super::super::proc::self_start_time(),
            groups: dead.groups.clone(),
        };
        write(&file, &live);
        assert!(kill_recorded(&file, Duration::from_secs(5)).is_empty());
        assert!(file.exists());
        assert!(ours.try_wait().unwrap().is_none());

        write(&file, &dead);
        assert_eq!(
            kill_recorded(&file, Duration::from_secs(5)),
            vec![pid(&ours)]
        );
        assert!(!file.exists());
        assert!(ours.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(
            recycled.try_wait().unwrap().is_none(),
            "not ours: left alone"
        );
        recycled.kill().unwrap();
        recycled.wait().unwrap();
    }
}
