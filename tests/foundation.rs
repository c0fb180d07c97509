//! Acceptance tests of the foundation: real mounts, real processes, as root.
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{assert_one_line_error, Store};

fn wait_for_state(s: &Store, name: &str, want: &str, timeout: Duration) {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if s.state_of(name).as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} never reached {want}: {:?}", s.state_of(name));
}

/// A sentinel directory bind-mounted inside an image's tree survives remove and clear.
#[test]
fn bind_mounted_sentinel_survives_remove_and_clear() {
    let s = Store::new();
    let sentinel = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(sentinel.path().join("keep.txt"), "precious").unwrap();
    for (op, name) in [("remove", "victim1"), ("clear", "victim2")] {
        s.ok(&["demo", "create", name, "--message", "m"]);
        for target in [
            s.images().join(name).join("bound"),
            s.root().join("workdir").join(name).join("mnt/deep/bound"),
        ] {
            std::fs::create_dir_all(&target).unwrap();
            let st = std::process::Command::new("mount")
                .arg("--bind")
                .arg(sentinel.path())
                .arg(&target)
                .status()
                .unwrap();
            assert!(st.success());
        }
        assert_eq!(s.mounts().len(), 2);
        s.ok(&[op, name, "--yes"]);
        assert!(!s.images().join(name).exists(), "{op} left the image dir");
        assert_eq!(
            std::fs::read_to_string(sentinel.path().join("keep.txt")).unwrap(),
            "precious",
            "{op} deleted through the bind mount"
        );
        assert!(s.mounts().is_empty(), "{op} left mounts: {:?}", s.mounts());
    }
}

