//! Hardware facts of a node (hardcap's host facts): what the discovery initramfs reported
//! (issue 13, discovery) and what group selectors match on (issue 13, groups). One JSON
//! file per node under `state_dir/facts/` (never the inventory, which stays the admin's
//! file), written atomically; `nodes show` prints them.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;

/// One disk as the node saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name (`vda`, `sda`, `nvme0n1`).
    pub name: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
}

/// The facts of one node. Every field is optional: a report may lack any of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Unix seconds of the report.
    #[serde(default)]
    pub reported_at: u64,
    /// MAC addresses, lower case, `aa:bb:..`, boot interface first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<String>,
    /// `uname -m` (`x86_64`, `aarch64`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arch: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu_model: String,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub memory_mib: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    /// DMI (`/sys/class/dmi/id/sys_vendor`, `product_name`, `product_serial`, `product_uuid`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
}

impl Facts {
    /// A fact by the name selectors use (`arch`, `cpu_model`, `cpus`, `memory_mib`,
    /// `vendor`, `product`, `serial`, `uuid`, `mac` (the first), `disks` (their count));
    /// None when the fact is unknown or empty.
    pub fn get(&self, key: &str) -> Option<String> {
        let s = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match key {
            "arch" => s(&self.arch),
            "cpu_model" => s(&self.cpu_model),
            "cpus" => (self.cpus > 0).then(|| self.cpus.to_string()),
            "memory_mib" => (self.memory_mib > 0).then(|| self.memory_mib.to_string()),
            "vendor" => s(&self.vendor),
            "product" => s(&self.product),
            "serial" => s(&self.serial),
            "uuid" => s(&self.uuid),
            "mac" => self.macs.first().cloned(),
            "disks" => (!self.disks.is_empty()).then(|| self.disks.len().to_string()),
            _ => None,
        }
    }

    /// The fact names [`Facts::get`] knows.
    pub const KEYS: &'static [&'static str] = &[
        "arch",
        "cpu_model",
        "cpus",
        "memory_mib",
        "vendor",
        "product",
        "serial",
        "uuid",
        "mac",
        "disks",
    ];
}

pub fn dir(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("facts")
}

fn path(cfg: &Config, node: &str) -> PathBuf {
    dir(cfg).join(format!("{node}.json"))
}

/// A node's facts (None: none reported, or the file is unreadable).
pub fn load(cfg: &Config, node: &str) -> Option<Facts> {
    let text = std::fs::read(path(cfg, node)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Stores a node's facts (atomic replace).
pub fn save(cfg: &Config, node: &str, f: &Facts) -> Result<()> {
    crate::names::node(node)?;
    let data = serde_json::to_vec_pretty(f)
        .map_err(|e| Error::invalid(format!("facts of {node}: {e}")))?;
    fsutil::write_atomic(&path(cfg, node), &data, 0o644)
}

/// Removes a node's facts (with `nodes remove`); absent is fine.
pub fn remove(cfg: &Config, node: &str) -> Result<()> {
    crate::names::node(node)?;
    match std::fs::remove_file(path(cfg, node)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path(cfg, node), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_by_selector_names() {
        let f = Facts {
            macs: vec!["52:54:00:00:00:01".into()],
            cpus: 2,
            memory_mib: 1024,
            ..Default::default()
        };
        assert_eq!(f.get("mac").as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(f.get("cpus").as_deref(), Some("2"));
        assert_eq!(f.get("memory_mib").as_deref(), Some("1024"));
        assert_eq!(f.get("vendor"), None);
        assert_eq!(f.get("nonsense"), None);
    }
}
