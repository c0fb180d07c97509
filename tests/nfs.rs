//! NFS images: staging -> golden -> nodes, exports, clone/remove/clear through the safe
//! removal (fast, on a hand-made staging tree), and the end-to-end proof: a VM boots a
//! golden image over NFS (nfs-ganesha on loopback) through iPXE, keeps its state across
//! a reboot, never writes into the golden tree, and a second node sees none of it.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::vm::{boot_until_marker, HttpServer, VmBoot};
use common::{assert_one_line_error, Store};

/// A staging image as `nfs staging create` leaves it, without the build.
fn fake_staging(s: &Store, name: &str) -> PathBuf {
    let tree = s.root().join("nfsimages/staging").join(name);
    for d in ["etc/ssh", "var/log", "usr/bin"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("etc/hostname"), "").unwrap();
    std::fs::write(
        tree.join("etc/os-release"),
        format!("ID=debian\nDISKLESSSET_IMAGE_NAME=\"{name}\"\n"),
    )
    .unwrap();
    std::fs::write(tree.join("var/log/dpkg.log"), "installed\n").unwrap();
    let dir = s.images().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("image_data.yml"),
        format!(
            "image_data:\n  name: {name}\n  image_class: NfsStagingImage\n  kernel: vmlinuz-6.1.0-9-amd64\n  image: initramfs-own-6.1.0-9-amd64\n  initramfs_flavour: own\n"
        ),
    )
    .unwrap();
    tree
}

