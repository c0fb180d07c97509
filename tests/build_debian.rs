//! Builds a real core bookworm tree with mmdebstrap on a tmpfs, sets it up, and checks
//! the result; plus the two failures users meet most (a package that does not exist,
//! a mirror that does not answer). Needs root and the network to the Debian mirror
//! (CI has both); skipped with a message otherwise. ~1 minute.
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use disklessset::build::{self, mmdebstrap, setup_tree, BuildSpec, SetupSpec};
use disklessset::store::record::LivenetType;
use disklessset::sys::mount::{self, MountGuard};
use disklessset::sys::runner::Runner;
use disklessset::{Config, Ctx, Error};

#[link(name = "crypt")]
extern "C" {
    fn crypt(key: *const libc::c_char, salt: *const libc::c_char) -> *mut libc::c_char;
}

fn libcrypt_verifies(password: &str, stored: &str) -> bool {
    let k = CString::new(password).unwrap();
    let s = CString::new(stored).unwrap();
    // SAFETY: valid C strings; crypt's static result is copied at once (one caller).
    let out = unsafe { crypt(k.as_ptr(), s.as_ptr()) };
    if out.is_null() {
        return false;
    }
    // SAFETY: non-null result of crypt is NUL-terminated.
    unsafe { CStr::from_ptr(out) }.to_string_lossy() == stored
}

/// Root and mmdebstrap, or the test fails naming the fix (it never passes unrun).
fn can_run() -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (real mounts, mmdebstrap): run the suite as root (scripts/test.sh)"
    );
    assert!(
        std::process::Command::new("mmdebstrap")
            .arg("--version")
            .output()
            .is_ok(),
        "mmdebstrap is not installed: run scripts/install-deps.sh"
    );
    true
}

/// A tmpfs of our own below a temp dir, unmounted (guard) before the dir is removed.
struct Scratch {
    guard: Option<MountGuard>,
    dir: tempfile::TempDir,
    ctx: Ctx,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let runner = Runner::new(false);
        let mnt = dir.path().join("tmpfs");
        std::fs::create_dir(&mnt).unwrap();
        mount::mount(
            &runner,
            Some("tmpfs"),
            "tmpfs",
            &mnt,
            &["size=4g", "mode=0755"],
        )
        .unwrap();
        let guard = MountGuard::new(&runner, &mnt);
        let mut cfg = Config::under_root(&dir.path().join("store")).unwrap();
        cfg.data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Scratch {
            guard: Some(guard),
            dir,
            ctx: Ctx::new(cfg, runner),
        }
    }

    fn tree(&self) -> PathBuf {
        self.dir.path().join("tmpfs/tree")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            g.unmount().unwrap();
        }
    }
}

fn dpkg_installed(tree: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(tree.join("var/lib/dpkg/status")).unwrap();
    let mut out = HashMap::new();
    for stanza in text.split("\n\n") {
        let mut pkg = None;
        let mut status = String::new();
        for l in stanza.lines() {
            if let Some(p) = l.strip_prefix("Package: ") {
                pkg = Some(p.to_string());
            } else if let Some(s) = l.strip_prefix("Status: ") {
                status = s.to_string();
            }
        }
        if let Some(p) = pkg {
            out.insert(p, status);
        }
    }
    out
}

fn du(path: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut inodes = 0;
    for e in walkdir::WalkDir::new(path)
        .same_file_system(true)
        .into_iter()
        .flatten()
    {
        inodes += 1;
        if let Ok(m) = e.metadata() {
            if m.is_file() {
                bytes += m.blocks() * 512;
            }
        }
    }
    (bytes, inodes)
}

