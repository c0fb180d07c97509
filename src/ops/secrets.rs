//! `secrets show NODESET` / `secrets rotate NODESET` (issue 12, README "Security"): a
//! node's host key fingerprints (never the keys), and dropping its host keys so that
//! new ones are made when it next fetches its boot script.
use serde::Serialize;

use crate::boot::secrets;
use crate::cluster::expand_nodes;
use crate::ctx::Ctx;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct NodeKeys {
    pub node: String,
    /// `ssh-keygen -l` lines: bits, SHA256 fingerprint, comment, type.
    pub fingerprints: Vec<String>,
}

pub fn show(ctx: &Ctx, nodeset: &str) -> Result<Vec<NodeKeys>> {
    expand_nodes(&ctx.cfg, nodeset)?
        .into_iter()
        .map(|node| {
            Ok(NodeKeys {
                fingerprints: secrets::fingerprints(&ctx.runner, &ctx.cfg, &node)?,
                node,
            })
        })
        .collect()
}

/// Removes the nodes' host keys; returns the nodes that had some.
pub fn rotate(ctx: &Ctx, nodeset: &str) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for node in expand_nodes(&ctx.cfg, nodeset)? {
        let dir = secrets::node_dir(&ctx.cfg, &node);
        if !dir.exists() {
            continue;
        }
        if ctx.runner.dry_run() {
            ctx.runner.note(format!("remove {}", dir.display()));
        } else {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        done.push(node);
    }
    Ok(done)
}
