//! Issue 15, the import paths `tests/import.rs` does not walk, and `--transient` + `gc`:
//! one mmdebstrap tarball becomes images from a `.tar.gz`, a `.tar.zst`, a hand-made
//! `docker save` archive (two layers, a whiteout), a directory (hard links and a file
//! capability kept), a kernel-less tarball with `--kernel-from`, and an NFS staging
//! tree; then `gc` collects exactly the transient unassigned image and the surplus
//! generations, keeping (and naming) what a node is assigned to or booted. No VM: each
//! image is checked by its record (kernel), its squashfs listing and extracted files.
//! Needs root, the Debian mirror, squashfs-tools, gzip, zstd, libcap2-bin.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Store;

fn sh(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

fn listing(s: &Store, image: &str) -> String {
    let img = s.images().join(image).join("squashfs.img");
    let out = Command::new("unsquashfs")
        .arg("-l")
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "unsquashfs -l {}", img.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn show(s: &Store, c: &str, image: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["--config", c, "show", image, "--json"])).unwrap()
}

/// The image has a kernel of its own: recorded, published, in the squashfs.
fn assert_kernel(s: &Store, c: &str, image: &str) -> String {
    let j = show(s, c, image);
    let k = j["record"]["kernel"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        k.starts_with("vmlinuz-"),
        "{image}: no kernel recorded: {j}"
    );
    let ver = k.trim_start_matches("vmlinuz-").to_string();
    let l = listing(s, image);
    assert!(
        l.contains(&format!("squashfs-root/usr/lib/modules/{ver}/kernel")),
        "{image}: no modules of {ver} in the squashfs"
    );
    assert!(
        l.contains("squashfs-root/usr/sbin/sshd"),
        "{image}: tree content"
    );
    ver
}

fn mmdebstrap_tar(out: &Path) {
    sh(Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--variant=minbase",
            "--include=systemd,systemd-sysv,udev,dbus,kmod,openssh-server,iproute2,linux-image-amd64",
            "--format=tar",
            "bookworm",
        ])
        .arg(out)
        .arg("http://deb.debian.org/debian")
        .env("INITRD", "No"));
}

fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `base.tar` without its kernel (boot/vmlinuz-*, the modules).
fn without_kernel(src: &Path, dst: &Path) {
    let mut ar = tar::Archive::new(std::fs::File::open(src).unwrap());
    let mut b = tar::Builder::new(std::fs::File::create(dst).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let p = p.trim_start_matches("./");
        if p.starts_with("boot/vmlinuz")
            || p.starts_with("usr/lib/modules/")
            || p.starts_with("lib/modules/")
        {
            continue;
        }
        let mut h = e.header().clone();
        let name = e.path().unwrap().into_owned();
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = e.link_name().unwrap().unwrap().into_owned();
                b.append_link(&mut h, &name, &target).unwrap();
            }
            _ => b.append_data(&mut h, &name, &mut e).unwrap(),
        }
    }
    b.finish().unwrap();
}

fn extract(s: &Store, image: &str, dst: &Path, paths: &[&str]) {
    sh(Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(dst)
        .arg(s.images().join(image).join("squashfs.img"))
        .args(paths));
}

fn gc_json(s: &Store, c: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--config", c, "gc", "--json"];
    a.extend_from_slice(args);
    let out = s.ok(&a);
    // With --dry-run the plan's lines follow the JSON document.
    serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap_or_else(|| panic!("no JSON in {out}"))
        .unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| match i["generation"].as_u64() {
            Some(g) => format!("{}@{g}", i["image"].as_str().unwrap()),
            None => i["image"].as_str().unwrap().to_string(),
        })
        .collect();
    out.sort();
    out
}

fn reason<'a>(v: &'a serde_json::Value, what: &str) -> &'a str {
    v.as_array()
        .unwrap()
        .iter()
        .find(|i| match i["generation"].as_u64() {
            Some(g) => format!("{}@{g}", i["image"].as_str().unwrap()) == what,
            None => i["image"].as_str().unwrap() == what,
        })
        .and_then(|i| i["reason"].as_str())
        .unwrap_or_else(|| panic!("{what} not in {v}"))
}

