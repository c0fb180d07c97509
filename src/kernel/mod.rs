//! Kernels and initramfs files in the kernels dir.
pub mod cpio;
pub mod dracut;
pub mod elfdeps;
pub mod kmods;
pub mod own;
pub mod publish;

pub use publish::{build_initramfs, publish_kernel, InitramfsReport};

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store;

/// Initramfs flavours: the reference's dracut one and the project's own minimal one.
pub const FLAVOURS: [(&str, &str); 2] =
    [("dracut", "initramfs-kernel-"), ("own", "initramfs-own-")];

#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    pub version: String,
    pub file: String,
    /// (flavour, file) of each initramfs present for this kernel.
    pub initramfs: Vec<(String, String)>,
    /// Images whose record names this kernel.
    pub used_by: Vec<String>,
}

impl KernelInfo {
    pub fn has_initramfs(&self) -> bool {
        !self.initramfs.is_empty()
    }
}

/// The initramfs file name of a flavour for a kernel version.
pub fn initramfs_name(flavour: &str, version: &str) -> Result<String> {
    FLAVOURS
        .iter()
        .find(|(f, _)| *f == flavour)
        .map(|(_, p)| format!("{p}{version}"))
        .ok_or_else(|| {
            Error::invalid(format!(
                "unknown initramfs flavour {flavour:?}: allowed values are own, dracut"
            ))
        })
}

/// Kernels (`vmlinuz-<ver>`) in the kernels dir, with their initramfs files.
pub fn list(cfg: &Config) -> Result<Vec<KernelInfo>> {
    let dir = &cfg.kernels_dir;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let records: Vec<store::ImageRecord> = store::names(cfg)?
        .iter()
        .filter_map(|n| store::load(cfg, n).ok())
        .collect();
    let mut out = Vec::new();
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(version) = file.strip_prefix("vmlinuz-") else {
            continue;
        };
        if crate::names::kernel(version).is_err() {
            continue;
        }
        let initramfs = FLAVOURS
            .iter()
            .map(|(f, p)| (f.to_string(), format!("{p}{version}")))
            .filter(|(_, n)| dir.join(n).is_file())
            .collect();
        let used_by = records
            .iter()
            .filter(|r| r.kernel_version() == Some(version))
            .map(|r| r.name.clone())
            .collect();
        out.push(KernelInfo {
            version: version.to_string(),
            file: file.clone(),
            initramfs,
            used_by,
        });
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// Path of a kernel file in the kernels dir.
pub fn vmlinuz_path(cfg: &Config, version: &str) -> PathBuf {
    cfg.kernels_dir.join(format!("vmlinuz-{version}"))
}
