//! Power and boot-device control of nodes through their BMCs: IPMI (`ipmitool`),
//! Redfish (HTTPS/JSON) and libvirt (`virsh`) behind one [`Driver`] trait.
//!
//! A command resolves its node set against the inventory first (unknown nodes, nodes
//! without a `bmc:` and a wrong address are refused before any BMC is contacted), reads
//! the secrets file (refused if others can read it), then contacts at most `fanout`
//! BMCs at once. Every node gets its own outcome; one dead BMC never hides the others,
//! and the report folds nodes with the same outcome (`c[001-040]: on`).
//!
//! Under `--dry-run` reads still happen (power state, the Redfish system and its reset
//! types: the plan names the exact requests), and every change is recorded in the plan
//! instead (ipmitool and virsh command lines, Redfish method + URL + body), credentials
//! masked.
pub mod fanout;
pub mod ipmi;
pub mod libvirt;
pub mod redfish;
pub mod secrets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{nodeset, BmcDriver, Inventory};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::sys::runner::Runner;

pub use secrets::{Secret, Secrets};

/// `power on|off|cycle|reset|soft`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    On,
    Off,
    /// Off, then on (a full power cycle).
    Cycle,
    /// A hard reset, power stays on.
    Reset,
    /// An orderly shutdown through the OS (ACPI).
    Soft,
}

impl PowerAction {
    pub const ALL: [PowerAction; 5] = [
        PowerAction::On,
        PowerAction::Off,
        PowerAction::Cycle,
        PowerAction::Reset,
        PowerAction::Soft,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Cycle => "cycle",
            PowerAction::Reset => "reset",
            PowerAction::Soft => "soft",
        }
    }

    pub fn parse(s: &str) -> Result<PowerAction> {
        PowerAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "power {s:?}: unknown action; use on, off, cycle, reset, soft or status"
                ))
            })
    }

    /// The state the node is in once the action has taken effect.
    pub fn target_state(self) -> PowerState {
        match self {
            PowerAction::Off | PowerAction::Soft => PowerState::Off,
            _ => PowerState::On,
        }
    }

    /// What a person reads once it is done.
    pub fn done(self) -> &'static str {
        match self {
            PowerAction::On => "powered on",
            PowerAction::Off => "powered off",
            PowerAction::Cycle => "power cycled",
            PowerAction::Reset => "reset",
            PowerAction::Soft => "soft shutdown requested",
        }
    }
}

/// A node's power state as the BMC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    On,
    Off,
    Unknown,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        }
    }
}

/// `bootdev pxe|disk|bios`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    Pxe,
    Disk,
    /// The firmware's setup screen.
    Bios,
}

impl BootDevice {
    pub fn as_str(self) -> &'static str {
        match self {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Bios => "bios",
        }
    }

    pub fn parse(s: &str) -> Result<BootDevice> {
        match s {
            "pxe" => Ok(BootDevice::Pxe),
            "disk" => Ok(BootDevice::Disk),
            "bios" => Ok(BootDevice::Bios),
            _ => Err(Error::invalid(format!(
                "bootdev {s:?}: unknown device; use pxe, disk, bios or status"
            ))),
        }
    }
}

/// The firmware mode a boot override asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BootMode {
    #[serde(rename = "uefi")]
    Uefi,
    #[serde(rename = "legacy")]
    Legacy,
}

/// A boot-device override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BootRequest {
    pub device: BootDevice,
    /// Every boot from now on, not only the next one.
    pub persistent: bool,
    /// None: leave the mode as the BMC has it (IPMI: legacy unless UEFI is asked).
    pub mode: Option<BootMode>,
}

impl BootRequest {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {}",
            self.device.as_str(),
            if self.persistent {
                "persistent"
            } else {
                "once"
            }
        );
        match self.mode {
            Some(BootMode::Uefi) => s.push_str(" uefi"),
            Some(BootMode::Legacy) => s.push_str(" legacy"),
            None => {}
        }
        s
    }
}

