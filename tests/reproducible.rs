//! Reproducible images (issue 15), with the real binary and the real Debian mirror:
//! a build at a fixed SOURCE_DATE_EPOCH, its rebuild from the record (versions pinned)
//! bit-identical in squashfs and initramfs, a rebuild at another epoch that `diff`
//! says differs only in timestamps, a pinned version the mirror does not have refused
//! naming the package, and `diff NAME@1 NAME@2` after an Ansible run that installs
//! `hello` listing exactly that package and its files; the compat layout rebuilt
//! bit-identical too, and NFS images keeping their build record.
mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{sha256_hex, Store};

const EPOCH: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC
/// Another epoch the same day: /etc/shadow's last-change field counts days, so a
/// build another day also differs in that field (content, not a file time).
const EPOCH2: u64 = EPOCH + 1800;

fn run_status(s: &Store, args: &[&str]) -> (i32, String, String) {
    let out = s.run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rebuild NAME` says the copy and its initramfs are bit-identical, and the copy's
/// squashfs has the original's sha256.
fn rebuilds_bit_identical(s: &Store, name: &str, sha: &str) {
    let (code, stdout, stderr) = run_status(s, &["rebuild", name]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "{name}-rebuild is bit-identical to generation 1 of {name}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("the initramfs is bit-identical too"),
        "{stdout}"
    );
    assert_eq!(
        sha256_hex(&s.images().join(format!("{name}-rebuild/squashfs.img"))),
        sha
    );
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn rebuilds_are_bit_identical_and_diffs_name_what_changed() {
    let s = Store::new();
    // 1. The build, at a fixed epoch; python3 for the Ansible run below.
    let out = s
        .cmd(&[
            "livenet",
            "create",
            "rp",
            "--type",
            "core",
            "--packages",
            "python3",
        ])
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = s.images().join("rp/squashfs.img");
    let sha1 = sha256_hex(&img);
    let show = json(&s.ok(&["show", "rp", "--json"]));
    assert_eq!(show["sha256"], sha1.as_str());
    assert_eq!(show["build"]["record"]["source_date_epoch"], EPOCH);
    assert_eq!(show["build"]["record"]["builder"], "mmdebstrap");
    assert_eq!(show["build"]["record"]["squashfs_sha256"], sha1.as_str());
    let pkgs = show["build"]["packages"].as_array().unwrap();
    assert!(
        pkgs.iter()
            .any(|p| p["name"] == "python3" && p["arch"] == "amd64" && p["version"].is_string()),
        "{show}"
    );
    assert!(pkgs.len() > 100, "{} packages", pkgs.len());
    let text = s.ok(&["show", "rp"]);
    assert!(
        text.contains(&format!("source_date_epoch: {EPOCH}")),
        "{text}"
    );
    assert!(text.contains(&format!("sha256: {sha1}")), "{text}");
    // No random machine-id or host key in the image; every time clamped.
    let list = common_list(&img);
    assert!(!list.contains("etc/ssh/ssh_host_"), "host keys shipped");
    let initramfs = s
        .root()
        .join("www/diskless/kernels")
        .join(show["record"]["image"].as_str().unwrap());
    let initramfs_sha = sha256_hex(&initramfs);
    assert_eq!(
        show["build"]["record"]["initramfs_sha256"],
        initramfs_sha.as_str()
    );

    // 2. The rebuild (same declaration, same versions, same epoch): bit-identical.
    rebuilds_bit_identical(&s, "rp", &sha1);
    assert_eq!(sha256_hex(&initramfs), initramfs_sha);
    let (code, stdout, _) = run_status(&s, &["diff", "rp", "rp-rebuild"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("bit-identical"), "{stdout}");

    // 3. Another epoch: another squashfs, and diff says only timestamps differ.
    let (code, stdout, stderr) = run_status(
        &s,
        &[
            "rebuild",
            "rp",
            "--as",
            "rp-e2",
            "--source-date-epoch",
            &EPOCH2.to_string(),
        ],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rp-e2 differs from generation 1 of rp"),
        "{stdout}"
    );
    assert_ne!(sha256_hex(&s.images().join("rp-e2/squashfs.img")), sha1);
    let (code, stdout, stderr) = run_status(&s, &["diff", "rp", "rp-e2"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rp@1 and rp-e2@1 differ only in timestamps"),
        "{stdout}"
    );
    let d = json(&String::from_utf8_lossy(
        &s.run(&["diff", "rp", "rp-e2", "--json"]).stdout,
    ));
    assert_eq!(d["only_timestamps"], true, "{d}");
    assert!(
        !d["files"]["timestamps"].as_array().unwrap().is_empty(),
        "{d}"
    );
    s.ok(&["remove", "rp-e2", "--yes"]);
    s.ok(&["remove", "rp-rebuild", "--yes"]);

    // 4. A pinned version the mirror does not have: refused, naming the package.
    let rec_path = s.images().join("rp/build.yml");
    let rec = std::fs::read_to_string(&rec_path).unwrap();
    let mut y: serde_json::Value =
        serde_json::to_value(yaml_serde::from_str::<yaml_serde::Value>(&rec).unwrap()).unwrap();
    for p in y["manifest"].as_array_mut().unwrap() {
        if p["name"] == "python3" {
            p["version"] = "9.99.99-nonexistent1".into();
        }
    }
    std::fs::write(&rec_path, yaml_serde::to_string(&y).unwrap()).unwrap();
    let e = s.fails(&["rebuild", "rp", "--as", "rp-bad"]);
    assert!(e.contains("python3"), "{e}");
    assert!(e.contains("package not found"), "{e}");
    std::fs::write(&rec_path, rec).unwrap();
    s.ok(&["clear", "rp-bad", "--yes"]);

    // 4b. The compat layout (an ext4 inside the squashfs) is reproducible too: rp's
    //     tree imported as a compat image, then rebuilt from its record (a second
    //     import into another build dir, packed minutes later): bit-identical, the
    //     inner ext4 included (its UUID, hash seed, times and inode order are not the
    //     wall clock's, the host's or the source directory's).
    compat_and_nfs_record_their_builds(&s, &img);

    // 5. An Ansible run that installs hello: generation 2; diff lists exactly hello
    //    and its files (plus the package manager's own state).
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("hello.yml");
    std::fs::write(
        &pb,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: apt-get update\n    - ansible.builtin.command: apt-get install -y --no-install-recommends hello\n",
    )
    .unwrap();
    let out = s.ok(&["ansible", "rp", pb.to_str().unwrap()]);
    assert!(out.contains("generation 2"), "{out}");
    let (code, stdout, stderr) = run_status(&s, &["diff", "rp@1", "rp@2", "--json"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let d = json(&stdout);
    let added: Vec<&str> = d["packages"]["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(added, vec!["hello"], "{d}");
    assert!(
        d["packages"]["removed"].as_array().unwrap().is_empty(),
        "{d}"
    );
    assert!(
        d["packages"]["changed"].as_array().unwrap().is_empty(),
        "{d}"
    );
    let files: BTreeSet<String> = d["files"]["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    // hello's own files (from its dpkg list in generation 2) are all added ...
    let mnt = tempfile::tempdir().unwrap();
    let x = std::process::Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(mnt.path().join("x"))
        .arg(&img)
        .arg("var/lib/dpkg/info/hello.list")
        .status()
        .unwrap();
    assert!(x.success());
    let hello_list =
        std::fs::read_to_string(mnt.path().join("x/var/lib/dpkg/info/hello.list")).unwrap();
    let hello_files: BTreeSet<String> = hello_list
        .lines()
        .filter(|l| !l.is_empty() && *l != "/.")
        .map(str::to_string)
        .collect();
    assert!(hello_files.contains("/usr/bin/hello"), "{hello_list}");
    for f in &hello_files {
        let existed = !files.contains(f);
        // directories hello shares with others (/usr, /usr/bin) existed before
        if existed {
            assert!(
                !f.starts_with("/usr/bin/hello") && !f.contains("/hello/"),
                "{f} not listed as added: {files:?}"
            );
        }
    }
    // ... and nothing else was added or changed but the package manager's own state.
    let state = |f: &str| {
        // install-info's index, ldconfig's cache: what dpkg triggers update
        [
            "/var/lib/dpkg/",
            "/var/lib/apt/",
            "/var/cache/",
            "/var/log/",
            "/etc/ld.so.cache",
            "/usr/share/info/dir",
            // Ansible's own remote temp dir (the chroot connection leaves it behind)
            "/root/.ansible",
        ]
        .iter()
        .any(|p| f.starts_with(p))
    };
    let mut unexpected: Vec<String> = files
        .iter()
        .filter(|f| !hello_files.contains(*f) && !state(f))
        .map(|f| format!("added {f}"))
        .collect();
    for c in d["files"]["changed"].as_array().unwrap() {
        let f = c["path"].as_str().unwrap();
        if !(state(f) || hello_files.contains(f) || is_parent_dir(f, &hello_files)) {
            unexpected.push(format!("changed {c}"));
        }
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert!(d["files"]["removed"].as_array().unwrap().is_empty(), "{d}");
    let text = s.run(&["diff", "rp@1", "rp@2"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("packages: 1 added, 0 removed, 0 changed"),
        "{text}"
    );
    assert!(text.contains("  + hello "), "{text}");
    assert!(text.contains("  + /usr/bin/hello"), "{text}");
    // A generation that is not kept is named with the kept ones.
    let e = s.fails(&["diff", "rp@7", "rp"]);
    assert!(e.contains("no generation 7") && e.contains("1, 2"), "{e}");
    assert!(s.mounts().is_empty(), "diff left mounts: {:?}", s.mounts());
}

fn compat_and_nfs_record_their_builds(s: &Store, native_img: &Path) {
    let src = s.root().join("rp-tree");
    let st = std::process::Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(&src)
        .arg(native_img)
        .status()
        .unwrap();
    assert!(st.success());
    let src_s = src.display().to_string();
    let out = s
        .cmd(&[
            "livenet", "create", "rpc", "--from", &src_s, "--layout", "compat",
        ])
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = s.images().join("rpc/squashfs.img");
    let sha = sha256_hex(&img);
    let show = json(&s.ok(&["show", "rpc", "--json"]));
    assert_eq!(show["build"]["record"]["layout"], "compat", "{show}");
    assert_eq!(show["build"]["record"]["builder"], "import", "{show}");
    assert_eq!(show["build"]["record"]["squashfs_sha256"], sha.as_str());
    assert!(common_list(&img).contains("LiveOS/rootfs.img"));
    // The time mkfs would stamp is the epoch (E2FSPROGS_FAKE_TIME), not now.
    let x = s.root().join("rpc-x");
    let st = std::process::Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(&x)
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success());
    let sb = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(x.join("LiveOS/rootfs.img"))
        .output()
        .unwrap();
    let sb = String::from_utf8_lossy(&sb.stdout);
    let created = sb
        .lines()
        .find(|l| l.starts_with("Filesystem created:"))
        .unwrap_or_else(|| panic!("{sb}"));
    assert!(created.contains("2023"), "{created}");
    std::fs::remove_dir_all(&x).unwrap();
    rebuilds_bit_identical(s, "rpc", &sha);
    s.ok(&["remove", "rpc-rebuild", "--yes"]);
    s.ok(&["remove", "rpc", "--yes"]);

    // NFS images record their build too (build.yml: inputs, epoch, packages), through
    // the same code as livenet images; `show` lists the tree's packages.
    let out = s
        .cmd(&["nfs", "staging", "create", "rpn", "--from", &src_s])
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: serde_json::Value = serde_json::to_value(
        yaml_serde::from_str::<yaml_serde::Value>(
            &std::fs::read_to_string(s.images().join("rpn/build.yml")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rec["builder"], "import", "{rec}");
    assert_eq!(rec["source_date_epoch"], EPOCH, "{rec}");
    assert_eq!(rec["initramfs"], "own", "{rec}");
    assert!(rec["initramfs_sha256"].is_string(), "{rec}");
    let manifest = rec["manifest"].as_array().unwrap();
    assert!(
        manifest.len() > 100
            && manifest
                .iter()
                .any(|p| p["name"] == "python3" && p["version"].is_string()),
        "{} packages",
        manifest.len()
    );
    let show = json(&s.ok(&["show", "rpn", "--json"]));
    assert_eq!(
        show["build"]["record"]["source_date_epoch"], EPOCH,
        "{show}"
    );
    assert_eq!(
        show["build"]["packages"].as_array().map(Vec::len),
        Some(manifest.len()),
        "{show}"
    );
    // a golden copy keeps the inputs, with the packages of its own tree
    s.ok(&["nfs", "golden", "create", "rpg", "--from", "rpn"]);
    let g = std::fs::read_to_string(s.images().join("rpg/build.yml")).unwrap();
    assert!(g.contains(&format!("source_date_epoch: {EPOCH}")), "{g}");
    assert!(g.contains("name: python3"), "{g}");
    let e = s.fails(&["rebuild", "rpn"]);
    assert!(e.contains("not a livenet image"), "{e}");
    s.ok(&["remove", "rpg", "--yes"]);
    s.ok(&["remove", "rpn", "--yes"]);
    std::fs::remove_dir_all(&src).unwrap();
}

fn is_parent_dir(f: &str, files: &BTreeSet<String>) -> bool {
    files.iter().any(|x| x.starts_with(&format!("{f}/")))
}

fn common_list(img: &Path) -> String {
    let out = std::process::Command::new("unsquashfs")
        .arg("-lln")
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
