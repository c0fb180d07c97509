//! Livenet acceptance: real Debian images from the mirror, real mksquashfs, real
//! initramfs (own and dracut), booted in QEMU through iPXE from the files the tool wrote.
//! Both layouts, both initramfs flavours; password, mount/repack/rollback, resize,
//! and the failures (missing package, unreachable mirror, full disk).
mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_one_line_error, unsquashfs_list, Store};

const PASSWORD: &str = "s3cret-pw";

fn write_inputs(s: &Store) -> (String, String) {
    let pw = s.root().join("pw.txt");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let key = s.root().join("key.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOkq8cUjZpt3s8rVfLh3bb0xG2ZQbGEsdmg0fH7bXiwX test@disklessset\n",
    )
    .unwrap();
    (pw.display().to_string(), key.display().to_string())
}

fn crypt_check(hash: &str, password: &str) -> bool {
    // The system's libcrypt, through Debian's python3 (crypt module).
    let out = Command::new("/usr/bin/python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2])",
            password,
            hash,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

fn record(s: &Store, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["show", name, "--json"])).unwrap();
    v["record"].clone()
}

#[test]
fn native_image_boots_with_both_initramfs_flavours_and_customises() {
    let s = Store::new();
    let (pw, key) = write_inputs(&s);
    s.ok(&[
        "livenet",
        "create",
        "nat1",
        "--type",
        "core",
        "--password-file",
        &pw,
        "--ssh-key",
        &key,
    ]);
    let rec = record(&s, "nat1");
    assert_eq!(rec["layout"], "native");
    assert_eq!(rec["initramfs_flavour"], "own");
    assert!(rec["password"].is_null(), "no hash in the record: {rec}");
    let hash = s.root_hash("nat1");
    assert!(hash.starts_with("$6$"), "{hash}");
    assert_eq!(
        hash.split('$').nth(2).unwrap().len(),
        16,
        "16-char salt: {hash}"
    );
    assert!(crypt_check(&hash, PASSWORD), "libcrypt rejects {hash}");
    assert!(!crypt_check(&hash, "wrong"));
    // the clear password is nowhere in the store
    let grep = Command::new("grep")
        .args(["-r", "-l", "-a", PASSWORD])
        .arg(s.root().join("www"))
        .arg(s.root().join("state"))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "clear password found in {:?}",
        String::from_utf8_lossy(&grep.stdout)
    );

    s.boot_image("nat1", "native-own", Duration::from_secs(420));

    s.ok(&["initramfs", "nat1", "--flavour", "dracut"]);
    assert_eq!(record(&s, "nat1")["initramfs_flavour"], "dracut");
    let kernels = s.ok(&["kernels"]);
    assert!(
        kernels.contains("initramfs present (dracut, own)"),
        "{kernels}"
    );
    s.boot_image("nat1", "native-dracut", Duration::from_secs(420));

    // mount -> write -> unmount -> the new generation has it; rollback restores.
    s.ok(&["livenet", "mount", "nat1"]);
    assert_eq!(s.state_of("nat1").as_deref(), Some("mounted"));
    let mnt = s.root().join("workdir/nat1/mnt");
    assert!(mnt.join("proc/self").exists(), "/proc is bound");
    let inv = std::fs::read_to_string(s.root().join("workdir/nat1/inventory/host")).unwrap();
    assert!(
        inv.starts_with(&format!("{} ansible_connection=", mnt.display())),
        "{inv}"
    );
    std::fs::write(mnt.join("etc/customised-by-test"), "yes\n").unwrap();
    let img = s.images().join("nat1/squashfs.img");
    let gen1 = std::fs::read(&img).unwrap();
    s.ok(&["livenet", "unmount", "nat1"]);
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    assert_eq!(record(&s, "nat1")["generation"], 2);
    assert!(unsquashfs_list(&img).contains("etc/customised-by-test"));
    s.ok(&["rollback", "nat1"]);
    assert_eq!(record(&s, "nat1")["generation"], 1);
    assert_eq!(
        std::fs::read(&img).unwrap(),
        gen1,
        "rollback restores generation 1 byte for byte"
    );
    // an unmount that fails (something busy inside) repacks nothing
    s.ok(&["livenet", "mount", "nat1"]);
    std::fs::write(mnt.join("etc/second-change"), "x\n").unwrap();
    let mut busy = Command::new("sleep")
        .arg("600")
        .current_dir(mnt.join("run"))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let e = s.fails(&["livenet", "unmount", "nat1"]);
    assert!(e.contains("run"), "{e}");
    assert_eq!(record(&s, "nat1")["generation"], 1, "no new generation");
    assert_eq!(
        std::fs::read(&img).unwrap(),
        gen1,
        "published image untouched"
    );
    busy.kill().unwrap();
    busy.wait().unwrap();
    s.ok(&["livenet", "unmount", "nat1", "--discard"]);
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    assert_eq!(record(&s, "nat1")["generation"], 1);

    // kernel set refuses a kernel without an initramfs
    let kdir = s.root().join("www/diskless/kernels");
    let kver = record(&s, "nat1")["kernel"].as_str().unwrap().to_string();
    std::fs::copy(kdir.join(&kver), kdir.join("vmlinuz-9.9.9-test")).unwrap();
    let e = s.fails(&["kernel", "set", "nat1", "9.9.9-test"]);
    assert_one_line_error(&e, "no initramfs");
    assert!(s
        .ok(&["kernels"])
        .contains("vmlinuz-9.9.9-test - missing initramfs-kernel-9.9.9-test"));

    // a clone boots as itself: its own boot.ipxe, its name on the kernel command line
    s.ok(&["clone", "nat1", "nat2"]);
    let bi = std::fs::read_to_string(s.images().join("nat2/boot.ipxe")).unwrap();
    assert!(
        bi.contains("/nat2/squashfs.img") && bi.contains("disklessset.image=nat2"),
        "{bi}"
    );
    assert!(!bi.contains("nat1"), "{bi}");
    s.ok(&["remove", "nat2", "--yes"]);

    // native images have no size to choose
    let e = s.fails(&["livenet", "resize", "nat1", "1G"]);
    assert_one_line_error(&e, "native layout");
}

