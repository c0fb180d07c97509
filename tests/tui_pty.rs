//! PTY smoke test of the real binary in tmux on a test store: create a demo image through
//! the menus, see it listed, remove it after the confirmation; SIGTERM restores the
//! terminal; without a terminal the binary points to the subcommands. Issue 13: a
//! machine reported to a real `serve` is accepted as d01 from the Nodes screen; `shell`
//! on an image from the Images screen gets the real terminal (the UI suspended), writes
//! a marker, and the UI comes back intact.
//! Needs tmux (CI installs it), curl, busybox-static and root (the demo module mounts a
//! tmpfs; shell mounts in a private namespace).
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

/// `disklessset ARGS` on the store at `root`; its stdout (panics on failure).
fn cli(root: &Path, args: &[&str]) -> String {
    let o = Command::new(BIN)
        .env("DISKLESSSET_ROOT", root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run disklessset");
    assert!(
        o.status.success(),
        "disklessset {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A real `disklessset serve` on a free local port, killed on drop.
struct Serve(std::process::Child, u16);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(root: &Path) -> Serve {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(BIN)
        .env("DISKLESSSET_ROOT", root)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let srv = Serve(child, port);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    srv
}

#[test]
fn accept_a_discovered_machine_from_the_nodes_screen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("www/diskless/images")).expect("web root");
    cli(root, &["discovery", "start", "--policy", "manual"]);
    let srv = serve(root);
    // The machine reports its facts the way the discovery initramfs does.
    let mac = "52:54:00:dd:00:01";
    let report = root.join("report.json");
    std::fs::write(
        &report,
        format!(
            r#"{{"macs":["{mac}"],"arch":"x86_64","cpu_model":"QEMU TCG","cpus":2,"memory_mib":1024,"disks":[{{"name":"vda","size_bytes":2147483648,"model":""}}],"vendor":"QEMU","product":"Standard PC","serial":"","uuid":""}}"#
        ),
    )
    .expect("report");
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "30"])
        .args(["-H", "Content-Type: application/json", "-H", "Expect:"])
        .arg("--data-binary")
        .arg(format!("@{}", report.display()))
        .arg(format!("http://127.0.0.1:{}/discover/report", srv.1))
        .output()
        .expect("curl (Debian curl)");
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(code.starts_with('2'), "POST /discover/report: HTTP {code}");
    let t = Tmux::start(root, "accept");
    t.wait_for("10 - Exit");
    t.keys(&["n", "Enter"]);
    t.wait_for("Discovery on · policy manual");
    let s = t.wait_for(mac);
    assert!(s.contains("pending"), "{s}");
    assert!(s.contains("No nodes in"), "{s}");
    t.keys(&["Tab"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["Enter"]);
    t.wait_for("Machine (MAC)");
    t.keys(&["Down"]);
    t.text("d01");
    t.keys(&["Enter"]);
    let s = t.wait_for("Nothing has been done yet");
    assert!(
        s.contains(&format!("Add node d01 with MAC {mac}")),
        "the recap names the node and the MAC:\n{s}"
    );
    t.keys(&["Enter"]);
    t.wait_for(&format!("done: machine {mac} accepted as d01"));
    t.keys(&["Enter"]);
    let s = t.wait_for("→ d01");
    assert!(
        s.contains("discovered"),
        "d01 is listed as discovered:\n{s}"
    );
    t.keys(&["C-c"]);
    t.wait_for("10 - Exit");
    t.keys(&["C-c"]);
    t.wait_for("EXIT=0");
    let nodes: serde_json::Value =
        serde_json::from_str(&cli(root, &["nodes", "list", "--json"])).expect("json");
    let d01 = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "d01"))
        .unwrap_or_else(|| panic!("d01 missing from nodes list: {nodes}"));
    assert_eq!(d01["mac"], mac, "{d01}");
    assert_eq!(d01["state"], "discovered", "{d01}");
}

/// The smallest livenet image a shell runs in: a static busybox tree with what `livenet
/// create --from` checks (accounts, sshd config, a serial getty unit, a kernel whose
/// wanted modules are all built in).
fn busybox_tree(t: &Path) {
    let kver = "6.1.0-pty";
    let busybox = Path::new("/usr/bin/busybox");
    assert!(
        busybox.is_file(),
        "busybox is required by this test: apt-get install busybox-static"
    );
    for d in [
        "bin",
        "boot",
        "etc/ssh",
        "root",
        "tmp",
        "usr/lib/systemd/system",
        "usr/sbin",
        &format!("usr/lib/modules/{kver}"),
    ] {
        std::fs::create_dir_all(t.join(d)).expect("mkdir");
    }
    std::fs::copy(busybox, t.join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", t.join("bin/sh")).expect("sh");
    let files: [(&str, String); 9] = [
        ("bin/bash", "#!/bin/sh\nexec /bin/sh \"$@\"\n".into()),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n".into()),
        ("etc/group", "root:x:0:\n".into()),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n".into()),
        (
            "etc/os-release",
            "ID=debian\nVERSION_ID=12\nVERSION_CODENAME=bookworm\n".into(),
        ),
        ("etc/ssh/sshd_config", String::new()),
        (
            "usr/lib/systemd/system/serial-getty@.service",
            "[Service]\nExecStart=-/sbin/agetty %I\n[Install]\nWantedBy=getty.target\n".into(),
        ),
        (&format!("boot/vmlinuz-{kver}"), "not a kernel".into()),
        (
            &format!("usr/lib/modules/{kver}/modules.builtin"),
            // what the own initramfs looks for, as the library lists it
            disklessset::kernel::kmods::DEFAULT_WANTED
                .iter()
                .chain(disklessset::kernel::kmods::NFS_WANTED)
                .map(|m| format!("kernel/x/{m}.ko\n"))
                .collect(),
        ),
    ];
    for (rel, text) in files {
        std::fs::write(t.join(rel), text).expect("write");
    }
    std::fs::write(t.join(format!("usr/lib/modules/{kver}/modules.dep")), "").expect("dep");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.join("bin/bash"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
}

/// Leaves nothing mounted if the test fails half-way.
struct Unmount<'a>(&'a Path, &'a str);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .env("DISKLESSSET_ROOT", self.0)
            .args(["clear", self.1, "--yes"])
            .stdin(Stdio::null())
            .output();
    }
}

