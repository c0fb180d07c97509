//! Discovery (issue 13): while it is on, a machine whose MAC is not in the inventory and
//! that asks the boot server for its script is served the discovery system (a kernel and
//! the own initramfs with `dl.mode=discover`): it reports its facts (MACs, arch, CPUs,
//! memory, disks, DMI) with `POST /discover/report`, and the policy names it:
//!
//! * `sequential`: the next free name of the pool, in arrival order (xCAT's sequential
//!   discovery); the pool exhausted, it stays pending (and a log line says so);
//! * `manual`: it stays pending until `discovery accept MAC NODE` (Confluent's manual);
//! * `open`: any machine is named, from the pool when one is given, else
//!   `node-<mac without colons>`.
//!
//! A named machine is written into the inventory (nodes.yml, with its MAC, appended so a
//! hand-written file keeps its comments) and its facts into `state_dir/facts/NODE.json`.
//!
//! The state (on/off, pool, policy, every machine that reported) is one JSON file,
//! `state_dir/discovery.json`, written atomically under the inventory lock (the same
//! lock as nodes.yml: accepting a machine writes both). The server reads it on each
//! request it concerns, so `discovery start` needs no restart of `serve`.
//!
//! Security: discovery is off by default; when on, an unknown machine gets only the
//! discovery initramfs (no root image, no secret), and a report can only add a node
//! named from the pool (or pend for approval), never change an existing node.
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::edit::{self, Edit, NodeFields};
use crate::cluster::facts::{self, Facts};
use crate::cluster::inventory::{normalize_mac, parse_reference, Inventory};
use crate::cluster::nodeset;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::store::lock;

/// Largest report body accepted (`413` beyond).
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
/// The URL path machines report to.
pub const REPORT_PATH: &str = "/discover/report";

/// How reporting machines are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Pending until `discovery accept MAC NODE`.
    #[default]
    Manual,
    /// The next free name of the pool, in arrival order.
    Sequential,
    /// Any machine, from the pool if given, else `node-<mac>`.
    Open,
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy> {
        match s {
            "manual" => Ok(Policy::Manual),
            "sequential" => Ok(Policy::Sequential),
            "open" => Ok(Policy::Open),
            _ => Err(Error::invalid(format!(
                "--policy {s:?}: allowed values are manual, sequential, open"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Manual => "manual",
            Policy::Sequential => "sequential",
            Policy::Open => "open",
        }
    }
}

/// One machine that reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// The boot MAC (lower case, `aa:bb:..`): the machine's key.
    pub mac: String,
    pub facts: Facts,
    /// Unix seconds of its (last) report.
    pub reported_at: u64,
    /// The node it was named (None: pending).
    #[serde(default)]
    pub name: Option<String>,
}

/// The discovery state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryState {
    pub on: bool,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub policy: Policy,
    /// Unix seconds of the last `discovery start`.
    #[serde(default)]
    pub started_at: Option<u64>,
    /// Every machine that reported, in arrival order.
    #[serde(default)]
    pub machines: Vec<Discovered>,
}

pub fn path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("discovery.json")
}

/// The state (default: off, nothing reported). A corrupt file is an error naming it.
pub fn load(cfg: &Config) -> Result<DiscoveryState> {
    let p = path(cfg);
    match std::fs::read(&p) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| {
            Error::invalid(format!(
                "{}: not a discovery state ({e}): remove it and run `disklessset discovery start` again",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DiscoveryState::default()),
        Err(e) => Err(Error::io(&p, e)),
    }
}

fn save(cfg: &Config, s: &DiscoveryState) -> Result<()> {
    let data = serde_json::to_vec_pretty(s)
        .map_err(|e| Error::invalid(format!("discovery state: {e}")))?;
    fsutil::write_atomic(&path(cfg), &data, 0o644)
}

/// Serialises the server's threads (the flock below serialises processes).
static WRITE: Mutex<()> = Mutex::new(());

/// The inventory lock, waiting up to `wait` for another writer (the server must not
/// drop a report because an admin runs `nodes add` at the same moment).
fn lock_waiting(cfg: &Config, what: &str, wait: Duration) -> Result<lock::Lock> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match lock::lock_inventory(cfg, what) {
            Ok(l) => return Ok(l),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Read-modify-write of the state under the inventory lock; `f` may also edit nodes.yml
/// (it runs with the lock held).
pub fn update<T>(
    cfg: &Config,
    what: &str,
    wait: Duration,
    f: impl FnOnce(&mut DiscoveryState) -> Result<T>,
) -> Result<T> {
    let _g = WRITE.lock().unwrap_or_else(|p| p.into_inner());
    let _l = lock_waiting(cfg, what, wait)?;
    let mut s = load(cfg)?;
    let out = f(&mut s)?;
    save(cfg, &s)?;
    Ok(out)
}

fn reference(cfg: &Config) -> Result<Inventory> {
    match &cfg.nodes_parameters_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            parse_reference(&text, p)
        }
        None => Ok(Inventory::default()),
    }
}

