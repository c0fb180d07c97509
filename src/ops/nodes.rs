//! `nodes add|set|remove|import` (the inventory edits: inventory lock, validated text,
//! `.bak` of a rewritten file, atomic write) and `nodes list|show` (the inventory with
//! each node's assignment and what the boot server saw of it).
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::boot::bootset::{self, resolve_nodes};
use crate::boot::seen::{self, NodeState, Seen};
use crate::cluster::edit::{self, Edit, Edited};
use crate::cluster::inventory::{parse_reference, Inventory, Via};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::store::lock;

pub use crate::boot::seen::format_time;
pub use crate::cluster::edit::NodeFields;

/// What an edit did (the JSON of `nodes add|set|remove|import`).
#[derive(Debug, Clone, Serialize)]
pub struct EditReport {
    pub file: String,
    pub added: String,
    pub changed: String,
    pub removed: String,
    /// The file was rewritten (comments lost; the previous one is in `backup`).
    pub rewritten: bool,
    pub backup: Option<String>,
    pub nodes: usize,
}

fn reference(ctx: &Ctx) -> Result<Inventory> {
    match &ctx.cfg.nodes_parameters_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            parse_reference(&text, p)
        }
        None => Ok(Inventory::default()),
    }
}

/// Performs one edit of nodes.yml under the inventory lock.
pub fn edit(ctx: &Ctx, e: &Edit, what: &str) -> Result<EditReport> {
    let cfg = &ctx.cfg;
    let path = &cfg.nodes_file;
    let _lock = if ctx.runner.dry_run() {
        None
    } else {
        Some(lock::lock_inventory(cfg, what)?)
    };
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let ed: Edited = edit::apply(&old, path, &reference(ctx)?, e)?;
    let backup = path.with_file_name(format!(
        "{}.bak",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "nodes.yml".into())
    ));
    // The .bak keeps the last version with comments of its own: a file this command
    // rewrote has none but its header, and must not overwrite a hand-written backup.
    let has_comments = old
        .lines()
        .any(|l| l.contains('#') && l.trim() != edit::REWRITE_HEADER);
    let keep_backup = !ed.appended && has_comments;
    let total = crate::cluster::inventory::parse_native(&ed.text, path)?
        .nodes
        .len();
    if ctx.runner.dry_run() {
        if keep_backup {
            ctx.runner
                .note(format!("copy {} to {}", path.display(), backup.display()));
        }
        ctx.runner.note(format!("write {}", path.display()));
    } else {
        if keep_backup {
            fsutil::write_atomic(&backup, old.as_bytes(), 0o644)?;
        }
        fsutil::write_atomic(path, ed.text.as_bytes(), 0o644)?;
        // A removed node's hardware facts go with it (issue 13, discovery).
        for n in &ed.removed {
            crate::cluster::facts::remove(cfg, n)?;
        }
    }
    let fold = |v: &[String]| crate::cluster::nodeset::fold(v);
    Ok(EditReport {
        file: path.display().to_string(),
        added: fold(&ed.added),
        changed: fold(&ed.changed),
        removed: fold(&ed.removed),
        rewritten: !ed.appended,
        backup: (!ed.appended && backup.exists() || keep_backup)
            .then(|| backup.display().to_string()),
        nodes: total,
    })
}

/// `nodes import FILE.csv`.
pub fn import(ctx: &Ctx, file: &Path) -> Result<EditReport> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let rows = edit::parse_csv(&text, file)?;
    edit(ctx, &Edit::Import { rows }, "nodes import")
}

/// One line of `nodes list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeRow {
    pub name: String,
    pub mac: Option<String>,
    pub ip: Option<String>,
    /// Every group the node is in: those it lists, then those selecting it.
    pub groups: Vec<String>,
    /// The groups whose selectors select it (issue 13, groups by selectors).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selected_groups: Vec<String>,
    pub state: NodeState,
    pub boot_type: Option<String>,
    pub image: Option<String>,
    /// What the boot server saw (script fetched, booted).
    pub seen: Seen,
    /// The assignment differs from what the node last fetched: a reboot changes it.
    pub reboot_changes: bool,
}

