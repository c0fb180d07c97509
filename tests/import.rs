//! `create --from` (issue 15): a tarball written by mmdebstrap and an OCI image layout
//! with two layers and whiteouts (written here by hand: tar + sha256 + JSON) become
//! images that boot in a VM to their marker; hostile tarballs are refused naming the
//! entry, with nothing left in the store. Needs root, the Debian mirror and QEMU.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Store;
use sha2::{Digest, Sha256};

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

/// Every file under the store root (to see that a refusal wrote nothing).
fn files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_path_buf())
        .filter(|p| !p.ends_with("logs") && !p.to_string_lossy().contains("/logs/"))
        .collect();
    v.sort();
    v
}

fn mmdebstrap_tar(out: &Path) {
    let st = Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--variant=minbase",
            "--include=systemd,systemd-sysv,udev,dbus,kmod,openssh-server,iproute2,linux-image-amd64",
            "--format=tar",
            "bookworm",
        ])
        .arg(out)
        .arg("http://deb.debian.org/debian")
        .env("INITRD", "No")
        .status()
        .expect("mmdebstrap");
    assert!(st.success(), "mmdebstrap --format=tar failed");
}

/// A tar entry with a raw name (the tar crate refuses `..` in `set_path`).
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    if !link.is_empty() {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    if matches!(kind, tar::EntryType::Block) {
        let mut g = tar::Header::new_gnu();
        g.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        g.set_entry_type(kind);
        g.set_device_major(8).unwrap();
        g.set_device_minor(0).unwrap();
        g.set_mode(0o600);
        g.set_size(0);
        g.set_cksum();
        b.append(&g, &[][..]).unwrap();
        return;
    }
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn hostile_tarballs_are_refused_naming_the_entry_and_leave_nothing() {
    let s = Store::new();
    s.ok(&["list"]);
    let before = files(s.root());
    type Entries<'a> = Vec<(&'a str, tar::EntryType, &'a str)>;
    let cases: [(&str, Entries, &str); 4] = [
        (
            "dotdot",
            vec![
                ("./etc/", tar::EntryType::Directory, ""),
                ("./../evil", tar::EntryType::Regular, ""),
            ],
            "\"./../evil\" refused: a path with `..`",
        ),
        (
            "absolute",
            vec![("/etc/passwd", tar::EntryType::Regular, "")],
            "\"/etc/passwd\" refused: an absolute path",
        ),
        (
            "abslink",
            vec![
                ("./out", tar::EntryType::Symlink, "/etc"),
                ("./out/cron.d-evil", tar::EntryType::Regular, ""),
            ],
            "\"./out/cron.d-evil\" refused: written through the symbolic link out -> /etc",
        ),
        (
            "device",
            vec![
                ("./tmp/", tar::EntryType::Directory, ""),
                ("./tmp/sda", tar::EntryType::Block, ""),
            ],
            "\"./tmp/sda\" refused: a device node (block 8,0) outside dev/",
        ),
    ];
    for (tag, entries, needle) in cases {
        let mut b = tar::Builder::new(Vec::new());
        for (n, k, l) in entries {
            raw(&mut b, n, k, l, b"x");
        }
        let path = s.root().join(format!("{tag}.tar"));
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let p = path.display().to_string();
        let err = s.fails(&["livenet", "create", &format!("h{tag}"), "--from", &p]);
        assert!(err.contains(needle), "{tag}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(files(s.root()), before, "{tag}: the store changed");
    }
    // a relative link climbing out of the tree is refused at the link
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        "./etc/up",
        tar::EntryType::Symlink,
        "../../../root",
        b"",
    );
    let path = s.root().join("up.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    let err = s.fails(&[
        "livenet",
        "create",
        "hup",
        "--from",
        &path.display().to_string(),
    ]);
    assert!(
        err.contains(
            "\"./etc/up\" refused: a symbolic link -> ../../../root, which leaves the tree"
        ),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    // a tree without a kernel: named, with the fix
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        "./etc/hostname",
        tar::EntryType::Regular,
        "",
        b"x\n",
    );
    let path = s.root().join("nokernel.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    let err = s.fails(&[
        "livenet",
        "create",
        "hnk",
        "--from",
        &path.display().to_string(),
    ]);
    assert!(
        err.contains("the tree has no kernel") && err.contains("--kernel-from IMAGE"),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(files(s.root()), before, "the store changed");
    assert!(s.list_json().as_array().is_none_or(|a| a.is_empty()));
}

fn tar_bytes(entries: &[(&str, &[u8])], whiteouts: &[&str]) -> Vec<u8> {
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
    for w in whiteouts {
        let mut h = tar::Header::new_gnu();
        h.set_path(w).unwrap();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn put_blob(dir: &Path, data: &[u8]) -> (String, usize) {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let d = dir.join("blobs/sha256");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(&hex), data).unwrap();
    (format!("sha256:{hex}"), data.len())
}

#[test]
fn mmdebstrap_tarball_and_oci_layout_become_images_that_boot() {
    let s = Store::new();
    let tarball = s.root().join("bookworm.tar");
    mmdebstrap_tar(&tarball);
    let t = tarball.display().to_string();
    s.ok(&["livenet", "create", "fromtar", "--from", &t]);
    let show: serde_json::Value =
        serde_json::from_str(&s.ok(&["show", "fromtar", "--json"])).unwrap();
    assert_eq!(show["record"]["distro"], "debian", "{show}");
    assert_eq!(show["record"]["release_version"], "bookworm", "{show}");
    assert!(listing(&s, "fromtar").contains("usr/sbin/sshd"));
    s.boot_image("fromtar", "fromtar", std::time::Duration::from_secs(900));

    // OCI layout: layer 1 the mmdebstrap tarball, layer 2 adds a file, deletes one
    // (.wh.) and makes a directory opaque (.wh..wh..opq).
    let oci = s.root().join("oci");
    std::fs::create_dir_all(&oci).unwrap();
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let l1 = std::fs::read(&tarball).unwrap();
    let (d1, n1) = put_blob(&oci, &l1);
    drop(l1);
    let l2 = tar_bytes(
        &[
            ("etc/oci-layer-two", b"second layer\n"),
            ("etc/apt/sources.list.d/two.list", b"\n"),
        ],
        &["etc/.wh.motd", "etc/apt/sources.list.d/.wh..wh..opq"],
    );
    let (d2, n2) = put_blob(&oci, &l2);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (dc, nc) = put_blob(&oci, config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dc, "size": nc},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d1, "size": n1},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d2, "size": n2},
        ]
    })
    .to_string();
    let (dm, nm) = put_blob(&oci, manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dm, "size": nm}]
    });
    std::fs::write(oci.join("index.json"), index.to_string()).unwrap();
    std::fs::remove_file(&tarball).unwrap();
    s.ok(&[
        "livenet",
        "create",
        "fromoci",
        "--from",
        &oci.display().to_string(),
    ]);
    let l = listing(&s, "fromoci");
    assert!(
        l.contains("squashfs-root/etc/oci-layer-two"),
        "layer two applied"
    );
    assert!(
        !l.contains("squashfs-root/etc/motd\n"),
        "the whiteout removed etc/motd"
    );
    assert!(l.contains("squashfs-root/etc/apt/sources.list.d/two.list"));
    assert!(!l.contains(".wh."), "no whiteout file in the image");
    assert!(l.contains("squashfs-root/usr/sbin/sshd"));
    s.boot_image("fromoci", "fromoci", std::time::Duration::from_secs(900));
}
