//! Running things inside a livenet image: Ansible with the chroot connection, one
//! command (`exec`) or a shell, the last two in a private mount namespace.
//!
//! **Ansible** (`ansible NAME PLAYBOOK [-- ARGS]`): the image is mounted if it is not
//! (`livenet::mount_image`, which writes the inventory `<work_dir>/NAME/inventory/host`),
//! `ansible-playbook -i <inventory> PLAYBOOK ARGS` runs through the runner with
//! `usr/sbin/policy-rc.d` (exit 101) in the tree so that no service starts inside
//! (systemd refuses to start units in a chroot anyway), and a resolv.conf from the
//! host if the image has none that resolves (so the playbook can reach package
//! mirrors); both are taken out again before anything is repacked. The whole output
//! goes to `<log_dir>/ansible/NAME-<unix time>.log`. Success: when this command
//! mounted the image, it unmounts it and repacks a new generation; when the image was
//! mounted already (the reference's manual workflow), it stays mounted and
//! `livenet unmount` repacks it. Failure: the published generation is untouched; when
//! this command mounted the image, its changes are discarded and it is unmounted
//! (`keep_on_failure` leaves it mounted for inspection instead); the error names the log.
//!
//! **exec / shell**: the tool's own binary is run (through the runner) with the hidden
//! first argument `__nsrun`: it unshares its mount namespace, makes `/` private, mounts
//! what it needs there, chroots and runs the command. When it exits, the kernel drops
//! the namespace and every mount in it (loop devices are set up with autoclear), so
//! nothing is left mounted on the host, even after a crash or `kill -9`. On an image
//! that is not mounted, the command works on a throwaway overlay (a tmpfs upper layer
//! over the published squashfs): its changes are discarded. On a mounted image it
//! works in the mounted tree: its changes are kept for the next `livenet unmount`.
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::modules::livenet::{self, WorkPaths};
use crate::ctx::Ctx;
use crate::pack::generations;
use crate::store::{self, lock, ImageClass, ImageRecord, Layout, State};
use crate::sys::mountinfo;
use crate::sys::runner::{Cmd, Runner};

/// The hidden first argument of the namespace helper.
pub const NSRUN: &str = "__nsrun";

const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn livenet_record(ctx: &Ctx, name: &str) -> Result<ImageRecord> {
    crate::names::image(name)?;
    store::require_store(&ctx.cfg)?;
    let rec = store::load(&ctx.cfg, name)?;
    if rec.image_class != ImageClass::LivenetImage {
        return Err(Error::invalid(format!(
            "image {name} is a {} image: running inside is available for livenet images",
            rec.image_class.as_str()
        )));
    }
    Ok(rec)
}

fn state_of(ctx: &Ctx, name: &str) -> Result<State> {
    Ok(store::info(&ctx.cfg, name, &mountinfo::read()?).state)
}

// ------------------------------------------------------------------ ansible

/// Options of `ansible`.
#[derive(Debug, Clone, Default)]
pub struct AnsibleOptions {
    /// On failure, leave an image this command mounted mounted (for inspection).
    pub keep_on_failure: bool,
}

/// What `ansible` did.
#[derive(Debug, Clone, Serialize)]
pub struct AnsibleReport {
    pub name: String,
    pub log: PathBuf,
    /// This command mounted the image (and so unmounted it).
    pub mounted_here: bool,
    /// The new generation, when it repacked.
    pub generation: Option<u32>,
    pub seconds: f64,
}

/// A file put into the tree for the time of a run, taken out on drop.
struct Planted {
    path: PathBuf,
    /// What was there before, moved aside (restored on drop).
    saved: Option<PathBuf>,
}

impl Planted {
    fn plant(path: &Path, content: &[u8], mode: u32) -> Result<Planted> {
        let saved = if std::fs::symlink_metadata(path).is_ok() {
            let s = path.with_file_name(format!(
                "{}{}.saved",
                fsutil::TMP_PREFIX,
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            std::fs::rename(path, &s).at(path)?;
            Some(s)
        } else {
            None
        };
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).at(d)?;
        }
        let planted = Planted {
            path: path.to_path_buf(),
            saved,
        };
        std::fs::write(path, content).at(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).at(path)?;
        Ok(planted)
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let res = match &self.saved {
            Some(s) => std::fs::rename(s, &self.path),
            None => std::fs::remove_file(&self.path),
        };
        if let Err(e) = res {
            tracing::error!(
                "could not restore {} after the run: {e} (fix it in the mounted image before unmounting)",
                self.path.display()
            );
        }
    }
}