fn row(ctx: &Ctx, inv: &Inventory, name: &str) -> Option<NodeRow> {
    let n = inv.nodes.get(name)?;
    let assign = bootset::read_assignment(&ctx.cfg, name);
    let s = seen::load(&ctx.cfg, name).unwrap_or_default();
    let (boot_type, image) = match &assign {
        Some((b, i)) => (Some(b.clone()), i.clone()),
        None => (None, None),
    };
    let discovered = crate::cluster::facts::dir(&ctx.cfg)
        .join(format!("{name}.json"))
        .is_file();
    let state = seen::state_of(&s, assign.is_some(), discovered);
    let reboot_changes = seen::reboot_changes(&ctx.cfg, &s, boot_type.as_deref(), image.as_deref());
    Some(NodeRow {
        name: name.to_string(),
        mac: n.mac.clone(),
        ip: n.ip.clone(),
        groups: inv.member_groups(n),
        selected_groups: inv
            .groups_of(n)
            .into_iter()
            .filter(|(_, v)| matches!(v, Via::Selected(_)))
            .map(|(g, _)| g)
            .collect(),
        state,
        boot_type,
        image,
        seen: s,
        reboot_changes,
    })
}

/// `nodes list [NODESET]`.
pub fn list(ctx: &Ctx, set: Option<&str>) -> Result<Vec<NodeRow>> {
    let inv = Inventory::load(&ctx.cfg)?;
    let names = match set {
        Some(s) => resolve_nodes(&inv, s)?,
        None => inv.nodes.keys().cloned().collect(),
    };
    Ok(names.iter().filter_map(|n| row(ctx, &inv, n)).collect())
}

/// A variable and where its value comes from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VarSource {
    pub value: String,
    /// `node`, `group NAME`, `group NAME, selected by EXPR`, `group all`.
    pub source: String,
}

/// `nodes show NODE`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub row: NodeRow,
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    pub interface: Option<String>,
    pub vars: BTreeMap<String, VarSource>,
    pub bmc_address: Option<String>,
    /// Hardware facts (discovery), when reported.
    pub facts: Option<crate::cluster::facts::Facts>,
}

/// `nodes show NODE`.
pub fn show(ctx: &Ctx, name: &str) -> Result<NodeDetail> {
    crate::names::node(name)?;
    let inv = Inventory::load(&ctx.cfg)?;
    let n = inv.nodes.get(name).ok_or_else(|| {
        Error::invalid(format!(
            "unknown node {name} (see `disklessset nodes list`; add it with `disklessset nodes add {name}`)"
        ))
    })?;
    let row = row(ctx, &inv, name).ok_or_else(|| Error::invalid(format!("unknown node {name}")))?;
    let mut vars = BTreeMap::new();
    for (g, via) in inv.groups_of(n) {
        let source = match via {
            Via::All => "group all".to_string(),
            Via::Listed => format!("group {g}"),
            Via::Selected(expr) => format!("group {g}, selected by {expr}"),
        };
        if let Some(v) = inv.group_vars.get(&g) {
            for (k, val) in v {
                vars.insert(
                    k.clone(),
                    VarSource {
                        value: val.clone(),
                        source: source.clone(),
                    },
                );
            }
        }
    }
    for (k, val) in &n.vars {
        vars.insert(
            k.clone(),
            VarSource {
                value: val.clone(),
                source: "node".into(),
            },
        );
    }
    Ok(NodeDetail {
        row,
        netmask: n.netmask.clone(),
        gateway: n.gateway.clone(),
        interface: n.interface.clone(),
        vars,
        bmc_address: inv.bmc_of(n).and_then(|b| b.address),
        facts: crate::cluster::facts::load(&ctx.cfg, name),
    })
}

pub use crate::boot::render::Rendering;

/// `nodes render NODE NAME`: template NAME rendered for NODE (nothing written), compared
/// with the copy the server kept when it served it.
pub fn render(ctx: &Ctx, node: &str, name: &str) -> Result<Rendering> {
    let inv = Inventory::load(&ctx.cfg)?;
    Ok(crate::boot::render::preview(&ctx.cfg, &inv, node, name)?)
}
