//! Issue 12: nothing secret served or exported; per-node secrets delivered only to
//! their node. Against the real binary: the bundle endpoint of `disklessset serve` in a
//! network namespace of the test's own (addresses on its loopback: the server's and
//! the nodes'), curl choosing the source address and port; the publish check and a
//! scan of everything served after a real build. Runs as root (netns, mounts).
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{sha256_hex, unsquash, Store};

const SERVER: &str = "10.199.0.1";
const PORT: u16 = 8080;

/// A network namespace with addresses on its loopback; deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str, addrs: &[&str]) -> Netns {
        let name = format!("dls-sec-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        for a in addrs {
            ns.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        ns
    }

    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    }

    fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(s: &Store, ns: &Netns, config: &Path) -> Serve {
    let child = ns
        .exec(env!("CARGO_BIN_EXE_disklessset"))
        .arg("--root")
        .arg(s.root())
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", &format!("{SERVER}:{PORT}")])
        .env_remove("DISKLESSSET_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let srv = Serve(child);
    let t = Instant::now();
    loop {
        let (code, _, _) = curl(ns, SERVER, None, "/health");
        if code == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    srv
}

/// GET from `from` (source ports `ports`, e.g. "1000-1010"): (status, body, local port).
fn curl(ns: &Netns, from: &str, ports: Option<&str>, path: &str) -> (u16, String, u16) {
    let mut c = ns.exec("curl");
    c.args(["-s", "--max-time", "120", "--interface", from]);
    if let Some(p) = ports {
        c.args(["--local-port", p]);
    }
    c.arg(format!("http://{SERVER}:{PORT}{path}"));
    common::net::curl_report(c)
}

/// The files of a bundle (base64 of a tar: meta/*, files.tar), by path.
fn unpack(body: &str) -> Vec<(String, Vec<u8>, u32)> {
    use base64::Engine;
    let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .expect("the bundle is base64");
    let mut out = Vec::new();
    let mut outer = tar::Archive::new(raw.as_slice());
    for e in outer.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mode = e.header().mode().unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if path == "files.tar" {
            let mut inner = tar::Archive::new(data.as_slice());
            for f in inner.entries().unwrap() {
                let mut f = f.unwrap();
                let p = f.path().unwrap().display().to_string();
                let m = f.header().mode().unwrap();
                let mut d = Vec::new();
                f.read_to_end(&mut d).unwrap();
                out.push((format!("files/{p}"), d, m));
            }
        } else {
            out.push((path, data, mode));
        }
    }
    out
}

fn file<'a>(b: &'a [(String, Vec<u8>, u32)], path: &str) -> &'a [u8] {
    &b.iter()
        .find(|(p, _, _)| p == path)
        .unwrap_or_else(|| {
            panic!(
                "{path} not in the bundle: {:?}",
                b.iter().map(|x| &x.0).collect::<Vec<_>>()
            )
        })
        .1
}

fn config(s: &Store, window: u64) -> PathBuf {
    let p = s.root().join("config.yaml");
    std::fs::write(&p, format!("secrets_window_secs: {window}\n")).unwrap();
    p
}

