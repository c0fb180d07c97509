//! Edits of the native `nodes.yml` (`nodes add|set|remove|import`): pure text in, text
//! out, validated before anyone writes it (ops/nodes.rs takes the inventory lock and
//! writes atomically).
//!
//! What of a hand-written file survives. yaml_serde (the project's YAML library) keeps
//! the order of mappings but drops comments and layout. So:
//! - `add` (and an `import` that only adds) **appends** the new nodes as text after the
//!   file's last line: everything already there (comments, order, flow or block style)
//!   stays byte for byte. Only when the top level is not a block mapping is it rewritten.
//! - `set`, `remove` and an `import` that changes existing nodes **rewrite** the file:
//!   node and group order is kept, each node becomes one flow-style line
//!   (`c001: {mac: "52:54:...", groups: [compute]}`), comments are lost; the previous
//!   file is kept as `nodes.yml.bak` (by ops) and the new file's first line says so.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use yaml_serde::{Mapping, Value};

use super::inventory::{normalize_mac, parse_native, Inventory};
use super::nodeset;
use crate::error::{Error, Result};

/// The fields a command line or a CSV row gives a node (None: leave it as it is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFields {
    /// One per node, matched in node order (already checked by [`NodeFields::check`]).
    pub macs: Vec<String>,
    /// The first node's address; the next nodes get the next addresses (IPv4).
    pub ip: Option<String>,
    /// Replaces the node's groups.
    pub groups: Option<Vec<String>>,
    /// `K=V` sets a variable, `K=` removes it.
    pub vars: Vec<(String, Option<String>)>,
    /// The BMC address (`bmc.address`).
    pub bmc: Option<String>,
}

/// One edit of the inventory.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Add {
        nodeset: String,
        fields: NodeFields,
    },
    Set {
        nodeset: String,
        fields: NodeFields,
    },
    Remove {
        nodeset: String,
    },
    /// Rows of a CSV file: (line, node, fields); an existing node is updated.
    Import {
        rows: Vec<(usize, String, NodeFields)>,
    },
}

/// The new file text and what changed.
#[derive(Debug, Clone, Default)]
pub struct Edited {
    pub text: String,
    /// The old text is untouched at the start of the new one (comments kept).
    pub appended: bool,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

pub const REWRITE_HEADER: &str =
    "# Written by `disklessset nodes`: comments of the previous version are in nodes.yml.bak";

fn name_ok(kind: &str, s: &str) -> Result<()> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(Error::invalid(format!(
            "{kind} {s:?}: use letters, digits, '_', '-' or '.' (at most 64)"
        )));
    }
    Ok(())
}

impl NodeFields {
    /// Parses command-line values: MACs normalised, the IP, group and variable names.
    pub fn parse(
        macs: &[String],
        ip: Option<&str>,
        groups: &[String],
        vars: &[String],
        bmc: Option<&str>,
    ) -> Result<NodeFields> {
        let mut f = NodeFields::default();
        for m in macs {
            f.macs.push(normalize_mac(m).ok_or_else(|| {
                Error::invalid(format!(
                    "--mac {m:?}: not a MAC address (e.g. 52:54:00:12:34:56)"
                ))
            })?);
        }
        if let Some(ip) = ip {
            ip.parse::<IpAddr>()
                .map_err(|_| Error::invalid(format!("--ip {ip:?}: not an IP address")))?;
            f.ip = Some(ip.to_string());
        }
        if !groups.is_empty() {
            let mut g = Vec::new();
            for s in groups.iter().flat_map(|s| s.split(',')) {
                let s = s.trim();
                if s.is_empty() {
                    continue;
                }
                name_ok("--group", s)?;
                if !g.iter().any(|x| x == s) {
                    g.push(s.to_string());
                }
            }
            f.groups = Some(g);
        }
        for kv in vars {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Error::invalid(format!(
                    "--var {kv:?}: use KEY=VALUE (KEY= removes the variable)"
                ))
            })?;
            name_ok("--var", k)?;
            if v.chars().any(|c| c.is_control()) {
                return Err(Error::invalid(format!(
                    "--var {k}: the value must be one line without control characters"
                )));
            }
            f.vars
                .push((k.to_string(), (!v.is_empty()).then(|| v.to_string())));
        }
        if let Some(b) = bmc.filter(|b| !b.is_empty()) {
            if b.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(format!(
                    "bmc {b:?}: an address or host name, without spaces"
                )));
            }
            f.bmc = Some(b.to_string());
        }
        Ok(f)
    }

    /// What this edit gives node number `i` of `n` (MACs matched in order, IPs counted up).
    fn for_node(&self, i: usize, n: usize, set: &str) -> Result<NodeFields> {
        // Not self.clone(): that would copy every MAC for every node (quadratic).
        let mut f = NodeFields {
            macs: Vec::new(),
            ip: self.ip.clone(),
            groups: self.groups.clone(),
            vars: self.vars.clone(),
            bmc: self.bmc.clone(),
        };
        f.macs = match self.macs.len() {
            0 => vec![],
            k if k == n => vec![self.macs[i].clone()],
            k => {
                return Err(Error::invalid(format!(
                    "--mac given {k} times for the {n} nodes of {set}: give one --mac per node (matched in node order)"
                )))
            }
        };
        if let Some(ip) = &self.ip {
            f.ip = Some(if i == 0 {
                ip.clone()
            } else {
                match ip.parse::<IpAddr>() {
                    Ok(IpAddr::V4(a)) => {
                        let v = u32::from(a).checked_add(i as u32).ok_or_else(|| {
                            Error::invalid(format!("--ip {ip}: {n} addresses overflow"))
                        })?;
                        Ipv4Addr::from(v).to_string()
                    }
                    _ => {
                        return Err(Error::invalid(format!(
                            "--ip {ip} for {n} nodes: consecutive addresses are IPv4 only; give the nodes one by one"
                        )))
                    }
                }
            });
        }
        Ok(f)
    }
}

fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

/// Applies the fields to a node's mapping.
fn apply_fields(m: &mut Mapping, f: &NodeFields) {
    if let Some(mac) = f.macs.first() {
        m.insert(key("mac"), Value::String(mac.clone()));
    }
    if let Some(ip) = &f.ip {
        m.insert(key("ip"), Value::String(ip.clone()));
    }
    if let Some(g) = &f.groups {
        if g.is_empty() {
            m.shift_remove("groups");
        } else {
            m.insert(
                key("groups"),
                Value::Sequence(g.iter().map(|s| Value::String(s.clone())).collect()),
            );
        }
    }
    if !f.vars.is_empty() {
        let mut vars = match m.get("vars") {
            Some(Value::Mapping(v)) => v.clone(),
            _ => Mapping::new(),
        };
        for (k, v) in &f.vars {
            match v {
                Some(v) => {
                    vars.insert(key(k), Value::String(v.clone()));
                }
                None => {
                    vars.shift_remove(k.as_str());
                }
            }
        }
        if vars.is_empty() {
            m.shift_remove("vars");
        } else {
            m.insert(key("vars"), Value::Mapping(vars));
        }
    }
    if let Some(b) = &f.bmc {
        let mut bm = match m.get("bmc") {
            Some(Value::Mapping(v)) => v.clone(),
            _ => Mapping::new(),
        };
        bm.insert(key("address"), Value::String(b.clone()));
        m.insert(key("bmc"), Value::Mapping(bm));
    }
}

/// A scalar as YAML: plain when nothing can misread it, else JSON-quoted (JSON strings
/// are YAML double-quoted scalars).
fn scalar(s: &str) -> String {
    const RESERVED: &[&str] = &["true", "false", "yes", "no", "on", "off", "null", "y", "n"];
    let plain = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// A value in YAML flow style, on one line.
fn flow(v: &Value, out: &mut String) -> Result<()> {
    match v {
        Value::Null => out.push('~'),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&scalar(s)),
        Value::Sequence(seq) => {
            out.push('[');
            for (i, x) in seq.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(x, out)?;
            }
            out.push(']');
        }
        Value::Mapping(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(k, out)?;
                out.push_str(": ");
                flow(x, out)?;
            }
            out.push('}');
        }
        Value::Tagged(t) => {
            return Err(Error::invalid(format!(
            "the nodes file uses the YAML tag {}: not supported by `nodes` edits (edit it by hand)",
            t.tag
        )))
        }
    }
    Ok(())
}

fn node_line(name: &str, v: &Value) -> Result<String> {
    let mut s = scalar(name);
    s.push_str(": ");
    match v {
        Value::Null => s.push_str("{}"),
        v => flow(v, &mut s)?,
    }
    s.push('\n');
    Ok(s)
}

