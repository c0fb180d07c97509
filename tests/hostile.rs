//! Host-side writes stay inside the image (issue 11): an image whose `etc`,
//! `etc/resolv.conf`, `usr/sbin` or `root/.ssh` is an absolute symlink to a host
//! directory never makes the creation's setup, `ansible`, `exec` or `shell` write on
//! the host (each may refuse; none may touch the decoy).
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Store;

/// Names, contents and each directory's own mtime (an entry created then removed
/// changes it), recursively; links are listed with their target, never followed.
fn fingerprint(dir: &Path) -> String {
    let m = std::fs::symlink_metadata(dir).unwrap();
    let mut out = format!("{} mtime {}.{}\n", dir.display(), m.mtime(), m.mtime_nsec());
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.push_str(&fingerprint(&e.path()));
        } else if t.is_symlink() {
            out.push_str(&format!(
                "{:?} -> {:?}\n",
                e.path(),
                std::fs::read_link(e.path())
            ));
        } else {
            let data = std::fs::read(e.path()).unwrap_or_default();
            out.push_str(&format!("{:?} {:?}\n", e.path(), data));
        }
    }
    out
}

/// Replaces `path` inside a mounted image (an overlay: a directory is removed, not
/// renamed across layers) with a symlink to `target`.
fn hostile_link(path: &Path, target: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, path).unwrap();
}

fn decoy_dir(what: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("dls-decoy-{what}-"))
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(d.path().join("keep"), "host file\n").unwrap();
    d
}

#[test]
fn ansible_and_exec_never_write_through_hostile_symlinks() {
    let s = Store::new();
    s.core_image("hx", &[]);
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

    // shell (stdin is not a terminal: the login shell reads EOF and ends)
    let _ = s.run(&["shell", "hx"]);
    assert_eq!(
        fingerprint(decoy.path()),
        before,
        "shell wrote into the decoy"
    );

    // the same hostile tree packed, not mounted: exec and shell on its throwaway overlay
    s.ok(&["livenet", "unmount", "hx"]);
    let _ = s.run(&["exec", "hx", "--", "/bin/true"]);
    let _ = s.run(&["shell", "hx"]);
    assert_eq!(
        fingerprint(decoy.path()),
        before,
        "exec or shell (overlay) wrote into the decoy"
    );

    // etc and root/.ssh as links to host directories that look like what they replace
    // (a copy of the image's etc, an authorized_keys): ansible, exec and shell on it.
    let etc = decoy_dir("etc");
    let ssh = decoy_dir("ssh");
    std::fs::write(ssh.path().join("authorized_keys"), "# host keys\n").unwrap();
    s.ok(&["livenet", "mount", "hx"]);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(mnt.join("etc/."))
        .arg(etc.path())
        .status()
        .unwrap();
    assert!(st.success(), "cp -a etc");
    hostile_link(&mnt.join("etc"), etc.path());
    hostile_link(&mnt.join("root/.ssh"), ssh.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (etc_before, ssh_before) = (fingerprint(etc.path()), fingerprint(ssh.path()));
    let _ = s.run(&["ansible", "hx", play.to_str().unwrap()]);
    let _ = s.run(&["exec", "hx", "--", "/bin/true"]);
    let _ = s.run(&["shell", "hx"]);
    assert_eq!(
        fingerprint(etc.path()),
        etc_before,
        "a write into the etc decoy"
    );
    assert_eq!(
        fingerprint(ssh.path()),
        ssh_before,
        "a write into the ssh decoy"
    );
    let _ = s.run(&["livenet", "unmount", "hx"]);
    let _ = s.run(&["--yes", "clear", "hx"]);
    assert_eq!(
        fingerprint(etc.path()),
        etc_before,
        "unmount wrote into etc's decoy"
    );

    // The creation's setup (shadow, fstab, hosts, machine-id, os-release, sshd_config,
    // authorized_keys) on imported trees with the same links.
    let tree = s.root().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let st = std::process::Command::new("tar")
        .args(["-x", "--numeric-owner", "-f"])
        .arg(common::core_tarball())
        .arg("-C")
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success(), "tar -x of the core tree");
    hostile_link(&tree.join("root/.ssh"), ssh.path());
    let key = s.root().join("id.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t@h\n",
    )
    .unwrap();
    let pw = s.root().join("pw");
    std::fs::write(&pw, "Hostile-1\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let tree_s = tree.to_str().unwrap();
    let pw_s = pw.to_str().unwrap();
    let create = |name: &str, extra: &[&str]| {
        let mut a = vec![
            "livenet",
            "create",
            name,
            "--from",
            tree_s,
            "--password-file",
            pw_s,
        ];
        a.extend_from_slice(extra);
        s.run(&a)
    };
    let o = create("hy", &["--ssh-key", key.to_str().unwrap()]);
    assert_eq!(
        fingerprint(ssh.path()),
        ssh_before,
        "setup wrote into the ssh decoy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // created; root's keys are kept by the store for the node's bundle (issue 12), so
    // nothing went through the link
    assert!(
        o.status.success(),
        "create hy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(s.root().join("secrets/images/hy/authorized_keys").is_file());
    // etc itself a link to the copy of an image's etc on the host: refused (nothing of
    // the tree's own etc), never written
    hostile_link(&tree.join("etc"), etc.path());
    let o = create("hz", &[]);
    assert_eq!(
        fingerprint(etc.path()),
        etc_before,
        "setup wrote into the etc decoy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !o.status.success(),
        "an image whose etc leads outside it was created"
    );
    eprintln!(
        "create hz (etc -> {}): {}",
        etc.path().display(),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    common::assert_one_line_error(
        &String::from_utf8_lossy(&o.stderr),
        "etc is a symbolic link to",
    );
    // a failed build stays for inspection (like any failed build) and clear takes it
    assert_eq!(s.state_of("hz").as_deref(), Some("corrupted"));
    s.ok(&["--yes", "clear", "hz"]);
    assert_eq!(
        fingerprint(etc.path()),
        etc_before,
        "clear wrote into etc's decoy"
    );
    assert!(s.mounts().is_empty(), "left mounted: {:?}", s.mounts());
}