#[test]
fn bundle_goes_to_its_armed_node_only_from_a_privileged_port() {
    let s = Store::new();
    let root = s.root();
    std::fs::create_dir_all(s.images()).unwrap();
    std::fs::write(
        root.join("nodes.yml"),
        "c01: {mac: '52:54:00:aa:00:01', ip: 10.199.0.7, groups: [compute]}\n\
         c02: {mac: '52:54:00:aa:00:02', ip: 10.199.0.8, groups: [compute]}\n",
    )
    .unwrap();
    // c01's script names image img1, whose root hash and keys the store keeps
    std::fs::create_dir_all(root.join("www/nodes")).unwrap();
    std::fs::write(
        root.join("www/nodes/c01.ipxe"),
        "#!ipxe\nset dls-boot-type diskless\nset node-image img1\n",
    )
    .unwrap();
    let img = root.join("secrets/images/img1");
    std::fs::create_dir_all(&img).unwrap();
    let hash = "$6$abcdefghijklmnop$0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef012345";
    std::fs::write(img.join("root.hash"), format!("{hash}\n")).unwrap();
    std::fs::write(
        img.join("authorized_keys"),
        "ssh-ed25519 AAAAC3Nza test@ci\n",
    )
    .unwrap();
    // extra files: the group's, and the node's own winning over it
    let g = root.join("secrets/extra/groups/compute/etc/site");
    let n = root.join("secrets/extra/nodes/c01/etc/site");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::create_dir_all(&n).unwrap();
    std::fs::write(g.join("token"), "group\n").unwrap();
    std::fs::write(g.join("shared"), "group\n").unwrap();
    std::fs::write(n.join("token"), "node\n").unwrap();

    let ns = Netns::new("ep", &[SERVER, "10.199.0.7", "10.199.0.8", "10.199.0.9"]);
    let cfg = config(&s, 8);
    let _srv = serve(&s, &ns, &cfg);
    let privileged = Some("1000-1010");

    // not armed yet
    let (code, body, port) = curl(&ns, "10.199.0.7", privileged, "/secrets/bundle");
    assert_eq!(code, 403, "{body}");
    assert!(port < 1024, "{port}");
    s.log_line(&format!(
        "secrets: refused 10.199.0.7:{port} (node c01): not armed"
    ));

    // armed by its script (fetched from anywhere); an unprivileged port is refused
    // and does not use the arming up
    let (code, _, _) = curl(&ns, SERVER, None, "/nodes/c01.ipxe");
    assert_eq!(code, 200);
    let (code, body, port) = curl(&ns, "10.199.0.7", Some("40000-40100"), "/secrets/bundle");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not privileged"), "{body}");
    s.log_line(&format!(
        "secrets: refused 10.199.0.7:{port} (node c01): source port {port} is not privileged"
    ));
    // an address no node has, privileged port
    let (code, body, port) = curl(&ns, "10.199.0.9", privileged, "/secrets/bundle");
    assert_eq!(code, 403, "{body}");
    s.log_line(&format!(
        "secrets: refused 10.199.0.9:{port}: no node of the inventory has address 10.199.0.9"
    ));
    // another node's address: c02 is not armed
    let (code, _, port) = curl(&ns, "10.199.0.8", privileged, "/secrets/bundle");
    assert_eq!(code, 403);
    s.log_line(&format!(
        "secrets: refused 10.199.0.8:{port} (node c02): not armed"
    ));

    // the entitled node
    let (code, body, port) = curl(&ns, "10.199.0.7", privileged, "/secrets/bundle");
    assert_eq!(code, 200, "{body}");
    let b = unpack(&body);
    assert_eq!(file(&b, "meta/node"), b"c01\n");
    assert_eq!(file(&b, "meta/root.hash"), format!("{hash}\n").as_bytes());
    let key = file(&b, "files/etc/ssh/ssh_host_ed25519_key").to_vec();
    assert!(String::from_utf8_lossy(&key).contains("BEGIN OPENSSH PRIVATE KEY"));
    for t in ["ed25519", "rsa", "ecdsa"] {
        let (_, _, mode) = b
            .iter()
            .find(|(p, _, _)| *p == format!("files/etc/ssh/ssh_host_{t}_key"))
            .unwrap();
        assert_eq!(mode & 0o777, 0o600, "{t}");
        file(&b, &format!("files/etc/ssh/ssh_host_{t}_key.pub"));
    }
    assert_eq!(file(&b, "files/etc/site/token"), b"node\n");
    assert_eq!(file(&b, "files/etc/site/shared"), b"group\n");
    assert_eq!(
        file(&b, "files/root/.ssh/authorized_keys"),
        b"ssh-ed25519 AAAAC3Nza test@ci\n"
    );
    // 6 host key files + authorized_keys + 2 extra files + the root hash
    s.log_line(&format!(
        "secrets: delivered bundle to c01 (10.199.0.7:{port}, 10 files)"
    ));
    // kept on the server, 0600, outside the web root
    let kept = root.join("secrets/nodes/c01/ssh_host_ed25519_key");
    assert_eq!(std::fs::read(&kept).unwrap(), key);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!root.join("secrets").starts_with(root.join("www")));

    // one-time: the same request again is refused until the next script fetch
    let (code, _, port) = curl(&ns, "10.199.0.7", privileged, "/secrets/bundle");
    assert_eq!(code, 403);
    s.log_line(&format!(
        "secrets: refused 10.199.0.7:{port} (node c01): not armed"
    ));
    // re-armed (by MAC, as iPXE asks): the same keys again
    let (code, _, _) = curl(&ns, SERVER, None, "/nodes/52-54-00-aa-00-01.ipxe");
    assert!(code == 200 || code == 404, "{code}");
    let (code, body, _) = curl(&ns, "10.199.0.7", privileged, "/secrets/bundle");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        file(&unpack(&body), "files/etc/ssh/ssh_host_ed25519_key"),
        key.as_slice(),
        "host keys are stable across deliveries"
    );

    // c02: its own keys, no root hash (no image assigned)
    let (code, _, _) = curl(&ns, SERVER, None, "/nodes/c02.ipxe");
    assert!(code == 200 || code == 404, "{code}");
    let (code, body, _) = curl(&ns, "10.199.0.8", privileged, "/secrets/bundle");
    assert_eq!(code, 200, "{body}");
    let b2 = unpack(&body);
    assert_ne!(
        file(&b2, "files/etc/ssh/ssh_host_ed25519_key"),
        key.as_slice()
    );
    assert!(!b2.iter().any(|(p, _, _)| p == "meta/root.hash"));

    // outside the window
    let (code, _, _) = curl(&ns, SERVER, None, "/nodes/c01.ipxe");
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_secs(9));
    let (code, body, port) = curl(&ns, "10.199.0.7", privileged, "/secrets/bundle");
    assert_eq!(code, 403, "{body}");
    s.log_line(&format!("secrets: refused 10.199.0.7:{port} (node c01): not armed: its boot script was fetched more than 8 s ago"),
    );

    // the secrets are never served as files, and no key or hash reached the log
    for p in [
        "/secrets/nodes/c01/ssh_host_ed25519_key",
        "/../secrets/images/img1/root.hash",
    ] {
        let (code, _, _) = curl(&ns, SERVER, None, p);
        assert!(code == 404 || code == 403, "{p}: {code}");
    }
    let log = std::fs::read_to_string(root.join("log/disklessset.log")).unwrap();
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains(hash),
        "secret in the log"
    );
}