/// The whole file, in this module's style (order kept).
pub fn emit(top: &Mapping) -> Result<String> {
    let mut out = String::with_capacity(top.len() * 80 + 128);
    out.push_str(REWRITE_HEADER);
    out.push('\n');
    for (k, v) in top {
        let name = k
            .as_str()
            .map(str::to_string)
            .or_else(|| crate::yaml::scalar_string(k))
            .unwrap_or_default();
        if name == "groups" {
            if let Value::Mapping(groups) = v {
                out.push_str("groups:\n");
                for (g, gv) in groups {
                    out.push_str("  ");
                    out.push_str(&node_line(g.as_str().unwrap_or_default(), gv)?);
                }
                continue;
            }
        }
        out.push_str(&node_line(&name, v)?);
    }
    Ok(out)
}

/// Whether new top-level keys can be appended as text: the document is a block mapping
/// (its first significant line is `key:` at column 0) or empty.
fn appendable(text: &str) -> bool {
    for l in text.lines() {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') || t == "---" {
            continue;
        }
        return !l.starts_with([' ', '\t', '{', '[', '-']) && !t.starts_with("...");
    }
    true
}

/// Applies an edit to the native file's text. `reference`: the nodes of the reference's
/// `nodes_parameters.yml` (read-only here: they cannot be edited or duplicated).
pub fn apply(old: &str, path: &Path, reference: &Inventory, edit: &Edit) -> Result<Edited> {
    // The current file must be valid before it is edited.
    parse_native(old, path)?;
    let mut top = match if old.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        yaml_serde::from_str(old).map_err(|e| Error::Yaml {
            path: path.to_path_buf(),
            msg: crate::yaml::describe_error(&e),
        })?
    } {
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    };
    let mut ed = Edited::default();
    let mut appended_text = String::new();
    let mut rewrite = false;
    let native: HashSet<String> = top
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .filter(|k| k != "groups")
        .collect();
    let expand = |set: &str| -> Result<Vec<String>> {
        let nodes = nodeset::expand(set, &|_| None)
            .map_err(|e| Error::invalid(format!("node set {set:?}: {e}")))?;
        for n in &nodes {
            crate::names::node(n)?;
        }
        Ok(nodes)
    };
    let refuse_reference = |n: &str| -> Result<()> {
        if reference.nodes.contains_key(n) && !native.contains(n) {
            return Err(Error::invalid(format!(
                "node {n} comes from the reference's nodes_parameters.yml: edit that file (nodes commands edit nodes.yml only); nothing was written"
            )));
        }
        Ok(())
    };
    let mut add = |top: &mut Mapping, ed: &mut Edited, n: &str, f: &NodeFields| -> Result<()> {
        if n == "groups" {
            return Err(Error::invalid(
                "\"groups\" is the group section of nodes.yml, not a node name",
            ));
        }
        let mut m = Mapping::new();
        apply_fields(&mut m, f);
        let v = Value::Mapping(m);
        appended_text.push_str(&node_line(n, &v)?);
        top.insert(key(n), v);
        ed.added.push(n.to_string());
        Ok(())
    };
    let update = |top: &mut Mapping, n: &str, f: &NodeFields| {
        let slot = top.entry(key(n)).or_insert(Value::Null);
        if !matches!(slot, Value::Mapping(_)) {
            *slot = Value::Mapping(Mapping::new());
        }
        if let Value::Mapping(m) = slot {
            apply_fields(m, f);
        }
    };
    match edit {
        Edit::Add {
            nodeset: set,
            fields,
        } => {
            let nodes = expand(set)?;
            let exist: Vec<String> = nodes
                .iter()
                .filter(|n| native.contains(*n) || reference.nodes.contains_key(*n))
                .cloned()
                .collect();
            if !exist.is_empty() {
                return Err(Error::invalid(format!(
                    "nodes {} already exist: use `disklessset nodes set` to change them; nothing was written",
                    nodeset::fold(&exist)
                )));
            }
            top.reserve(nodes.len());
            for (i, n) in nodes.iter().enumerate() {
                let f = fields.for_node(i, nodes.len(), set)?;
                add(&mut top, &mut ed, n, &f)?;
            }
        }
        Edit::Set {
            nodeset: set,
            fields,
        } => {
            let nodes = expand(set)?;
            let unknown: Vec<String> = nodes
                .iter()
                .filter(|n| !native.contains(*n) && !reference.nodes.contains_key(*n))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(Error::invalid(format!(
                    "unknown nodes {} (add them with `disklessset nodes add`); nothing was written",
                    nodeset::fold(&unknown)
                )));
            }
            rewrite = true;
            for (i, n) in nodes.iter().enumerate() {
                refuse_reference(n)?;
                let f = fields.for_node(i, nodes.len(), set)?;
                update(&mut top, n, &f);
                ed.changed.push(n.clone());
            }
        }
        Edit::Remove { nodeset: set } => {
            let nodes = expand(set)?;
            let unknown: Vec<String> = nodes
                .iter()
                .filter(|n| !native.contains(*n) && !reference.nodes.contains_key(*n))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(Error::invalid(format!(
                    "unknown nodes {}; nothing was removed",
                    nodeset::fold(&unknown)
                )));
            }
            for n in &nodes {
                refuse_reference(n)?;
            }
            let gone: HashSet<&str> = nodes.iter().map(String::as_str).collect();
            top = top
                .into_iter()
                .filter(|(k, _)| !k.as_str().is_some_and(|k| gone.contains(k)))
                .collect();
            rewrite = true;
            ed.removed = nodes;
        }
        Edit::Import { rows } => {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (line, n, f) in rows {
                if let Some(first) = seen.insert(n.as_str(), *line) {
                    return Err(Error::invalid(format!(
                        "line {line}: node {n} is already on line {first}; nothing was written"
                    )));
                }
                crate::names::node(n).map_err(|e| Error::invalid(format!("line {line}: {e}")))?;
                if native.contains(n) {
                    rewrite = true;
                    update(&mut top, n, f);
                    ed.changed.push(n.clone());
                } else {
                    refuse_reference(n).map_err(|e| Error::invalid(format!("line {line}: {e}")))?;
                    add(&mut top, &mut ed, n, f)?;
                }
            }
        }
    }
    let append = !rewrite && appendable(old);
    ed.text = if append {
        let mut t = String::with_capacity(old.len() + appended_text.len() + 1);
        t.push_str(old);
        if !old.is_empty() && !old.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(&appended_text);
        t
    } else {
        emit(&top)?
    };
    ed.appended = append;
    // The result must read back, and no MAC or IP may belong to two nodes.
    let mut inv = Inventory::default();
    inv.nodes.extend(reference.nodes.clone());
    inv.nodes.extend(parse_native(&ed.text, path)?.nodes);
    check_unique(&inv)?;
    Ok(ed)
}