#[test]
fn every_source_kind_becomes_an_image_and_gc_collects_only_the_unused() {
    let s = Store::new();
    let cfg = s.root().join("config.yaml");
    std::fs::write(&cfg, "keep_generations: 3\n").unwrap();
    let c = cfg.display().to_string();
    let base = s.root().join("base.tar");
    mmdebstrap_tar(&base);

    // .tar.gz
    sh(Command::new("gzip").args(["-1", "-k"]).arg(&base));
    let gz = s.root().join("base.tar.gz");
    s.ok(&[
        "--config",
        &c,
        "livenet",
        "create",
        "fromgz",
        "--from",
        &gz.display().to_string(),
    ]);
    let kver = assert_kernel(&s, &c, "fromgz");
    assert_eq!(
        show(&s, &c, "fromgz")["record"]["extra"]["source"]["kind"],
        "tarball"
    );

    // .tar.zst, transient
    sh(Command::new("zstd").args(["-q", "-1", "-k"]).arg(&base));
    let zst = s.root().join("base.tar.zst");
    let zst_s = zst.display().to_string();
    s.ok(&[
        "--config",
        &c,
        "livenet",
        "create",
        "fromzst",
        "--from",
        &zst_s,
        "--transient",
    ]);
    assert_kernel(&s, &c, "fromzst");
    let j = show(&s, &c, "fromzst");
    assert_eq!(j["transient"], true, "{j}");
    assert_eq!(j["record"]["extra"]["transient"], true, "{j}");
    assert_eq!(show(&s, &c, "fromgz")["transient"], false);
    // both compressions give the same tree
    let strip = |l: String| -> Vec<String> { l.lines().map(str::to_string).collect() };
    assert_eq!(strip(listing(&s, "fromgz")), strip(listing(&s, "fromzst")));
    let list = s.ok(&["--config", &c, "list"]);
    let row = list.lines().find(|l| l.starts_with("fromzst ")).unwrap();
    assert!(row.contains("transient"), "{list}");
    let shown = s.ok(&["--config", &c, "show", "fromzst"]);
    assert!(shown.contains("transient: true"), "{shown}");

    // docker save archive: manifest.json + layer tars; layer two adds a file and
    // deletes etc/motd (.wh.). Transient too.
    let da = s.root().join("docker");
    std::fs::create_dir_all(da.join("l1")).unwrap();
    std::fs::create_dir_all(da.join("l2")).unwrap();
    std::fs::copy(&base, da.join("l1/layer.tar")).unwrap();
    std::fs::write(
        da.join("l2/layer.tar"),
        tar_bytes(&[("etc/docker-layer-two", b"two\n"), ("etc/.wh.motd", b"")]),
    )
    .unwrap();
    std::fs::write(
        da.join("config.json"),
        r#"{"architecture":"amd64","os":"linux"}"#,
    )
    .unwrap();
    std::fs::write(
        da.join("manifest.json"),
        r#"[{"Config":"config.json","RepoTags":["site/compute:1"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#,
    )
    .unwrap();
    let archive = s.root().join("compute-docker.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        for f in [
            "manifest.json",
            "config.json",
            "l1/layer.tar",
            "l2/layer.tar",
        ] {
            b.append_path_with_name(da.join(f), f).unwrap();
        }
        b.finish().unwrap();
    }
    std::fs::remove_dir_all(&da).unwrap();
    s.ok(&[
        "--config",
        &c,
        "livenet",
        "create",
        "fromdocker",
        "--from",
        &archive.display().to_string(),
        "--transient",
    ]);
    assert_kernel(&s, &c, "fromdocker");
    let l = listing(&s, "fromdocker");
    assert!(
        l.contains("squashfs-root/etc/docker-layer-two\n"),
        "layer two applied"
    );
    assert!(
        !l.contains("squashfs-root/etc/motd\n"),
        "the whiteout removed etc/motd"
    );
    assert!(!l.contains(".wh."), "no whiteout file in the image");
    assert!(listing(&s, "fromgz").contains("squashfs-root/etc/motd\n"));

    // a kernel-less tree: refused naming the fix, then --kernel-from
    let nok = s.root().join("nokernel.tar");
    without_kernel(&base, &nok);
    let nok_s = nok.display().to_string();
    let e = s.fails(&["--config", &c, "livenet", "create", "nok", "--from", &nok_s]);
    assert!(e.contains("--kernel-from"), "{e}");
    assert!(s.state_of("nok").is_none(), "a refusal leaves nothing");
    s.ok(&[
        "--config",
        &c,
        "livenet",
        "create",
        "nok",
        "--from",
        &nok_s,
        "--kernel-from",
        "fromgz",
    ]);
    assert_eq!(assert_kernel(&s, &c, "nok"), kver);
    assert_eq!(
        show(&s, &c, "nok")["record"]["extra"]["kernel_from"],
        "fromgz"
    );

    // a directory: a hard-linked pair and a file capability survive
    let dir = s.root().join("tree");
    std::fs::create_dir_all(&dir).unwrap();
    sh(Command::new("tar")
        .arg("-xpf")
        .arg(&base)
        .arg("-C")
        .arg(&dir));
    std::fs::write(dir.join("usr/local/bin/dls-a"), b"one inode\n").unwrap();
    std::fs::hard_link(
        dir.join("usr/local/bin/dls-a"),
        dir.join("usr/local/bin/dls-b"),
    )
    .unwrap();
    std::fs::write(dir.join("usr/local/bin/dls-ping"), b"#!/bin/sh\n").unwrap();
    sh(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(dir.join("usr/local/bin/dls-ping")));
    s.ok(&[
        "--config",
        &c,
        "livenet",
        "create",
        "fromdir",
        "--from",
        &dir.display().to_string(),
    ]);
    assert_eq!(
        show(&s, &c, "fromdir")["record"]["extra"]["source"]["kind"],
        "directory"
    );
    assert_kernel(&s, &c, "fromdir");
    let x = s.root().join("x");
    extract(&s, "fromdir", &x, &["usr/local/bin"]);
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(x.join("usr/local/bin/dls-a")).unwrap();
    let b = std::fs::metadata(x.join("usr/local/bin/dls-b")).unwrap();
    assert_eq!(a.ino(), b.ino(), "the hard link is one inode in the image");
    let cap = Command::new("getcap")
        .arg(x.join("usr/local/bin/dls-ping"))
        .output()
        .unwrap();
    let cap = String::from_utf8_lossy(&cap.stdout);
    assert!(cap.contains("cap_net_raw"), "capability kept: {cap:?}");
    std::fs::remove_dir_all(&dir).unwrap();

    // NFS staging from a tarball
    s.ok(&[
        "--config", &c, "nfs", "staging", "create", "nfsz", "--from", &zst_s,
    ]);
    let staging = s.root().join("nfsimages/staging/nfsz");
    assert!(staging.join("usr/sbin/sshd").is_file());
    assert!(staging.join(format!("usr/lib/modules/{kver}")).is_dir());
    let j = show(&s, &c, "nfsz");
    assert_eq!(j["record"]["extra"]["source"]["kind"], "tarball", "{j}");
    assert!(j["record"]["kernel"].as_str().unwrap().ends_with(&kver));

    // ---- gc
    // fromgz: three more generations (1, 2, 3 kept with keep_generations 3; 4 current)
    for i in 0..3 {
        s.ok(&["--config", &c, "livenet", "mount", "fromgz"]);
        std::fs::write(
            s.root().join("workdir/fromgz/mnt/etc/dls-gen"),
            format!("{i}\n"),
        )
        .unwrap();
        s.ok(&["--config", &c, "livenet", "unmount", "fromgz"]);
    }
    assert_eq!(show(&s, &c, "fromgz")["generation"], 4);
    let gens = s.images().join("fromgz/generations");
    let kept_files = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&gens)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        kept_files()
            .iter()
            .filter(|n| !n.ends_with(".sha256"))
            .count(),
        3
    );
    // Now keep one: generations 1 and 2 are surplus. Node c02 booted generation 1 an
    // hour ago (its record, as the boot server writes it); c01 is assigned fromzst.
    std::fs::write(&cfg, "keep_generations: 1\n").unwrap();
    std::fs::write(
        s.root().join("nodes.yml"),
        "c01: {mac: '52:54:00:15:00:01'}\nc02: {mac: '52:54:00:15:00:02'}\n",
    )
    .unwrap();
    sh(Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args(["-n", "c01", "-b", "diskless", "-i", "fromzst"])
        .stdin(std::process::Stdio::null()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::create_dir_all(s.root().join("state/nodes")).unwrap();
    std::fs::write(
        s.root().join("state/nodes/c02.json"),
        format!(
            r#"{{"booted_at": {}, "booted_image": "fromgz", "booted_generation": 1}}"#,
            now - 3600
        ),
    )
    .unwrap();

    // Default window (7d): the new transient fromdocker is kept (just created), fromzst
    // is assigned, generation 1 was booted an hour ago; generation 2 goes.
    let before_files = walk(s.root());
    let r = gc_json(&s, &c, &["--dry-run"]);
    assert_eq!(names(&r["removed"]), ["fromgz@2"], "{r}");
    assert_eq!(
        names(&r["kept"]),
        ["fromdocker", "fromgz@1", "fromzst"],
        "{r}"
    );
    assert_eq!(reason(&r["kept"], "fromzst"), "assigned to c01");
    assert!(
        reason(&r["kept"], "fromgz@1").starts_with("booted by c02"),
        "{r}"
    );
    assert!(
        reason(&r["kept"], "fromdocker").contains("within 7d"),
        "{r}"
    );
    assert_eq!(walk(s.root()), before_files, "a dry run changed the store");
    // The same as people read it.
    let out = s.ok(&["--config", &c, "gc", "--dry-run", "--older-than", "0"]);
    assert!(
        out.contains("kept transient image fromzst: assigned to c01"),
        "{out}"
    );
    assert!(
        out.contains("would remove transient image fromdocker"),
        "{out}"
    );
    assert!(
        out.contains("would remove generation 1 of image fromgz"),
        "{out}"
    );
    // Destructive without a terminal: asks for --yes, removes nothing.
    let e = s.fails(&["--config", &c, "gc", "--older-than", "0"]);
    assert!(e.contains("--yes"), "{e}");
    assert_eq!(walk(s.root()), before_files);

    // A mounted transient image is skipped, named.
    s.ok(&["--config", &c, "livenet", "mount", "fromdocker"]);
    let r = gc_json(&s, &c, &["--dry-run", "--older-than", "0"]);
    assert_eq!(names(&r["removed"]), ["fromgz@1", "fromgz@2"], "{r}");
    assert!(
        reason(&r["skipped"], "fromdocker").contains("mounted"),
        "{r}"
    );
    s.ok(&[
        "--config",
        &c,
        "livenet",
        "unmount",
        "fromdocker",
        "--discard",
    ]);

    let r = gc_json(&s, &c, &["--older-than", "0", "--yes"]);
    assert_eq!(
        names(&r["removed"]),
        ["fromdocker", "fromgz@1", "fromgz@2"],
        "{r}"
    );
    assert_eq!(names(&r["kept"]), ["fromzst"], "{r}");
    assert!(r["freed_bytes"].as_u64().unwrap() > 10_000_000, "{r}");
    assert!(s.state_of("fromdocker").is_none(), "fromdocker removed");
    assert!(!s.images().join("fromdocker").exists());
    assert_eq!(
        s.state_of("fromzst").as_deref(),
        Some("created"),
        "assigned survives"
    );
    assert_eq!(kept_files(), ["squashfs.img.3", "squashfs.img.3.sha256"]);
    assert_eq!(show(&s, &c, "fromgz")["generation"], 4);
    assert!(s.images().join("fromgz/squashfs.img").is_file());
    // Nothing left to do: said so.
    let out = s.ok(&["--config", &c, "gc", "--older-than", "0", "--yes"]);
    assert!(out.contains("nothing to collect"), "{out}");
    assert!(s.mounts().is_empty(), "mounts left: {:?}", s.mounts());

    // The one VM boot of this file: the image imported from a directory (the path that
    // lost device nodes, hard links and capabilities) boots to its marker.
    s.boot_image("fromdir", "fromdir", std::time::Duration::from_secs(900));
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_path_buf())
        .filter(|p| !p.to_string_lossy().contains("/log"))
        .collect();
    v.sort();
    v
}