/// Does `rel` (e.g. `etc/resolv.conf`) resolve to a file inside `root`, following
/// symlinks the way a process chrooted in `root` would?
fn resolves_inside(root: &Path, rel: &Path) -> bool {
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `ansible NAME PLAYBOOK [-- ARGS]`: see the module documentation.
pub fn ansible(
    ctx: &Ctx,
    name: &str,
    playbook: &Path,
    args: &[String],
    opts: &AnsibleOptions,
) -> Result<AnsibleReport> {
    let t = std::time::Instant::now();
    let dry = ctx.runner.dry_run();
    livenet_record(ctx, name)?;
    let playbook = std::fs::canonicalize(playbook).map_err(|e| {
        Error::invalid(format!(
            "playbook {}: cannot read it: {e}",
            playbook.display()
        ))
    })?;
    if !playbook.is_file() {
        return Err(Error::invalid(format!(
            "playbook {} is not a file",
            playbook.display()
        )));
    }
    let mounted_here = match state_of(ctx, name)? {
        State::Created => {
            livenet::mount_image(ctx, name)?;
            true
        }
        State::Mounted => false,
        s => {
            return Err(Error::WrongState {
                name: name.into(),
                state: s.to_string(),
                hint: "only a created or mounted image can be customised".into(),
            })
        }
    };
    let w = WorkPaths::new(&ctx.cfg, name);
    let inventory = w.inventory.join("host");
    let log = ctx
        .cfg
        .log_dir
        .join("ansible")
        .join(format!("{name}-{}.log", unix_now()));
    let cmd = Cmd::new("ansible-playbook")
        .package("ansible")
        .arg("-i")
        .arg(&inventory)
        .arg(&playbook)
        .args(args)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("PYTHONUNBUFFERED", "1");
    if let Err(e) = run_playbook(ctx, name, &w, &cmd, &log) {
        let mut what = format!(
            "ansible-playbook failed on image {name}: {e}; full log: {}",
            log.display()
        );
        if mounted_here && !opts.keep_on_failure {
            match livenet::unmount_image(ctx, name, true) {
                Ok(_) => what.push_str(
                    "; its changes were discarded and the published image is unchanged (--keep-on-failure leaves it mounted to inspect)",
                ),
                Err(u) => what.push_str(&format!("; unmounting it failed too: {u}")),
            }
        } else {
            what.push_str(&format!(
                "; the published image is unchanged; the tree stays mounted at {} (`livenet unmount {name} --discard` drops the changes)",
                w.mnt.display()
            ));
        }
        return Err(Error::Module(what));
    }
    if dry {
        ctx.runner.note(format!("log to {}", log.display()));
    }
    let generation = if !mounted_here {
        None
    } else if dry {
        ctx.runner.note(format!(
            "unmount {name} and repack it as a new generation (`livenet unmount {name}`)"
        ));
        None
    } else {
        livenet::unmount_image(ctx, name, false)?.generation
    };
    Ok(AnsibleReport {
        name: name.to_string(),
        log,
        mounted_here,
        generation,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// The playbook run itself, under the image lock, with policy-rc.d and resolv.conf
/// planted for its duration and the output teed to the log.
fn run_playbook(ctx: &Ctx, name: &str, w: &WorkPaths, cmd: &Cmd, log: &Path) -> Result<()> {
    if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "write {} (exit 101: no service starts inside)",
            w.mnt.join("usr/sbin/policy-rc.d").display()
        ));
        ctx.runner.run(cmd)?;
        ctx.runner.note(format!(
            "remove {}",
            w.mnt.join("usr/sbin/policy-rc.d").display()
        ));
        return Ok(());
    }
    let _l = lock::lock_image(&ctx.cfg, name, "ansible")?;
    if let Some(d) = log.parent() {
        fsutil::ensure_dir(d)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .at(log)?;
    let _ = writeln!(f, "# disklessset ansible {name}: {}", cmd.display());
    let file = Arc::new(Mutex::new(f));
    let sink_file = file.clone();
    let runner: Runner = ctx.runner.tee(Arc::new(move |l: &str| {
        if let Ok(mut f) = sink_file.lock() {
            let _ = writeln!(f, "{l}");
        }
    }));
    let _policy = Planted::plant(
        &w.mnt.join("usr/sbin/policy-rc.d"),
        b"#!/bin/sh\n# disklessset: no service starts while a playbook runs in this image\nexit 101\n",
        0o755,
    )?;
    let _resolv = if resolves_inside(&w.mnt, Path::new("etc/resolv.conf")) {
        None
    } else {
        match std::fs::read("/etc/resolv.conf") {
            Ok(data) => Some(Planted::plant(
                &w.mnt.join("etc/resolv.conf"),
                &data,
                0o644,
            )?),
            Err(_) => None,
        }
    };
    let res = runner.run(cmd).map(|_| ());
    if let Ok(mut f) = file.lock() {
        let _ = writeln!(
            f,
            "# {}",
            match &res {
                Ok(()) => "success".to_string(),
                Err(e) => format!("failed: {e}"),
            }
        );
    }
    res
}

// ------------------------------------------------------------------ exec / shell

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

/// What `exec` / `shell` ran.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOutcome {
    /// The command's exit code (128 when it was killed by a signal).
    pub code: i32,
    /// Ran on a throwaway overlay (changes discarded).
    pub throwaway: bool,
}

/// `exec NAME -- CMD...` (`interactive`: the terminal is the command's; always true for
/// `shell`). See the module documentation for the semantics.
pub fn exec(ctx: &Ctx, name: &str, cmd: &[String]) -> Result<ExecOutcome> {
    if cmd.is_empty() {
        return Err(Error::invalid(
            "exec: no command given: write `disklessset exec NAME -- CMD [ARGS...]`",
        ));
    }
    run_inside(ctx, name, cmd.iter().map(OsString::from).collect())
}

/// `shell NAME`: an interactive login shell inside the image (bash when it has one).
pub fn shell(ctx: &Ctx, name: &str) -> Result<ExecOutcome> {
    let rec = livenet_record(ctx, name)?;
    let w = WorkPaths::new(&ctx.cfg, &rec.name);
    // bash if the mounted tree has it; the helper falls back to sh otherwise.
    let bash = w.mnt.join("bin/bash").exists() || w.mnt.join("usr/bin/bash").exists();
    let shell = if bash || state_of(ctx, name)? != State::Mounted {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    run_inside(ctx, name, vec![shell.into(), "-l".into()])
}

fn run_inside(ctx: &Ctx, name: &str, cmd: Vec<OsString>) -> Result<ExecOutcome> {
    let rec = livenet_record(ctx, name)?;
    let w = WorkPaths::new(&ctx.cfg, name);
    let exe = std::env::current_exe()
        .map_err(|e| Error::invalid(format!("cannot find this program's own binary: {e}")))?;
    let state = state_of(ctx, name)?;
    let (spec, scratch, _lock) = match state {
        State::Mounted => (
            NsSpec {
                tree: Some(w.mnt.clone()),
                squashfs: None,
                compat: false,
                scratch: None,
                cmd,
            },
            None,
            None,
        ),
        State::Created => {
            let lock = if ctx.runner.dry_run() {
                None
            } else {
                Some(lock::lock_image(&ctx.cfg, name, "exec")?)
            };
            let img = generations::current_path(&ctx.cfg, name);
            let scratch = ctx
                .cfg
                .work_dir
                .join(format!(".exec-{name}-{}", std::process::id()));
            if !ctx.runner.dry_run() {
                std::fs::create_dir_all(&scratch).at(&scratch)?;
            }
            (
                NsSpec {
                    tree: None,
                    squashfs: Some(img),
                    compat: rec.layout == Some(Layout::Compat),
                    scratch: Some(scratch.clone()),
                    cmd,
                },
                Some(scratch),
                lock,
            )
        }
        s => {
            return Err(Error::WrongState {
                name: name.into(),
                state: s.to_string(),
                hint: "only a created or mounted image can run commands".into(),
            })
        }
    };
    let c = Cmd::new(&exe).arg(NSRUN).args(spec.to_args()).interactive();
    if state == State::Created {
        tracing::info!("{name} is not mounted: the command runs on a throwaway overlay, its changes are discarded");
    }
    let res = ctx.runner.run_unchecked(&c);
    if let Some(s) = scratch {
        // Empty on the host: everything was mounted in the helper's namespace.
        if let Err(e) = std::fs::remove_dir(&s) {
            tracing::warn!("could not remove {}: {e}", s.display());
        }
    }
    let out = res?;
    Ok(ExecOutcome {
        code: out.code.unwrap_or(128),
        throwaway: state == State::Created,
    })
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
                let t = merged.join(d);
                std::fs::create_dir_all(&t).at(&t)?;
                r.run(
                    &Cmd::new("mount")
                        .package("mount")
                        .arg("--rbind")
                        .arg(format!("/{d}"))
                        .arg(&t),
                )?;
            }
            let run = merged.join("run");
            std::fs::create_dir_all(&run).at(&run)?;
            crate::sys::mount::mount(&r, Some("tmpfs"), "tmpfs", &run, &["mode=0755"])?;
            if !resolves_inside(&merged, Path::new("etc/resolv.conf")) {
                if let Ok(data) = std::fs::read("/etc/resolv.conf") {
                    let p = merged.join("etc/resolv.conf");
                    let _ = std::fs::remove_file(&p);
                    let _ = std::fs::write(&p, data);
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

    #[test]
    fn planted_files_are_taken_out_or_restored() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("usr/sbin/policy-rc.d");
        {
            let _g = Planted::plant(&p, b"exit 101\n", 0o755).unwrap();
            assert!(p.exists());
        }
        assert!(!p.exists());
        std::fs::write(&p, b"mine").unwrap();
        {
            let _g = Planted::plant(&p, b"exit 101\n", 0o755).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"exit 101\n");
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"mine");
    }
}
