//! The private-namespace helper of `exec` and `shell`: the tool's own binary run with the
//! hidden first argument `__nsrun` unshares its mount namespace, makes `/` private,
//! mounts what it needs there, chroots and runs the command. When it exits the kernel
//! drops the namespace with every mount in it, so nothing is left mounted on the host,
//! even after a crash or `kill -9`.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::sys::runner::{Cmd, Runner};

/// The hidden first argument of the namespace helper.
pub const NSRUN: &str = "__nsrun";

const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Does `rel` (e.g. `etc/resolv.conf`) resolve to a file inside `root`, following
/// symlinks the way a process chrooted in `root` would?
pub fn resolves_inside(root: &Path, rel: &Path) -> bool {
    let mut p = root.join(rel);
    for _ in 0..16 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let Ok(t) = std::fs::read_link(&p) else {
                    return false;
                };
                p = if t.is_absolute() {
                    root.join(t.strip_prefix("/").unwrap_or(&t))
                } else {
                    p.parent().map(|d| d.join(&t)).unwrap_or(t)
                };
            }
            Ok(m) => return m.is_file(),
            Err(_) => return false,
        }
    }
    false
}

/// What the namespace helper is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsSpec {
    /// Chroot into this tree (a mounted image).
    pub tree: Option<PathBuf>,
    /// Or mount this squashfs (read-only) under a tmpfs overlay.
    pub squashfs: Option<PathBuf>,
    /// The squashfs holds `LiveOS/rootfs.img` (compat layout).
    pub compat: bool,
    /// An empty directory the helper mounts its tmpfs on (squashfs case).
    pub scratch: Option<PathBuf>,
    pub cmd: Vec<OsString>,
}

impl NsSpec {
    /// The helper's arguments (after `__nsrun`).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        if let Some(t) = &self.tree {
            v.push("--tree".into());
            v.push(t.into());
        }
        if let Some(s) = &self.squashfs {
            v.push("--squashfs".into());
            v.push(s.into());
        }
        if self.compat {
            v.push("--compat".into());
        }
        if let Some(s) = &self.scratch {
            v.push("--scratch".into());
            v.push(s.into());
        }
        v.push("--".into());
        v.extend(self.cmd.iter().cloned());
        v
    }

    pub fn from_args(args: &[OsString]) -> Result<NsSpec> {
        let mut s = NsSpec {
            tree: None,
            squashfs: None,
            compat: false,
            scratch: None,
            cmd: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .map(PathBuf::from)
                    .ok_or_else(|| Error::invalid(format!("{NSRUN}: {a:?} needs a value")))
            };
            match a.to_str() {
                Some("--tree") => s.tree = Some(val()?),
                Some("--squashfs") => s.squashfs = Some(val()?),
                Some("--scratch") => s.scratch = Some(val()?),
                Some("--compat") => s.compat = true,
                Some("--") => {
                    s.cmd = it.cloned().collect();
                    break;
                }
                _ => return Err(Error::invalid(format!("{NSRUN}: unexpected {a:?}"))),
            }
        }
        if s.cmd.is_empty() || (s.tree.is_none() == s.squashfs.is_none()) {
            return Err(Error::invalid(format!(
                "{NSRUN}: give --tree or --squashfs, and a command after --"
            )));
        }
        Ok(s)
    }
}

/// The helper's entry point: when this process was started as `BIN __nsrun ...`, does
/// the work and returns the exit code; otherwise None. Front-ends call it first thing.
pub fn maybe_nsrun() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(NSRUN)) {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let code = match NsSpec::from_args(&rest).and_then(|s| nsrun(&s)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("disklessset: error: {e}");
            1
        }
    };
    Some(code)
}