/// A boot override as read back from the BMC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootdevInfo {
    /// `pxe`, `disk`, `bios`, `none` (no override), or the BMC's own word.
    pub device: String,
    pub persistent: Option<bool>,
    /// `uefi` or `legacy` when the BMC says.
    pub mode: Option<String>,
}

impl BootdevInfo {
    pub fn describe(&self) -> String {
        let mut s = self.device.clone();
        match self.persistent {
            Some(true) => s.push_str(" persistent"),
            Some(false) => s.push_str(" once"),
            None => {}
        }
        if let Some(m) = &self.mode {
            s.push(' ');
            s.push_str(m);
        }
        s
    }
}

/// One node's BMC, resolved: inventory fields, the secret, the limits.
#[derive(Debug, Clone)]
pub struct Target {
    pub node: String,
    pub driver: BmcDriver,
    /// As the inventory says it (`{node}` replaced); what messages name.
    pub address: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub system: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub timeout: Duration,
    pub retries: u32,
}

impl Target {
    /// The error of this BMC: `BMC ADDRESS MSG`.
    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::Bmc {
            address: self.address.clone(),
            msg: msg.into(),
        }
    }

    pub fn timeout_secs(&self) -> u64 {
        self.timeout.as_secs().max(1)
    }
}

/// What every driver does. One value per node and command; calls block, bounded by the
/// target's timeout and retries.
pub trait Driver: Send + Sync {
    fn status(&self) -> Result<PowerState>;
    /// Performs the action; returns how it was done when that says more than the
    /// action (`ForceRestart`), else an empty string.
    fn power(&self, action: PowerAction) -> Result<String>;
    /// Sets the boot override; returns a note on what the BMC could not honour
    /// (libvirt has no one-time boot), else an empty string.
    fn set_bootdev(&self, req: &BootRequest) -> Result<String>;
    fn bootdev(&self) -> Result<BootdevInfo>;
}

/// The driver for a target.
pub fn driver<'a>(t: &'a Target, runner: &'a Runner) -> Result<Box<dyn Driver + 'a>> {
    Ok(match t.driver {
        BmcDriver::Ipmi => Box::new(ipmi::Ipmi::new(t, runner)?),
        BmcDriver::Redfish => Box::new(redfish::Redfish::new(t, runner)?),
        BmcDriver::Libvirt => Box::new(libvirt::Libvirt::new(t, runner)),
    })
}

/// Limits a command line may set (None: the config's `bmc_*` values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BmcOptions {
    pub fanout: Option<usize>,
    pub timeout_secs: Option<u64>,
    pub retries: Option<u32>,
}

/// The outcome of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub node: String,
    pub ok: bool,
    /// What happened, as the folded line shows it: `on`, `powered on`, `pxe once`, or
    /// `error: ...`.
    pub outcome: String,
    /// The power state (status, and `power --wait`): `on`, `off` or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<PowerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootdev: Option<BootdevInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub driver: BmcDriver,
    pub bmc: String,
    /// When the node's power request was sent (`bootset --reboot`), seconds from the
    /// start of the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_secs: Option<f64>,
}

/// Nodes with the same outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Folded {
    pub nodes: String,
    pub count: usize,
    pub outcome: String,
    pub ok: bool,
}

/// What a power, bootdev or reboot command did, node by node.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `status`, `on`, `bootdev pxe once`, `bootdev status`, `reboot`.
    pub action: String,
    pub ok: bool,
    pub dry_run: bool,
    pub nodes: Vec<NodeResult>,
    pub folded: Vec<Folded>,
    /// The failed nodes, folded (empty when all succeeded).
    pub failed: String,
    pub warnings: Vec<String>,
}

