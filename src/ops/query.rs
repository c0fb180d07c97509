//! Read queries of the front-ends beyond `list`/`show`: what the TUI's status bar and
//! forms need (store summary, images of a class, the inventory, input checks made with
//! the core's own rules).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cluster::{nodeset, Inventory};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::Result;
use crate::store::{self, lock, ImageClass, ImageInfo};
use crate::sys::runner::Runner;

/// The store at a glance: what the status bar and the images view show.
#[derive(Debug, Default, Clone)]
pub struct StoreSummary {
    pub store: PathBuf,
    pub images: Vec<ImageInfo>,
    /// Why the store could not be listed (it does not exist yet, ...).
    pub error: Option<String>,
    /// Locks held by other live processes: "name: pid N (operation)".
    pub foreign_locks: Vec<String>,
    /// Image -> the nodes booting it, folded; empty when the inventory cannot be read.
    pub nodes: BTreeMap<String, String>,
}

/// Reads the store summary; never fails (errors are part of the summary).
pub fn store_summary(cfg: &Config) -> StoreSummary {
    let store = cfg.root.clone().unwrap_or_else(|| cfg.images_dir.clone());
    let ctx = Ctx::new(cfg.clone(), Runner::new(true));
    let me = std::process::id() as i32;
    let (images, error) = match super::list(&ctx) {
        Ok(l) => (l, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut foreign_locks: Vec<String> = images
        .iter()
        .filter_map(|i| i.holder.as_ref().map(|h| (i, h)))
        .filter(|(_, h)| h.pid != me)
        .map(|(i, h)| format!("{}: pid {} ({})", i.name, h.pid, h.operation))
        .collect();
    if let Some(h) = lock::holder(cfg, lock::STORE_LOCK).filter(|h| h.pid != me) {
        foreign_locks.push(format!("store: pid {} ({})", h.pid, h.operation));
    }
    let nodes = crate::boot::bootset::nodes_by_image(cfg)
        .map(|m| {
            m.into_iter()
                .map(|(img, n)| (img, nodeset::fold(&n)))
                .collect()
        })
        .unwrap_or_default();
    StoreSummary {
        store,
        images,
        error,
        foreign_locks,
        nodes,
    }
}

/// The names of the store's images of one class (golden create's sources: staging
/// images; the images that have nodes: golden ones).
pub fn images_of_class(cfg: &Config, class: ImageClass) -> Result<Vec<String>> {
    Ok(store::list(cfg)?
        .into_iter()
        .filter(|i| i.record.as_ref().map(|r| r.image_class) == Some(class))
        .map(|i| i.name)
        .collect())
}

/// The node inventory (`nodes.yml`, or the reference's file when configured).
pub fn inventory(cfg: &Config) -> Result<Inventory> {
    Inventory::load(cfg)
}

/// Checks an image name by the store's rule.
pub fn check_image_name(name: &str) -> Result<()> {
    crate::names::image(name)
}

/// Expands a node set as typed (groups from `inv` when given), checking every name.
pub fn check_nodeset(
    inv: Option<&Inventory>,
    set: &str,
) -> std::result::Result<Vec<String>, String> {
    let groups = |g: &str| inv.and_then(|i| i.group_members(g));
    let nodes = nodeset::expand(set, &groups).map_err(|e| e.to_string())?;
    if let Some(e) = nodes.iter().find_map(|n| crate::names::node(n).err()) {
        return Err(e.to_string());
    }
    Ok(nodes)
}

/// Expands a node set against the inventory's groups (read only when the set names
/// one), every name checked.
pub fn expand_nodes(cfg: &Config, set: &str) -> Result<Vec<String>> {
    crate::cluster::expand_nodes(cfg, set)
}

/// Folds node names into a node set (`c[01-03]`).
pub fn fold_nodes(nodes: &[String]) -> String {
    nodeset::fold(nodes)
}

/// Where the nodes of golden image `name` keep their state (what removing them deletes).
pub fn nfs_nodes_root(cfg: &Config, name: &str) -> PathBuf {
    crate::modules::nfs::nodes_root(cfg, name)
}

/// Checks a parameters file as it would be read by `create --params`, without the
/// installation checks (releases, key files: those run with the operation).
pub fn check_params_file(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::error::Error::invalid(format!("{}: cannot read it: {e}", path.display()))
    })?;
    crate::params::parse(&text, path, None).map(|_| ())
}

/// `discovery list`: every machine that reported, in arrival order (named or pending).
pub fn discovery_list(cfg: &Config) -> Result<Vec<crate::boot::discovery::Discovered>> {
    Ok(crate::boot::discovery::load(cfg)?.machines)
}

/// The discovery state (on/off, pool, policy and the machines).
pub fn discovery_state(cfg: &Config) -> Result<crate::boot::discovery::DiscoveryState> {
    crate::boot::discovery::load(cfg)
}
