//! The node inventory: the native `nodes.yml` (hostname -> mac, ip, groups, vars; a
//! `groups:` mapping with group vars) and the reference's `nodes_parameters.yml`
//! (hostname -> equipment_profile, network).
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use yaml_serde::{Mapping, Value};

use super::bmc::{self, BmcSpec};
use super::facts::{self, Facts};
use super::selectors::GroupSelect;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::yaml::{describe_error, scalar_string};

/// One node's facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    /// Lower-case, colon-separated.
    pub mac: Option<String>,
    pub ip: Option<String>,
    /// Prefix length or dotted netmask, as written.
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    pub interface: Option<String>,
    pub groups: Vec<String>,
    /// The node's own variables (group variables are merged by `vars_of`).
    pub vars: BTreeMap<String, String>,
    /// The node's own `bmc:` fields (group fields are merged by `bmc_of`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bmc: Option<BmcSpec>,
}

impl Node {
    /// The MAC as iPXE's `${mac:hexhyp}` prints it: `52-54-00-12-34-56`.
    pub fn mac_hexhyp(&self) -> Option<String> {
        self.mac.as_ref().map(|m| m.replace(':', "-"))
    }
}

/// All nodes and group variables.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub nodes: BTreeMap<String, Node>,
    pub group_vars: BTreeMap<String, BTreeMap<String, String>>,
    /// Groups' `bmc:` fields.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group_bmc: BTreeMap<String, BmcSpec>,
    /// Groups' `selectors` and `match`, in file order (issue 13, groups by selectors).
    #[serde(skip)]
    pub group_select: Vec<(String, GroupSelect)>,
    /// node -> the groups whose selectors select it, in file order (computed by
    /// [`Inventory::load`] from the nodes and their facts; see [`Inventory::select`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub selected: BTreeMap<String, Vec<String>>,
}

/// How a node belongs to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The group `all` (every node).
    All,
    /// The group's selectors select it; the group's match expression.
    Selected(String),
    /// The node lists it.
    Listed,
}