impl Report {
    fn new(action: String, dry_run: bool, nodes: Vec<NodeResult>, warnings: Vec<String>) -> Self {
        let mut groups: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
        for n in &nodes {
            groups
                .entry((!n.ok, n.outcome.clone()))
                .or_default()
                .push(n.node.clone());
        }
        let folded = groups
            .into_iter()
            .map(|((bad, outcome), ns)| Folded {
                nodes: nodeset::fold(&ns),
                count: ns.len(),
                outcome,
                ok: !bad,
            })
            .collect();
        let failed: Vec<String> = nodes
            .iter()
            .filter(|n| !n.ok)
            .map(|n| n.node.clone())
            .collect();
        Report {
            action,
            ok: failed.is_empty(),
            dry_run,
            nodes,
            folded,
            failed: nodeset::fold(&failed),
            warnings,
        }
    }

    /// One line per outcome: `c[001-040]: on`, `c041: error: BMC 10.0.0.41 timed out ...`.
    pub fn lines(&self) -> Vec<String> {
        self.folded
            .iter()
            .map(|f| format!("{}: {}", f.nodes, f.outcome))
            .collect()
    }

    pub fn failed_count(&self) -> usize {
        self.nodes.iter().filter(|n| !n.ok).count()
    }
}

/// The targets of a command, checked; warnings about missing credentials.
struct Prepared {
    targets: Vec<Target>,
    warnings: Vec<String>,
    fanout: usize,
}

/// Expands `set` against the inventory and resolves every node's BMC. Refuses, before
/// anything is contacted: unknown nodes, nodes without a BMC driver or address, an
/// address the driver cannot use, a secrets file others can read.
fn prepare(ctx: &Ctx, set: &str, opts: &BmcOptions) -> Result<Prepared> {
    let cfg = &ctx.cfg;
    let inv = Inventory::load(cfg)?;
    let groups = |g: &str| inv.group_members(g);
    let names = nodeset::expand(set, &groups)
        .map_err(|e| Error::invalid(format!("node set {set:?}: {e}")))?;
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !inv.nodes.contains_key(*n))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(Error::invalid(format!(
            "unknown nodes {} (not in the inventory {}); nothing was done",
            nodeset::fold(&unknown),
            cfg.nodes_file.display()
        )));
    }
    let secrets = Secrets::load(cfg)?;
    let timeout = Duration::from_secs(opts.timeout_secs.unwrap_or(cfg.bmc_timeout_secs).max(1));
    let retries = opts.retries.unwrap_or(cfg.bmc_retries);
    let mut targets = Vec::with_capacity(names.len());
    let mut no_bmc = Vec::new();
    let mut no_secret = Vec::new();
    for name in &names {
        let node = &inv.nodes[name];
        let spec = inv.bmc_of(node).unwrap_or_default();
        let Some(driver) = spec.driver else {
            no_bmc.push(name.clone());
            continue;
        };
        let fill = |s: &str| s.replace("{node}", name);
        let address = match (&spec.address, driver) {
            (Some(a), _) => fill(a),
            (None, BmcDriver::Libvirt) => "qemu:///system".to_string(),
            (None, _) => {
                no_bmc.push(name.clone());
                continue;
            }
        };
        check_address(name, driver, &address)?;
        let entry = secrets.lookup(name, &address, &node.groups);
        if entry.is_none() && driver != BmcDriver::Libvirt {
            no_secret.push(name.clone());
        }
        let system = match (&spec.system, driver) {
            (Some(s), _) => Some(fill(s)),
            (None, BmcDriver::Libvirt) => Some(name.clone()),
            (None, _) => None,
        };
        targets.push(Target {
            node: name.clone(),
            driver,
            address,
            user: entry.and_then(|e| e.user.clone()).or(spec.user.clone()),
            password: entry.map(|e| e.password.clone()),
            system,
            ca_file: spec.ca_file.clone(),
            tls_verify: spec.tls_verify.unwrap_or(true),
            timeout,
            retries,
        });
    }
    if !no_bmc.is_empty() {
        return Err(Error::invalid(format!(
            "nodes {} have no BMC in the inventory: give them (or their group) `bmc: {{driver: ipmi|redfish|libvirt, address: ...}}` in {}; nothing was done",
            nodeset::fold(&no_bmc),
            cfg.nodes_file.display()
        )));
    }
    let mut warnings = Vec::new();
    if !no_secret.is_empty() {
        let why = if secrets.present {
            "no entry"
        } else {
            "the file does not exist"
        };
        let w = format!(
            "no BMC credentials for {} in {} ({why}): contacting their BMCs without credentials",
            nodeset::fold(&no_secret),
            secrets.file.display()
        );
        tracing::warn!("{w}");
        warnings.push(w);
    }
    let fanout = opts.fanout.unwrap_or(cfg.bmc_fanout).max(1);
    Ok(Prepared {
        targets,
        warnings,
        fanout,
    })
}