/// kill -9 mid-creation and --crash: list says corrupted, clear cleans every mount.
#[test]
fn killed_creation_is_corrupted_and_clearable() {
    let s = Store::new();
    let mut child = s
        .cmd(&["demo", "create", "k9", "--step-delay-ms", "3000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_state(&s, "k9", "in_creation", Duration::from_secs(20));
    // The work tree is mounted by now (step 1), give it a moment to be sure.
    let t = Instant::now();
    while s.mounts().is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!s.mounts().is_empty());
    let list = s.list_json();
    let pid = list[0]["holder"]["pid"].as_i64().unwrap();
    assert_eq!(pid, child.id() as i64);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(s.state_of("k9").as_deref(), Some("corrupted"));

    let o = s.run(&["demo", "create", "crashy", "--crash"]);
    assert!(!o.status.success());
    assert_eq!(s.state_of("crashy").as_deref(), Some("corrupted"));
    assert_eq!(s.mounts().len(), 2, "both crashes left their mounts");

    // Neither can be removed as if fine; clear forces them out.
    let e = s.fails(&["remove", "k9", "--yes"]);
    assert!(e.contains("clear k9"), "{e}");
    s.ok(&["clear", "k9", "--yes"]);
    s.ok(&["clear", "crashy", "--yes"]);
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    assert_eq!(s.list_json().as_array().unwrap().len(), 0);
}

/// recover cleans leaked mounts, stale locks and temp files, and keeps what is live.
#[test]
fn recover_cleans_leftovers() {
    let s = Store::new();
    let o = s.run(&["demo", "create", "c1", "--crash"]);
    assert!(!o.status.success());
    s.ok(&["demo", "create", "fine"]);
    let tmp = s
        .images()
        .join("fine")
        .join(".disklessset-tmp.999999.0000.squashfs.img");
    std::fs::write(&tmp, "half").unwrap();
    let nfs_tmp = s.root().join("nfsimages/golden/.disklessset-tmp.999999.g1");
    std::fs::create_dir_all(nfs_tmp.join("etc")).unwrap();
    let exec_dir = s.root().join("workdir/.exec-fine-999999");
    std::fs::create_dir_all(exec_dir.join("mnt")).unwrap();
    let rep: serde_json::Value = serde_json::from_str(&s.ok(&["recover", "--json"])).unwrap();
    assert_eq!(rep["unmounted"].as_array().unwrap().len(), 1, "{rep}");
    assert_eq!(rep["stale_locks"].as_array().unwrap().len(), 1, "{rep}");
    assert_eq!(rep["corrupted"][0], "c1");
    assert!(!tmp.exists());
    assert!(!exec_dir.exists(), "exec scratch dir of a dead process");
    assert!(!nfs_tmp.exists(), "interrupted golden copy");
    assert!(s.mounts().is_empty());
    assert_eq!(s.state_of("fine").as_deref(), Some("created"));
    // a second run has nothing left to do
    let rep: serde_json::Value = serde_json::from_str(&s.ok(&["recover", "--json"])).unwrap();
    assert!(rep["unmounted"].as_array().unwrap().is_empty());
    s.ok(&["clear", "c1", "--yes"]);
}

/// Two operations on one image: one proceeds, the other fails naming the holder's pid.
#[test]
fn concurrent_operations_exclude_each_other() {
    let s = Store::new();
    s.ok(&["demo", "create", "base"]);
    let mut slow = s
        .cmd(&["demo", "create", "busy", "--step-delay-ms", "1500"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_state(&s, "busy", "in_creation", Duration::from_secs(20));
    let pid = slow.id();
    for args in [
        vec!["remove", "busy", "--yes"],
        vec!["clone", "busy", "other"],
        vec!["clear", "busy", "--yes"],
        vec!["demo", "create", "busy"],
    ] {
        let e = s.fails(&args);
        assert!(e.contains(&format!("locked by pid {pid}")), "{args:?}: {e}");
        assert_one_line_error(&e, "busy");
    }
    assert!(slow.wait().unwrap().success());
    assert_eq!(s.state_of("busy").as_deref(), Some("created"));
    s.ok(&["clone", "busy", "other"]);
    s.ok(&["remove", "busy", "--yes"]);
}

/// The reference's image_data.yml files load and list correctly.
#[test]
fn reference_records_load() {
    let s = Store::new();
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference");
    std::fs::create_dir_all(s.images()).unwrap();
    for e in std::fs::read_dir(&fixtures).unwrap() {
        let e = e.unwrap();
        let dst = s.images().join(e.file_name());
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::copy(e.path().join("image_data.yml"), dst.join("image_data.yml")).unwrap();
    }
    let list = s.list_json();
    let by = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} missing from {list}"))
    };
    let l = by("livenetimg1");
    assert_eq!(l["state"], "created");
    assert_eq!(l["module"], "livenet");
    assert_eq!(l["layout"], "compat");
    assert_eq!(l["kernel"], "vmlinuz-4.18.0-147.el8.x86_64");
    assert_eq!(l["record"]["livenet_type"], "standard");
    assert_eq!(l["record"]["livenet_size"], 1500);
    assert_eq!(l["record"]["additional_packages"][0], "gzip");
    assert_eq!(l["record"]["ssh_pub_key"], serde_json::Value::Null);
    let n = by("nfs1");
    assert_eq!(n["module"], "nfs");
    assert_eq!(n["record"]["additional_packages"][1], "vim");
    let g = by("golden1");
    assert_eq!(g["record"]["nodes"], "c[001-002]");
    assert_eq!(g["record"]["image_class"], "NfsGoldenImage");
    assert_eq!(by("demo1")["module"], "demo");
    let text = s.ok(&["list"]);
    assert!(
        text.contains("livenetimg1") && text.contains("created"),
        "{text}"
    );
    let show = s.ok(&["show", "livenetimg1"]);
    assert!(show.contains("livenet_size: 1500"), "{show}");
}

/// Bad inputs: exit 1 with one line naming the input; never a panic.
#[test]
fn bad_inputs_give_one_line_errors() {
    let s = Store::new();
    s.ok(&["demo", "create", "good"]);
    for (args, needle) in [
        (vec!["show", "../etc"], "invalid image name \"../etc\""),
        (
            vec!["demo", "create", ".hidden"],
            "invalid image name \".hidden\"",
        ),
        (
            vec!["demo", "create", &"x".repeat(65)],
            "at most 64 characters",
        ),
        (vec!["clone", "good", "a/b"], "invalid image name \"a/b\""),
        (vec!["show", "nope"], "image nope does not exist"),
        (vec!["remove", "good"], "pass --yes"),
        (vec!["clear", "good"], "pass --yes"),
        (vec!["demo", "create", "good"], "image good already exists"),
    ] {
        let e = s.fails(&args);
        assert_one_line_error(&e, needle);
    }
    // the image survived all of it
    assert_eq!(s.state_of("good").as_deref(), Some("created"));

    // missing store
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_disklessset"))
        .args(["--root", "/nonexistent/store", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_one_line_error(&String::from_utf8_lossy(&o.stderr), "/nonexistent/store");

    // config files: unknown key, bad value, malformed YAML, missing file
    let cfgdir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("imagez_dir: /x\n", "imagez_dir"),
        ("compression: bzip9\n", "bzip9"),
        ("images_dir: [unclosed\n", "line"),
        ("keep_generations: -1\n", "keep_generations"),
    ] {
        let p = cfgdir.path().join("c.yaml");
        std::fs::write(&p, text).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_disklessset"))
            .arg("--config")
            .arg(&p)
            .arg("--root")
            .arg(s.root())
            .arg("list")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{text}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_one_line_error(&e, needle);
        assert!(e.contains("c.yaml"), "{e}");
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_disklessset"))
        .args(["--config", "/nonexistent/c.yaml", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_one_line_error(&String::from_utf8_lossy(&o.stderr), "/nonexistent/c.yaml");

    // a malformed image_data.yml makes that image corrupted, not the listing fail
    std::fs::create_dir_all(s.images().join("broken")).unwrap();
    std::fs::write(s.images().join("broken/image_data.yml"), "image_data: [\n").unwrap();
    assert_eq!(s.state_of("broken").as_deref(), Some("corrupted"));
    // usage errors exit 2
    let o = s.run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    // no subcommand on a non-terminal: a clear message, exit 2
    let o = s.run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("subcommands"));
}

/// --dry-run prints the plan and changes nothing.
#[test]
fn dry_run_changes_nothing() {
    let s = Store::new();
    s.ok(&["demo", "create", "keep"]);
    let before = s.list_json();
    let out = s.ok(&["remove", "keep", "--dry-run"]);
    assert!(out.contains("remove"), "{out}");
    assert_eq!(s.list_json(), before);
    let out = s.ok(&["demo", "create", "new1", "--dry-run"]);
    assert!(out.contains("+ mount -t tmpfs"), "{out}");
    assert_eq!(s.list_json(), before);
}
