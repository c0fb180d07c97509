//! Machine groups by selectors and per-node templates (issue 13), through the real
//! binary: a MAC regex and a fact selector combined by `match` select exactly the
//! expected nodes; var sources in `nodes show`; a template served by the real
//! `disklessset serve` to two nodes by MAC, the kept copy byte for byte; bad regex, bad
//! match, template error (file:line) refused in one line.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{assert_one_line_error, Store};

const NODES: &str = r#"# hand-written
c01: {mac: "52:54:00:aa:00:01", ip: 10.0.0.1}
c02: {mac: "52:54:00:aa:00:02", ip: 10.0.0.2}
c03: {mac: "52:54:00:bb:00:03", ip: 10.0.0.3}
c04: {mac: "52:54:00:aa:00:04", ip: 10.0.0.4, groups: [login], vars: {role: login-node}}
groups:
  all:
    vars: {site: lab, role: plain, tier: base}
  login:
    vars: {tier: front}
  gpu:
    selectors:
      mac: {regex: '^52:54:00:aa:'}
      big: {field: memory_mib, min: 4096}
      vendor: {exact: QEMU}
    match: "mac and (big or not vendor)"
    vars: {role: gpu, tier: accel}
"#;

/// Facts as discovery writes them: `state_dir/facts/NODE.json`.
fn facts(s: &Store, node: &str, memory_mib: u64, vendor: &str) {
    let dir = s.root().join("state/facts");
    std::fs::create_dir_all(&dir).unwrap();
    let f = serde_json::json!({"memory_mib": memory_mib, "vendor": vendor, "cpus": 2});
    std::fs::write(dir.join(format!("{node}.json")), f.to_string()).unwrap();
}

fn setup() -> Store {
    let s = Store::new();
    std::fs::create_dir_all(s.images()).unwrap();
    std::fs::write(s.root().join("nodes.yml"), NODES).unwrap();
    facts(&s, "c01", 8192, "QEMU"); // mac and big: selected
    facts(&s, "c02", 1024, "QEMU"); // mac, small, QEMU: not selected
    facts(&s, "c03", 8192, "QEMU"); // mac fails
    facts(&s, "c04", 1024, "Dell"); // mac and not vendor: selected
    s
}

#[test]
fn selectors_put_exactly_the_expected_nodes_in_the_group_with_var_sources() {
    let s = setup();
    let rows = s.json(&["nodes", "list", "--json"]);
    let in_gpu: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["groups"].as_array().unwrap().iter().any(|g| g == "gpu"))
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(in_gpu, ["c01", "c04"], "{rows}");
    assert_eq!(rows[0]["selected_groups"], serde_json::json!(["gpu"]));
    assert_eq!(rows[3]["groups"], serde_json::json!(["login", "gpu"]));
    // @gpu in a node set includes the selected members
    let rows = s.json(&["nodes", "list", "@gpu", "--json"]);
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c01", "c04"]);
    // precedence node > listed group > selected group > all, with sources
    let show = s.json(&["nodes", "show", "c04", "--json"]);
    let v = &show["vars"];
    assert_eq!(v["role"]["value"], "login-node");
    assert_eq!(v["role"]["source"], "node");
    assert_eq!(v["tier"]["value"], "front");
    assert_eq!(v["tier"]["source"], "group login");
    assert_eq!(v["site"]["source"], "group all");
    let show = s.json(&["nodes", "show", "c01", "--json"]);
    assert_eq!(show["vars"]["role"]["value"], "gpu");
    assert_eq!(
        show["vars"]["role"]["source"],
        "group gpu, selected by mac and (big or not vendor)"
    );
    let show = s.json(&["nodes", "show", "c02", "--json"]);
    assert_eq!(show["vars"]["role"]["value"], "plain");
    assert_eq!(show["vars"]["role"]["source"], "group all");
    let text = s.ok(&["nodes", "show", "c01"]);
    assert!(
        text.contains("role = gpu") && text.contains("selected by mac and (big or not vendor)"),
        "{text}"
    );
    // new facts move a node into the group (c02 grows)
    facts(&s, "c02", 65536, "QEMU");
    let rows = s.json(&["nodes", "list", "@gpu", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
}

#[test]
fn bad_regex_bad_match_and_unknown_fields_are_refused_in_one_line() {
    let s = setup();
    let before_scripts = s.root().join("www/nodes").exists();
    for (from, to, want) in [
        (
            "regex: '^52:54:00:aa:'",
            "regex: '^52:(54'",
            "groups.gpu.selectors.mac.regex",
        ),
        (
            "match: \"mac and (big or not vendor)\"",
            "match: \"mac and (big or\"",
            "groups.gpu.match",
        ),
        (
            "match: \"mac and (big or not vendor)\"",
            "match: \"mac and gpus\"",
            "unknown selector \"gpus\"",
        ),
        (
            "big: {field: memory_mib, min: 4096}",
            "big: {field: ram, min: 4096}",
            "unknown field \"ram\"",
        ),
    ] {
        let bad = NODES.replace(from, to);
        assert_ne!(bad, NODES);
        std::fs::write(s.root().join("nodes.yml"), &bad).unwrap();
        for args in [&["nodes", "list"][..], &["nodes", "add", "c09"][..]] {
            let err = s.fails(args);
            assert_one_line_error(&err, want);
        }
        // nothing written: the file is as it was, no scripts appeared
        assert_eq!(
            std::fs::read_to_string(s.root().join("nodes.yml")).unwrap(),
            bad
        );
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_bootset"))
            .arg("--root")
            .arg(s.root())
            .args(["-n", "@gpu", "-b", "disk"])
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(want),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(s.root().join("www/nodes").exists(), before_scripts);
    }
}

/// A GET; the status and the body bytes.
fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = Vec::new();
    c.read_to_end(&mut r).unwrap();
    let end = r
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&r[..end]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, r[end + 4..].to_vec())
}