/// An address the driver can use: ipmi `HOST[:PORT]`, redfish a host or an http(s) URL,
/// libvirt a connection URI.
fn check_address(node: &str, driver: BmcDriver, a: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "node {node}: bmc.address {a:?} {why}"
        )))
    };
    match driver {
        BmcDriver::Ipmi if a.contains("://") || a.contains('/') => {
            bad("is not HOST[:PORT] (ipmi takes a host name or IP address, optionally :PORT)")
        }
        BmcDriver::Ipmi => ipmi::host_port(a).map(|_| ()).or_else(|e| bad(&e)),
        BmcDriver::Redfish if a.contains("://") => {
            if a.starts_with("https://") || a.starts_with("http://") {
                Ok(())
            } else {
                bad("must be a host or an https:// (or http://) URL")
            }
        }
        BmcDriver::Redfish => Ok(()),
        BmcDriver::Libvirt if !a.contains(":/") => {
            bad("is not a libvirt URI (e.g. qemu:///system, qemu+ssh://host/system)")
        }
        BmcDriver::Libvirt => Ok(()),
    }
}

fn result(t: &Target, r: Result<String>) -> NodeResult {
    let (ok, outcome, error) = match r {
        Ok(o) => (true, o, None),
        Err(e) => {
            let e = error_text(&e);
            (false, format!("error: {e}"), Some(e))
        }
    };
    NodeResult {
        node: t.node.clone(),
        ok,
        outcome,
        state: None,
        bootdev: None,
        error,
        driver: t.driver,
        bmc: t.address.clone(),
        at_secs: None,
    }
}

