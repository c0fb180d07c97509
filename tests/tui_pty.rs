//! PTY smoke test of the real binary in tmux on a test store: create a demo image through
//! the menus, see it listed, remove it after the confirmation; SIGTERM restores the
//! terminal; without a terminal the binary points to the subcommands.
//! Needs tmux (CI installs it) and root (the demo module mounts a tmpfs).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_disklessset");

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(root: &Path, name: &str) -> Tmux {
        let ok = Command::new("tmux")
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "tmux is required by this test: install it (apt-get install tmux)"
        );
        let t = Tmux {
            socket: format!("dls-pty-{}-{name}", std::process::id()),
        };
        let cmd = format!(
            "env DISKLESSSET_ROOT={} TERM=xterm-256color {BIN}; echo EXIT=$?; sleep 60",
            root.display()
        );
        let st = Command::new("tmux")
            .args(["-L", &t.socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-s", "t", "-x", "100", "-y", "30", &cmd])
            .status()
            .expect("tmux new-session");
        assert!(st.success(), "tmux new-session failed");
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "t"];
        a.extend_from_slice(keys);
        self.tmux(&a);
    }

    fn text(&self, s: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", s]);
    }

    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the disklessset process (child of the pane's shell).
    fn app_pid(&self) -> i32 {
        let shell = self.tmux(&["display", "-p", "-t", "t", "#{pane_pid}"]);
        let shell = shell.trim();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("children");
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("disklessset pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn create_list_and_remove_a_demo_image_through_the_menus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let t = Tmux::start(root, "create");
    t.wait_for("1 - Manage and create images");
    t.wait_for("0 images");
    t.keys(&["1", "Enter"]);
    t.wait_for("1 - demo");
    t.keys(&["1", "Enter"]);
    t.wait_for("1 - Create a demo image");
    t.keys(&["Enter"]);
    t.wait_for("Image name :");
    t.text("pty-img");
    t.keys(&["Enter", "Enter"]);
    t.wait_for("Create demo image pty-img");
    t.wait_for("Nothing has been done yet");
    let image = root.join("www/diskless/images/pty-img");
    assert!(!image.exists());
    t.keys(&["Enter"]);
    t.wait_for("done: created demo image pty-img");
    assert!(image.join("demo.txt").is_file());
    t.keys(&["Enter"]);
    let s = t.wait_for("pty-img");
    assert!(s.contains("created"), "{s}");
    assert!(s.contains("1 image"), "{s}");
    t.keys(&["r"]);
    let s = t.wait_for("Remove image pty-img?");
    assert!(
        s.contains("images/pty-img"),
        "the popup names the directory:\n{s}"
    );
    t.keys(&["n"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(image.exists(), "n keeps the image");
    t.keys(&["r"]);
    t.wait_for("Remove image pty-img?");
    t.keys(&["y"]);
    t.wait_for("done: removed image pty-img");
    assert!(!image.exists());
    t.keys(&["Enter"]);
    t.wait_for("No images yet");
    t.keys(&["C-c"]);
    t.wait_for("10 - Exit");
    t.keys(&["C-c"]);
    let s = t.wait_for("EXIT=0");
    assert!(
        !s.contains("10 - Exit"),
        "the alternate screen is left:\n{s}"
    );
}

#[test]
fn sigterm_restores_the_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Tmux::start(dir.path(), "term");
    t.wait_for("10 - Exit");
    let pid = t.app_pid();
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let s = t.wait_for("EXIT=143");
    assert!(
        !s.contains("10 - Exit"),
        "the alternate screen is left:\n{s}"
    );
    // The tty is back in cooked mode: typed text echoes.
    t.text("echoed");
    t.wait_for("echoed");
}

#[test]
fn without_a_terminal_it_points_to_the_subcommands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = Command::new(BIN)
        .env("DISKLESSSET_ROOT", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
    assert!(err.contains("disklessset list"), "{err}");
}
