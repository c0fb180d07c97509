//! Scale-out (issue 17): `replicate` pushes the boot tree with the real rsync to two
//! replicas, each served by a real nginx (Debian package, installed by
//! scripts/install-deps.sh) on loopback; a push killed with SIGKILL mid-copy leaves each
//! replica serving its previous release complete; the next push completes it; an
//! unchanged tree costs no transfer; nothing private reaches a replica.
//! Run as root.
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Store;
use sha2::{Digest, Sha256};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real nginx serving `root` on 127.0.0.1:`port`, stopped on drop.
struct Nginx {
    child: Child,
    pub port: u16,
}

fn nginx_on(dir: &Path, root: &Path, port: u16) -> Nginx {
    Nginx::start_on(dir, root, port)
}

impl Nginx {
    fn start(dir: &Path, root: &Path) -> Nginx {
        Nginx::start_on(dir, root, free_port())
    }

    fn start_on(dir: &Path, root: &Path, port: u16) -> Nginx {
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log {d}/logs/access.log;\n  client_body_temp_path {d}/body;\n\
                   proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
                   scgi_temp_path {d}/scgi;\n  sendfile on;\n\
                   server {{\n    listen 127.0.0.1:{port};\n    root {root};\n\
                     location ~ /\\. {{ deny all; }}\n  }}\n}}\n",
                d = dir.display(),
                root = root.display()
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .args(["-e", &dir.join("logs/error.log").display().to_string()])
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/install-deps.sh installs it)");
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "nginx did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { child, port }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them serving)
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The last lines of a console log, for assertion messages.
fn tail(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("disklessset") || l.contains("http://"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// GET over HTTP/1.0: (status, body).
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head");
    let status = String::from_utf8_lossy(&buf[9..12]).parse().unwrap();
    (status, buf[head_end + 4..].to_vec())
}

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// A boot tree as the tool lays it out, with the files a replica must never receive.
fn write_tree(web: &Path, image_bytes: &[u8]) {
    let img = web.join("diskless/images/a");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::create_dir_all(web.join("diskless/kernels")).unwrap();
    std::fs::create_dir_all(web.join("nodes")).unwrap();
    std::fs::write(img.join("squashfs.img"), image_bytes).unwrap();
    std::fs::write(img.join("boot.ipxe"), "#!ipxe\nkernel x\n").unwrap();
    std::fs::write(img.join("image_data.yml"), "image_data: {}\n").unwrap();
    std::fs::write(web.join("diskless/kernels/vmlinuz-6"), b"kernel").unwrap();
    std::fs::write(web.join("nodes/n1.ipxe"), "#!ipxe\n").unwrap();
    std::os::unix::fs::symlink("n1.ipxe", web.join("nodes/52-54-00-00-00-01.ipxe")).ok();
    std::fs::write(web.join(".secret"), "hidden").unwrap();
    std::fs::write(web.join("nodes/n2.ipxe.tmp"), "partial").unwrap();
    std::fs::write(
        web.join("boot.ipxe"),
        "#!ipxe\nchain nodes/${mac:hexhyp}.ipxe\n",
    )
    .unwrap();
}

fn random_bytes(n: usize, seed: u8) -> Vec<u8> {
    // xorshift: incompressible enough, reproducible
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn config(dir: &Path, a: &Path, b: &Path, bwlimit: u64, on_publish: bool) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!(
            "replicas:\n  - name: ra\n    url: http://127.0.0.1:1\n    target: {}\n  - name: rb\n    url: http://127.0.0.1:2\n    target: {}\n    nfs_root: /srv/replica-nfs\nreplicate_bwlimit_kib: {bwlimit}\nreplicate_on_publish: {on_publish}\n",
            a.display(),
            b.display()
        ),
    )
    .unwrap();
    p
}

fn with_config(s: &Store, cfg: &Path, args: &[&str]) -> std::process::Output {
    let mut c = s.cmd(args);
    c.env("DISKLESSSET_CONFIG", cfg);
    c.output().unwrap()
}