/// Refuses a MAC or an IP given to two nodes, naming both.
pub fn check_unique(inv: &Inventory) -> Result<()> {
    let mut macs: BTreeMap<&str, &str> = BTreeMap::new();
    let mut ips: BTreeMap<&str, &str> = BTreeMap::new();
    for n in inv.nodes.values() {
        if let Some(m) = n.mac.as_deref() {
            if let Some(other) = macs.insert(m, &n.name) {
                return Err(Error::invalid(format!(
                    "MAC {m} would belong to both {other} and {}: a MAC identifies one node; nothing was written",
                    n.name
                )));
            }
        }
        if let Some(ip) = n.ip.as_deref() {
            if let Some(other) = ips.insert(ip, &n.name) {
                return Err(Error::invalid(format!(
                    "IP {ip} would belong to both {other} and {}; nothing was written",
                    n.name
                )));
            }
        }
    }
    Ok(())
}

/// Reads a CSV inventory (header row; columns `node` (required), `mac`, `ip`, `groups`
/// (separated by `;` or spaces), `bmc` (address), other columns refused). Errors name
/// the line.
pub fn parse_csv(text: &str, path: &Path) -> Result<Vec<(usize, String, NodeFields)>> {
    const COLS: &[&str] = &["node", "mac", "ip", "groups", "bmc"];
    let mut rd = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(false)
        .from_reader(text.as_bytes());
    let p = path.display();
    let header: Vec<String> = rd
        .headers()
        .map_err(|e| Error::invalid(format!("{p}: line 1: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    for h in &header {
        if !COLS.contains(&h.as_str()) {
            return Err(Error::invalid(format!(
                "{p}: line 1: unknown column {h:?}; the columns are {}",
                COLS.join(", ")
            )));
        }
    }
    let col = |name: &str| header.iter().position(|h| h == name);
    let node_col = col("node").ok_or_else(|| {
        Error::invalid(format!(
            "{p}: line 1: no `node` column (the header names the columns: {})",
            COLS.join(",")
        ))
    })?;
    let mut rows = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            let msg = match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("{len} fields where the header has {expected_len}"),
                _ => e.to_string(),
            };
            Error::invalid(format!("{p}: line {line}: {msg}; nothing was written"))
        })?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).filter(|s| !s.is_empty());
        let at = |e: Error| Error::invalid(format!("{p}: line {line}: {e}; nothing was written"));
        let node = get(Some(node_col))
            .ok_or_else(|| at(Error::invalid("the node field is empty")))?
            .to_string();
        crate::names::node(&node).map_err(at)?;
        let macs: Vec<String> = get(col("mac"))
            .map(|m| vec![m.to_string()])
            .unwrap_or_default();
        let groups: Vec<String> = get(col("groups"))
            .map(|g| {
                g.split([';', ' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let f = NodeFields::parse(&macs, get(col("ip")), &groups, &[], get(col("bmc")))
            .map_err(|e| at(Error::invalid(e.to_string().replace("--", ""))))?;
        rows.push((line, node, f));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(macs: &[&str], ip: Option<&str>, groups: &[&str]) -> NodeFields {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        NodeFields::parse(&s(macs), ip, &s(groups), &[], None).unwrap()
    }

    #[test]
    fn add_appends_and_keeps_comments() {
        let old = "# my cluster\nc1: {mac: '52:54:00:00:00:01'} # first\ngroups:\n  compute: {vars: {a: b}}\n";
        let e = Edit::Add {
            nodeset: "c[2-3]".into(),
            fields: fields(&[], Some("10.0.0.2"), &["compute"]),
        };
        let ed = apply(old, Path::new("n.yml"), &Inventory::default(), &e).unwrap();
        assert!(ed.appended);
        assert!(ed.text.starts_with(old), "{}", ed.text);
        let inv = parse_native(&ed.text, Path::new("n")).unwrap();
        assert_eq!(inv.nodes["c3"].ip.as_deref(), Some("10.0.0.3"));
        assert_eq!(inv.nodes["c2"].groups, vec!["compute"]);
        assert_eq!(inv.group_vars["compute"]["a"], "b");
    }

    #[test]
    fn duplicates_refused_naming_both() {
        let old = "c1: {mac: '52:54:00:00:00:01', ip: 10.0.0.1}\n";
        let e = Edit::Add {
            nodeset: "c2".into(),
            fields: fields(&["52-54-00-00-00-01"], None, &[]),
        };
        let msg = apply(old, Path::new("n"), &Inventory::default(), &e)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("c1") && msg.contains("c2"), "{msg}");
        let e = NodeFields::parse(&[], Some("not-ip"), &[], &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--ip \"not-ip\""), "{e}");
    }

    #[test]
    fn set_and_remove_rewrite_in_order() {
        let old = "b: {}\na: {groups: [x]}\nc: {mac: '52:54:00:00:00:03'}\n";
        let e = Edit::Set {
            nodeset: "a".into(),
            fields: NodeFields::parse(&[], None, &[], &["k=v w".into()], None).unwrap(),
        };
        let ed = apply(old, Path::new("n"), &Inventory::default(), &e).unwrap();
        assert!(!ed.appended);
        let body: Vec<&str> = ed.text.lines().skip(1).collect();
        assert_eq!(
            body,
            vec![
                "b: {}",
                "a: {groups: [x], vars: {k: \"v w\"}}",
                "c: {mac: \"52:54:00:00:00:03\"}"
            ]
        );
        let ed = apply(
            &ed.text,
            Path::new("n"),
            &Inventory::default(),
            &Edit::Remove {
                nodeset: "a,b".into(),
            },
        )
        .unwrap();
        assert_eq!(
            ed.text.lines().skip(1).collect::<Vec<_>>(),
            vec!["c: {mac: \"52:54:00:00:00:03\"}"]
        );
    }

    #[test]
    fn csv_lines_are_named() {
        let rows = parse_csv(
            "node,mac,ip,groups\nc1,52:54:00:00:00:01,10.0.0.1,compute;gpu\nc2,,,\n",
            Path::new("x.csv"),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].2.groups.as_deref(),
            Some(&["compute".to_string(), "gpu".into()][..])
        );
        let e = parse_csv("node,mac\nc1,zz\n", Path::new("x.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("zz"), "{e}");
        let e = parse_csv("node,mac\nc1,52:54:00:00:00:01\nc2\n", Path::new("x.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