impl Inventory {
    /// Loads `nodes_file` (if present) and the reference's `nodes_parameters_file` (if
    /// configured). A node in both takes the native file's values.
    pub fn load(cfg: &Config) -> Result<Inventory> {
        let mut inv = Inventory::default();
        if let Some(p) = &cfg.nodes_parameters_file {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            inv.merge(parse_reference(&text, p)?);
        }
        match std::fs::read_to_string(&cfg.nodes_file) {
            Ok(text) => inv.merge(parse_native(&text, &cfg.nodes_file)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&cfg.nodes_file, e)),
        }
        if !inv.group_select.is_empty() {
            // Facts are read only when a selector tests one, and only for the nodes
            // that have a facts file (one directory listing, not one open per node).
            let with_facts: std::collections::BTreeSet<String> =
                if inv.group_select.iter().any(|(_, g)| g.needs_facts()) {
                    std::fs::read_dir(facts::dir(cfg))
                        .map(|rd| {
                            rd.filter_map(|e| e.ok())
                                .filter_map(|e| {
                                    e.file_name()
                                        .to_str()
                                        .and_then(|n| n.strip_suffix(".json"))
                                        .map(str::to_string)
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    Default::default()
                };
            inv.select(|n| {
                if with_facts.contains(n) {
                    facts::load(cfg, n)
                } else {
                    None
                }
            });
        }
        Ok(inv)
    }

    /// Computes [`Inventory::selected`]: for each node, the groups whose selectors
    /// select it, given its facts.
    pub fn select(&mut self, facts_of: impl Fn(&str) -> Option<Facts>) {
        self.selected.clear();
        if self.group_select.is_empty() {
            return;
        }
        for n in self.nodes.values() {
            let f = facts_of(&n.name);
            let groups: Vec<String> = self
                .group_select
                .iter()
                .filter(|(_, g)| g.selects(n, f.as_ref()))
                .map(|(name, _)| name.clone())
                .collect();
            if !groups.is_empty() {
                self.selected.insert(n.name.clone(), groups);
            }
        }
    }

    /// A node's groups, lowest precedence first: `all` (when defined), the groups that
    /// select it (file order), the groups it lists (its order). A group both listed and
    /// selected counts as listed.
    pub fn groups_of(&self, node: &Node) -> Vec<(String, Via)> {
        let mut out = Vec::new();
        if self.group_vars.contains_key("all") && !node.groups.iter().any(|g| g == "all") {
            out.push(("all".to_string(), Via::All));
        }
        if let Some(sel) = self.selected.get(&node.name) {
            for g in sel {
                if node.groups.contains(g) {
                    continue;
                }
                let expr = self
                    .group_select
                    .iter()
                    .find(|(n, _)| n == g)
                    .map(|(_, s)| s.expr.to_string())
                    .unwrap_or_default();
                out.push((g.clone(), Via::Selected(expr)));
            }
        }
        for g in &node.groups {
            out.push((g.clone(), Via::Listed));
        }
        out
    }

    /// The groups a node is in, listed first, then selected (no `all`).
    pub fn member_groups(&self, node: &Node) -> Vec<String> {
        let mut v = node.groups.clone();
        if let Some(sel) = self.selected.get(&node.name) {
            v.extend(sel.iter().filter(|g| !node.groups.contains(g)).cloned());
        }
        v
    }

    fn merge(&mut self, other: Inventory) {
        self.nodes.extend(other.nodes);
        for (g, vars) in other.group_vars {
            self.group_vars.entry(g).or_default().extend(vars);
        }
        self.group_bmc.extend(other.group_bmc);
        self.group_select.extend(other.group_select);
    }

    /// A node's BMC: its own fields, then its groups' (listed in order, then selected,
    /// then `all`) for what it lacks. None when neither says anything.
    pub fn bmc_of(&self, node: &Node) -> Option<BmcSpec> {
        let mut out = node.bmc.clone();
        let groups = self.groups_of(node);
        let listed = groups.iter().filter(|(_, v)| *v == Via::Listed);
        let others = groups.iter().filter(|(_, v)| *v != Via::Listed).rev();
        for (g, _) in listed.chain(others) {
            if let Some(gb) = self.group_bmc.get(g) {
                out = Some(out.unwrap_or_default().or(gb));
            }
        }
        out
    }

    /// Members of a group (for `@group` in node sets): the nodes listing it and those its
    /// selectors select; `all`: every node.
    pub fn group_members(&self, group: &str) -> Option<Vec<String>> {
        if group == "all" {
            return Some(self.nodes.keys().cloned().collect());
        }
        let v: Vec<String> = self
            .nodes
            .values()
            .filter(|n| {
                n.groups.iter().any(|g| g == group)
                    || self
                        .selected
                        .get(&n.name)
                        .is_some_and(|s| s.iter().any(|g| g == group))
            })
            .map(|n| n.name.clone())
            .collect();
        if v.is_empty() && !self.group_vars.contains_key(group) {
            None
        } else {
            Some(v)
        }
    }

    /// A node's variables: `all`'s, then the groups selecting it, then the groups it
    /// lists (in order), then its own, which win.
    pub fn vars_of(&self, node: &Node) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (g, _) in self.groups_of(node) {
            if let Some(v) = self.group_vars.get(&g) {
                out.extend(v.clone());
            }
        }
        out.extend(node.vars.clone());
        out
    }

    /// The node with this MAC (any case, `:` or `-` separated).
    pub fn by_mac(&self, mac: &str) -> Option<&Node> {
        let want = normalize_mac(mac)?;
        self.nodes
            .values()
            .find(|n| n.mac.as_deref() == Some(want.as_str()))
    }
}

/// `52-54-00-AB-cd-ef` / `5254.00ab.cdef` -> `52:54:00:ab:cd:ef`; None if not a MAC.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let parts: Vec<&str> = (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    Some(parts.join(":"))
}

fn yaml_doc(text: &str, path: &Path) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Mapping(Mapping::new()));
    }
    yaml_serde::from_str(text).map_err(|e| Error::Yaml {
        path: path.to_path_buf(),
        msg: describe_error(&e),
    })
}

