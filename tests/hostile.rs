//! Host-side writes stay inside the image (issue 11): an image whose `etc/resolv.conf`
//! or `usr/sbin` is an absolute symlink to a host directory never makes `ansible` or
//! `exec` write on the host.
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Store;

/// Names, contents and the directory's own mtime (an entry created then removed
/// changes it).
fn fingerprint(dir: &Path) -> String {
    let m = std::fs::metadata(dir).unwrap();
    let mut out = format!("dir mtime {}.{}\n", m.mtime(), m.mtime_nsec());
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let data = std::fs::read(e.path()).unwrap_or_default();
        out.push_str(&format!("{:?} {:?}\n", e.file_name(), data));
    }
    out
}

#[test]
fn ansible_and_exec_never_write_through_hostile_symlinks() {
    let s = Store::new();
    s.ok(&["livenet", "create", "hx", "--type", "core"]);
    let decoy = tempfile::Builder::new()
        .prefix("dls-decoy-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(decoy.path().join("resolv.conf"), "nameserver 192.0.2.99\n").unwrap();
    std::fs::write(decoy.path().join("keep"), "host file\n").unwrap();
    s.ok(&["livenet", "mount", "hx"]);
    let mnt = s.root().join("workdir/hx/mnt");
    // etc/resolv.conf -> DECOY/resolv.conf, usr/sbin -> DECOY
    let _ = std::fs::remove_file(mnt.join("etc/resolv.conf"));
    std::os::unix::fs::symlink(
        decoy.path().join("resolv.conf"),
        mnt.join("etc/resolv.conf"),
    )
    .unwrap();
    // (a directory rename crosses the overlay's layers: remove it instead)
    std::fs::remove_dir_all(mnt.join("usr/sbin")).unwrap();
    std::os::unix::fs::symlink(decoy.path(), mnt.join("usr/sbin")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = fingerprint(decoy.path());

    let play = s.root().join("p.yml");
    std::fs::write(
        &play,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - raw: cat /etc/resolv.conf\n",
    )
    .unwrap();
    // it may refuse (usr/sbin leads nowhere inside the tree), never write on the host
    let _ = s.run(&["ansible", "hx", play.to_str().unwrap()]);
    assert_eq!(
        fingerprint(decoy.path()),
        before,
        "ansible wrote into the decoy"
    );
    let _ = s.run(&["exec", "hx", "--", "/bin/true"]);
    assert_eq!(
        fingerprint(decoy.path()),
        before,
        "exec wrote into the decoy"
    );

    // the same hostile tree packed, not mounted: exec on its throwaway overlay
    s.ok(&["livenet", "unmount", "hx"]);
    let _ = s.run(&["exec", "hx", "--", "/bin/true"]);
    assert_eq!(
        fingerprint(decoy.path()),
        before,
        "exec (overlay) wrote into the decoy"
    );
}
