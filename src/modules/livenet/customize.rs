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

use super::{mount, WorkPaths};
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::pack::generations;
use crate::store::{self, lock, ImageClass, ImageRecord, Layout, State};
use crate::sys::mountinfo;
use crate::sys::ns::{resolves_inside, NsSpec, NSRUN};
use crate::sys::runner::{Cmd, Runner};

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
            mount::mount_image(ctx, name)?;
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
            match mount::unmount_image(ctx, name, true) {
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
        mount::unmount_image(ctx, name, false)?.generation
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
    // both planted files resolved inside the tree (`usr/sbin` or `etc` may be links)
    let in_tree = |rel: &str| fsutil::path_in_root(&w.mnt, rel).at(w.mnt.join(rel));
    let _policy = Planted::plant(
        &in_tree("usr/sbin/policy-rc.d")?,
        b"#!/bin/sh\n# disklessset: no service starts while a playbook runs in this image\nexit 101\n",
        0o755,
    )?;
    let _resolv = if resolves_inside(&w.mnt, Path::new("etc/resolv.conf")) {
        None
    } else {
        match std::fs::read("/etc/resolv.conf") {
            Ok(data) => Some(Planted::plant(&in_tree("etc/resolv.conf")?, &data, 0o644)?),
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

#[cfg(test)]
mod tests {
    use super::*;

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
