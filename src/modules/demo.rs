//! The demo module: shows how a module works and exercises crash recovery for real.
//! Creation mounts a tmpfs work tree, writes the message in steps, publishes it by
//! rename and unmounts; `--crash` aborts the process mid-way with the mount, the lock
//! file and the creation marker left behind, exactly as a `kill -9` would.
use std::time::Duration;

use crate::ctx::Ctx;
use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::modules::Module;
use crate::store::{self, ImageClass, ImageRecord};
use crate::sys::mount::{self, MountGuard};

pub struct Demo;

impl Module for Demo {
    fn name(&self) -> &'static str {
        "demo"
    }
    fn description(&self) -> &'static str {
        "a demonstration module: images holding a message, to learn and test the tool"
    }
    fn classes(&self) -> &'static [ImageClass] {
        &[ImageClass::DemoImage]
    }
    fn actions(&self) -> &'static [&'static str] {
        &["create"]
    }
}

/// Options of `demo create`.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoCreate {
    pub name: String,
    pub message: String,
    /// Abort the process mid-creation (after mounting), on purpose.
    pub crash: bool,
    /// Pause between steps, so tests can interrupt a creation.
    pub step_delay: Duration,
}

pub const STEPS: usize = 5;

pub fn create(ctx: &Ctx, opts: &DemoCreate) -> Result<ImageRecord> {
    let cfg = &ctx.cfg;
    if opts.message.contains('\0') {
        return Err(crate::error::Error::invalid(
            "--message: must not contain NUL bytes",
        ));
    }
    if ctx.runner.dry_run() {
        crate::names::image(&opts.name)?;
        ctx.runner.note(format!(
            "create demo image {} in {}",
            opts.name,
            cfg.image_dir(&opts.name).display()
        ));
        let mnt = cfg.image_workdir(&opts.name).join("mnt");
        mount::mount(
            &ctx.runner,
            Some("tmpfs"),
            "tmpfs",
            &mnt,
            &["size=16m", "mode=0755"],
        )?;
        ctx.runner.note(format!(
            "write {}",
            cfg.image_dir(&opts.name).join("demo.txt").display()
        ));
        mount::umount(&ctx.runner, &mnt)?;
        return Ok(ImageRecord::new(&opts.name, ImageClass::DemoImage));
    }
    let creation = store::begin_creation(cfg, &opts.name, "demo create")?;
    let mut rec = ImageRecord::new(&opts.name, ImageClass::DemoImage);
    rec.message = Some(opts.message.clone());

    ctx.progress.step(1, STEPS, "mount the work tree (tmpfs)");
    let work = cfg.image_workdir(&opts.name);
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).at(&mnt)?;
    mount::mount(
        &ctx.runner,
        Some("tmpfs"),
        "tmpfs",
        &mnt,
        &["size=16m", "mode=0755"],
    )?;
    let guard = MountGuard::new(&ctx.runner, &mnt);
    std::thread::sleep(opts.step_delay);
    check_cancel(ctx)?;

    ctx.progress
        .step(2, STEPS, "write the message into the work tree");
    let staged = mnt.join("demo.txt");
    std::fs::write(&staged, format!("{}\n", opts.message)).at(&staged)?;
    std::thread::sleep(opts.step_delay);
    check_cancel(ctx)?;

    if opts.crash {
        tracing::warn!("demo create {}: crashing on purpose (--crash)", opts.name);
        // Like kill -9: no destructor runs, the mount and the marker stay.
        std::process::abort();
    }

    ctx.progress.step(3, STEPS, "publish the image content");
    let data = std::fs::read(&staged).at(&staged)?;
    fsutil::write_atomic(&cfg.image_dir(&opts.name).join("demo.txt"), &data, 0o644)?;
    std::thread::sleep(opts.step_delay);
    check_cancel(ctx)?;

    ctx.progress.step(4, STEPS, "unmount the work tree");
    guard.unmount()?;
    crate::sys::remove::remove_tree(&ctx.runner, &work)?;
    std::thread::sleep(opts.step_delay);

    ctx.progress.step(5, STEPS, "write image_data.yml");
    store::save(cfg, &rec)?;
    creation.finish()?;
    Ok(rec)
}

/// Stops between steps once the front-end set the runner's cancel flag; the creation's
/// guards then unmount and leave the image for `clear`.
fn check_cancel(ctx: &Ctx) -> Result<()> {
    if ctx
        .runner
        .cancel_flag()
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(crate::error::Error::Cancelled);
    }
    Ok(())
}