/// Writes `node` with `mac` into nodes.yml (added, or an existing node without a MAC
/// given it). The caller holds the inventory lock.
fn record_node(cfg: &Config, node: &str, mac: &str) -> Result<()> {
    crate::names::node(node)?;
    let file = &cfg.nodes_file;
    let old = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(file, e)),
    };
    let inv = Inventory::load(cfg)?;
    if let Some(other) = inv.by_mac(mac) {
        if other.name != node {
            return Err(Error::invalid(format!(
                "MAC {mac} already belongs to node {} in the inventory",
                other.name
            )));
        }
        return Ok(());
    }
    let fields = NodeFields {
        macs: vec![mac.to_string()],
        ..Default::default()
    };
    let e = match inv.nodes.get(node) {
        Some(n) if n.mac.is_some() => {
            return Err(Error::invalid(format!(
                "node {node} already has MAC {} in the inventory: pick another name, or `disklessset nodes set {node} --mac {mac}`",
                n.mac.as_deref().unwrap_or_default()
            )))
        }
        Some(_) => Edit::Set {
            nodeset: node.to_string(),
            fields,
        },
        None => Edit::Add {
            nodeset: node.to_string(),
            fields,
        },
    };
    let ed = edit::apply(&old, file, &reference(cfg)?, &e)?;
    fsutil::write_atomic(file, ed.text.as_bytes(), 0o644)
}

/// The next free name of `pool`: in the pool's order, not in the inventory, not given to
/// another machine of this discovery.
fn next_free(inv: &Inventory, st: &DiscoveryState, pool: &str) -> Result<Option<String>> {
    let names = nodeset::expand(pool, &|_| None)
        .map_err(|e| Error::invalid(format!("discovery pool {pool:?}: {e}")))?;
    Ok(names.into_iter().find(|n| {
        !inv.nodes.contains_key(n) && !st.machines.iter().any(|m| m.name.as_deref() == Some(n))
    }))
}

/// `discovery start`: on, with this pool and policy (kept: the machines reported).
pub fn start(cfg: &Config, pool: Option<&str>, policy: Policy) -> Result<DiscoveryState> {
    if let Some(p) = pool {
        let names = crate::cluster::expand_nodes(cfg, p)?;
        if names.is_empty() {
            return Err(Error::invalid(format!("--pool {p:?}: names no node")));
        }
    } else if policy == Policy::Sequential {
        return Err(Error::invalid(
            "--policy sequential needs --pool NODESET (the names given in power-on order, e.g. --pool 'd[01-10]')",
        ));
    }
    update(cfg, "discovery start", Duration::from_secs(5), |s| {
        s.on = true;
        s.pool = pool.map(str::to_string);
        s.policy = policy;
        s.started_at = Some(crate::boot::seen::now());
        Ok(s.clone())
    })
}

/// `discovery stop`: off (the list is kept for `list` and `accept`).
pub fn stop(cfg: &Config) -> Result<DiscoveryState> {
    update(cfg, "discovery stop", Duration::from_secs(5), |s| {
        s.on = false;
        Ok(s.clone())
    })
}