const TEMPLATE: &str = "# {{ name }} ({{ mac }})\nrole={{ vars.role }}\nmemory={{ facts.memory_mib }}\n{% for g in groups %}group={{ g }}\n{% endfor %}";

#[test]
fn a_template_is_rendered_per_node_served_by_mac_and_kept() {
    let s = setup();
    let tdir = s.root().join("templates");
    std::fs::create_dir_all(&tdir).unwrap();
    std::fs::write(tdir.join("role.conf"), TEMPLATE).unwrap();
    std::fs::write(tdir.join("bad.conf"), "ok\n{{ vars.nope }}\n").unwrap();
    std::fs::write(tdir.join("broken.conf"), "a\nb\n{% if %}\n").unwrap();

    // nodes render before any serve: the rendering, no kept copy yet
    let r = s.json(&["nodes", "render", "c01", "role.conf", "--json"]);
    assert_eq!(
        r["text"],
        "# c01 (52:54:00:aa:00:01)\nrole=gpu\nmemory=8192\ngroup=gpu\n"
    );
    assert!(r["same_as_kept"].is_null(), "{r}");

    let srv = s.serve(&[]);
    let (c1, body1) = get(&srv.addr, "/render/role.conf?mac=52:54:00:aa:00:01");
    let (c2, body2) = get(&srv.addr, "/render/role.conf?mac=52-54-00-AA-00-02");
    assert_eq!((c1, c2), (200, 200));
    assert_eq!(
        String::from_utf8_lossy(&body1),
        "# c01 (52:54:00:aa:00:01)\nrole=gpu\nmemory=8192\ngroup=gpu\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&body2),
        "# c02 (52:54:00:aa:00:02)\nrole=plain\nmemory=1024\n"
    );
    for (node, body) in [("c01", &body1), ("c02", &body2)] {
        let kept = std::fs::read(s.root().join(format!("state/rendered/{node}/role.conf")))
            .unwrap_or_else(|e| panic!("kept copy of {node}: {e}"));
        assert_eq!(&kept, body, "{node}: the kept copy is what was served");
    }
    // nodes render compares with the kept copy
    let r = s.json(&["nodes", "render", "c02", "role.conf", "--json"]);
    assert_eq!(r["same_as_kept"], true, "{r}");
    facts(&s, "c02", 2048, "QEMU");
    let r = s.json(&["nodes", "render", "c02", "role.conf", "--json"]);
    assert_eq!(r["same_as_kept"], false, "{r}");
    let o = s.run(&["nodes", "render", "c02", "role.conf"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("memory=2048"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("DIFFERS"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // unknown MAC: 404; no MAC: 400; unknown template: 404; template error: 500
    let (c, _) = get(&srv.addr, "/render/role.conf?mac=52:54:00:ff:ff:ff");
    assert_eq!(c, 404);
    let (c, _) = get(&srv.addr, "/render/role.conf");
    assert_eq!(c, 400);
    let (c, _) = get(&srv.addr, "/render/nope.conf?mac=52:54:00:aa:00:01");
    assert_eq!(c, 404);
    let (c, _) = get(&srv.addr, "/render/..%2fnodes.yml?mac=52:54:00:aa:00:01");
    assert!(c == 404 || c == 403, "{c}");
    let (c, _) = get(&srv.addr, "/render/bad.conf?mac=52:54:00:aa:00:01");
    assert_eq!(c, 500);
    assert!(!s.root().join("state/rendered/c01/bad.conf").exists());
    drop(srv);
    let log = std::fs::read_to_string(s.root().join("serve.log")).unwrap();
    assert!(log.contains("unknown MAC 52:54:00:ff:ff:ff"), "{log}");
    assert!(
        log.contains("templates/bad.conf:2:") && log.contains("c01"),
        "{log}"
    );

    // the CLI refuses template errors with file:line, in one line
    let err = s.fails(&["nodes", "render", "c01", "bad.conf"]);
    assert_one_line_error(&err, "templates/bad.conf:2:");
    let err = s.fails(&["nodes", "render", "c01", "broken.conf"]);
    assert_one_line_error(&err, "templates/broken.conf:3:");
    let err = s.fails(&["nodes", "render", "c01", "nope.conf"]);
    assert!(err.contains("no template nope.conf"), "{err}");
    let err = s.fails(&["nodes", "render", "c01", "../nodes.yml"]);
    assert!(err.contains("invalid template name"), "{err}");
}

/// issue 13, scale: `mac_aliases: false` writes no `nodes/MAC.ipxe` links (half the
/// files of a first bootset) and the built-in server still finds the node by MAC.
#[test]
fn without_mac_aliases_serve_finds_the_script_by_mac() {
    let s = setup();
    let cfg = s.root().join("config.yaml");
    std::fs::write(&cfg, "mac_aliases: false\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .arg("--config")
        .arg(&cfg)
        .args(["-n", "c[01-02]", "-b", "disk"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files: Vec<String> = std::fs::read_dir(s.root().join("www/nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["c01.ipxe", "c02.ipxe"]);
    let srv = s.serve(&[]);
    let (c, body) = get(&srv.addr, "/nodes/52-54-00-aa-00-02.ipxe");
    assert_eq!(c, 200);
    assert!(String::from_utf8_lossy(&body).contains("set dls-node c02"));
}
