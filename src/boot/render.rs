//! Per-node templates (issue 13, foremanlite's rendered scripts, hardcap's "rendered
//! templates kept"): files under `templates/` beside the nodes file (`ROOT/templates`
//! with `--root`, `/etc/disklessset/templates` by default) rendered with minijinja for
//! one node: its fields, variables (node > listed group > selected group > `all`),
//! facts and assignment. Undefined values are errors (strict), never empty text.
//!
//! The boot server answers `/render/NAME?mac=MAC` to the node owning that MAC and keeps
//! what it served in `state_dir/rendered/NODE/NAME` (atomic write), so a reprovision can
//! be checked against the very text a node got; `nodes render NODE NAME` renders
//! without serving and says whether that differs from the kept copy.
//!
//! Whoever knows a node's MAC can fetch its rendering: templates and node/group vars
//! must hold no secret (the BMC secrets file is never part of the context).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::boot::bootset;
use crate::cluster::facts;
use crate::cluster::inventory::Inventory;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;

/// Largest template read.
pub const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

/// Why a rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No such template file (404 from the server).
    #[error("no template {name} in {dir} (see the templates there, or write templates/{name})")]
    NoTemplate { name: String, dir: String },
    /// The node is not in the inventory (404).
    #[error("unknown node {0} (see `disklessset nodes list`)")]
    NoNode(String),
    /// The template does not render for this node (500): `templates/NAME:LINE: message`.
    #[error("{place}: {msg} (rendering for node {node})")]
    Template {
        place: String,
        msg: String,
        node: String,
    },
    #[error(transparent)]
    Core(#[from] Error),
}

impl From<RenderError> for Error {
    fn from(e: RenderError) -> Error {
        match e {
            RenderError::Core(e) => e,
            other => Error::invalid(other.to_string()),
        }
    }
}

/// The templates directory: `templates/` beside the nodes file.
pub fn templates_dir(cfg: &Config) -> PathBuf {
    cfg.nodes_file
        .parent()
        .unwrap_or(Path::new("/"))
        .join("templates")
}

/// A template name: one file name (the node-name rule: letters, digits, `-_.`, no
/// leading dot), never a path.
pub fn check_name(name: &str) -> Result<()> {
    crate::names::validate("template", name)
}

/// Where the copy served to `node` is kept.
pub fn kept_path(cfg: &Config, node: &str, name: &str) -> PathBuf {
    cfg.state_dir.join("rendered").join(node).join(name)
}

/// The kept copy (None: never served).
pub fn kept(cfg: &Config, node: &str, name: &str) -> Option<String> {
    std::fs::read_to_string(kept_path(cfg, node, name)).ok()
}

/// Stores what was served (atomic replace).
pub fn keep(cfg: &Config, node: &str, name: &str, text: &str) -> Result<()> {
    crate::names::node(node)?;
    check_name(name)?;
    fsutil::write_atomic(&kept_path(cfg, node, name), text.as_bytes(), 0o640)
}

/// What a template sees.
#[derive(Debug, Serialize)]
struct Context {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netmask: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<String>,
    groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    vars: BTreeMap<String, String>,
    facts: serde_json::Map<String, serde_json::Value>,
}

fn context(cfg: &Config, inv: &Inventory, node: &str) -> std::result::Result<Context, RenderError> {
    let n = inv
        .nodes
        .get(node)
        .ok_or_else(|| RenderError::NoNode(node.to_string()))?;
    let assign = bootset::read_assignment(cfg, node);
    // Facts without their empty fields, so a missing fact is undefined (an error).
    let mut fmap = serde_json::Map::new();
    if let Some(f) = facts::load(cfg, node) {
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&f) {
            for (k, v) in m {
                let empty = match &v {
                    serde_json::Value::Null => true,
                    serde_json::Value::Number(x) => x.as_u64() == Some(0),
                    serde_json::Value::String(s) => s.is_empty(),
                    serde_json::Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    fmap.insert(k, v);
                }
            }
        }
        if let Some(m) = f.macs.first() {
            fmap.insert("mac".into(), m.clone().into());
        }
    }
    Ok(Context {
        name: n.name.clone(),
        mac: n.mac.clone(),
        ip: n.ip.clone(),
        netmask: n.netmask.clone(),
        gateway: n.gateway.clone(),
        interface: n.interface.clone(),
        groups: inv.member_groups(n),
        boot_type: assign.as_ref().map(|(b, _)| b.clone()),
        image: assign.and_then(|(_, i)| i),
        vars: inv.vars_of(n),
        facts: fmap,
    })
}