fn ok_with(s: &Store, cfg: &Path, args: &[&str]) -> String {
    let o = with_config(s, cfg, args);
    assert!(
        o.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every file under `root` (following nothing), relative.
fn files_under(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .collect()
}

#[test]
fn push_kill_resume_and_nothing_private() {
    let s = Store::new();
    let web = s.root().join("www");
    let gen1 = random_bytes(24 << 20, 1);
    write_tree(&web, &gen1);
    let rep_a = s.root().join("replica-a");
    let rep_b = s.root().join("replica-b");
    let cfg = config(s.root(), &rep_a, &rep_b, 0, false);

    // first push: both replicas serve the tree through nginx, byte-exact
    let out = ok_with(&s, &cfg, &["replicate"]);
    assert!(out.contains("replica ra: serves release 1"), "{out}");
    let na = Nginx::start(&s.root().join("nginx-a"), &rep_a.join("current"));
    let nb = Nginx::start(&s.root().join("nginx-b"), &rep_b.join("current"));
    for port in [na.port, nb.port] {
        let (st, body) = get(port, "/diskless/images/a/squashfs.img");
        assert_eq!(st, 200);
        assert_eq!(sha(&body), sha(&gen1));
        assert_eq!(get(port, "/nodes/52-54-00-00-00-01.ipxe").0, 200);
    }

    // never copied: YAML records, dotfiles, temp files
    for rep in [&rep_a, &rep_b] {
        for f in files_under(rep) {
            let name = Path::new(&f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(
                !name.starts_with('.') && !name.ends_with(".yml") && !name.ends_with(".tmp"),
                "{f} reached replica {}",
                rep.display()
            );
        }
    }

    // unchanged tree: the second push transfers nothing (rsync --stats), < 1 MiB
    let j: serde_json::Value =
        serde_json::from_str(&ok_with(&s, &cfg, &["replicate", "--json"])).unwrap();
    for r in j.as_array().unwrap() {
        let bytes = r["bytes_transferred"].as_u64().unwrap();
        assert!(
            bytes < 1 << 20,
            "second push transferred {bytes} bytes: {r}"
        );
        assert_eq!(r["release"], 2, "{r}");
    }
    let st = ok_with(&s, &cfg, &["replicate", "--status"]);
    assert!(
        st.contains("replica ra (http://127.0.0.1:1): up to date"),
        "{st}"
    );

    // a new generation, pushed slowly (2 MiB/s) and killed with SIGKILL mid-copy
    let gen2 = random_bytes(24 << 20, 2);
    let img = web.join("diskless/images/a/squashfs.img");
    let tmp = web.join("diskless/images/a/squashfs.img.new.tmp");
    std::fs::write(&tmp, &gen2).unwrap();
    std::fs::rename(&tmp, &img).unwrap();
    let slow = config(s.root(), &rep_a, &rep_b, 2048, false);
    let mut c = s.cmd(&["replicate", "ra"]);
    c.env("DISKLESSSET_CONFIG", &slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let child = c.spawn().unwrap();
    let pgid = child.id() as i32;
    // wait until rsync is writing into the incoming copy
    let t = Instant::now();
    let incoming = rep_a.join("releases/.incoming");
    loop {
        let busy = walkdir::WalkDir::new(&incoming)
            .into_iter()
            .flatten()
            .any(|e| {
                e.file_type().is_file() && e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false)
            });
        if busy {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "rsync never started copying"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut child = child;
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(500));
    // still the previous release, complete
    let (st, body) = get(na.port, "/diskless/images/a/squashfs.img");
    assert_eq!(st, 200);
    assert_eq!(sha(&body), sha(&gen1), "replica ra serves a torn file");
    // list and status say it is stale
    let l = ok_with(&s, &cfg, &["list"]);
    assert!(l.contains("replica ra: STALE"), "{l}");
    let o = with_config(&s, &cfg, &["replicate", "--status", "ra"]);
    assert_eq!(o.status.code(), Some(1));
    let st = String::from_utf8_lossy(&o.stdout);
    assert!(st.contains("diskless/images/a/squashfs.img"), "{st}");

    // the next push completes it
    let out = ok_with(&s, &cfg, &["replicate"]);
    assert!(out.contains("replica ra: serves release 3"), "{out}");
    for port in [na.port, nb.port] {
        let (_, body) = get(port, "/diskless/images/a/squashfs.img");
        assert_eq!(sha(&body), sha(&gen2));
    }
    let l = ok_with(&s, &cfg, &["list"]);
    assert!(
        l.contains("replica ra: up to date") && l.contains("replica rb: up to date"),
        "{l}"
    );
    // older releases pruned: the one served and the one before it
    let mut rel: Vec<String> = std::fs::read_dir(rep_a.join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    rel.sort();
    assert_eq!(rel, vec!["2", "3"]);
}

#[test]
fn on_publish_hook_exports_for_and_bad_config() {
    let s = Store::new();
    let web = s.root().join("www");
    write_tree(&web, b"small image");
    let rep_a = s.root().join("replica-a");
    let rep_b = s.root().join("replica-b");
    let cfg = config(s.root(), &rep_a, &rep_b, 0, true);

    // a publishing operation (here: the demo module's create) pushes to both replicas
    let out = ok_with(&s, &cfg, &["demo", "create", "d1"]);
    assert!(out.contains("replica ra: serves release 1"), "{out}");
    assert!(out.contains("replica rb: serves release 1"), "{out}");
    assert!(rep_b.join("current/diskless/images/a/boot.ipxe").is_file());
    // a query does not
    ok_with(&s, &cfg, &["list"]);
    assert!(!rep_a.join("releases/2").exists());

    // a failing replica: the operation is done, the failure said and recorded
    std::fs::write(
        s.root().join("bad.yaml"),
        "replicas:\n  - name: ra\n    url: http://127.0.0.1:1\n    target: /proc/no-such-dir/x\nreplicate_on_publish: true\n",
    )
    .unwrap();
    let o = with_config(&s, &s.root().join("bad.yaml"), &["demo", "create", "d2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("replica ra: push FAILED"), "{text}");
    let o = with_config(&s, &s.root().join("bad.yaml"), &["replicate"]);
    assert_eq!(o.status.code(), Some(1));
    let l = ok_with(&s, &s.root().join("bad.yaml"), &["list"]);
    assert!(l.contains("replica ra: STALE, its last push failed"), "{l}");

    // exports for a replica: its nfs_root paths (the reference fixtures hold a golden
    // image with nodes)
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/golden1");
    let dst = s.images().join("golden1");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(fixtures.join("image_data.yml"), dst.join("image_data.yml")).unwrap();
    let o = ok_with(
        &s,
        &cfg,
        &[
            "nfs",
            "exports",
            "--for",
            "rb",
            "--output",
            &s.root().join("rb.exports").display().to_string(),
        ],
    );
    assert!(o.contains("exports for replica rb"), "{o}");
    let text = std::fs::read_to_string(s.root().join("rb.exports")).unwrap();
    assert!(text.contains("Written by disklessset"), "{text}");
    // the shared root read-only, each node dir read-write, at the replica's paths
    assert!(text.contains("/srv/replica-nfs/golden/golden1 "), "{text}");
    assert!(
        text.contains("/srv/replica-nfs/nodes/golden1/c001 "),
        "{text}"
    );
    assert!(
        text.contains("/srv/replica-nfs/nodes/golden1/c002 "),
        "{text}"
    );
    assert!(!text.contains(&s.root().display().to_string()), "{text}");

    // bad config: one line naming the key and the fix
    for (body, needle) in [
        ("replicas:\n  - {name: x, url: 'ftp://h', target: /srv/x}\n", "is not an http:// or https:// URL"),
        ("replicas:\n  - {name: x, url: 'http://h', target: '-e sh'}\n", "must be an absolute local path"),
        ("replicas:\n  - {name: x, url: 'http://h', target: 'h::mod'}\n", "must be an absolute local path"),
        ("replicas:\n  - {name: x, url: 'http://h', target: /a}\n  - {name: x, url: 'http://h', target: /b}\n", "given twice"),
        ("replicas:\n  - {name: x, url: 'http://h', target: /a, color: red}\n", "color"),
    ] {
        let p = s.root().join("c.yaml");
        std::fs::write(&p, body).unwrap();
        let o = with_config(&s, &p, &["replicate"]);
        assert_eq!(o.status.code(), Some(1), "{body}");
        common::assert_one_line_error(&String::from_utf8_lossy(&o.stderr), needle);
    }
    let o = with_config(&s, &cfg, &["replicate", "nope"]);
    common::assert_one_line_error(&String::from_utf8_lossy(&o.stderr), "no replica named nope");
}

/// A node whose group names replicas ra then rb boots from ra; with ra's nginx stopped
/// it boots from rb, and its console shows the fail-over. The entry and node scripts
/// come from the store's own `disklessset serve` (the DHCP bootfile); the image script,
/// kernel, initramfs and squashfs from the replica that answered.
#[test]
fn vm_boots_from_the_next_replica_when_one_is_down() {
    use common::vm::{boot_until_marker, VmBoot};
    let s = Store::new();
    s.core_image("rimg", &[]);
    std::fs::write(
        s.root().join("nodes.yml"),
        "groups:\n  rack1: {vars: {boot_servers: 'ra, rb'}}\nr1: {mac: '52:54:00:cc:00:01', groups: [rack1]}\n",
    )
    .unwrap();
    let (pa, pb) = (free_port(), free_port());
    let rep_a = s.root().join("replica-a");
    let rep_b = s.root().join("replica-b");
    let cfg = s.root().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "replicas:\n  - {{name: ra, url: 'http://10.0.2.2:{pa}', target: {}}}\n  - {{name: rb, url: 'http://10.0.2.2:{pb}', target: {}}}\nreplicate_on_publish: true\n",
            rep_a.display(),
            rep_b.display()
        ),
    )
    .unwrap();
    // bootset writes r1's script with both servers and (on publish) pushes the tree
    let o = Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .env("DISKLESSSET_CONFIG", &cfg)
        .args(["-n", "r1", "-b", "diskless", "-i", "rimg"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("replica ra: serves release 1"), "{out}");
    assert!(out.contains("replica rb: serves release 1"), "{out}");

    let na = nginx_on(&s.root().join("nginx-a"), &rep_a.join("current"), pa);
    let _nb = nginx_on(&s.root().join("nginx-b"), &rep_b.join("current"), pb);
    let port = free_port();
    let mut serve = s
        .cmd(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DISKLESSSET_CONFIG", &cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://10.0.2.2:{port}/boot.ipxe");
    let marker = "disklessset: image rimg booted";
    let mut vm = VmBoot::new(&url, s.root().join("r1-a.log"), marker);
    vm.mac = "52:54:00:cc:00:01".into();
    vm.timeout = Duration::from_secs(600);
    let run = boot_until_marker(&vm).unwrap_or_else(|e| panic!("r1 did not boot from ra: {e}"));
    assert!(
        run.log
            .contains(&format!("booting image rimg from http://10.0.2.2:{pa}")),
        "not booted from ra: {}",
        tail(&run.log)
    );
    eprintln!("r1 from ra: power-on to marker {:.1}s", run.elapsed_secs);
    let served_a = std::fs::read_to_string(s.root().join("nginx-a/logs/access.log")).unwrap();
    assert!(served_a.contains("squashfs.img"), "{served_a}");

    drop(na); // ra goes down
    let mut vm = VmBoot::new(&url, s.root().join("r1-b.log"), marker);
    vm.mac = "52:54:00:cc:00:01".into();
    vm.timeout = Duration::from_secs(600);
    let run = boot_until_marker(&vm).unwrap_or_else(|e| panic!("r1 did not fail over to rb: {e}"));
    assert!(
        run.log
            .contains("disklessset: r1: ra did not answer, trying rb"),
        "no fail-over on the console: {}",
        tail(&run.log)
    );
    assert!(
        run.log
            .contains(&format!("booting image rimg from http://10.0.2.2:{pb}")),
        "not booted from rb: {}",
        tail(&run.log)
    );
    eprintln!(
        "r1 from rb after ra failed: power-on to marker {:.1}s",
        run.elapsed_secs
    );
    let served_b = std::fs::read_to_string(s.root().join("nginx-b/logs/access.log")).unwrap();
    assert!(served_b.contains("squashfs.img"), "{served_b}");
    let _ = serve.kill();
    let _ = serve.wait();
}
