//! Mounts: made with mount(8) through the runner (logged, dry-run aware, loop devices
//! set up with autoclear), taken down with umount2(2) deepest first, and guards that
//! unmount on drop and report a failed unmount.
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{umount2, MntFlags};

use crate::error::{Error, Result};
use crate::sys::mountinfo;
use crate::sys::runner::{Cmd, Runner};

/// `mount [-t TYPE] [-o OPTS] SOURCE TARGET`.
pub fn mount(
    r: &Runner,
    fstype: Option<&str>,
    source: &str,
    target: &Path,
    options: &[&str],
) -> Result<()> {
    let mut c = Cmd::new("mount").package("mount");
    if let Some(t) = fstype {
        c = c.arg("-t").arg(t);
    }
    if !options.is_empty() {
        c = c.arg("-o").arg(options.join(","));
    }
    r.run(&c.arg(source).arg(target))?;
    Ok(())
}

/// Bind mount (recursive when asked), made a slave so nothing propagates back to the host.
pub fn bind(r: &Runner, source: &Path, target: &Path, recursive: bool) -> Result<()> {
    let flag = if recursive { "--rbind" } else { "--bind" };
    r.run(
        &Cmd::new("mount")
            .package("mount")
            .arg(flag)
            .arg(source)
            .arg(target),
    )?;
    let slave = if recursive {
        "--make-rslave"
    } else {
        "--make-slave"
    };
    r.run(&Cmd::new("mount").package("mount").arg(slave).arg(target))?;
    Ok(())
}

/// Unmounts one mount point; EBUSY is retried briefly, then reported.
pub fn umount(r: &Runner, target: &Path) -> Result<()> {
    if r.dry_run() {
        r.note(format!("umount {}", target.display()));
        return Ok(());
    }
    tracing::info!(target: "run", "umount {}", target.display());
    let mut last = None;
    for attempt in 0..5 {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {
                // Not a mount point (any more): nothing to do.
                return Ok(());
            }
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100 * (attempt + 1)));
            }
        }
    }
    Err(Error::sys(
        format!(
            "cannot unmount {} (busy? see `fuser -vm {}`)",
            target.display(),
            target.display()
        ),
        last.unwrap_or(nix::errno::Errno::EBUSY),
    ))
}

/// Unmounts everything at or below `path`, deepest first. Fails naming the first
/// mount that stays.
pub fn umount_below(r: &Runner, path: &Path) -> Result<Vec<PathBuf>> {
    let mut done = Vec::new();
    // Several passes: a recursive bind can reveal mounts hidden underneath.
    for _ in 0..4 {
        let all = mountinfo::read()?;
        let below = mountinfo::below(&all, path);
        if below.is_empty() {
            return Ok(done);
        }
        if r.dry_run() {
            for m in below {
                umount(r, &m.mount_point)?;
                done.push(m.mount_point.clone());
            }
            return Ok(done);
        }
        for m in below {
            umount(r, &m.mount_point)?;
            done.push(m.mount_point.clone());
        }
    }
    match mountinfo::anything_below(path)? {
        None => Ok(done),
        Some(m) => Err(Error::StillMounted {
            path: path.to_path_buf(),
            mount: m,
        }),
    }
}

/// Unmounts its target (and anything below) when dropped, unless kept.
#[derive(Debug)]
#[must_use = "the mount is taken down when this guard is dropped"]
pub struct MountGuard {
    target: PathBuf,
    runner: Runner,
    armed: bool,
}

impl MountGuard {
    pub fn new(runner: &Runner, target: &Path) -> Self {
        MountGuard {
            target: target.to_path_buf(),
            runner: runner.clone(),
            armed: true,
        }
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now and reports the outcome.
    pub fn unmount(mut self) -> Result<()> {
        self.armed = false;
        umount_below(&self.runner, &self.target).map(|_| ())
    }

    /// Leaves the mount in place (a mount meant to outlive the operation).
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = umount_below(&self.runner, &self.target) {
                tracing::error!("failed to unmount {}: {e}", self.target.display());
            }
        }
    }
}

/// Mounts stacked on each other (a loop file inside another mount): taken down in
/// reverse order, on drop or explicitly.
#[derive(Debug, Default)]
#[must_use = "the mounts are taken down when this stack is dropped"]
pub struct MountStack(Vec<MountGuard>);

impl MountStack {
    pub fn new() -> Self {
        MountStack(Vec::new())
    }

    pub fn push(&mut self, g: MountGuard) {
        self.0.push(g);
    }

    /// Unmounts everything, innermost first, reporting the first failure.
    pub fn unmount(mut self) -> Result<()> {
        let mut first_err = None;
        while let Some(g) = self.0.pop() {
            if let Err(e) = g.unmount() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Leaves every mount in place.
    pub fn keep(mut self) {
        while let Some(g) = self.0.pop() {
            g.keep();
        }
    }
}

impl Drop for MountStack {
    fn drop(&mut self) {
        while let Some(g) = self.0.pop() {
            drop(g);
        }
    }
}