#[test]
fn shell_from_the_images_screen_suspends_the_ui_and_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tree = root.join("tree");
    busybox_tree(&tree);
    cli(
        root,
        &[
            "livenet",
            "create",
            "bb",
            "--from",
            &tree.display().to_string(),
        ],
    );
    // Mounted: what the shell writes stays in the tree, and unmount repacks it.
    cli(root, &["livenet", "mount", "bb"]);
    let _guard = Unmount(root, "bb");
    let t = Tmux::start(root, "shell");
    t.wait_for("10 - Exit");
    t.keys(&["2", "Enter"]);
    t.wait_for("mounted");
    t.keys(&["h"]);
    t.wait_for("running a shell in image bb");
    t.wait_for("/ #");
    t.text("echo hi > /root/x; echo marker-$((6*7))");
    t.keys(&["Enter"]);
    t.wait_for("marker-42");
    t.text("exit");
    t.keys(&["Enter"]);
    let s = t.wait_for("shell in image bb exited with code 0");
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("its changes are in the mounted tree of bb: u (unmount) repacks them as a new generation"),
        "the outcome says where the changes are:\n{s}"
    );
    assert!(
        !s.contains("marker-42") && s.contains("▶ bb"),
        "the images view is redrawn over the shell's output:\n{s}"
    );
    let marker = root.join("workdir/bb/mnt/root/x");
    assert_eq!(
        std::fs::read_to_string(&marker).expect("the marker written in the shell"),
        "hi\n"
    );
    // Keys work again: unmount repacks the change as generation 2.
    t.keys(&["u"]);
    t.wait_for("done: image bb unmounted; repacked as generation 2");
    t.keys(&["Enter"]);
    t.wait_for("▶ bb");
    // exec on the image, now not mounted: a throwaway overlay, the outcome says so.
    t.keys(&["e"]);
    t.wait_for("Command");
    t.text("sh -c 'echo exec-$((2+3)) > /root/x; cat /root/x'");
    t.keys(&["Enter"]);
    std::thread::sleep(Duration::from_millis(200));
    t.keys(&["Enter"]);
    t.wait_for("Nothing has been done yet");
    t.keys(&["Enter"]);
    t.wait_for("exec-5");
    t.wait_for("Press Enter to return to disklessset");
    t.keys(&["Enter"]);
    let s = t.wait_for("▶ bb");
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("command in image bb exited with code 0; bb was not mounted: it ran on a throwaway overlay, its changes are discarded"),
        "{s}"
    );
    t.keys(&["C-c"]);
    t.wait_for("10 - Exit");
    t.keys(&["C-c"]);
    let s = t.wait_for("EXIT=0");
    assert!(
        !s.contains("10 - Exit"),
        "the alternate screen is left:\n{s}"
    );
    t.text("echoed");
    t.wait_for("echoed");
    let list = Command::new("unsquashfs")
        .arg("-l")
        .arg(root.join("www/diskless/images/bb/squashfs.img"))
        .output()
        .expect("unsquashfs");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("squashfs-root/root/x"),
        "the new generation holds the marker"
    );
}

#[test]
fn ansible_from_the_images_screen_runs_in_the_terminal_and_publishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tree = root.join("tree");
    busybox_tree(&tree);
    cli(
        root,
        &[
            "livenet",
            "create",
            "bb",
            "--from",
            &tree.display().to_string(),
        ],
    );
    let _guard = Unmount(root, "bb");
    // `raw` needs no python in the image: busybox's sh is enough.
    let pb = root.join("site.yml");
    std::fs::write(
        &pb,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - raw: echo from-ansible > /root/ans\n",
    )
    .expect("playbook");
    let t = Tmux::start(root, "ansible");
    t.wait_for("10 - Exit");
    t.keys(&["2", "Enter"]);
    t.wait_for("▶ bb");
    t.keys(&["a"]);
    t.wait_for("Playbook");
    t.text(&pb.display().to_string());
    for _ in 0..4 {
        t.keys(&["Enter"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    t.wait_for("Nothing has been done yet");
    t.keys(&["Enter"]);
    // The UI is suspended: ansible-playbook's own output on the real terminal.
    let s = t.wait_for("Press Enter to return to disklessset");
    assert!(s.contains("PLAY RECAP"), "ansible's output is shown:\n{s}");
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("repacked as generation 2"),
        "the outcome is printed before returning:\n{s}"
    );
    t.keys(&["Enter"]);
    let s = t.wait_for("▶ bb");
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("playbook applied to image bb: repacked as generation 2"),
        "{s}"
    );
    assert!(!s.contains("PLAY RECAP"), "the UI is redrawn in full:\n{s}");
    t.keys(&["C-c"]);
    t.wait_for("10 - Exit");
    t.keys(&["C-c"]);
    t.wait_for("EXIT=0");
    let list = Command::new("unsquashfs")
        .arg("-l")
        .arg(root.join("www/diskless/images/bb/squashfs.img"))
        .output()
        .expect("unsquashfs");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("squashfs-root/root/ans"),
        "generation 2 holds the playbook's file"
    );
}
