//! What the boot server saw of each node: when it last asked for its script (and the
//! boot type, image and generation it was given), when its image called home as booted.
//! One small JSON file per node under `state_dir/nodes/` (never the inventory), written
//! atomically (temp file, fsync, rename); the server serialises its read-modify-write
//! per process, and two writers can only make one of two fresh records win, never a
//! torn file.
//!
//! A node's state, from facts: `registered` (in the inventory, no assignment),
//! `assigned` (a boot script is written), `booted` (its image reported booted after it
//! last fetched its script).
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;

/// The record of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Unix seconds of the last script request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_boot_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_generation: Option<u32>,
    /// issue 15: the sha256 of the squashfs its image published when it fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_sha256: Option<String>,
    /// Unix seconds of the last "booted" call-home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_generation: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_sha256: Option<String>,
    /// `bootset --once`: the assignment to restore after one boot seen by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once: Option<Once>,
    /// When the server last put a `--once` node's previous script back, and what to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once_restored_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once_restored_to: Option<String>,
}

/// A pending `--once`: the previous script to put back, and since when it is pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Once {
    pub since: u64,
    /// The previous boot type (None: the node had no script; it is removed).
    pub previous_boot_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_image: Option<String>,
    /// The previous script text, put back as it was.
    pub previous_script: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Registered,
    Discovered,
    Assigned,
    Booted,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Registered => "registered",
            NodeState::Discovered => "discovered",
            NodeState::Assigned => "assigned",
            NodeState::Booted => "booted",
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn dir(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("nodes")
}

fn path(cfg: &Config, node: &str) -> PathBuf {
    dir(cfg).join(format!("{node}.json"))
}

/// A node's record (None: never seen).
pub fn load(cfg: &Config, node: &str) -> Option<Seen> {
    let text = std::fs::read(path(cfg, node)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub fn save(cfg: &Config, node: &str, s: &Seen) -> Result<()> {
    crate::names::node(node)?;
    let data = serde_json::to_vec_pretty(s)
        .map_err(|e| Error::invalid(format!("node record {node}: {e}")))?;
    fsutil::write_atomic(&path(cfg, node), &data, 0o644)
}

static UPDATE: Mutex<()> = Mutex::new(());

/// Read-modify-write of a node's record, serialised in this process.
pub fn update(cfg: &Config, node: &str, f: impl FnOnce(&mut Seen)) -> Result<Seen> {
    let _g = UPDATE.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = load(cfg, node).unwrap_or_default();
    f(&mut s);
    save(cfg, node, &s)?;
    Ok(s)
}

impl Once {
    /// "diskless img" / "disk": what the node returns to.
    pub fn then(&self) -> String {
        let bt = self.previous_boot_type.as_deref().unwrap_or("unassigned");
        match &self.previous_image {
            Some(i) => format!("{bt} {i}"),
            None => bt.to_string(),
        }
    }
}

/// The state from facts: the record, whether a script is assigned, facts known.
pub fn state_of(s: &Seen, assigned: bool, discovered: bool) -> NodeState {
    match (s.booted_at, s.script_at) {
        (Some(b), Some(sc)) if b >= sc && assigned => NodeState::Booted,
        (Some(_), None) if assigned => NodeState::Booted,
        _ if assigned => NodeState::Assigned,
        _ if discovered => NodeState::Discovered,
        _ => NodeState::Registered,
    }
}

/// The generation an image publishes now (None: no record or not a generational image).
pub fn generation_of(cfg: &Config, image: &str) -> Option<u32> {
    crate::store::load(cfg, image)
        .ok()
        .map(|r| r.generation)
        .filter(|g| *g > 0)
}

/// The sha256 of the squashfs an image publishes now (issue 15).
pub fn digest_of(cfg: &Config, image: &str) -> Option<String> {
    crate::pack::generations::current_digest(cfg, image)
}

/// Would the node get other bits than it fetched? By digest when both are known (a
/// rebuild or a rollback to the same bits changes nothing), else by generation.
pub fn image_changed(s: &Seen, generation: Option<u32>, digest: Option<&str>) -> bool {
    match (s.script_sha256.as_deref(), digest) {
        (Some(had), Some(now)) => had != now,
        _ => generation != s.script_generation,
    }
}

/// Would a reboot change this node? Its assignment (boot type, image, the image's
/// current generation) differs from what it last fetched. False for a node never seen.
pub fn reboot_changes(
    cfg: &Config,
    s: &Seen,
    boot_type: Option<&str>,
    image: Option<&str>,
) -> bool {
    if s.script_at.is_none() {
        return false;
    }
    if s.script_boot_type.as_deref() != boot_type || s.script_image.as_deref() != image {
        return true;
    }
    match image {
        Some(i) if boot_type == Some("diskless") => {
            image_changed(s, generation_of(cfg, i), digest_of(cfg, i).as_deref())
        }
        _ => false,
    }
}

/// "2026-12-02 17:30:05Z" of unix seconds (UTC), for tables.
pub fn format_time(t: u64) -> String {
    let days = t / 86400;
    let secs = t % 86400;
    format!(
        "{} {:02}:{:02}:{:02}Z",
        crate::store::record::civil_date(days),
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_changes_by_digest_then_generation() {
        let mut s = Seen {
            script_generation: Some(1),
            script_sha256: Some("aa".into()),
            ..Seen::default()
        };
        // the same bits under a new generation (a bit-identical republish): no change
        assert!(!image_changed(&s, Some(2), Some("aa")));
        // other bits under the same generation number (rollback, republish): a change
        assert!(image_changed(&s, Some(1), Some("bb")));
        // a record from before digests: by generation
        s.script_sha256 = None;
        assert!(!image_changed(&s, Some(1), Some("bb")));
        assert!(image_changed(&s, Some(2), Some("bb")));
        assert!(image_changed(&s, Some(2), None));
    }
}