/// `$1$`, `$5$`, `$6$`, `$y$` crypt hashes as a password field (`name:$6$...:`), and
/// PEM/OpenSSH private key blocks, in the files under `dir` (symlinks not followed);
/// `anywhere`: also a hash prefix anywhere in a text line (records, scripts of the web
/// root; not image trees, where shell and perl write `$1$2`).
fn secrets_in(dir: &Path, anywhere: bool) -> Vec<String> {
    let mut found = Vec::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.unwrap();
        if !e.file_type().is_file() || e.metadata().unwrap().len() > 64 << 20 {
            continue;
        }
        let data = std::fs::read(e.path()).unwrap();
        let text = String::from_utf8_lossy(&data);
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        if text.contains("PRIVATE KEY-----\n")
            && text
                .lines()
                .any(|l| l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----"))
        {
            // a key block: the header line followed by base64
            let mut lines = text.lines();
            while let Some(l) = lines.next() {
                if l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----") {
                    if let Some(n) = lines.next() {
                        if n.len() >= 16
                            && n.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
                        {
                            found.push(format!("{rel}: private key"));
                        }
                    }
                }
            }
        }
        for l in text.lines() {
            let mut f = l.split(':');
            if let (Some(_), Some(pw)) = (f.next(), f.next()) {
                if ["$1$", "$5$", "$6$", "$y$"]
                    .iter()
                    .any(|p| pw.starts_with(p))
                {
                    found.push(format!("{rel}: crypt hash"));
                }
            }
            // a record or script with a hash anywhere on a line (not binaries)
            if anywhere
                && !data.contains(&0)
                && ["$1$", "$5$", "$6$", "$y$"]
                    .iter()
                    .any(|p| l.contains(p) && l.len() > 40)
            {
                found.push(format!("{rel}: crypt hash in text"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn nothing_secret_is_served_or_exported_and_a_planted_key_is_refused() {
    let s = Store::new();
    let pw = s.root().join("pw");
    std::fs::write(&pw, "Secr3t-root\n").unwrap();
    let key = s.root().join("id.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKp3Q7bUjM0lD8kD2aLh4S0QkP0c8a1n2b3c4d5e6f7g test@ci\n",
    )
    .unwrap();
    s.ok(&[
        "livenet",
        "create",
        "sec1",
        "--type",
        "core",
        "--password-file",
        pw.to_str().unwrap(),
        "--ssh-key",
        key.to_str().unwrap(),
    ]);
    let hash = s.root_hash("sec1");
    assert!(hash.starts_with("$6$"), "{hash}");

    // a key planted by a customisation is refused at publish, naming the path; the
    // published generation stays what it was, the image stays mounted for the fix
    let img = s.images().join("sec1/squashfs.img");
    let before = sha256_hex(&img);
    s.ok(&["livenet", "mount", "sec1"]);
    s.ok(&[
        "exec",
        "sec1",
        "--",
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        "/etc/ssh/ssh_host_ed25519_key",
    ]);
    let err = s.fails(&["livenet", "unmount", "sec1"]);
    assert!(
        err.contains("refusing to publish image sec1: etc/ssh/ssh_host_ed25519_key holds a private key (remove it: per-node host keys are delivered at boot"),
        "{err}"
    );
    assert_eq!(
        sha256_hex(&img),
        before,
        "the served generation is untouched"
    );
    assert_eq!(s.state_of("sec1").as_deref(), Some("mounted"));
    // the check ran beside mksquashfs: what it packed was removed, nothing staged is left
    let left: Vec<String> = std::fs::read_dir(s.images().join("sec1"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "left by the refused pack: {left:?}");
    // the admin removes it and publishes
    s.ok(&[
        "exec",
        "sec1",
        "--",
        "rm",
        "-f",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_ed25519_key.pub",
        "/etc/ssh/sshd_config.d/planted",
    ]);
    s.ok(&["livenet", "unmount", "sec1"]);

    // an NFS root from the same tree (imported: no second bootstrap)
    let tree = s.root().join("unsq");
    unsquash(&img, &tree);
    s.ok(&[
        "nfs",
        "staging",
        "create",
        "nsec1",
        "--from",
        tree.to_str().unwrap(),
    ]);

    // the scan: every file under the web root, the squashfs of every generation, the
    // NFS roots exported read-only
    let mut found = secrets_in(&s.root().join("www"), true);
    let gens: Vec<PathBuf> = walkdir::WalkDir::new(s.root().join("www"))
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_path_buf())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n == "squashfs.img"
                    || n.strip_prefix("squashfs.img.")
                        .is_some_and(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_digit()))
            })
        })
        .collect();
    assert!(!gens.is_empty());
    for (i, g) in gens.iter().enumerate() {
        let d = s.root().join(format!("scan{i}"));
        unsquash(g, &d);
        let inner = d.join("LiveOS/rootfs.img");
        assert!(!inner.exists(), "native layout expected");
        found.extend(
            secrets_in(&d, false)
                .into_iter()
                .map(|f| format!("{}: {f}", g.display())),
        );
        let ssh: Vec<String> = std::fs::read_dir(d.join("etc/ssh"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ssh_host_"))
            .collect();
        assert!(ssh.is_empty(), "{}: {ssh:?}", g.display());
        let shadow = std::fs::read_to_string(d.join("etc/shadow")).unwrap();
        let shadow = shadow
            .lines()
            .find(|l| l.starts_with("root:"))
            .unwrap()
            .to_string();
        assert!(
            shadow.starts_with("root:*:") || shadow.starts_with("root:!"),
            "{shadow}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
    let nfs = s.root().join("nfsimages/staging/nsec1");
    assert!(nfs.join("etc/ssh").is_dir());
    found.extend(
        secrets_in(&nfs, false)
            .into_iter()
            .map(|f| format!("nfs: {f}")),
    );
    assert!(found.is_empty(), "secrets served: {found:#?}");
    let recs = std::fs::read_to_string(s.images().join("sec1/image_data.yml")).unwrap();
    assert!(!recs.contains(&hash), "{recs}");
}