/// `discovery accept MAC NODE`: names a pending machine (inventory + facts).
pub fn accept(cfg: &Config, mac: &str, node: &str) -> Result<Discovered> {
    let m = normalize_mac(mac).ok_or_else(|| {
        Error::invalid(format!(
            "MAC {mac:?}: not a MAC address (e.g. 52:54:00:12:34:56)"
        ))
    })?;
    crate::names::node(node)?;
    update(cfg, "discovery accept", Duration::from_secs(5), |s| {
        if let Some(other) = s
            .machines
            .iter()
            .find(|d| d.name.as_deref() == Some(node) && d.mac != m)
        {
            return Err(Error::invalid(format!(
                "node {node} was already given to the machine {}",
                other.mac
            )));
        }
        let d = s.machines.iter_mut().find(|d| d.mac == m).ok_or_else(|| {
            Error::invalid(format!(
                "no machine with MAC {m} reported (see `disklessset discovery list`)"
            ))
        })?;
        if let Some(n) = &d.name {
            return Err(Error::invalid(format!(
                "the machine {m} is already named {n}"
            )));
        }
        record_node(cfg, node, &m)?;
        facts::save(cfg, node, &d.facts)?;
        d.name = Some(node.to_string());
        Ok(d.clone())
    })
}

/// What the server answers a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Named(String),
    Pending(String),
}

/// Parses a report body into facts: JSON, at least one valid MAC (the first is the boot
/// interface). The MACs are normalised.
pub fn parse_report(body: &[u8]) -> Result<Facts> {
    let mut f: Facts = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("discovery report: not the JSON of facts: {e}")))?;
    if f.macs.is_empty() {
        return Err(Error::invalid("discovery report: no MAC address"));
    }
    let mut macs = Vec::new();
    for m in &f.macs {
        let n = normalize_mac(m)
            .ok_or_else(|| Error::invalid(format!("discovery report: bad MAC {m:?}")))?;
        if !macs.contains(&n) {
            macs.push(n);
        }
    }
    f.macs = macs;
    Ok(f)
}

/// A report from a machine: recorded, and named by the policy.
pub fn report(cfg: &Config, mut f: Facts) -> Result<Answer> {
    let now = crate::boot::seen::now();
    f.reported_at = now;
    let mac = f.macs.first().cloned().unwrap_or_default();
    update(cfg, "discovery report", Duration::from_secs(10), |s| {
        if !s.on {
            return Err(Error::invalid(
                "discovery is off (`disklessset discovery start`)",
            ));
        }
        let inv = Inventory::load(cfg)?;
        // A machine the inventory knows (by any of its MACs) changes nothing: a report
        // must never rewrite an existing node's facts (group selectors match on them).
        // The one this discovery named gets its name again (a lost answer, a retry).
        if let Some(n) = f.macs.iter().find_map(|m| inv.by_mac(m)) {
            let ours = s
                .machines
                .iter()
                .any(|d| d.mac == mac && d.name.as_deref() == Some(n.name.as_str()));
            if ours {
                return Ok(Answer::Named(n.name.clone()));
            }
            return Err(Error::invalid(format!(
                "machine {mac} is node {} of the inventory already: report ignored, nothing changed",
                n.name
            )));
        }
        let name = match (s.policy, s.pool.as_deref()) {
            (Policy::Manual, _) => None,
            (_, Some(pool)) => {
                let next = next_free(&inv, s, pool)?;
                if next.is_none() {
                    tracing::warn!(
                        "discovery: pool {pool} is exhausted: machine {mac} stays pending (`disklessset discovery accept {mac} NODE`)"
                    );
                }
                next
            }
            (Policy::Open, None) => Some(format!("node-{}", mac.replace(':', ""))),
            (Policy::Sequential, None) => None,
        };
        match name {
            Some(name) => {
                record_node(cfg, &name, &mac)?;
                facts::save(cfg, &name, &f)?;
                upsert(s, &mac, &f, now, Some(name.clone()));
                tracing::info!(
                    "discovery: machine {mac} named {name} ({} policy)",
                    s.policy.as_str()
                );
                Ok(Answer::Named(name))
            }
            None => {
                upsert(s, &mac, &f, now, None);
                tracing::info!("discovery: machine {mac} pending");
                Ok(Answer::Pending(format!(
                    "pending: accept it with `disklessset discovery accept {mac} NODE`"
                )))
            }
        }
    })
}

