//! The livenet module: squashfs images a node downloads into RAM over HTTP.
//!
//! Two layouts: **native** (the root tree is the squashfs; the node mounts it under a
//! tmpfs overlay, so its RAM cost is the compressed image plus its writes) and
//! **compat** (`LiveOS/rootfs.img`, an ext4 of `livenet_size`, the reference's layout,
//! bootable with the reference's dracut command line). Customisation mounts the image
//! as an overlay in the work dir; unmounting repacks into a new generation.
//!
//! Files: `create` (the build), `mount` (customisation mounts, generations, resize),
//! `boot` (command line, boot script, initramfs), `customize` (ansible, exec, shell).
pub mod boot;
pub mod create;
pub mod customize;
pub mod mount;

use std::path::PathBuf;

use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::kernel::InitramfsReport;
use crate::modules::Module;
use crate::store::{self, ImageClass, ImageRecord, State};
use crate::sys::mountinfo;

pub use boot::{initramfs, kernel_cmdline, render_boot_ipxe};
pub use create::{create, CreateReport, LivenetCreate};
pub use customize::{ansible, exec, shell, AnsibleOptions, AnsibleReport, ExecOutcome};
pub use mount::{
    mount_image, mount_readonly, repack, resize, rollback, unmount_image, ResizeReport,
    UnmountReport,
};

pub struct Livenet;

impl Module for Livenet {
    fn name(&self) -> &'static str {
        "livenet"
    }
    fn description(&self) -> &'static str {
        "livenet images: a squashfs the node downloads into RAM over HTTP (native or compat layout)"
    }
    fn classes(&self) -> &'static [ImageClass] {
        &[ImageClass::LivenetImage]
    }
    fn actions(&self) -> &'static [&'static str] {
        &[
            "create",
            "mount",
            "unmount",
            "resize",
            "rollback",
            "initramfs",
            "kernel set",
        ]
    }
    /// The copied boot.ipxe names the source image: write the clone's own.
    fn clone_extra(&self, ctx: &Ctx, _src: &ImageRecord, dst: &mut ImageRecord) -> Result<()> {
        if dst.kernel.is_some() && dst.image.is_some() {
            boot::write_boot_ipxe(ctx, dst)?;
        }
        Ok(())
    }
    fn boot_script(&self, cfg: &Config, rec: &ImageRecord) -> Result<Option<String>> {
        render_boot_ipxe(cfg, rec).map(Some)
    }
    fn initramfs(&self, ctx: &Ctx, name: &str, flavour: Option<&str>) -> Result<InitramfsReport> {
        initramfs(ctx, name, flavour)
    }
}

/// The work dir's parts for an image.
pub struct WorkPaths {
    pub root: PathBuf,
    /// squashfs mounted read-only
    pub ro: PathBuf,
    /// compat: LiveOS/rootfs.img mounted read-only
    pub ro_ext4: PathBuf,
    /// overlay upper and work dirs
    pub rw: PathBuf,
    /// the merged, writable tree (the reference's `mnt/`)
    pub mnt: PathBuf,
    pub inventory: PathBuf,
}

impl WorkPaths {
    pub fn new(cfg: &Config, name: &str) -> Self {
        let root = cfg.image_workdir(name);
        WorkPaths {
            ro: root.join("ro"),
            ro_ext4: root.join("ro-ext4"),
            rw: root.join("rw"),
            mnt: root.join("mnt"),
            inventory: root.join("inventory"),
            root,
        }
    }
}

pub(crate) fn require_livenet(ctx: &Ctx, name: &str) -> Result<ImageRecord> {
    let rec = store::load(&ctx.cfg, name)?;
    if rec.image_class != ImageClass::LivenetImage {
        return Err(Error::invalid(format!(
            "image {name} is a {} image, not a livenet image",
            rec.image_class.as_str()
        )));
    }
    Ok(rec)
}

pub(crate) fn state_of(ctx: &Ctx, name: &str) -> Result<State> {
    let mounts = mountinfo::read()?;
    Ok(store::info(&ctx.cfg, name, &mounts).state)
}

/// A size request: a size in MiB or `auto` (content + configured headroom).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    Mib(u64),
    Auto,
}

impl SizeSpec {
    pub fn parse(s: &str) -> Result<SizeSpec> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(SizeSpec::Auto);
        }
        let mib = fsutil::parse_size_mib(s)?;
        if !(100..=51_200).contains(&mib) {
            return Err(Error::invalid(format!(
                "size {s}: livenet sizes go from 100M to 50G"
            )));
        }
        Ok(SizeSpec::Mib(mib))
    }
}