fn error_text(e: &Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// `power status NODESET`.
pub fn status(ctx: &Ctx, set: &str, opts: &BmcOptions) -> Result<Report> {
    let p = prepare(ctx, set, opts)?;
    let nodes = fanout::run(&p.targets, p.fanout, |t| {
        let st = driver(t, &ctx.runner).and_then(|d| d.status());
        let state = st.as_ref().map(|s| *s).unwrap_or(PowerState::Unknown);
        let mut r = result(t, st.map(|s| s.as_str().to_string()));
        r.state = Some(state);
        r
    });
    Ok(Report::new(
        "status".into(),
        ctx.runner.dry_run(),
        nodes,
        p.warnings,
    ))
}

/// How long `power --wait` polls for the new state.
const WAIT_POLL: Duration = Duration::from_millis(1000);

/// `power on|off|cycle|reset|soft NODESET`; with `wait`, polls each node until it
/// reports the action's state (bounded by `wait_secs`).
pub fn power(
    ctx: &Ctx,
    set: &str,
    action: PowerAction,
    opts: &BmcOptions,
    wait: Option<Duration>,
) -> Result<Report> {
    let p = prepare(ctx, set, opts)?;
    let dry = ctx.runner.dry_run();
    let nodes = fanout::run(&p.targets, p.fanout, |t| {
        let mut state = None;
        let r = driver(t, &ctx.runner).and_then(|d| {
            let how = d.power(action)?;
            let mut out = if dry {
                format!("planned: power {}", action.as_str())
            } else {
                action.done().to_string()
            };
            if !how.is_empty() {
                out.push_str(&format!(" ({how})"));
            }
            if let (Some(limit), false) = (wait, dry) {
                let s = wait_for(&*d, t, action.target_state(), limit)?;
                state = Some(s);
                out = s.as_str().to_string();
            }
            Ok(out)
        });
        let mut r = result(t, r);
        r.state = state;
        r
    });
    Ok(Report::new(action.as_str().into(), dry, nodes, p.warnings))
}

fn wait_for(d: &dyn Driver, t: &Target, want: PowerState, limit: Duration) -> Result<PowerState> {
    let start = Instant::now();
    loop {
        let s = d.status()?;
        if s == want {
            return Ok(s);
        }
        if start.elapsed() >= limit {
            return Err(t.err(format!(
                "still reports {} {} s after the request (wanted {})",
                s.as_str(),
                limit.as_secs(),
                want.as_str()
            )));
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// `bootdev pxe|disk|bios NODESET [--persistent] [--uefi|--legacy]`.
pub fn set_bootdev(ctx: &Ctx, set: &str, req: &BootRequest, opts: &BmcOptions) -> Result<Report> {
    let p = prepare(ctx, set, opts)?;
    let dry = ctx.runner.dry_run();
    let nodes = fanout::run(&p.targets, p.fanout, |t| {
        let r = driver(t, &ctx.runner).and_then(|d| {
            let note = d.set_bootdev(req)?;
            let mut out = if dry {
                format!("planned: bootdev {}", req.describe())
            } else {
                format!("next boot {}", req.describe())
            };
            if !note.is_empty() {
                out.push_str(&format!(" ({note})"));
            }
            Ok(out)
        });
        result(t, r)
    });
    Ok(Report::new(
        format!("bootdev {}", req.describe()),
        dry,
        nodes,
        p.warnings,
    ))
}

/// `bootdev status NODESET`: the boot override each BMC reports.
pub fn bootdev_status(ctx: &Ctx, set: &str, opts: &BmcOptions) -> Result<Report> {
    let p = prepare(ctx, set, opts)?;
    let nodes = fanout::run(&p.targets, p.fanout, |t| {
        let info = driver(t, &ctx.runner).and_then(|d| d.bootdev());
        let bootdev = info.as_ref().ok().cloned();
        let mut r = result(t, info.map(|i| i.describe()));
        r.bootdev = bootdev;
        r
    });
    Ok(Report::new(
        "bootdev status".into(),
        ctx.runner.dry_run(),
        nodes,
        p.warnings,
    ))
}

/// Staged power requests (xCAT's `syspowermaxnodes` + `syspowerinterval`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Staging {
    /// Nodes per group (None: all at once, within the fan-out).
    pub batch: Option<usize>,
    /// Seconds from the start of one group to the start of the next.
    pub interval_secs: u64,
}

/// A node's target with its driver (or why there is none).
type Connected<'a> = (&'a Target, Result<Box<dyn Driver + 'a>>);

/// For each node: next boot from the network (once), then a power cycle, or power on
/// when it is off. In groups of `batch` nodes: each group's boot overrides are set
/// first, then its power requests go out `interval` seconds after the previous
/// group's.
pub fn pxe_reboot(ctx: &Ctx, set: &str, staging: &Staging, opts: &BmcOptions) -> Result<Report> {
    let p = prepare(ctx, set, opts)?;
    let dry = ctx.runner.dry_run();
    let batch = staging.batch.unwrap_or(p.targets.len()).max(1);
    let interval = Duration::from_secs(staging.interval_secs);
    let start = Instant::now();
    let mut nodes = Vec::with_capacity(p.targets.len());
    let mut last_power: Option<Instant> = None;
    for group in p.targets.chunks(batch) {
        let drivers: Vec<(&Target, Result<Box<dyn Driver + '_>>)> =
            group.iter().map(|t| (t, driver(t, &ctx.runner))).collect();
        // The boot override and the power state, for the whole group.
        let prepared: Vec<Result<(PowerAction, PowerState, String)>> =
            fanout::run(&drivers, p.fanout, |(_, d)| {
                let d = d.as_ref().map_err(|e| Error::invalid(error_text(e)))?;
                let state = d.status()?;
                let note = d.set_bootdev(&BootRequest {
                    device: BootDevice::Pxe,
                    persistent: false,
                    mode: None,
                })?;
                let action = if state == PowerState::Off {
                    PowerAction::On
                } else {
                    PowerAction::Cycle
                };
                Ok((action, state, note))
            });
        if let (Some(prev), false) = (last_power, interval.is_zero()) {
            if dry {
                ctx.runner.note(format!(
                    "wait until {} s after the previous group's power requests",
                    interval.as_secs()
                ));
            } else if let Some(rest) = (prev + interval).checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
        }
        last_power = Some(Instant::now());
        let work: Vec<(usize, &Connected<'_>)> = drivers.iter().enumerate().collect();
        let mut results = fanout::run(&work, p.fanout, |(i, (t, d))| {
            let r = match (&prepared[*i], d) {
                (Err(e), _) | (_, Err(e)) => Err(Error::invalid(error_text(e))),
                (Ok((action, state, note)), Ok(d)) => {
                    let at = start.elapsed().as_secs_f64();
                    d.power(*action).map(|how| {
                        let mut out = format!(
                            "{}next boot pxe once{}, {}{}",
                            if dry { "planned: " } else { "" },
                            if note.is_empty() {
                                String::new()
                            } else {
                                format!(" ({note})")
                            },
                            if dry {
                                format!("power {}", action.as_str())
                            } else {
                                action.done().to_string()
                            },
                            if how.is_empty() {
                                String::new()
                            } else {
                                format!(" ({how})")
                            }
                        );
                        if *state == PowerState::Unknown {
                            out.push_str(" (power state was unknown)");
                        }
                        (out, at)
                    })
                }
            };
            let at = r.as_ref().ok().map(|(_, at)| *at);
            let mut res = result(t, r.map(|(o, _)| o));
            res.at_secs = at;
            res
        });
        nodes.append(&mut results);
    }
    Ok(Report::new("reboot".into(), dry, nodes, p.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str, ok: bool, outcome: &str) -> NodeResult {
        NodeResult {
            node: n.into(),
            ok,
            outcome: outcome.into(),
            state: None,
            bootdev: None,
            error: None,
            driver: BmcDriver::Ipmi,
            bmc: String::new(),
            at_secs: None,
        }
    }

    #[test]
    fn report_folds_per_outcome() {
        let mut v: Vec<NodeResult> = (1..=40)
            .map(|i| node(&format!("c{i:03}"), true, "on"))
            .collect();
        v.push(node(
            "c041",
            false,
            "error: BMC 10.0.0.41 timed out after 10 s",
        ));
        v.push(node("c042", true, "off"));
        let r = Report::new("status".into(), false, v, vec![]);
        assert!(!r.ok);
        assert_eq!(r.failed, "c041");
        assert_eq!(
            r.lines(),
            vec![
                "c042: off",
                "c[001-040]: on",
                "c041: error: BMC 10.0.0.41 timed out after 10 s"
            ]
        );
    }

    #[test]
    fn addresses_are_checked_per_driver() {
        assert!(check_address("n", BmcDriver::Ipmi, "10.0.0.1:623").is_ok());
        assert!(check_address("n", BmcDriver::Ipmi, "https://x").is_err());
        assert!(check_address("n", BmcDriver::Redfish, "bmc1").is_ok());
        assert!(check_address("n", BmcDriver::Redfish, "http://127.0.0.1:8000").is_ok());
        let e = check_address("n", BmcDriver::Redfish, "ftp://x").unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(check_address("n", BmcDriver::Libvirt, "qemu:///system").is_ok());
        assert!(check_address("n", BmcDriver::Libvirt, "somehost").is_err());
    }
}