fn bind(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    let st = Command::new("mount")
        .arg("--bind")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn staging_golden_nodes_exports_clone_remove() {
    let s = Store::new();
    std::fs::write(
        s.root().join("nodes.yml"),
        "c001: {mac: \"52:54:00:00:00:01\", ip: 10.0.0.1, groups: [compute]}\nc002: {groups: [compute]}\n",
    )
    .unwrap();
    fake_staging(&s, "stage1");
    let out = s.ok(&["nfs", "golden", "create", "gold1", "--from", "stage1"]);
    assert!(out.contains("created NFS golden image gold1"), "{out}");
    let gold = s.root().join("nfsimages/golden/gold1");
    assert_eq!(
        std::fs::read_to_string(gold.join("var/log/dpkg.log")).unwrap(),
        "installed\n"
    );
    assert_eq!(
        std::fs::read_to_string(gold.join("etc/os-release")).unwrap(),
        "ID=debian\nDISKLESSSET_IMAGE_NAME=\"gold1\"\n"
    );
    let boot = std::fs::read_to_string(s.images().join("gold1/boot.ipxe")).unwrap();
    assert!(
        boot.contains(&format!("root=nfs:${{dls-nfs-server}}:{}", gold.display())),
        "{boot}"
    );
    // staging is not golden, golden is not staging
    let e = s.fails(&["nfs", "golden", "create", "gold2", "--from", "gold1"]);
    assert_one_line_error(&e, "not an NfsStagingImage");
    let e = s.fails(&["nfs", "nodes", "add", "stage1", "c001"]);
    assert_one_line_error(&e, "not an NfsGoldenImage");
    let e = s.fails(&["nfs", "nodes", "add", "gold1", "c[001-"]);
    assert_one_line_error(&e, "node set");
    let e = s.fails(&["nfs", "staging", "create", "st9", "--initramfs", "dracut"]);
    assert_one_line_error(&e, "own initramfs");
    let e = s.fails(&["nfs", "staging", "create", "st9", "--type", "huge"]);
    assert_one_line_error(&e, "unknown livenet type");
    let e = s.fails(&["nfs", "nodes", "add", "gold1", "bad/name"]);
    assert_one_line_error(&e, "invalid");

    // nodes: a group and a range; an empty directory each, one export each
    let out = s.ok(&["nfs", "nodes", "add", "gold1", "@compute,c[003-004]"]);
    assert!(out.contains("added c[001-004]"), "{out}");
    let out = s.ok(&["nfs", "nodes", "add", "gold1", "c004"]);
    assert!(out.contains("c004 already there"), "{out}");
    let nodes = s.root().join("nfsimages/nodes/gold1");
    for n in ["c001", "c002", "c003", "c004"] {
        assert!(nodes.join(n).is_dir(), "{n}");
        assert_eq!(std::fs::read_dir(nodes.join(n)).unwrap().count(), 0);
    }
    let show = s.ok(&["show", "gold1"]);
    assert!(show.contains("nodes: c[001-004]"), "{show}");
    assert!(show.contains("source_image: stage1"), "{show}");
    let exports = std::fs::read_to_string(s.root().join("exports/disklessset.exports")).unwrap();
    assert!(exports.starts_with("# Written by disklessset"), "{exports}");
    assert!(
        exports.contains(&format!(
            "\n{} *(ro,sync,no_subtree_check,no_root_squash)\n",
            gold.display()
        )),
        "{exports}"
    );
    assert!(
        exports.contains(&format!(
            "\n{} 10.0.0.1(rw,sync,no_subtree_check,no_root_squash)\n",
            nodes.join("c001").display()
        )),
        "node address from the inventory: {exports}"
    );
    assert!(
        exports.contains(&format!(
            "\n{} *(rw,sync,no_subtree_check,no_root_squash)\n",
            nodes.join("c002").display()
        )),
        "{exports}"
    );
    let list = s.ok(&["nfs", "nodes", "list", "gold1"]);
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(list.starts_with("c001\t0B\t10.0.0.1\t"), "{list}");

    // remove: refused for unknown nodes, safe through a bind mount
    let e = s.fails(&["nfs", "nodes", "remove", "gold1", "c[004-005]", "--yes"]);
    assert_one_line_error(&e, "c005 not nodes of image gold1");
    let sentinel = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(sentinel.path().join("keep.txt"), "precious").unwrap();
    bind(sentinel.path(), &nodes.join("c004/var/log"));
    std::fs::write(nodes.join("c003/kept"), "x").unwrap();
    s.ok(&["nfs", "nodes", "remove", "gold1", "c[003-004]", "--yes"]);
    assert!(!nodes.join("c003").exists() && !nodes.join("c004").exists());
    assert_eq!(
        std::fs::read_to_string(sentinel.path().join("keep.txt")).unwrap(),
        "precious"
    );
    assert!(s.ok(&["show", "gold1"]).contains("nodes: c[001-002]"));
    let exports = std::fs::read_to_string(s.root().join("exports/disklessset.exports")).unwrap();
    assert!(!exports.contains("c003"), "{exports}");

    // clone: the tree is copied, nodes are not; the clone boots from its own tree
    s.ok(&["clone", "gold1", "gold1b"]);
    let goldb = s.root().join("nfsimages/golden/gold1b");
    assert!(goldb.join("var/log/dpkg.log").is_file());
    let show = s.ok(&["show", "gold1b"]);
    assert!(!show.contains("nodes:"), "{show}");
    let boot = std::fs::read_to_string(s.images().join("gold1b/boot.ipxe")).unwrap();
    assert!(boot.contains(&goldb.display().to_string()), "{boot}");

    // remove a golden image with nodes and a bind mount inside: everything it owns
    // goes, the sentinel stays, the exports forget it.
    bind(sentinel.path(), &gold.join("mnt/bound"));
    s.ok(&["remove", "gold1", "--yes"]);
    assert!(!gold.exists() && !nodes.exists());
    assert_eq!(
        std::fs::read_to_string(sentinel.path().join("keep.txt")).unwrap(),
        "precious"
    );
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    let exports = std::fs::read_to_string(s.root().join("exports/disklessset.exports")).unwrap();
    assert!(!exports.contains("golden/gold1 "), "{exports}");
    assert!(exports.contains("golden/gold1b "), "{exports}");

    // create --params: an nfs-golden image with nodes, from a staging image
    let params = s.root().join("golden.yml");
    std::fs::write(
        &params,
        "images:\n  - name: gold3\n    kind: nfs-golden\n    from: stage1\n    nodes: r[1-3]\n",
    )
    .unwrap();
    let out = s.ok(&["create", "--params", &params.display().to_string()]);
    assert!(out.contains("gold3"), "{out}");
    assert!(s.ok(&["show", "gold3"]).contains("nodes: r[1-3]"));
    assert!(s.root().join("nfsimages/nodes/gold3/r2").is_dir());

    // clear of a staging image whose record is broken removes its tree too
    std::fs::write(s.images().join("stage1/image_data.yml"), "garbage: [").unwrap();
    s.ok(&["clear", "stage1", "--yes"]);
    assert!(!s.root().join("nfsimages/staging/stage1").exists());
}

#[test]
fn ganesha_exports_and_dry_run() {
    let s = Store::new();
    let cfg = s.root().join("config.yaml");
    std::fs::write(
        &cfg,
        "nfs_server_kind: ganesha\nnfs_clients: 10.0.0.0/16\nganesha_pid_file: /nonexistent/ganesha.pid\n",
    )
    .unwrap();
    let c = cfg.display().to_string();
    fake_staging(&s, "st");
    s.ok(&[
        "--config", &c, "nfs", "golden", "create", "g", "--from", "st",
    ]);
    let plan = s.ok(&[
        "--config",
        &c,
        "--dry-run",
        "nfs",
        "nodes",
        "add",
        "g",
        "n[1-2]",
    ]);
    assert!(plan.contains("nodes/g/n1"), "{plan}");
    assert!(
        !s.root().join("nfsimages/nodes/g/n1").exists(),
        "dry run wrote"
    );
    let out = s.ok(&["--config", &c, "nfs", "nodes", "add", "g", "n[1-2]"]);
    assert!(out.contains("no nfs-ganesha pid"), "{out}");
    let conf = std::fs::read_to_string(s.root().join("exports/disklessset.ganesha.conf")).unwrap();
    assert_eq!(conf.matches("EXPORT {").count(), 4, "{conf}");
    assert!(
        conf.contains("CLIENT { Clients = 10.0.0.0/16; Access_Type = RW; Protocols = 4; }"),
        "{conf}"
    );
    assert!(!s.root().join("exports/disklessset.exports").exists());
    let e = s.fails(&["--config", &c, "nfs", "nodes", "list", "st"]);
    assert_one_line_error(&e, "only golden images have nodes");
}

// ---------------------------------------------------------------- end to end

/// A free TCP port on 127.0.0.1 (LAB.md's 20490 may be taken by a parallel run).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// nfs-ganesha on 127.0.0.1:PORT, serving the tool's generated exports.
struct Ganesha {
    child: Child,
}

impl Ganesha {
    fn start(dir: &Path, exports: &Path, port: u16) -> Ganesha {
        let conf = dir.join("ganesha.conf");
        std::fs::write(
            &conf,
            format!(
                "NFS_CORE_PARAM {{ Protocols = 4; NFS_Port = {port}; Bind_addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; }}\n\
                 NFSV4 {{ Graceless = true; Allow_Numeric_Owners = true; Only_Numeric_Owners = true; }}\n\
                 %include \"{}\"\n",
                exports.display()
            ),
        )
        .unwrap();
        let child = Command::new("ganesha.nfsd")
            .arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-L")
            .arg(dir.join("ganesha.log"))
            .arg("-p")
            .arg(dir.join("ganesha.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ganesha.nfsd (apt-get install nfs-ganesha nfs-ganesha-vfs)");
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "nfs-ganesha did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ganesha { child }
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listing of a tree (path, type, mode, owner, size, mtime, symlink target): what a
/// write of a node would change.
fn listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut v: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let m = e.metadata().unwrap();
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            format!(
                "{} {:o} {}:{} {} {} {}",
                e.path().strip_prefix(root).unwrap().display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.mtime(),
                target
            )
        })
        .collect();
    v.sort();
    v
}

/// The test's probe, in the staging image: on each boot it says whether the node's
/// persistent file exists, writes a new one, then prints the marker.
const PROBE: &str = r#"#!/bin/sh
f=/var/lib/disklessset-persist/probe
if [ -f "$f" ]; then echo "DLSPROBE found $(cat $f)" > /dev/ttyS0; else echo "DLSPROBE absent" > /dev/ttyS0; fi
echo "boot-$(cat /proc/sys/kernel/random/boot_id)" > "$f"
echo "written by the node" > /golden-write-test 2>/dev/null
keys=$(ls /etc/ssh/ssh_host_*_key 2>/dev/null | wc -l)
sync
echo "DLSPROBE wrote $(cat $f) keys=$keys" > /dev/ttyS0
echo "DLSPROBE done" > /dev/ttyS0
"#;

fn probe_line<'a>(log: &'a str, what: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(&format!("DLSPROBE {what}")))
        .unwrap_or("")
}

