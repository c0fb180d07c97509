//! The Module trait and the registry: livenet, nfs and demo plug in here. Generic
//! maintenance (list, remove, clone, clear, kernel set, initramfs) lives in `ops`; a
//! module adds what is specific to its images (paths it owns outside the image dir,
//! content to clone, its boot script, its initramfs). Modules never import each other:
//! what two of them share lives one layer down (`build::image`, `kernel::publish`,
//! `boot::ipxe`, `cluster`).
pub mod demo;
pub mod livenet;
pub mod nfs;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::kernel::InitramfsReport;
use crate::store::{ImageClass, ImageRecord};

pub trait Module: Send + Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// The image classes this module handles.
    fn classes(&self) -> &'static [ImageClass];
    /// The actions it offers (its CLI subcommands / TUI menu entries).
    fn actions(&self) -> &'static [&'static str];
    /// Paths outside the image dir and the work dir that belong to the image.
    fn owned_paths(&self, _cfg: &Config, _rec: &ImageRecord) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Paths that belong to an image called `name` whatever its record says (used by
    /// `clear` when the record is unreadable).
    fn candidate_paths(&self, _cfg: &Config, _name: &str) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Copies what the generic clone (the image directory) does not.
    fn clone_extra(&self, _ctx: &Ctx, _src: &ImageRecord, _dst: &mut ImageRecord) -> Result<()> {
        Ok(())
    }
    /// Refuses removal when something depends on the image.
    fn check_remove(&self, _ctx: &Ctx, _rec: &ImageRecord) -> Result<()> {
        Ok(())
    }
    /// Cleans what refers to the image after removal (exports, ...).
    fn after_remove(&self, _ctx: &Ctx, _rec: &ImageRecord) -> Result<()> {
        Ok(())
    }
    /// The image's `boot.ipxe` text; None for images that do not boot (demo).
    fn boot_script(&self, _cfg: &Config, _rec: &ImageRecord) -> Result<Option<String>> {
        Ok(None)
    }
    /// `initramfs NAME [--flavour F]`: builds the image's initramfs from its own kernel
    /// modules, publishes its kernel, rewrites its boot script.
    fn initramfs(&self, _ctx: &Ctx, name: &str, _flavour: Option<&str>) -> Result<InitramfsReport> {
        Err(Error::invalid(format!(
            "image {name} is a {} image, not a livenet image",
            self.classes()
                .first()
                .map(|c| c.as_str())
                .unwrap_or(self.name())
        )))
    }
}

/// What `modules` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub classes: Vec<&'static str>,
    pub actions: Vec<&'static str>,
}

/// All modules, in menu order.
pub fn registry() -> Vec<Box<dyn Module>> {
    vec![
        Box::new(demo::Demo),
        Box::new(livenet::Livenet),
        Box::new(nfs::Nfs),
    ]
}

/// The module that handles an image class.
pub fn for_class(class: ImageClass) -> Option<Box<dyn Module>> {
    registry()
        .into_iter()
        .find(|m| m.classes().contains(&class))
}

pub fn infos() -> Vec<ModuleInfo> {
    registry()
        .iter()
        .map(|m| ModuleInfo {
            name: m.name(),
            description: m.description(),
            classes: m.classes().iter().map(|c| c.as_str()).collect(),
            actions: m.actions().to_vec(),
        })
        .collect()
}
