//! The node inventory through the CLI (issue 13): add with ranges, set, import CSV,
//! remove; duplicates and malformed input refused with nothing written; what the boot
//! server records of a node (script fetched, booted) and `--once`.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_one_line_error, Store};

fn nodes_yml(s: &Store) -> String {
    std::fs::read_to_string(s.root().join("nodes.yml")).unwrap_or_default()
}

fn list_json(s: &Store, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["nodes", "list", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&s.ok(&a)).expect("nodes list --json")
}

#[test]
fn inventory_round_trip_keeps_comments_on_add_and_refuses_bad_input() {
    let s = Store::new();
    let hand = "# the login node, by hand\nlogin1: {mac: '52:54:00:aa:00:09', groups: [login]} # keep me\ngroups:\n  compute: {vars: {console: ttyS0}}\n";
    std::fs::write(s.root().join("nodes.yml"), hand).unwrap();

    // add a range: MACs matched in order, IPs counted up
    let out = s.ok(&[
        "nodes",
        "add",
        "c[01-03]",
        "--mac",
        "52:54:00:00:00:01",
        "--mac",
        "52-54-00-00-00-02",
        "--mac",
        "5254.0000.0003",
        "--ip",
        "10.0.0.1",
        "--group",
        "compute",
        "--var",
        "site=hpc1",
    ]);
    assert!(out.contains("added c[01-03]; 4 nodes"), "{out}");
    let text = nodes_yml(&s);
    assert!(
        text.starts_with(hand),
        "add must append, keeping the file: {text}"
    );
    let rows = list_json(&s, &["c[01-03]"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["mac"], "52:54:00:00:00:03");
    assert_eq!(rows[2]["ip"], "10.0.0.3");
    assert_eq!(rows[0]["state"], "registered");
    assert_eq!(rows[0]["groups"][0], "compute");

    // var sources: node over group
    s.ok(&["nodes", "set", "c01", "--var", "console=tty1"]);
    let show: serde_json::Value =
        serde_json::from_str(&s.ok(&["nodes", "show", "c02", "--json"])).unwrap();
    assert_eq!(show["vars"]["console"]["value"], "ttyS0");
    assert_eq!(show["vars"]["console"]["source"], "group compute");
    assert_eq!(show["vars"]["site"]["source"], "node");
    let show: serde_json::Value =
        serde_json::from_str(&s.ok(&["nodes", "show", "c01", "--json"])).unwrap();
    assert_eq!(show["vars"]["console"]["value"], "tty1");
    assert_eq!(show["vars"]["console"]["source"], "node");
    // set rewrote the file: the hand-written one is the .bak
    let bak = std::fs::read_to_string(s.root().join("nodes.yml.bak")).unwrap();
    assert!(bak.contains("# keep me"), "{bak}");
    assert!(nodes_yml(&s).contains("login1: {mac: \"52:54:00:aa:00:09\", groups: [login]}"));
    // a second rewrite keeps the hand-written backup
    s.ok(&["nodes", "set", "c02", "--ip", "10.0.0.12"]);
    let bak2 = std::fs::read_to_string(s.root().join("nodes.yml.bak")).unwrap();
    assert_eq!(bak, bak2);

    // refusals: one line, naming both nodes / the line; nothing written
    let before = nodes_yml(&s);
    for (args, needle) in [
        (
            vec!["nodes", "add", "c04", "--mac", "52:54:00:00:00:02"],
            "52:54:00:00:00:02 would belong to both c02 and c04",
        ),
        (
            vec!["nodes", "add", "c04", "--ip", "10.0.0.3"],
            "10.0.0.3 would belong to both c03 and c04",
        ),
        (
            vec!["nodes", "set", "c03", "--mac", "52:54:00:aa:00:09"],
            "would belong to both c03 and login1",
        ),
        (vec!["nodes", "add", "c03"], "nodes c03 already exist"),
        (
            vec!["nodes", "add", "x1", "--mac", "zz:zz"],
            "--mac \"zz:zz\"",
        ),
        (
            vec!["nodes", "add", "x1", "--ip", "10.0.0"],
            "--ip \"10.0.0\"",
        ),
        (
            vec!["nodes", "add", "x[1-3]", "--mac", "52:54:00:00:09:01"],
            "--mac given 1 times for the 3 nodes",
        ),
        (
            vec!["nodes", "set", "nosuch", "--ip", "10.9.9.9"],
            "unknown nodes nosuch",
        ),
        (vec!["nodes", "show", "nosuch"], "unknown node nosuch"),
        (
            vec!["nodes", "remove", "nosuch", "-y"],
            "unknown nodes nosuch",
        ),
        (
            vec!["nodes", "add", "x1", "--var", "novalue"],
            "--var \"novalue\"",
        ),
    ] {
        let err = s.fails(&args);
        assert_one_line_error(&err, needle);
        assert_eq!(nodes_yml(&s), before, "{args:?} wrote something");
    }

    // import: a malformed line is refused with its number, nothing written
    let csv = s.root().join("nodes.csv");
    std::fs::write(
        &csv,
        "node,mac,ip,groups,bmc\nd1,52:54:00:00:01:01,10.0.1.1,compute;gpu,10.9.0.1\nd2,52:54:00:00:01:zz,10.0.1.2,compute,\n",
    )
    .unwrap();
    let err = s.fails(&["nodes", "import", csv.to_str().unwrap()]);
    assert_one_line_error(&err, "line 3");
    assert!(err.contains("52:54:00:00:01:zz"), "{err}");
    std::fs::write(
        &csv,
        "node,mac,ip\nd1,52:54:00:00:01:01,10.0.1.1\nd2,52:54:00:00:01:02\n",
    )
    .unwrap();
    assert_one_line_error(
        &s.fails(&["nodes", "import", csv.to_str().unwrap()]),
        "line 3",
    );
    std::fs::write(
        &csv,
        "node,mac,ip,groups\nd1,52:54:00:00:01:01,10.0.1.1,compute\nd2,52:54:00:00:00:01,,\n",
    )
    .unwrap();
    let err = s.fails(&["nodes", "import", csv.to_str().unwrap()]);
    assert_one_line_error(&err, "both c01 and d2");
    assert_eq!(nodes_yml(&s), before);
    // a good import adds d1, d2 and updates c03
    std::fs::write(
        &csv,
        "node,mac,ip,groups,bmc\nd1,52:54:00:00:01:01,10.0.1.1,compute;gpu,10.9.0.1\nd2,52:54:00:00:01:02,,compute,\nc03,,10.0.0.33,,\n",
    )
    .unwrap();
    let out = s.ok(&["nodes", "import", csv.to_str().unwrap()]);
    assert!(out.contains("added d[1-2], changed c03"), "{out}");
    let show: serde_json::Value =
        serde_json::from_str(&s.ok(&["nodes", "show", "d1", "--json"])).unwrap();
    assert_eq!(show["groups"][1], "gpu");
    assert_eq!(show["bmc_address"], "10.9.0.1");
    assert_eq!(list_json(&s, &["c03"])[0]["ip"], "10.0.0.33");

    // dry run writes nothing; remove asks without --yes
    s.ok(&["--dry-run", "nodes", "remove", "d[1-2]"]);
    assert!(nodes_yml(&s).contains("d2:"));
    s.fails(&["nodes", "remove", "d[1-2]"]);
    s.ok(&["nodes", "remove", "d[1-2]", "--yes"]);
    let rows = list_json(&s, &[]);
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["c01", "c02", "c03", "login1"]);
    // bootset still reads the edited file
    std::fs::create_dir_all(s.images()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args(["-n", "c[01-03]", "-b", "disk"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(list_json(&s, &["c01"])[0]["state"], "assigned");
}

#[test]
fn inventory_lock_refuses_a_second_writer() {
    let s = Store::new();
    s.ok(&["nodes", "add", "n1"]);
    // hold the inventory lock with flock(1) while nodes add runs
    let lock = s.root().join("state/locks/.inventory.lock");
    assert!(lock.exists(), "the lock file is where the doc says");
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(300));
    let err = s.fails(&["nodes", "add", "n2"]);
    assert!(err.contains("the inventory is locked by pid"), "{err}");
    let _ = holder.kill();
    let _ = holder.wait();
    s.ok(&["nodes", "add", "n2"]);
}

// ---- what the server records -------------------------------------------------------

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    c.read_to_string(&mut r).unwrap();
    let code = r
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, r.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

fn bootset(s: &Store, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bootset {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn server_records_script_fetches_and_booted_call_home() {
    let s = Store::new();
    std::fs::create_dir_all(s.images()).unwrap();
    s.ok(&[
        "nodes",
        "add",
        "n[1-2]",
        "--mac",
        "52:54:00:bb:00:01",
        "--mac",
        "52:54:00:bb:00:02",
    ]);
    bootset(&s, &["-n", "n[1-2]", "-b", "disk"]);
    let srv = s.serve(&[]);
    // by MAC alias (a static file) and by hostname (dynamic): both recorded
    let (code, body) = get(&srv.addr, "/nodes/52-54-00-bb-00-01.ipxe");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("set dls-node n1"), "{body}");
    let rows = list_json(&s, &[]);
    assert_eq!(rows[0]["seen"]["script_boot_type"], "disk", "{rows}");
    assert!(rows[0]["seen"]["script_at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(rows[0]["state"], "assigned");
    assert!(
        rows[1]["seen"].get("script_at").is_none(),
        "n2 never asked: {rows}"
    );
    // the image's call-home
    let (code, body) = get(&srv.addr, "/booted/52-54-00-bb-00-01");
    assert_eq!(code, 200, "{body}");
    let (code, _) = get(&srv.addr, "/booted/52-54-00-ff-ff-ff");
    assert_eq!(code, 404);
    let rows = list_json(&s, &[]);
    assert_eq!(rows[0]["state"], "booted", "{rows}");
    assert!(rows[0]["seen"]["booted_at"].as_u64().is_some());
    assert_eq!(rows[0]["reboot_changes"], false);
    // bootset -s --json shows it too
    let st: serde_json::Value = serde_json::from_str(&bootset(&s, &["-s", "--json"])).unwrap();
    let n1 = st
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["seen"].as_array().unwrap().iter())
        .find(|n| n["name"] == "n1")
        .cloned()
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(n1["state"], "booted");
    assert!(n1["booted_at"].as_u64().is_some(), "{n1}");
    // a new assignment: a reboot would change it
    bootset(&s, &["-n", "n1", "-b", "next"]);
    let rows = list_json(&s, &["n1"]);
    assert_eq!(rows[0]["reboot_changes"], true, "{rows}");
    let st = bootset(&s, &["-s"]);
    assert!(st.contains("n1") && st.contains("reboot changes"), "{st}");
}

/// issue 13, provision once: `bootset --once` serves the once-assignment to the first
/// script fetch the server sees, then the previous script comes back.
#[test]
fn once_assignment_is_served_once_then_the_previous_comes_back() {
    let s = Store::new();
    std::fs::create_dir_all(s.images()).unwrap();
    s.ok(&["nodes", "add", "n[1-2]"]);
    // no previous assignment: refused, naming the node, nothing written
    let out = Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args(["-n", "n2", "-b", "disk", "--once"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_one_line_error(&err, "node n2 has no previous assignment");
    assert!(!s.root().join("www/nodes/n2.ipxe").exists());
    // a previous assignment with an image (a diskless one needs a built image: `next -i`
    // carries the image through the same script lines)
    bootset(&s, &["-n", "n1", "-b", "next", "-i", "img1"]);
    let before = std::fs::read_to_string(s.root().join("www/nodes/n1.ipxe")).unwrap();
    bootset(&s, &["-n", "n1", "-b", "disk", "--once"]);
    let st = bootset(&s, &["-s"]);
    assert!(st.contains("disk (once, then next img1): n1"), "{st}");
    let st: serde_json::Value = serde_json::from_str(&bootset(&s, &["-s", "--json"])).unwrap();
    let line = st
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["nodes"] == "n1")
        .cloned()
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(line["boot_type"], "disk", "{st}");
    assert_eq!(line["once_then"], "next img1", "{st}");
    let srv = s.serve(&[]);
    let (code, body) = get(&srv.addr, "/nodes/n1.ipxe");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("set dls-boot-type disk"), "{body}");
    let (code, body) = get(&srv.addr, "/nodes/n1.ipxe");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("set dls-boot-type next"), "{body}");
    assert!(body.contains("set node-image img1"), "{body}");
    assert_eq!(body, before);
    let st: serde_json::Value = serde_json::from_str(&bootset(&s, &["-s", "--json"])).unwrap();
    let line = st
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["nodes"] == "n1")
        .cloned()
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(line["boot_type"], "next", "{st}");
    assert_eq!(line["image"], "img1", "{st}");
    assert!(line["once_then"].is_null(), "{st}");
    let n1 = &line["seen"][0];
    assert_eq!(n1["once_restored_to"], "next img1", "{n1}");
    assert!(n1["once_restored_at"].as_u64().is_some(), "{n1}");
    assert!(n1.get("once").is_none(), "{n1}");
}
