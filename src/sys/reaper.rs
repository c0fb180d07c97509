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
//! Not caught: a descendant that leaves its group with `setsid`/`setpgid` (none of
//! mmdebstrap, apt, dpkg, mksquashfs or ansible does); `clear` and `recover` still
//! refuse to unmount what such a process keeps busy, naming the mount.
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

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
}

/// The child ended: kill what it left in its group only when asked (cancellation);
/// otherwise forget the group.
pub fn ended(pid: u32, kill_rest: bool) {
    if kill_rest {
        kill_group(pid as i32);
    }
    send(&format!("-{pid}\n"));
}
