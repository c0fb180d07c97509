//! Helpers shared by the integration tests: a temp store, the binaries, mount checks.
#![allow(dead_code)]
pub mod net;
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

    /// The root password hash the store keeps for an image (issue 12: in the secrets
    /// dir, 0600, never in the record or the image).
    pub fn root_hash(&self, image: &str) -> String {
        let p = self
            .root()
            .join("secrets/images")
            .join(image)
            .join("root.hash");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
        text.trim().to_string()
    }

    /// A livenet image from the shared core tree ([`core_tarball`]): `livenet create
    /// NAME --from TARBALL` plus `extra` flags. For tests whose subject is not the build
    /// (booting, serving, digests, nodes): the import runs the same setup, packing and
    /// boot script as a build, without a minute of mmdebstrap per test.
    pub fn core_image(&self, name: &str, extra: &[&str]) -> String {
        let tar = core_tarball();
        let tar = tar.display().to_string();
        let mut args = vec!["livenet", "create", name, "--from", tar.as_str()];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// Waits up to 10 s for a line containing `needle` in the store's log (the server
    /// writes it) and returns it; fails naming the secrets lines it did see.
    pub fn log_line(&self, needle: &str) -> String {
        let log = self.root().join("log/disklessset.log");
        let t = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "no log line with {needle:?} in {}:\n{}",
                log.display(),
                text.lines()
                    .filter(|l| l.contains("secrets"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `ok(args)` parsed as JSON (args carry their own `--json`).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// A real `disklessset serve` of this store (`-i`: its request log goes to
    /// `serve.log` in the store), `extra` after `serve`. It listens on a port the kernel
    /// chose (`--listen 127.0.0.1:0`, read back from its first line): no free-port race
    /// between the test lanes. Killed on drop.
    pub fn serve(&self, extra: &[&str]) -> Serve {
        use std::io::Read;
        let log = self.root().join("serve.log");
        let mut args = vec!["-i", "serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = self
            .cmd(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("serve.log"))
            .spawn()
            .expect("disklessset serve");
        let mut stdout = child.stdout.take().expect("serve's stdout");
        let (mut line, mut b) = (Vec::new(), [0u8; 1]);
        let start = std::time::Instant::now();
        while !line.ends_with(b"\n") && start.elapsed() < std::time::Duration::from_secs(30) {
            if stdout.read(&mut b).unwrap_or(0) == 0 {
                break;
            }
            line.push(b[0]);
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "serve did not start: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("serve line: {line}"));
        Serve {
            child,
            _stdout: stdout,
            port,
            addr,
            log,
        }
    }

    /// Boots `image` in a QEMU VM through iPXE from the store's web root (the entry
    /// script a DHCP server would name: sets `dls-base`, chains the image's boot.ipxe)
    /// and waits up to `timeout` for the image's own ready line on the serial console
    /// (`serial-TAG.log` in the store). Returns power-on to marker in seconds.
    pub fn boot_image(&self, image: &str, tag: &str, timeout: std::time::Duration) -> f64 {
        use vm::{boot_until_marker, HttpServer, VmBoot};
        let web = self.root().join("www");
        let server = HttpServer::serve_dir(&web).expect("http server for the web root");
        std::fs::write(
            web.join(format!("entry-{tag}.ipxe")),
            entry_script(server.port, image, "boot.ipxe"),
        )
        .expect("entry script");
        let mut vm = VmBoot::new(
            server.guest_url(&format!("entry-{tag}.ipxe")),
            self.root().join(format!("serial-{tag}.log")),
            format!("disklessset: image {image} booted"),
        );
        vm.timeout = timeout;
        let run =
            boot_until_marker(&vm).unwrap_or_else(|e| panic!("{image} ({tag}) did not boot: {e}"));
        eprintln!(
            "{image} ({tag}): power-on to marker {:.1}s",
            run.elapsed_secs
        );
        run.elapsed_secs
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

/// The root tree of a Debian bookworm `core` image (the packages of the `core` type of
/// modules/livenet/debian.yml and the kernel) as a tarball written by mmdebstrap, built
/// once per machine and shared by every test process (an exclusive flock while it is
/// made; rebuilt when older than a week). Tests that are about the build itself
/// (build_debian, livenet, orphans, reproducible, ...) keep building with the tool.
/// These tests make real mounts, loop devices, network namespaces and VMs: as another
/// user they fail, naming the fix, rather than pass without having run.
/// The entry script a DHCP server would name for a QEMU user-mode guest (the host is
/// 10.0.2.2): sets `dls-base` to a server on `port` and chains `script` of `image`.
pub fn entry_script(port: u16, image: &str, script: &str) -> String {
    format!(
        "#!ipxe\nset dls-base http://10.0.2.2:{port}\nchain ${{dls-base}}/diskless/images/{image}/{script}\n"
    )
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (real mounts, loop devices, network namespaces, VMs): run the suite as root (scripts/test.sh)"
    );
}

/// sha256 of a file, hex (sha256sum, the tool an admin would check with).
pub fn sha256_hex(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", p.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `unsquashfs -l` of an image: one `squashfs-root/PATH` line per entry.
pub fn unsquashfs_list(img: &Path) -> String {
    let out = Command::new("unsquashfs")
        .arg("-l")
        .arg(img)
        .output()
        .expect("unsquashfs");
    assert!(out.status.success(), "unsquashfs -l {}", img.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Unpacks an image into `dest` (as root: owners and modes kept).
pub fn unsquash(img: &Path, dest: &Path) {
    let out = Command::new("unsquashfs")
        .args(["-q", "-n", "-f", "-d"])
        .arg(dest)
        .arg(img)
        .output()
        .expect("unsquashfs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn core_tarball() -> PathBuf {
    use nix::fcntl::{Flock, FlockArg};
    let dir = Path::new("/var/tmp/dls-cache");
    std::fs::create_dir_all(dir).expect("/var/tmp/dls-cache");
    let tar = dir.join("core-bookworm.tar");
    let lock = std::fs::File::create(dir.join("core-bookworm.lock")).expect("cache lock file");
    let _held = Flock::lock(lock, FlockArg::LockExclusive).expect("flock of the cache");
    let fresh = std::fs::metadata(&tar)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < std::time::Duration::from_secs(7 * 24 * 3600));
    if fresh {
        return tar;
    }
    // mmdebstrap picks the format by the extension: the temporary name ends in .tar
    let tmp = dir.join(format!("core-bookworm.{}.tar", std::process::id()));
    let t = std::time::Instant::now();
    let out = Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--aptopt=Acquire::Retries \"3\"",
            "--variant=minbase",
            "--components=main",
            "--include=systemd,systemd-sysv,udev,dbus,kmod,openssh-server,iproute2,linux-image-amd64",
            "bookworm",
        ])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("mmdebstrap (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "mmdebstrap of the shared core tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &tar).expect("publish the shared core tree");
    eprintln!(
        "shared core tree built in {:.0} s: {}",
        t.elapsed().as_secs_f64(),
        tar.display()
    );
    tar
}

/// A `disklessset serve` process started by [`Store::serve`]; killed and reaped on drop.
pub struct Serve {
    pub child: std::process::Child,
    // kept open: the server's stdout is a pipe that must not close under it
    _stdout: std::process::ChildStdout,
    pub port: u16,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Its stderr: the request log (`-i`).
    pub log: PathBuf,
}

impl Serve {
    /// The entry URL a QEMU user-mode guest uses (the host is 10.0.2.2 there).
    pub fn url(&self) -> String {
        format!("http://10.0.2.2:{}/boot.ipxe", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