fn vars_map(v: &Value, path: &Path, what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match v {
        Value::Null => {}
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().map(str::to_string).ok_or_else(|| Error::Yaml {
                    path: path.to_path_buf(),
                    msg: format!("{what}: variable names must be strings"),
                })?;
                let v = scalar_string(v).ok_or_else(|| Error::Yaml {
                    path: path.to_path_buf(),
                    msg: format!("{what}.{k}: must be a string, number or boolean"),
                })?;
                out.insert(k, v);
            }
        }
        _ => {
            return Err(Error::Yaml {
                path: path.to_path_buf(),
                msg: format!("{what}: must be a mapping of variables"),
            })
        }
    }
    Ok(out)
}

const GROUP_KEYS: &[&str] = &["vars", "bmc", "selectors", "match"];

const NODE_KEYS: &[&str] = &[
    "mac",
    "ip",
    "netmask",
    "prefix",
    "gateway",
    "interface",
    "groups",
    "vars",
    "bmc",
];

/// The native `nodes.yml`.
pub fn parse_native(text: &str, path: &Path) -> Result<Inventory> {
    let doc = yaml_doc(text, path)?;
    let bad = |msg: String| Error::Yaml {
        path: path.to_path_buf(),
        msg,
    };
    let Value::Mapping(top) = doc else {
        return Err(bad(
            "the top level must be a mapping of hostname: {mac, ip, groups, vars}".into(),
        ));
    };
    let mut inv = Inventory::default();
    for (k, v) in &top {
        let key = k
            .as_str()
            .map(str::to_string)
            .or_else(|| scalar_string(k))
            .ok_or_else(|| bad("node names must be strings".into()))?;
        if key == "groups" {
            let Value::Mapping(groups) = v else {
                return Err(bad(
                    "groups: must be a mapping of group: {vars: {...}}".into()
                ));
            };
            for (g, gv) in groups {
                let gname = g
                    .as_str()
                    .ok_or_else(|| bad("group names must be strings".into()))?
                    .to_string();
                if let Value::Mapping(m) = gv {
                    for fk in m.keys() {
                        let f = fk.as_str().unwrap_or_default();
                        if !GROUP_KEYS.contains(&f) {
                            return Err(bad(format!(
                                "groups.{gname}.{f}: unknown field; allowed fields are {}",
                                GROUP_KEYS.join(", ")
                            )));
                        }
                    }
                    if let Some(sel) =
                        GroupSelect::parse(&gname, m.get("selectors"), m.get("match"))
                            .map_err(bad)?
                    {
                        inv.group_select.push((gname.clone(), sel));
                    }
                }
                if let Some(b) = gv.as_mapping().and_then(|m| m.get("bmc")) {
                    let spec = bmc::parse(b, &format!("groups.{gname}")).map_err(bad)?;
                    inv.group_bmc.insert(gname.clone(), spec);
                }
                let vars = match gv {
                    Value::Mapping(m) => match m.get("vars") {
                        Some(vv) => vars_map(vv, path, &format!("groups.{gname}.vars"))?,
                        None => BTreeMap::new(),
                    },
                    Value::Null => BTreeMap::new(),
                    _ => return Err(bad(format!("groups.{gname}: must be a mapping with vars"))),
                };
                inv.group_vars.insert(gname, vars);
            }
            continue;
        }
        crate::names::node(&key).map_err(|e| bad(e.to_string()))?;
        let mut n = Node {
            name: key.clone(),
            ..Default::default()
        };
        match v {
            Value::Null => {}
            Value::Mapping(m) => {
                for fk in m.keys() {
                    let f = fk.as_str().unwrap_or_default();
                    if !NODE_KEYS.contains(&f) {
                        return Err(bad(format!(
                            "{key}.{f}: unknown field; allowed fields are {}",
                            NODE_KEYS.join(", ")
                        )));
                    }
                }
                if let Some(mac) = m.get("mac").and_then(scalar_string) {
                    n.mac = Some(normalize_mac(&mac).ok_or_else(|| {
                        bad(format!(
                            "{key}.mac: {mac:?} is not a MAC address (e.g. 52:54:00:12:34:56)"
                        ))
                    })?);
                }
                n.ip = m.get("ip").and_then(scalar_string);
                if let Some(ip) = &n.ip {
                    if ip.parse::<std::net::IpAddr>().is_err() {
                        return Err(bad(format!("{key}.ip: {ip:?} is not an IP address")));
                    }
                }
                n.netmask = m
                    .get("netmask")
                    .or_else(|| m.get("prefix"))
                    .and_then(scalar_string);
                n.gateway = m.get("gateway").and_then(scalar_string);
                n.interface = m.get("interface").and_then(scalar_string);
                if let Some(g) = m.get("groups") {
                    n.groups = crate::yaml::py_list(g)
                        .ok_or_else(|| bad(format!("{key}.groups: must be a list")))?;
                }
                if let Some(vv) = m.get("vars") {
                    n.vars = vars_map(vv, path, &format!("{key}.vars"))?;
                }
                if let Some(b) = m.get("bmc") {
                    n.bmc = Some(bmc::parse(b, &key).map_err(bad)?);
                }
            }
            _ => {
                return Err(bad(format!(
                    "{key}: must be a mapping (mac, ip, groups, vars)"
                )))
            }
        }
        inv.nodes.insert(key, n);
    }
    Ok(inv)
}