/// Renders template `name` for `node`.
pub fn render(
    cfg: &Config,
    inv: &Inventory,
    node: &str,
    name: &str,
) -> std::result::Result<String, RenderError> {
    check_name(name)?;
    let dir = templates_dir(cfg);
    let path = dir.join(name);
    let no_template = || RenderError::NoTemplate {
        name: name.to_string(),
        dir: dir.display().to_string(),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Err(no_template()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_template()),
        Err(e) => return Err(Error::io(&path, e).into()),
    };
    if meta.len() > MAX_TEMPLATE_BYTES {
        return Err(Error::invalid(format!(
            "templates/{name}: {} bytes, larger than the {MAX_TEMPLATE_BYTES} allowed",
            meta.len()
        ))
        .into());
    }
    let source = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let ctx = context(cfg, inv, node)?;
    render_str(name, &source, &ctx, node)
}

fn render_str(
    name: &str,
    source: &str,
    ctx: &Context,
    node: &str,
) -> std::result::Result<String, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    let shown = format!("templates/{name}");
    let fail = |e: minijinja::Error| {
        let mut msg = e.kind().to_string();
        if let Some(d) = e.detail() {
            msg = format!("{msg}: {d}");
        }
        RenderError::Template {
            place: match e.line() {
                Some(l) => format!("{shown}:{l}"),
                None => shown.clone(),
            },
            msg,
            node: node.to_string(),
        }
    };
    let tmpl = env.template_from_named_str(&shown, source).map_err(fail)?;
    tmpl.render(ctx).map_err(fail)
}

/// A rendering compared with the kept copy (`nodes render`).
#[derive(Debug, Clone, Serialize)]
pub struct Rendering {
    pub node: String,
    pub template: String,
    pub text: String,
    /// Where the served copy is kept.
    pub kept_path: String,
    /// None: never served; Some(true): the kept copy is this very text.
    pub same_as_kept: Option<bool>,
}

/// `nodes render NODE NAME`: renders without serving or keeping.
pub fn preview(
    cfg: &Config,
    inv: &Inventory,
    node: &str,
    name: &str,
) -> std::result::Result<Rendering, RenderError> {
    crate::names::node(node)?;
    let text = render(cfg, inv, node, name)?;
    let kept = kept(cfg, node, name);
    Ok(Rendering {
        node: node.to_string(),
        template: name.to_string(),
        same_as_kept: kept.map(|k| k == text),
        kept_path: kept_path(cfg, node, name).display().to_string(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            name: "c1".into(),
            mac: Some("52:54:00:00:00:01".into()),
            ip: None,
            netmask: None,
            gateway: None,
            interface: None,
            groups: vec!["gpu".into()],
            boot_type: None,
            image: None,
            vars: [("role".to_string(), "gpu".to_string())].into(),
            facts: Default::default(),
        }
    }

    #[test]
    fn renders_and_names_the_line_of_an_error() {
        let out = render_str("t", "host {{ name }} role {{ vars.role }}\n", &ctx(), "c1").unwrap();
        assert_eq!(out, "host c1 role gpu\n");
        let e = render_str("t", "a\nb {{ vars.nope }}\n", &ctx(), "c1").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("templates/t:2: "), "{s}");
        assert!(s.contains("c1"), "{s}");
        let e = render_str("t", "a\n\n{% if %}\n", &ctx(), "c1").unwrap_err();
        assert!(e.to_string().starts_with("templates/t:3: "), "{e}");
        // an absent optional field is undefined, not empty
        assert!(render_str("t", "{{ ip }}", &ctx(), "c1").is_err());
        assert_eq!(
            render_str(
                "t",
                "{% if ip is defined %}x{% else %}none{% endif %}",
                &ctx(),
                "c1"
            )
            .unwrap(),
            "none"
        );
        // the example of share/ renders with and without the optional values
        let mut c = ctx();
        c.vars.insert("site".into(), "lab".into());
        let ex = include_str!("../../share/templates/role.conf");
        let out = render_str("role.conf", ex, &c, "c1").unwrap();
        assert!(
            out.contains("hostname=c1\nrole=gpu\nsite=lab\ngroups=gpu\n"),
            "{out}"
        );
        c.vars.remove("role");
        c.facts.insert("memory_mib".into(), 4096.into());
        let out = render_str("role.conf", ex, &c, "c1").unwrap();
        assert!(
            out.contains("role=none") && out.contains("memory_mib=4096"),
            "{out}"
        );
        // no HTML escaping whatever the name
        assert_eq!(
            render_str("t.html", "{{ '<&>' }}", &ctx(), "c1").unwrap(),
            "<&>"
        );
    }
}
