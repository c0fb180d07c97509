//! Helpers shared by the integration tests: a temp store, the binaries, mount checks.
#![allow(dead_code)]
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Store {
    pub dir: tempfile::TempDir,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Store {
        // Under /var/tmp (a real disk) rather than /tmp, whatever /tmp is.
        let dir = tempfile::Builder::new()
            .prefix("dls-test-")
            .tempdir_in("/var/tmp")
            .expect("temp store");
        Store { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn images(&self) -> PathBuf {
        self.root().join("www/diskless/images")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_disklessset"));
        c.arg("--root").arg(self.root()).args(args);
        c.env_remove("DISKLESSSET_CONFIG");
        c.stdin(std::process::Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run disklessset")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "disklessset {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "disklessset {args:?} should fail with 1: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn list_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["list", "--json"])).expect("list --json")
    }

    pub fn state_of(&self, name: &str) -> Option<String> {
        self.list_json()
            .as_array()?
            .iter()
            .find(|i| i["name"] == name)
            .and_then(|i| i["state"].as_str().map(str::to_string))
    }

    /// Mount points under this store, from the real mount table.
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(self.root())
    }
}

/// Mount points at or below `root`, from /proc/self/mountinfo.
pub fn mounts_under(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = root.display().to_string();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&root))
        .collect()
}

impl Drop for Store {
    fn drop(&mut self) {
        // Never leave mounts behind, whatever the test did: deepest first.
        let mut m = self.mounts();
        m.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in m {
            let _ = Command::new("umount").arg(&p).status();
        }
    }
}

/// One-line, no-panic error check: one line on stderr naming the input, no backtrace.
pub fn assert_one_line_error(stderr: &str, needle: &str) {
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "backtrace hint: {stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
}