#[test]
fn core_bookworm_builds_and_sets_up() {
    if !can_run() {
        return;
    }
    let s = Scratch::new();
    let tree = s.tree();
    let mut spec = BuildSpec::new("debian", LivenetType::Core).unwrap();
    spec.release = Some("bookworm".into());
    spec.optimize = true;
    let b = build::builder_for(spec.distro);
    for l in b.describe(&s.ctx, &spec).unwrap() {
        eprintln!("  {l}");
    }
    let t0 = Instant::now();
    b.build(&s.ctx, &spec, &tree).unwrap();
    let took = t0.elapsed();
    let (bytes, inodes) = du(&tree);
    eprintln!(
        "core bookworm (optimize): built in {:.1} s, {} MB, {} inodes",
        took.as_secs_f64(),
        bytes >> 20,
        inodes
    );

    // every package of the plan is installed
    let plan = mmdebstrap::plan(&s.ctx, &spec).unwrap();
    let installed = dpkg_installed(&tree);
    for p in &plan.packages {
        assert_eq!(
            installed.get(p).map(String::as_str),
            Some("install ok installed"),
            "{p}"
        );
    }
    assert!(!installed.contains_key("initramfs-tools") || tree.join("boot").is_dir());
    // apt lists and caches gone, docs filtered (copyright kept)
    let lists: Vec<_> = std::fs::read_dir(tree.join("var/lib/apt/lists"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lock" && n != "partial")
        .collect();
    assert!(lists.is_empty(), "{lists:?}");
    assert!(tree.join("usr/share/doc/systemd/copyright").is_file());
    assert!(
        !tree.join("usr/share/man/man1").exists()
            || std::fs::read_dir(tree.join("usr/share/man/man1"))
                .unwrap()
                .next()
                .is_none()
    );

    let kv = build::kernel_version(&tree).unwrap();
    assert!(kv.ends_with("-amd64"), "{kv}");

    // setup
    let hash = build::hash_password("Bench-pw 1").unwrap();
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKp3Q7bUjM0lD8kD2aLh4S0QkP0c8a1n2b3c4d5e6f7g test@ci";
    let mut ss = SetupSpec::new("ci-core");
    ss.password_hash = Some(hash.clone());
    ss.ssh_pub_key = Some(key.to_string());
    let t1 = Instant::now();
    setup_tree(&s.ctx, &tree, &ss).unwrap();
    eprintln!("setup in {:.0} ms", t1.elapsed().as_secs_f64() * 1000.0);

    let shadow = std::fs::read_to_string(tree.join("etc/shadow")).unwrap();
    let root = shadow.lines().find(|l| l.starts_with("root:")).unwrap();
    let stored = root.split(':').nth(1).unwrap();
    // issue 12: the image's root stays locked; the hash is delivered per node at boot
    assert!(stored == "*" || stored.starts_with('!'), "{root}");
    assert!(!shadow.contains(&hash));
    assert!(libcrypt_verifies("Bench-pw 1", &hash));
    assert!(!libcrypt_verifies("bench-pw 1", &hash));
    let sm = std::fs::metadata(tree.join("etc/shadow")).unwrap();
    assert_eq!(sm.mode() & 0o777, 0o640, "Debian's shadow mode kept");
    assert_eq!(sm.gid(), shadow_gid(&tree), "group shadow kept");

    let ak = tree.join("root/.ssh/authorized_keys");
    assert_eq!(std::fs::read_to_string(&ak).unwrap(), format!("{key}\n"));
    assert_eq!(std::fs::metadata(&ak).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(tree.join("root/.ssh")).unwrap().mode() & 0o777,
        0o700
    );
    // sshd reads the drop-in
    let sshd = std::fs::read_to_string(tree.join("etc/ssh/sshd_config")).unwrap();
    assert!(sshd.contains("Include /etc/ssh/sshd_config.d/*.conf"));
    assert!(tree
        .join("etc/ssh/sshd_config.d/01-disklessset.conf")
        .is_file());

    // os-release: written where the link points, inside the tree
    assert!(std::fs::symlink_metadata(tree.join("etc/os-release"))
        .unwrap()
        .file_type()
        .is_symlink());
    let osr = std::fs::read_to_string(tree.join("usr/lib/os-release")).unwrap();
    assert!(osr.contains("ID=debian"), "{osr}");
    assert!(osr.contains("DISKLESSSET_IMAGE_NAME=\"ci-core\""), "{osr}");
    assert!(
        osr.contains(&format!("DISKLESSSET_IMAGE_KERNEL=\"{kv}\"")),
        "{osr}"
    );
    assert!(osr.contains("DISKLESSSET_IMAGE_DATE=\""), "{osr}");

    let wants = tree.join("etc/systemd/system/multi-user.target.wants");
    for unit in [
        "disklessset-ready.service",
        "systemd-networkd.service",
        "ssh.service",
    ] {
        assert!(
            std::fs::symlink_metadata(wants.join(unit)).is_ok(),
            "{unit} enabled"
        );
    }
    let target = std::fs::read_link(wants.join("disklessset-ready.service")).unwrap();
    assert!(tree.join(target.strip_prefix("/").unwrap()).is_file());
    let getty = std::fs::read_link(
        tree.join("etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"),
    )
    .unwrap();
    assert!(
        tree.join(getty.strip_prefix("/").unwrap()).is_file(),
        "{}",
        getty.display()
    );
    let nd = std::fs::read_link(wants.join("systemd-networkd.service")).unwrap();
    assert!(tree.join(nd.strip_prefix("/").unwrap()).is_file());
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hostname")).unwrap(),
        ""
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/machine-id")).unwrap(),
        ""
    );
    assert!(tree
        .join("etc/systemd/network/10-disklessset.network")
        .is_file());

    // The tree's own tools accept what setup wrote (no boot needed): systemd-analyze
    // verify is too strict for a chroot, but the unit files must parse as INI with an
    // [Install] section, and sshd -t must accept the config.
    // The image holds no host key (issue 12: a node gets its own at boot), so sshd -t
    // gets a throwaway one under /run/sshd (a tmpfs at boot), removed afterwards.
    for k in ["rsa", "ecdsa", "ed25519"] {
        let p = tree.join(format!("etc/ssh/ssh_host_{k}_key"));
        assert!(!p.exists(), "the image ships {}", p.display());
    }
    std::fs::create_dir_all(tree.join("run/sshd")).unwrap();
    let st = std::process::Command::new("chroot")
        .arg(&tree)
        .args(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f"])
        .arg("/run/sshd/test_host_key")
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen in the tree");
    let out = std::process::Command::new("chroot")
        .arg(&tree)
        .args(["/usr/sbin/sshd", "-t", "-f", "/etc/ssh/sshd_config"])
        .args(["-h", "/run/sshd/test_host_key"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sshd -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir_all(tree.join("run/sshd")).unwrap();
    let out = std::process::Command::new("chroot")
        .arg(&tree)
        .args([
            "/usr/sbin/sshd",
            "-T",
            "-C",
            "user=root,host=x,addr=1.2.3.4",
            "-h",
            "/run/sshd/test_host_key",
        ])
        .output()
        .unwrap();
    std::fs::remove_dir_all(tree.join("run/sshd")).unwrap();
    let out_ready = std::process::Command::new("chroot")
        .arg(&tree)
        .args([
            "/bin/sh",
            "-c",
            "sed s#/dev/console#/tmp/console# /usr/lib/disklessset/ready | /bin/sh",
        ])
        .output()
        .unwrap();
    let console = std::fs::read_to_string(tree.join("tmp/console")).unwrap();
    std::fs::remove_file(tree.join("tmp/console")).unwrap();
    let uname = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    let expected = format!(
        "disklessset: image ci-core booted (kernel {}, os-release ci-core)\n",
        String::from_utf8_lossy(&uname.stdout).trim()
    );
    assert_eq!(console, expected, "{out_ready:?}");
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(
        effective.contains("permitrootlogin without-password")
            || effective.contains("permitrootlogin prohibit-password"),
        "{effective}"
    );
}

fn shadow_gid(tree: &Path) -> u32 {
    std::fs::read_to_string(tree.join("etc/group"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"shadow")).then(|| f[2].parse().unwrap())
        })
        .unwrap()
}

#[test]
fn missing_package_is_named() {
    if !can_run() {
        return;
    }
    let s = Scratch::new();
    let mut spec = BuildSpec::new("debian", LivenetType::Core).unwrap();
    spec.extra_packages = vec!["disklessset-no-such-package".into()];
    let e = build::builder_for(spec.distro)
        .build(&s.ctx, &spec, &s.tree())
        .unwrap_err();
    eprintln!("{e}");
    match &e {
        Error::PackageNotFound { packages, .. } => {
            assert_eq!(packages, "disklessset-no-such-package")
        }
        other => panic!("expected PackageNotFound, got {other:?}"),
    }
    assert!(!s.tree().exists(), "the partial tree is removed");
}

#[test]
fn unreachable_mirror_is_named() {
    if !can_run() {
        return;
    }
    let s = Scratch::new();
    let mut spec = BuildSpec::new("debian", LivenetType::Core).unwrap();
    spec.mirror = Some("http://127.0.0.1:9/debian".into());
    let t0 = Instant::now();
    let e = build::builder_for(spec.distro)
        .build(&s.ctx, &spec, &s.tree())
        .unwrap_err();
    eprintln!("{e} (after {:.1} s)", t0.elapsed().as_secs_f64());
    match &e {
        Error::MirrorUnreachable { url, .. } => assert_eq!(url, "http://127.0.0.1:9/debian"),
        other => panic!("expected MirrorUnreachable, got {other:?}"),
    }
    assert!(e.to_string().contains("mirrors:"), "{e}");
}

/// The small and standard package sets resolve and install (slow: ~2-3 min; run with
/// `cargo test --test build_debian -- --ignored`).
#[test]
#[ignore]
fn small_and_standard_bookworm_install() {
    if !can_run() {
        return;
    }
    for t in [LivenetType::Small, LivenetType::Standard] {
        let s = Scratch::new();
        let mut spec = BuildSpec::new("debian", t).unwrap();
        spec.optimize = true;
        let t0 = Instant::now();
        build::builder_for(spec.distro)
            .build(&s.ctx, &spec, &s.tree())
            .unwrap();
        let (bytes, inodes) = du(&s.tree());
        eprintln!(
            "{} bookworm (optimize): {:.1} s, {} MB, {} inodes",
            t.as_str(),
            t0.elapsed().as_secs_f64(),
            bytes >> 20,
            inodes
        );
        let installed = dpkg_installed(&s.tree());
        for p in &mmdebstrap::plan(&s.ctx, &spec).unwrap().packages {
            assert!(installed.contains_key(p), "{p}");
        }
        let mut ss = SetupSpec::new("ci-std");
        ss.ssh_pub_key = Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKp3 t@ci".into());
        setup_tree(&s.ctx, &s.tree(), &ss).unwrap();
        assert!(std::fs::symlink_metadata(
            s.tree()
                .join("etc/systemd/system/sysinit.target.wants/systemd-resolved.service")
        )
        .is_ok());
    }
}
