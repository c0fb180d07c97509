//! Cluster data: the node inventory (`nodes.yml`, the reference's `nodes_parameters.yml`)
//! and ClusterShell node sets. Used alike by boot (bootset, the server), the nfs module
//! (per-node directories and exports) and the front-ends (through ops).
pub mod bmc;
pub mod edit;
pub mod facts;
pub mod inventory;
pub mod nodeset;
pub mod selectors;

use crate::config::Config;
use crate::error::{Error, Result};

pub use bmc::{BmcDriver, BmcSpec};
pub use inventory::{Inventory, Node};

/// Expands a node set (ClusterShell syntax; `@group` from the inventory) into valid node
/// names. The inventory is read only when the set names a group.
pub fn expand_nodes(cfg: &Config, set: &str) -> Result<Vec<String>> {
    let inv = if set.contains('@') {
        Some(Inventory::load(cfg)?)
    } else {
        None
    };
    let groups = |g: &str| inv.as_ref().and_then(|i| i.group_members(g));
    let nodes = nodeset::expand(set, &groups)
        .map_err(|e| Error::invalid(format!("node set {set:?}: {e}")))?;
    for n in &nodes {
        crate::names::node(n)?;
    }
    Ok(nodes)
}
