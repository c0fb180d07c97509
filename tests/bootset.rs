//! bootset and the built-in boot server: node sets against the inventory, exact boot
//! types, scripts written only when they change, status folding, and the end-to-end
//! proof: two VMs with different MACs boot through `disklessset serve` along the chain,
//! one into its livenet image, one out to its local disk.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::vm::{boot_until_marker, VmBoot};
use common::{assert_one_line_error, Store};

fn bootset(s: &Store, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "bootset failed: {}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn nodes_file(s: &Store, text: &str) {
    std::fs::write(s.root().join("nodes.yml"), text).unwrap();
}

const INVENTORY: &str = "\
c001: {mac: '52:54:00:aa:00:01', ip: 10.0.2.15, groups: [compute]}
c002: {mac: '52:54:00:aa:00:02', groups: [compute]}
c003: {groups: [compute]}
login1: {mac: '52:54:00:aa:00:09', groups: [login]}
groups:
  compute: {vars: {console: ttyS0, kernel_args: 'quiet', site: hpc1}}
";

#[test]
fn assign_status_and_refusals() {
    let s = Store::new();
    nodes_file(&s, INVENTORY);
    std::fs::create_dir_all(s.images()).unwrap();
    let out = ok(bootset(&s, &["-n", "c[001-003]", "-b", "disk"]));
    assert!(
        out.contains("c[001-003]: disk (3 written, 0 unchanged)"),
        "{out}"
    );
    // a second identical run rewrites nothing
    let out = ok(bootset(&s, &["-n", "c[001-003]", "-b", "disk"]));
    assert!(out.contains("(0 written, 3 unchanged)"), "{out}");
    let c1 = std::fs::read_to_string(s.root().join("www/nodes/c001.ipxe")).unwrap();
    assert!(c1.contains("set dls-var-site hpc1"), "{c1}");
    assert!(c1.contains("set dls-console console=ttyS0"), "{c1}");
    assert!(c1.contains("goto disk"), "{c1}");
    // MAC aliases for static web servers
    let alias = std::fs::read_link(s.root().join("www/nodes/52-54-00-aa-00-01.ipxe")).unwrap();
    assert_eq!(alias.to_str(), Some("c001.ipxe"));
    ok(bootset(&s, &["-n", "@login", "-b", "next"]));

    // typos are refused, never matched by substring; nothing written
    for (args, needle) in [
        (vec!["-n", "c001", "-b", "diskles"], "exactly one of"),
        (vec!["-n", "c001", "-b", "dis"], "exactly one of"),
        (
            vec!["-n", "c[001-005]", "-b", "disk"],
            "unknown nodes c[004-005]",
        ),
        (vec!["-n", "c[5-1]", "-b", "disk"], "c[5-1]"),
        (vec!["-n", "@nosuch", "-b", "disk"], "nosuch"),
        (vec!["-n", "c001", "-b", "diskless"], "-i IMAGE"),
        (
            vec!["-n", "c001", "-b", "diskless", "-i", "ghost"],
            "image ghost does not exist",
        ),
        (vec!["-n", "c001", "-b", "disk", "-e", "a ${x}"], "-e"),
        (
            vec!["-n", "c003", "-b", "disk", "-f", "network"],
            "c003 has no ip",
        ),
    ] {
        let o = bootset(&s, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_one_line_error(&String::from_utf8_lossy(&o.stderr), needle);
    }
    let after = std::fs::read_to_string(s.root().join("www/nodes/c001.ipxe")).unwrap();
    assert_eq!(after, c1, "refused runs wrote nothing");
    assert!(!s.root().join("www/nodes/c004.ipxe").exists());

    // -f network: static ip= from the inventory
    ok(bootset(
        &s,
        &["-n", "c001", "-b", "next", "-f", "network", "-e", "panic=5"],
    ));
    let c1 = std::fs::read_to_string(s.root().join("www/nodes/c001.ipxe")).unwrap();
    assert!(c1.contains("set dls-ip ip=10.0.2.15::::c001::none"), "{c1}");
    assert!(c1.contains("set dls-kernel-args quiet panic=5"), "{c1}");

    // status, folded per boot type
    let st = ok(bootset(&s, &["-s"]));
    assert!(st.contains("disk: c[002-003] (2 nodes)"), "{st}");
    assert!(st.contains("next: c001,login1 (2 nodes)"), "{st}");
    let js: serde_json::Value = serde_json::from_str(&ok(bootset(&s, &["-s", "--json"]))).unwrap();
    assert_eq!(js.as_array().unwrap().len(), 2);
    let st = ok(bootset(&s, &["-s", "c[002-003]"]));
    assert_eq!(st.trim(), "disk: c[002-003] (2 nodes)");
}

fn get(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    c.read_to_string(&mut buf).unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn serve_answers_the_chain_and_hides_the_rest() {
    let s = Store::new();
    nodes_file(&s, INVENTORY);
    std::fs::create_dir_all(s.images()).unwrap();
    s.ok(&["demo", "create", "d1"]);
    ok(bootset(&s, &["-n", "c002", "-b", "disk"]));
    let srv = s.serve(&[]);
    let (code, body) = get(srv.port, "/health", "x");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = get(srv.port, "/boot.ipxe", "10.0.2.2:9999");
    assert_eq!(code, 200);
    assert!(
        body.contains("set dls-base http://10.0.2.2:9999\n"),
        "{body}"
    );
    // node scripts by MAC alias, and dynamically by hostname
    let (code, body) = get(srv.port, "/nodes/52-54-00-aa-00-02.ipxe", "h");
    assert_eq!(code, 200);
    assert!(body.contains("set dls-node c002"), "{body}");
    let (code, _) = get(srv.port, "/nodes/c002.ipxe", "h");
    assert_eq!(code, 200);
    // unknown machines get 404, and the entry script then says so on the console
    assert_eq!(get(srv.port, "/nodes/52-54-00-ff-ff-ff.ipxe", "h").0, 404);
    // metadata and everything outside the boot tree stay private
    assert_eq!(
        get(srv.port, "/diskless/images/d1/image_data.yml", "h").0,
        404
    );
    assert_eq!(get(srv.port, "/../nodes.yml", "h").0, 403);
    assert_eq!(get(srv.port, "/%2e%2e/nodes.yml", "h").0, 403);
    std::os::unix::fs::symlink("/etc", s.root().join("www/etc-link")).unwrap();
    assert_eq!(get(srv.port, "/etc-link/passwd", "h").0, 403);
    // a Host header cannot inject iPXE commands
    let (_, body) = get(srv.port, "/boot.ipxe", "evil$x");
    assert!(!body.contains("evil"), "{body}");
}

/// Two VMs, two MACs: one boots its diskless image through the whole chain, the other
/// is sent to its local disk and leaves the chain without loading a kernel.
#[test]
fn two_vms_boot_along_the_chain() {
    let s = Store::new();
    s.core_image("img1", &[]);
    nodes_file(
        &s,
        "n1: {mac: '52:54:00:bb:00:01'}\nn2: {mac: '52:54:00:bb:00:02'}\n",
    );
    ok(bootset(&s, &["-n", "n1", "-b", "diskless", "-i", "img1"]));
    ok(bootset(&s, &["-n", "n2", "-b", "disk"]));
    let st = ok(bootset(&s, &["-s"]));
    assert!(st.contains("diskless img1: n1"), "{st}");
    let srv = s.serve(&[]);
    let url = format!("http://10.0.2.2:{}/boot.ipxe", srv.port);

    let mut vm = VmBoot::new(
        &url,
        s.root().join("n1.log"),
        "disklessset: image img1 booted",
    );
    vm.mac = "52:54:00:bb:00:01".into();
    vm.timeout = Duration::from_secs(420);
    let run = boot_until_marker(&vm).unwrap_or_else(|e| panic!("n1 did not boot: {e}"));
    assert!(
        run.log
            .contains("disklessset: n1 boots diskless image img1"),
        "chain not followed"
    );
    eprintln!("n1: power-on to marker {:.1}s", run.elapsed_secs);

    let mut vm = VmBoot::new(
        &url,
        s.root().join("n2.log"),
        "disklessset: n2 boots from its local disk",
    );
    vm.mac = "52:54:00:bb:00:02".into();
    vm.timeout = Duration::from_secs(120);
    let run = boot_until_marker(&vm).unwrap_or_else(|e| panic!("n2 did not reach its disk: {e}"));
    // give iPXE a moment to go on: it must not load any kernel
    std::thread::sleep(Duration::from_secs(3));
    let log = std::fs::read_to_string(s.root().join("n2.log")).unwrap_or(run.log);
    assert!(!log.contains("vmlinuz"), "n2 loaded a kernel: {log}");
    assert!(!log.contains("booted (kernel"), "n2 booted an image: {log}");
}