#[test]
fn golden_image_boots_over_nfs_and_keeps_node_state() {
    let s = Store::new();
    let cfg = s.root().join("config.yaml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!("nfs_server_kind: ganesha\nnfs_server: 10.0.2.2\nnfs_mount_options: vers=4.1,port={port}\n"),
    )
    .unwrap();
    let c = cfg.display().to_string();
    // Node scripts from bootset: the node is known by its MAC.
    std::fs::write(
        s.root().join("nodes.yml"),
        "n1: {mac: \"52:54:00:00:aa:01\", vars: {kernel_args: systemd.journald.forward_to_console=1}}\nn2: {mac: \"52:54:00:00:aa:02\"}\n",
    )
    .unwrap();
    s.ok(&[
        "--config", &c, "nfs", "staging", "create", "nst", "--type", "core",
    ]);
    let staging = s.root().join("nfsimages/staging/nst");
    let keys: Vec<_> = std::fs::read_dir(staging.join("etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    assert!(keys.is_empty(), "staging ships host keys: {keys:?}");
    // Customise staging (what an admin does), then freeze it as golden.
    std::fs::create_dir_all(staging.join("usr/local/bin")).unwrap();
    std::fs::write(staging.join("usr/local/bin/dls-probe"), PROBE).unwrap();
    std::fs::write(
        staging.join("etc/systemd/system/dls-probe.service"),
        "[Unit]\nAfter=multi-user.target ssh.service\n[Service]\nType=oneshot\nExecStart=/bin/sh /usr/local/bin/dls-probe\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/dls-probe.service",
        staging.join("etc/systemd/system/multi-user.target.wants/dls-probe.service"),
    )
    .unwrap();
    s.ok(&[
        "--config", &c, "nfs", "golden", "create", "ngold", "--from", "nst",
    ]);
    let golden = s.root().join("nfsimages/golden/ngold");
    let before = listing(&golden);

    let ganesha_dir = s.root().join("ganesha");
    std::fs::create_dir_all(&ganesha_dir).unwrap();
    let exports = s.root().join("exports/disklessset.ganesha.conf");
    let _g = Ganesha::start(&ganesha_dir, &exports, port);
    // With ganesha running, adding nodes reloads it (SIGHUP to its pid file's pid).
    std::fs::write(
        &cfg,
        format!(
            "nfs_server_kind: ganesha\nnfs_server: 10.0.2.2\nnfs_mount_options: vers=4.1,port={port}\nganesha_pid_file: {}\n",
            ganesha_dir.join("ganesha.pid").display()
        ),
    )
    .unwrap();
    let out = s.ok(&["--config", &c, "nfs", "nodes", "add", "ngold", "n[1-2]"]);
    assert!(out.contains("reloaded (SIGHUP)"), "{out}");
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(ganesha_dir.join("ganesha.log"))
        .unwrap_or_default()
        .contains("Reread exports complete")
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "ganesha did not reload"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args([
            "--config", &c, "-n", "n[1-2]", "-b", "diskless", "-i", "ngold",
        ])
        .env_remove("DISKLESSSET_CONFIG")
        .status()
        .unwrap();
    assert!(st.success(), "bootset failed");

    let web = s.root().join("www");
    let server = HttpServer::serve_dir(&web).unwrap();
    std::fs::write(
        web.join("entry.ipxe"),
        format!(
            "#!ipxe\nset dls-base http://10.0.2.2:{}\nchain ${{dls-base}}/nodes/${{mac:hexhyp}}.ipxe || chain ${{dls-base}}/nodes/${{mac}}.ipxe\n",
            server.port
        ),
    )
    .unwrap();
    let boot = |mac: &str, tag: &str| -> String {
        let mut vm = VmBoot::new(
            server.guest_url("entry.ipxe"),
            s.root().join(format!("serial-{tag}.log")),
            "DLSPROBE done",
        );
        vm.mac = mac.into();
        vm.timeout = Duration::from_secs(420);
        let run = boot_until_marker(&vm).unwrap_or_else(|e| panic!("{tag} did not boot: {e}"));
        eprintln!("{tag}: power-on to probe {:.1}s", run.elapsed_secs);
        run.log
    };
    let nodes = s.root().join("nfsimages/nodes/ngold");

    // n1, first boot: nothing kept yet; it writes its file and makes its host keys.
    let log = boot("52:54:00:00:aa:01", "n1-first");
    assert!(log.contains("DLSPROBE absent"), "{log}");
    let wrote1 = probe_line(&log, "wrote").to_string();
    assert!(wrote1.contains("keys="), "{log}");
    assert!(!wrote1.contains("keys=0"), "no ssh host keys made: {log}");
    let kept = std::fs::read_to_string(nodes.join("n1/var/lib/disklessset-persist/probe")).unwrap();
    assert!(wrote1.contains(kept.trim()), "{wrote1} vs {kept}");
    let hostkey = std::fs::read(nodes.join("n1/etc/ssh/ssh_host_ed25519_key")).unwrap();
    let du = Command::new("du")
        .arg("-sk")
        .arg(nodes.join("n1"))
        .output()
        .unwrap();
    eprintln!(
        "n1 keeps {} after its first boot",
        String::from_utf8_lossy(&du.stdout).trim()
    );
    let owners = Command::new("find")
        .arg(nodes.join("n1"))
        .args(["-not", "-user", "0", "-print", "-quit"])
        .output()
        .unwrap();
    assert!(
        owners.stdout.is_empty(),
        "seeded files not owned by root (NFS id mapping?): {}",
        String::from_utf8_lossy(&owners.stdout)
    );
    assert!(nodes.join("n1/var/log").is_dir());

    // n1 again: finds it, and keeps the same host key.
    let log = boot("52:54:00:00:aa:01", "n1-second");
    let found = probe_line(&log, "found");
    assert!(found.contains(kept.trim()), "reboot lost the file: {log}");
    assert_eq!(
        std::fs::read(nodes.join("n1/etc/ssh/ssh_host_ed25519_key")).unwrap(),
        hostkey,
        "host key changed across reboots"
    );

    // One machine id per node across reboots: one journal directory, named by it.
    let mid = std::fs::read_to_string(nodes.join("n1/.machine-id")).unwrap();
    assert_eq!(mid.trim().len(), 32, "{mid}");
    if let Ok(rd) = std::fs::read_dir(nodes.join("n1/var/log/journal")) {
        let dirs: Vec<String> = rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(dirs, [mid.trim().to_string()], "one journal per node");
    }

    // n2: its own directory, none of n1's state.
    let log = boot("52:54:00:00:aa:02", "n2-first");
    assert!(log.contains("DLSPROBE absent"), "n2 saw n1's file: {log}");
    assert_ne!(
        std::fs::read(nodes.join("n2/etc/ssh/ssh_host_ed25519_key")).unwrap(),
        hostkey,
        "two nodes share a host key"
    );

    // The golden tree is what it was: no node wrote into it.
    assert!(!golden.join("golden-write-test").exists());
    assert_eq!(before, listing(&golden), "the golden tree changed");
}