/// The reference's `nodes_parameters.yml`: hostname -> {equipment_profile, network}. The
/// equipment profile becomes a group; the network's main interface data gives ip/mac.
pub fn parse_reference(text: &str, path: &Path) -> Result<Inventory> {
    let doc = yaml_doc(text, path)?;
    let bad = |msg: String| Error::Yaml {
        path: path.to_path_buf(),
        msg,
    };
    let Value::Mapping(top) = doc else {
        return Err(bad(
            "the top level must be a mapping of hostname: {equipment_profile, network}".into(),
        ));
    };
    let mut inv = Inventory::default();
    for (k, v) in &top {
        let Some(name) = k.as_str().map(str::to_string).or_else(|| scalar_string(k)) else {
            continue;
        };
        crate::names::node(&name).map_err(|e| bad(e.to_string()))?;
        let mut n = Node {
            name: name.clone(),
            ..Default::default()
        };
        if let Value::Mapping(m) = v {
            if let Some(p) = m.get("equipment_profile").and_then(scalar_string) {
                n.vars.insert("equipment_profile".into(), p.clone());
                n.groups.push(p);
            }
            if let Some(Value::Mapping(net)) = m.get("network") {
                let get = |suffixes: &[&str]| -> Option<String> {
                    net.iter().find_map(|(k, v)| {
                        let k = k.as_str()?;
                        suffixes
                            .iter()
                            .any(|s| k == *s || k.ends_with(&format!("_{s}")))
                            .then(|| scalar_string(v))
                            .flatten()
                    })
                };
                n.ip = get(&["interface_ip", "ip"]);
                n.netmask = get(&["interface_netmask", "netmask", "prefix"]);
                n.gateway = get(&["interface_gateway", "gateway"]);
                n.interface = get(&["network_interface", "interface"]);
                n.mac = get(&["interface_mac", "mac"]).and_then(|m| normalize_mac(&m));
            }
        }
        inv.nodes.insert(name, n);
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_inventory() {
        let text = "c001: {mac: \"52:54:00:12:34:56\", ip: 10.0.0.5, groups: [compute], vars: {console: ttyS0}}\nc002:\n  mac: 52-54-00-AB-CD-EF\n  groups: [compute, gpu]\ngroups:\n  compute:\n    vars: {kernel_args: quiet, console: tty0}\n  gpu: {vars: {kernel_args: nouveau.modeset=0}}\n";
        let inv = parse_native(text, Path::new("nodes.yml")).unwrap();
        assert_eq!(inv.nodes.len(), 2);
        let c1 = &inv.nodes["c001"];
        assert_eq!(c1.mac_hexhyp().as_deref(), Some("52-54-00-12-34-56"));
        let v = inv.vars_of(c1);
        assert_eq!(v["console"], "ttyS0", "the node's own value wins");
        assert_eq!(v["kernel_args"], "quiet");
        let v2 = inv.vars_of(&inv.nodes["c002"]);
        assert_eq!(v2["kernel_args"], "nouveau.modeset=0");
        assert_eq!(inv.by_mac("52:54:00:ab:cd:ef").unwrap().name, "c002");
        assert_eq!(inv.group_members("gpu").unwrap(), vec!["c002"]);
        assert!(inv.group_members("nope").is_none());
    }

    #[test]
    fn native_errors_name_the_field() {
        let e = parse_native("c1: {mca: x}\n", Path::new("n.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c1.mca") && e.contains("mac"), "{e}");
        let e = parse_native("c1: {mac: zz}\n", Path::new("n.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c1.mac"), "{e}");
        let e = parse_native("../x: {}\n", Path::new("n.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid node name"), "{e}");
    }

    #[test]
    fn bmc_per_node_and_group() {
        let text = "c1: {groups: [compute], bmc: {address: 10.0.0.1}}\nc2: {groups: [compute]}\nc3: {}\ngroups:\n  compute: {bmc: {driver: ipmi, user: admin}}\n";
        let inv = parse_native(text, Path::new("n.yml")).unwrap();
        let b1 = inv.bmc_of(&inv.nodes["c1"]).unwrap();
        assert_eq!(b1.address.as_deref(), Some("10.0.0.1"));
        assert_eq!(b1.user.as_deref(), Some("admin"));
        assert!(inv.bmc_of(&inv.nodes["c2"]).unwrap().address.is_none());
        assert!(inv.bmc_of(&inv.nodes["c3"]).is_none());
        let e = parse_native("c1: {bmc: {pasword: x}}\n", Path::new("n.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c1.bmc.pasword") && e.contains("address"), "{e}");
        let e = parse_native("groups: {g: {bmc: {driver: x}}}\n", Path::new("n.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("groups.g.bmc.driver"), "{e}");
    }

    #[test]
    fn share_nodes_example_parses_and_selects() {
        let text = include_str!("../../share/nodes.yml");
        let mut inv = parse_native(text, Path::new("share/nodes.yml")).unwrap();
        inv.select(|n| {
            (n == "c001").then(|| Facts {
                memory_mib: 8192,
                vendor: "QEMU".into(),
                ..Default::default()
            })
        });
        assert_eq!(inv.group_members("gpu").unwrap(), vec!["c001", "c002"]);
        let v = inv.vars_of(&inv.nodes["login1"]);
        assert_eq!((v["role"].as_str(), v["site"].as_str()), ("login", "lab"));
        assert_eq!(inv.vars_of(&inv.nodes["c001"])["role"], "gpu");
        assert_eq!(inv.group_members("all").unwrap().len(), 3);
    }

    #[test]
    fn reference_inventory() {
        let text = "c001:\n  equipment_profile: equipment_typeC\n  network:\n    node_main_network_interface: enp0s3\n    node_main_network_interface_ip: 10.10.3.1\n    node_main_network_interface_netmask: 16\n    node_main_network_interface_gateway: 10.10.0.1\n";
        let inv = parse_reference(text, Path::new("np.yml")).unwrap();
        let n = &inv.nodes["c001"];
        assert_eq!(n.ip.as_deref(), Some("10.10.3.1"));
        assert_eq!(n.netmask.as_deref(), Some("16"));
        assert_eq!(n.gateway.as_deref(), Some("10.10.0.1"));
        assert_eq!(n.interface.as_deref(), Some("enp0s3"));
        assert_eq!(n.groups, vec!["equipment_typeC"]);
    }
}