/// In a private mount namespace: mount, chroot, run. Everything mounted here vanishes
/// with the namespace when this process exits.
pub fn nsrun(spec: &NsSpec) -> Result<i32> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| Error::sys("unshare(CLONE_NEWNS)", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::sys("making / private in the new mount namespace", e))?;
    let r = Runner::new(false);
    let root = match (&spec.tree, &spec.squashfs, &spec.scratch) {
        (Some(t), _, _) => t.clone(),
        (None, Some(img), Some(scratch)) => {
            crate::sys::mount::mount(&r, Some("tmpfs"), "tmpfs", scratch, &["mode=0755"])?;
            let (ro, ro_ext4, upper, work, merged) = (
                scratch.join("ro"),
                scratch.join("ro-ext4"),
                scratch.join("rw/upper"),
                scratch.join("rw/work"),
                scratch.join("merged"),
            );
            for d in [&ro, &ro_ext4, &upper, &work, &merged] {
                std::fs::create_dir_all(d).at(d)?;
            }
            crate::sys::mount::mount(
                &r,
                Some("squashfs"),
                &img.to_string_lossy(),
                &ro,
                &["loop", "ro"],
            )?;
            let lower = if spec.compat {
                crate::sys::mount::mount(
                    &r,
                    Some("ext4"),
                    &ro.join("LiveOS/rootfs.img").to_string_lossy(),
                    &ro_ext4,
                    &["loop", "ro", "noload"],
                )?;
                ro_ext4
            } else {
                ro
            };
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            crate::sys::mount::mount(&r, Some("overlay"), "overlay", &merged, &[&opts])?;
            for d in ["proc", "sys", "dev"] {
                // resolved inside the tree: `proc -> /somewhere` never mounts on the host
                let t = crate::fsutil::dir_in_root(&merged, d).at(merged.join(d))?;
                r.run(
                    &Cmd::new("mount")
                        .package("mount")
                        .arg("--rbind")
                        .arg(format!("/{d}"))
                        .arg(&t),
                )?;
            }
            let run = crate::fsutil::dir_in_root(&merged, "run").at(merged.join("run"))?;
            crate::sys::mount::mount(&r, Some("tmpfs"), "tmpfs", &run, &["mode=0755"])?;
            if !resolves_inside(&merged, Path::new("etc/resolv.conf")) {
                if let Ok(data) = std::fs::read("/etc/resolv.conf") {
                    // inside the tree whatever `etc` links to
                    let _ = crate::fsutil::write_in_root(&merged, "etc/resolv.conf", &data, 0o644);
                }
            }
            merged
        }
        _ => return Err(Error::invalid(format!("{NSRUN}: nothing to run in"))),
    };
    nix::unistd::chroot(&root).map_err(|e| Error::sys(format!("chroot {}", root.display()), e))?;
    std::env::set_current_dir("/").at("/")?;
    let mut cmd = spec.cmd.clone();
    // A login shell that the image lacks: fall back to sh.
    if cmd.first().map(|c| c == "/bin/bash").unwrap_or(false) && !Path::new("/bin/bash").exists() {
        cmd[0] = "/bin/sh".into();
    }
    let c = Cmd::new(&cmd[0])
        .args(&cmd[1..])
        .env("PATH", CHROOT_PATH)
        .env("HOME", "/root")
        .interactive();
    let out = r.run_unchecked(&c)?;
    Ok(out.code.unwrap_or(128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsspec_round_trips() {
        let s = NsSpec {
            tree: None,
            squashfs: Some("/a b/squashfs.img".into()),
            compat: true,
            scratch: Some("/w/.exec".into()),
            cmd: vec!["cat".into(), "--".into(), "/etc/os-release".into()],
        };
        assert_eq!(NsSpec::from_args(&s.to_args()).unwrap(), s);
        assert!(NsSpec::from_args(&["--".into()]).is_err());
        assert!(NsSpec::from_args(&["--tree".into()]).is_err());
    }

    #[test]
    fn resolv_conf_resolution_stays_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        assert!(!resolves_inside(root, Path::new("etc/resolv.conf")));
        std::fs::create_dir_all(root.join("run/systemd/resolve")).unwrap();
        std::fs::write(root.join("run/systemd/resolve/stub-resolv.conf"), "x").unwrap();
        assert!(resolves_inside(root, Path::new("etc/resolv.conf")));
    }
}