fn upsert(s: &mut DiscoveryState, mac: &str, f: &Facts, now: u64, name: Option<String>) {
    match s.machines.iter_mut().find(|d| d.mac == mac) {
        Some(d) => {
            d.facts = f.clone();
            d.reported_at = now;
            if name.is_some() {
                d.name = name;
            }
        }
        None => s.machines.push(Discovered {
            mac: mac.to_string(),
            facts: f.clone(),
            reported_at: now,
            name,
        }),
    }
}

/// The kernel version the discovery system boots: the configured one, else the newest
/// published kernel (by file time) with an own initramfs.
pub fn kernel(cfg: &Config) -> Result<String> {
    if let Some(k) = &cfg.discovery_kernel {
        let own = cfg
            .kernels_dir
            .join(crate::kernel::initramfs_name("own", k)?);
        if !crate::kernel::vmlinuz_path(cfg, k).is_file() || !own.is_file() {
            return Err(Error::invalid(format!(
                "discovery_kernel {k}: needs {} and {} (publish it with an image and `disklessset initramfs IMAGE --flavour own`)",
                crate::kernel::vmlinuz_path(cfg, k).display(),
                own.display()
            )));
        }
        return Ok(k.clone());
    }
    let mut best: Option<(std::time::SystemTime, String)> = None;
    for k in crate::kernel::list(cfg)? {
        if !k.initramfs.iter().any(|(f, _)| f == "own") {
            continue;
        }
        let t = std::fs::metadata(crate::kernel::vmlinuz_path(cfg, &k.version))
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
            best = Some((t, k.version));
        }
    }
    best.map(|(_, k)| k).ok_or_else(|| {
        Error::invalid(format!(
            "no kernel with an own initramfs in {} for the discovery system: build one (`disklessset initramfs IMAGE --flavour own`) or set discovery_kernel",
            cfg.kernels_dir.display()
        ))
    })
}

/// The iPXE script an unknown machine gets while discovery is on. `base`: the boot
/// tree's absolute URL as this request reached it.
pub fn script(cfg: &Config, base: &str) -> String {
    let kernels = crate::boot::ipxe::rel_to_web(cfg, &cfg.kernels_dir);
    match kernel(cfg) {
        Ok(k) => {
            let initrd = crate::kernel::initramfs_name("own", &k).unwrap_or_default();
            format!(
                "#!ipxe\n\
                 # disklessset discovery: this machine is not in the inventory\n\
                 echo disklessset: discovery: ${{mac}} is unknown: booting the discovery system (kernel {k})\n\
                 kernel {base}/{kernels}/vmlinuz-{k} initrd={initrd} dl.mode=discover dl.report={base}{REPORT_PATH} dl.after={after} BOOTIF=01-${{mac:hexhyp}} ip=dhcp console=tty0 console=ttyS0,115200n8 && initrd {base}/{kernels}/{initrd} && boot\n\
                 echo disklessset: discovery: cannot load the discovery system from {base}\n\
                 exit 1\n",
                after = cfg.discovery_after.as_str(),
            )
        }
        Err(e) => {
            tracing::error!("discovery: {e}");
            "#!ipxe\necho disklessset: discovery is on but the server has no discovery system: see its log\nexit 1\n"
                .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_parsing() {
        let f = parse_report(
            br#"{"macs":["52-54-00-AA-00-01","52:54:00:aa:00:01"],"cpus":2,"memory_mib":983}"#,
        )
        .unwrap();
        assert_eq!(f.macs, ["52:54:00:aa:00:01"]);
        assert_eq!(f.cpus, 2);
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"macs":[]}"#,
            br#"{"macs":["zz"]}"#,
            br#"{"cpus":"x","macs":["52:54:00:aa:00:01"]}"#,
        ] {
            assert!(
                parse_report(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn policies_parse() {
        for p in ["manual", "sequential", "open"] {
            assert_eq!(Policy::parse(p).unwrap().as_str(), p);
        }
        assert!(Policy::parse("permissive")
            .unwrap_err()
            .to_string()
            .contains("manual, sequential, open"));
    }
}
