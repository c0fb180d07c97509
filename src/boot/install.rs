//! Boot type `install`: the node boots its image's kernel with the own initramfs in
//! install mode (`dl.install=1`, initramfs/install.sh), which writes the image to the
//! node's disk and reports to the server (`POST /installed/NODE`); the server then
//! flips the node to `disk`, so it is never reinstalled by accident.
//!
//! Node variables (inventory `vars`, per node or group):
//! * `install_disk`: the disk to write (`sda`, `/dev/vda`); default: the first
//!   non-removable disk of `/sys/block`;
//! * `install_layout`: the partition spec, e.g. `esp=256M,swap=1G,root=rest`
//!   (default `esp=256M,root=rest`): an ESP (FAT32, holding the boot loaders, the
//!   kernel and the initramfs), an optional swap partition, and the ext4 root.
use std::collections::BTreeMap;

use crate::cluster::inventory::Inventory;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::store::{self, ImageClass};

use super::bootset::{self, Assign, BootType, NetMode};
use super::ipxe::rel_to_web;

/// The layout when the node has no `install_layout`.
pub const DEFAULT_LAYOUT: &str = "esp=256M,root=rest";

/// One partition of a layout spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `esp`, `swap` or `root`.
    pub role: String,
    /// Size in MiB, or `None` for the rest of the disk.
    pub mib: Option<u64>,
}

/// Parses `esp=256M,swap=1G,root=rest`: exactly one esp and one root, at most one
/// swap; sizes in M or G; only the last partition may be `rest`.
pub fn parse_layout(spec: &str) -> Result<Vec<Part>> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "install_layout {spec:?}: {why}; write e.g. esp=256M,swap=1G,root=rest"
        ))
    };
    let mut parts = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (role, size) = item.split_once('=').ok_or_else(|| bad("want ROLE=SIZE"))?;
        if !["esp", "swap", "root"].contains(&role) {
            return Err(bad(&format!("unknown role {role:?} (esp, swap, root)")));
        }
        if parts.iter().any(|p: &Part| p.role == role) {
            return Err(bad(&format!("{role} given twice")));
        }
        let mib = if size == "rest" {
            None
        } else {
            let (num, mul) = match size.strip_suffix('G') {
                Some(n) => (n, 1024),
                None => (size.strip_suffix('M').unwrap_or(size), 1),
            };
            let n: u64 = num
                .parse()
                .map_err(|_| bad(&format!("size {size:?} is not a number of M or G")))?;
            if n == 0 {
                return Err(bad(&format!("{role} has size 0")));
            }
            Some(n * mul)
        };
        parts.push(Part {
            role: role.to_string(),
            mib,
        });
    }
    for need in ["esp", "root"] {
        if !parts.iter().any(|p| p.role == need) {
            return Err(bad(&format!("no {need} partition")));
        }
    }
    if parts.iter().rev().skip(1).any(|p| p.mib.is_none()) {
        return Err(bad("only the last partition may be `rest`"));
    }
    Ok(parts)
}

/// The layout as the installer reads it: `esp:256 swap:1024 root:rest`.
fn layout_arg(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| match p.mib {
            Some(m) => format!("{}:{m}", p.role),
            None => format!("{}:rest", p.role),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// An image that can be installed: a livenet image (a squashfs the initramfs fetches)
/// booted by the own initramfs (which holds the installer).
pub fn check_image(cfg: &Config, name: &str) -> Result<()> {
    let rec = store::load(cfg, name)?;
    if rec.image_class != ImageClass::LivenetImage {
        return Err(Error::invalid(format!(
            "image {name} is a {}: -b install writes a livenet image's squashfs to the disk",
            rec.image_class.as_str()
        )));
    }
    if rec.initramfs_flavour.as_deref() != Some("own") {
        return Err(Error::invalid(format!(
            "image {name} boots a {} initramfs: the installer is in the own one; run `disklessset initramfs {name} --flavour own`",
            rec.initramfs_flavour.as_deref().unwrap_or("unknown")
        )));
    }
    Ok(())
}

/// The kernel arguments a node script adds for `install` (empty for other types).
/// `${dls-base}` is expanded by iPXE.
pub fn kernel_args(cfg: &Config, vars: &BTreeMap<String, String>, a: &Assign) -> Result<String> {
    if a.boot_type != BootType::Install {
        return Ok(String::new());
    }
    let name = a
        .image
        .as_deref()
        .ok_or_else(|| Error::invalid("-b install needs -i IMAGE"))?;
    let rec = store::load(cfg, name)?;
    let (kver, initrd) =
        super::ipxe::kernel_and_initrd(&rec, &format!("run `disklessset initramfs {name}` first"))?;
    let kernels = rel_to_web(cfg, &cfg.kernels_dir);
    let layout = parse_layout(
        vars.get("install_layout")
            .map(String::as_str)
            .unwrap_or(DEFAULT_LAYOUT),
    )?;
    let mut args = vec![
        "dl.install=1".to_string(),
        format!("dl.install.layout={}", layout_arg(&layout)),
        format!("dl.install.kernel=${{dls-base}}/{kernels}/vmlinuz-{kver}"),
        // Not `...initrd=`: the kernel's EFI stub loads any `initrd=` it finds in the
        // command line, even as the tail of another parameter.
        format!("dl.install.initramfs=${{dls-base}}/{kernels}/{initrd}"),
    ];
    if let Some(d) = vars.get("install_disk") {
        let d = d.trim_start_matches("/dev/");
        if d.is_empty()
            || !d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::invalid(format!(
                "install_disk {d:?}: give a disk name of /sys/block such as sda, vda or nvme0n1"
            )));
        }
        args.push(format!("dl.install.disk={d}"));
    }
    if a.wipe {
        args.push("dl.install.wipe=1".into());
    }
    Ok(args.join(" "))
}

