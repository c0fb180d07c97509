//! Process facts: is a pid alive *and* the same process (start time), so a reused pid
//! cannot fake a live build.
use std::path::Path;

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts with " S ..." : field 3 is the state; start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Is `pid` alive with the given start time?
pub fn is_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match start_time(pid) {
        Some(s) => s == start && !is_zombie(pid),
        None => false,
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| {
            let rest = t[t.rfind(')')? + 1..].to_string();
            rest.split_whitespace().next().map(|s| s == "Z")
        })
        .unwrap_or(false)
}

/// This process's own start time.
pub fn self_start_time() -> u64 {
    start_time(std::process::id() as i32).unwrap_or(0)
}

/// True when running as root (mounts, chroot).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether a path exists without following a final symlink.
pub fn exists_nofollow(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// MemAvailable in MiB (0 if unknown): decides whether a build fits on a tmpfs.
pub fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// Raise this process's open-files soft limit to its hard limit (a server with
/// thousands of connections needs two descriptors each). Returns the soft limit now
/// in force (`None` when it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Some(hard),
        Err(_) => Some(soft),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_alive() {
        let me = std::process::id() as i32;
        let st = start_time(me).unwrap();
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1), "same pid, other start time: not us");
        assert!(!is_alive(0, 0));
    }
}