#[test]
fn compat_image_boots_with_both_flavours_and_resizes() {
    let s = Store::new();
    let (pw, _key) = write_inputs(&s);
    s.ok(&[
        "livenet",
        "create",
        "cmp1",
        "--type",
        "core",
        "--layout",
        "compat",
        "--size",
        "auto",
        "--password-file",
        &pw,
        "--initramfs",
        "dracut",
    ]);
    let rec = record(&s, "cmp1");
    assert_eq!(rec["layout"], "compat");
    let img = s.images().join("cmp1/squashfs.img");
    assert!(unsquashfs_list(&img).contains("LiveOS/rootfs.img"));
    s.boot_image("cmp1", "compat-dracut", Duration::from_secs(420));
    s.ok(&["initramfs", "cmp1", "--flavour", "own"]);
    s.boot_image("cmp1", "compat-own", Duration::from_secs(420));

    // Resize: below the content is refused with the minimum named; growing works.
    let e = s.fails(&["livenet", "resize", "cmp1", "100M"]);
    assert_one_line_error(&e, "needs at least");
    let size_before = record(&s, "cmp1")["livenet_size"].as_u64().unwrap();
    let out = s.ok(&["livenet", "resize", "cmp1", "2G", "--json"]);
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["new_mib"], 2048);
    assert_eq!(record(&s, "cmp1")["livenet_size"], 2048);
    assert_ne!(size_before, 2048);
    // the filesystem inside really has the space: dumpe2fs on the extracted rootfs.img
    let x = s.root().join("x");
    let st = Command::new("unsquashfs")
        .arg("-d")
        .arg(&x)
        .arg(&img)
        .arg("LiveOS/rootfs.img")
        .output()
        .unwrap();
    assert!(st.status.success());
    let rootfs = x.join("LiveOS/rootfs.img");
    assert_eq!(std::fs::metadata(&rootfs).unwrap().len(), 2048 << 20);
    let d = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&rootfs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&d.stdout);
    let field = |k: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let free_mib = (field("Free blocks") * field("Block size")) >> 20;
    let content_mib = rep["content_mib"].as_u64().unwrap();
    assert!(
        free_mib + content_mib + 200 >= 2048,
        "free {free_mib} MiB, content {content_mib}"
    );
    assert!(free_mib >= 2048 - content_mib - 200, "free {free_mib} MiB");
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

#[test]
fn build_failures_are_clear_and_clearable() {
    let s = Store::new();
    // a package that does not exist
    let e = s.fails(&[
        "livenet",
        "create",
        "bad1",
        "--packages",
        "no-such-package-xyz",
    ]);
    assert_one_line_error(&e, "no-such-package-xyz");
    assert_eq!(s.state_of("bad1").as_deref(), Some("corrupted"));
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    s.ok(&["clear", "bad1", "--yes"]);

    // an unreachable mirror
    let e = s.fails(&[
        "livenet",
        "create",
        "bad2",
        "--mirror",
        "http://127.0.0.1:9/debian",
    ]);
    assert_one_line_error(&e, "http://127.0.0.1:9/debian");
    assert_eq!(s.state_of("bad2").as_deref(), Some("corrupted"));
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    s.ok(&["clear", "bad2", "--yes"]);

    // a full disk: the images dir on a 64 MiB tmpfs (the squashfs needs ~150 MB)
    std::fs::create_dir_all(s.images()).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(s.images())
        .status()
        .unwrap();
    assert!(st.success());
    let e = s.fails(&["livenet", "create", "bad3"]);
    assert_one_line_error(&e, "mksquashfs");
    assert_eq!(s.state_of("bad3").as_deref(), Some("corrupted"));
    let others: Vec<String> = s
        .mounts()
        .into_iter()
        .filter(|m| !m.ends_with("images"))
        .collect();
    assert!(others.is_empty(), "{others:?}");
    s.ok(&["clear", "bad3", "--yes"]);
    assert!(!s.images().join("bad3").exists());
    // nothing else was lost: the other inputs are still there
    assert_eq!(s.list_json().as_array().unwrap().len(), 0);
}