/// The record of a node's reported installs.
pub fn installed_record(cfg: &Config, node: &str) -> std::path::PathBuf {
    cfg.state_dir.join("installed").join(format!("{node}.txt"))
}

/// `POST /installed/NODE` from the installer: records the report and flips the node
/// from `install` to `disk`. A node that is not in `install` is left alone (error).
pub fn mark_installed(cfg: &Config, node: &str, report: &str) -> Result<String> {
    crate::names::node(node)?;
    let inv = Inventory::load(cfg)?;
    let n = inv
        .nodes
        .get(node)
        .ok_or_else(|| Error::invalid(format!("node {node} is not in the inventory")))?;
    let script = cfg.nodes_ipxe_dir.join(format!("{node}.ipxe"));
    let text = std::fs::read_to_string(&script).map_err(|e| Error::io(&script, e))?;
    let image = text
        .lines()
        .find_map(|l| l.strip_prefix("set node-image "))
        .map(|s| s.trim().to_string());
    let rec = installed_record(cfg, node);
    if text.lines().any(|l| l == "set dls-boot-type disk") && rec.is_file() {
        // A repeated report (the installer retries when it missed the answer).
        return Ok(format!(
            "node {node} installed (already recorded); next boot: disk\n"
        ));
    }
    if !text.lines().any(|l| l == "set dls-boot-type install") {
        return Err(Error::invalid(format!(
            "node {node} is not assigned `install`: report ignored"
        )));
    }
    let clean: String = report
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(512)
        .collect();
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Some(dir) = rec.parent() {
        fsutil::ensure_dir(dir)?;
    }
    fsutil::write_atomic(
        &rec,
        format!(
            "node: {node}\nimage: {}\ninstalled_at_unix: {when}\nreport: {clean}\n",
            image.as_deref().unwrap_or("")
        )
        .as_bytes(),
        0o644,
    )?;
    let a = Assign {
        nodeset: node.to_string(),
        boot_type: BootType::Disk,
        image: None,
        extra: None,
        net: NetMode::Default,
        wipe: false,
        once: false,
    };
    let disk = bootset::render_node(cfg, &inv, n, &a)?;
    fsutil::write_atomic(&script, disk.as_bytes(), 0o644)?;
    tracing::info!(target: "disklessset::install", node, image = image.as_deref().unwrap_or(""), "installed: node flipped to disk");
    Ok(format!("node {node} installed; next boot: disk\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let p = parse_layout(DEFAULT_LAYOUT).unwrap();
        assert_eq!(layout_arg(&p), "esp:256,root:rest");
        let p = parse_layout("esp=512M,swap=1G,root=rest").unwrap();
        assert_eq!(layout_arg(&p), "esp:512,swap:1024,root:rest");
        for bad in [
            "root=rest",
            "esp=1M",
            "esp=rest,root=1G",
            "esp=1M,esp=2M,root=rest",
            "esp=x,root=rest",
            "boot=1M,esp=1M,root=rest",
            "esp=0,root=rest",
        ] {
            let e = parse_layout(bad).unwrap_err().to_string();
            assert!(e.contains("install_layout"), "{bad}: {e}");
        }
    }
}
