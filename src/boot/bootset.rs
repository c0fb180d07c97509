//! bootset: assign boot types and images to nodes by writing their iPXE scripts, and
//! report the status folded into node sets.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cluster::inventory::{Inventory, Node};
use crate::cluster::nodeset;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::kernel;
use crate::store::{self, ImageClass, State};

pub const ENTRY_TEMPLATE: &str = include_str!("../../share/ipxe/entry.ipxe");
pub const NODE_TEMPLATE: &str = include_str!("../../share/ipxe/node.ipxe");

/// The reference's boot types, matched exactly (never by substring: a typo there once
/// meant an OS reinstall).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootType {
    Osdeploy,
    Diskless,
    Next,
    Clone,
    Clonedeploy,
    Disk,
    /// Write the image to the node's disk (own initramfs in install mode), then `disk`.
    Install,
}

impl BootType {
    pub const ALL: [BootType; 7] = [
        BootType::Osdeploy,
        BootType::Diskless,
        BootType::Next,
        BootType::Clone,
        BootType::Clonedeploy,
        BootType::Disk,
        BootType::Install,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BootType::Osdeploy => "osdeploy",
            BootType::Diskless => "diskless",
            BootType::Next => "next",
            BootType::Clone => "clone",
            BootType::Clonedeploy => "clonedeploy",
            BootType::Disk => "disk",
            BootType::Install => "install",
        }
    }

    pub fn parse(s: &str) -> Result<BootType> {
        BootType::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "-b {s:?}: unknown boot type; use exactly one of osdeploy, diskless, next, clone, clonedeploy, disk"
                ))
            })
    }
}

/// How a diskless node gets its address in the initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// `ip=dhcp` (the default).
    Default,
    /// Static `ip=` from the inventory's network data.
    Network,
    /// DHCP with explicit retries/timeouts.
    Dhcp,
}

impl NetMode {
    pub fn parse(s: &str) -> Result<NetMode> {
        match s {
            "network" => Ok(NetMode::Network),
            "dhcp" => Ok(NetMode::Dhcp),
            _ => Err(Error::invalid(format!(
                "-f {s:?}: use network (static ip= from the inventory) or dhcp"
            ))),
        }
    }
}

/// One bootset request.
#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub nodeset: String,
    pub boot_type: BootType,
    pub image: Option<String>,
    pub extra: Option<String>,
    pub net: NetMode,
    /// `-b install --wipe`: the installer may repartition a disk that holds partitions.
    pub wipe: bool,
    /// `--once`: after the server sees the node fetch this script once, it puts the
    /// previous script back (issue 13, provision once).
    pub once: bool,
}

/// What a run changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AssignReport {
    pub nodes: usize,
    pub written: usize,
    pub unchanged: usize,
    pub folded: String,
}

pub use super::ipxe::{rel_to_web, static_base};

/// Fills `{{key}}` placeholders; an unknown placeholder is an error (never left raw).
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::invalid("template: unclosed {{"))?;
        let key = after[..end].trim();
        let val = vars.get(key).ok_or_else(|| {
            Error::invalid(format!("template: unknown placeholder {{{{{key}}}}}"))
        })?;
        out.push_str(val);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The entry script (`/boot.ipxe`) for a given base URL.
/// `force`: the server knows the base for sure (from the request): set it outright.
pub fn render_entry(cfg: &Config, base: &str, force: bool) -> Result<String> {
    let mut v = BTreeMap::new();
    v.insert(
        "base_line",
        if force {
            format!("set dls-base {base}")
        } else {
            format!("isset ${{dls-base}} || set dls-base {base}")
        },
    );
    v.insert("nodes_path", rel_to_web(cfg, &cfg.nodes_ipxe_dir));
    render(ENTRY_TEMPLATE, &v)
}

/// A value safe on an iPXE `set` line: no control characters, no `${` expansion.
fn ipxe_safe(what: &str, v: &str) -> Result<String> {
    if v.chars().any(|c| c.is_control()) || v.contains("${") {
        return Err(Error::invalid(format!(
            "{what} {v:?}: must be one line without control characters or ${{...}}"
        )));
    }
    Ok(v.to_string())
}

fn prefix_to_mask(p: &str) -> String {
    match p.parse::<u32>() {
        Ok(n) if n <= 32 => {
            let m: u32 = if n == 0 { 0 } else { u32::MAX << (32 - n) };
            std::net::Ipv4Addr::from(m).to_string()
        }
        _ => p.to_string(),
    }
}

/// The `ip=` argument of a node.
fn ip_arg(node: &Node, net: NetMode) -> Result<String> {
    match net {
        NetMode::Default => Ok("ip=dhcp".into()),
        NetMode::Dhcp => Ok("ip=dhcp rd.net.dhcp.retry=4 rd.net.timeout.dhcp=15".into()),
        NetMode::Network => {
            let ip = node.ip.clone().ok_or_else(|| {
                Error::invalid(format!(
                    "node {} has no ip in the inventory (needed by -f network)",
                    node.name
                ))
            })?;
            Ok(format!(
                "ip={ip}::{}:{}:{}:{}:none",
                node.gateway.clone().unwrap_or_default(),
                node.netmask
                    .as_deref()
                    .map(prefix_to_mask)
                    .unwrap_or_default(),
                node.name,
                node.interface.clone().unwrap_or_default()
            ))
        }
    }
}

/// Renders one node's script.
pub fn render_node(cfg: &Config, inv: &Inventory, node: &Node, a: &Assign) -> Result<String> {
    let vars = inv.vars_of(node);
    let mut kernel_args: Vec<String> = Vec::new();
    if let Some(k) = vars.get("kernel_args") {
        kernel_args.push(ipxe_safe("kernel_args", k)?);
    }
    if let Some(e) = &a.extra {
        kernel_args.push(ipxe_safe("-e", e)?);
    }
    let console = match vars.get("console") {
        Some(c) if c.starts_with("console=") => ipxe_safe("console", c)?,
        Some(c) => format!("console={}", ipxe_safe("console", c)?),
        None => "console=tty0 console=ttyS0,115200n8".into(),
    };
    let mut var_lines = Vec::new();
    for (k, v) in &vars {
        if k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            var_lines.push(format!("set dls-var-{k} {}", ipxe_safe(k, v)?));
        }
    }
    let mut v = BTreeMap::new();
    v.insert("node", node.name.clone());
    v.insert("boot_type", a.boot_type.as_str().to_string());
    v.insert("image", a.image.clone().unwrap_or_default());
    v.insert("console", console);
    v.insert("ip_arg", ip_arg(node, a.net)?);
    v.insert("kernel_args", kernel_args.join(" "));
    v.insert(
        "equipment_profile",
        vars.get("equipment_profile").cloned().unwrap_or_default(),
    );
    let servers = boot_servers(cfg, node, vars.get("boot_servers"))?;
    if servers.len() > 1 {
        // the image's initramfs tries each base in turn for the squashfs
        let urls: Vec<&str> = servers.iter().map(|(_, u)| u.as_str()).collect();
        kernel_args.push(format!("dl.bases={}", urls.join(",")));
        v.insert("kernel_args", kernel_args.join(" "));
    }
    v.insert("diskless_chain", diskless_chain(cfg, &node.name, &servers));
    v.insert("vars", var_lines.join("\n"));
    v.insert("base_url", static_base(cfg));
    v.insert("images_path", rel_to_web(cfg, &cfg.images_dir));
    v.insert("menu", render_menu(cfg.boot_menu_timeout_ms, a.boot_type));
    v.insert("install_args", super::install::kernel_args(cfg, &vars, a)?);
    v.insert("kernels_path", rel_to_web(cfg, &cfg.kernels_dir));
    let text = render(NODE_TEMPLATE, &v)?;
    // `set NAME` with nothing after it is an error in some iPXE builds: clear instead.
    Ok(text
        .lines()
        .map(|l| match l.strip_prefix("set ") {
            Some(rest) if !rest.trim().contains(' ') => format!("clear {}", rest.trim()),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// The base URLs of the node's `boot_servers` var (replica names, `store` for this
/// store's own base), in order; empty when the var is not set.
fn boot_servers(cfg: &Config, node: &Node, var: Option<&String>) -> Result<Vec<(String, String)>> {
    let Some(list) = var else {
        return Ok(Vec::new());
    };
    list.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            if name == "store" {
                return Ok((name.to_string(), static_base(cfg)));
            }
            cfg.replicas
                .iter()
                .find(|r| r.name == name)
                .map(|r| (r.name.clone(), r.url.clone()))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "node {}: boot_servers names {name}, which is not a replica of the config (replicas: {}; `store` is this store)",
                        node.name,
                        cfg.replicas
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        })
        .collect()
}

/// The `:diskless` section's chain: to `${dls-base}`, or through each boot server in
/// turn (the next one when one does not answer), saying so on the console.
fn diskless_chain(cfg: &Config, node: &str, servers: &[(String, String)]) -> String {
    let path = format!(
        "{}/${{node-image}}/boot.ipxe",
        rel_to_web(cfg, &cfg.images_dir)
    );
    if servers.is_empty() {
        return chain_retried(&path, "diskless", "failed").join("\n");
    }
    let mut out = Vec::new();
    for (i, (name, url)) in servers.iter().enumerate() {
        if i > 0 {
            // names first: iPXE's console cuts lines at 80 columns
            out.push(format!(":diskless-{}", i + 1));
            out.push(format!(
                "echo disklessset: {node}: {} did not answer, trying {name} ({url})",
                servers[i - 1].0
            ));
        }
        out.push(format!("set dls-base {url}"));
        let next = if i + 1 < servers.len() {
            format!("diskless-{}", i + 2)
        } else {
            "failed".to_string()
        };
        out.extend(chain_retried(&path, &format!("diskless-{}", i + 1), &next));
    }
    out.join("\n")
}

/// Back-off between the attempts to chain an image script from one server (seconds).
const CHAIN_BACKOFF: &[u32] = &[2, 4];

/// `chain` of `${dls-base}/path` tried with back-off (labels `PREFIX-retry-N`, then
/// `goto next`): a server busy with a mass reboot gets a second chance before the next
/// server (or the failure) is tried. `sleep` failing (a build without it) only skips
/// the back-off.
fn chain_retried(path: &str, prefix: &str, next: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, wait) in CHAIN_BACKOFF.iter().enumerate() {
        let label = format!("{prefix}-retry-{}", i + 1);
        out.push(format!(
            "chain --autofree ${{dls-base}}/{path} || goto {label}"
        ));
        // a script that returned success is done: never fetched again
        out.push("exit 0".into());
        out.push(format!(":{label}"));
        out.push(format!(
            "echo disklessset: chain from ${{dls-base}} failed: retrying in {wait} s"
        ));
        out.push(format!("sleep {wait} || echo"));
    }
    out.push(format!(
        "chain --autofree ${{dls-base}}/{path} || goto {next}"
    ));
    out
}

/// The optional console menu: every item is a label of the node script, and its
/// default is the assigned boot type, so a timeout or Enter can never fall back to an
/// unintended entry (the reference's silent OS reinstall).
pub fn render_menu(timeout_ms: u64, default: BootType) -> String {
    if timeout_ms == 0 {
        return String::new();
    }
    let mut m = vec!["menu disklessset boot menu for ${dls-node}".to_string()];
    for (bt, label) in [
        (BootType::Diskless, "Diskless image ${node-image}"),
        (BootType::Disk, "Local disk"),
        (BootType::Next, "Next boot device"),
        (BootType::Osdeploy, "OS deployment (equipment profile)"),
        (BootType::Clone, "Clone (equipment profile)"),
        (
            BootType::Clonedeploy,
            "Clone deployment (equipment profile)",
        ),
    ] {
        m.push(format!("item {} {label}", bt.as_str()));
    }
    m.push(format!(
        "choose --default {} --timeout {timeout_ms} dls-choice && goto ${{dls-choice}} ||",
        default.as_str()
    ));
    m.join("\n")
}

/// Checks that a diskless image can boot: exists, created, with an initramfs.
pub fn check_image(cfg: &Config, name: &str) -> Result<()> {
    crate::names::image(name)?;
    let mounts = crate::sys::mountinfo::read()?;
    if !store::names(cfg)?.iter().any(|n| n == name) {
        return Err(Error::NoSuchImage(name.to_string()));
    }
    let info = store::info(cfg, name, &mounts);
    if info.state != State::Created && info.state != State::Mounted {
        return Err(Error::WrongState {
            name: name.into(),
            state: info.state.to_string(),
            hint: "only a created image can be booted".into(),
        });
    }
    let rec = info.record.ok_or_else(|| Error::NoSuchImage(name.into()))?;
    if rec.image_class == ImageClass::DemoImage || rec.image_class == ImageClass::NfsStagingImage {
        return Err(Error::invalid(format!(
            "image {name} is a {} and cannot be booted (use a livenet or NFS golden image)",
            rec.image_class.as_str()
        )));
    }
    let initrd = rec
        .image
        .clone()
        .filter(|f| cfg.kernels_dir.join(f).is_file());
    if initrd.is_none() || rec.kernel.is_none() {
        return Err(Error::invalid(format!(
            "image {name} has no initramfs: run `disklessset initramfs {name}` first"
        )));
    }
    if let Some(k) = rec.kernel_version() {
        if !kernel::vmlinuz_path(cfg, k).is_file() {
            return Err(Error::invalid(format!(
                "image {name}: kernel vmlinuz-{k} is missing from {}",
                cfg.kernels_dir.display()
            )));
        }
    }
    if !cfg.image_dir(name).join("boot.ipxe").is_file() {
        return Err(Error::invalid(format!(
            "image {name} has no boot.ipxe: run `disklessset initramfs {name}` to write it"
        )));
    }
    Ok(())
}

/// Expands a node set against the inventory; unknown nodes are all listed in the error.
pub fn resolve_nodes(inv: &Inventory, set: &str) -> Result<Vec<String>> {
    let groups = |g: &str| inv.group_members(g);
    let nodes =
        nodeset::expand(set, &groups).map_err(|e| Error::invalid(format!("-n {set:?}: {e}")))?;
    let unknown: Vec<String> = nodes
        .iter()
        .filter(|n| !inv.nodes.contains_key(*n))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(Error::invalid(format!(
            "unknown nodes {} (not in the inventory: add them to the nodes file); nothing was written",
            nodeset::fold(&unknown)
        )));
    }
    Ok(nodes)
}

fn node_script_path(cfg: &Config, node: &str) -> PathBuf {
    cfg.nodes_ipxe_dir.join(format!("{node}.ipxe"))
}

/// Writes `data` to `path` only if it differs; returns whether it wrote.
pub fn write_if_changed(path: &Path, data: &[u8]) -> Result<bool> {
    if std::fs::read(path).map(|old| old == data).unwrap_or(false) {
        return Ok(false);
    }
    fsutil::write_atomic(path, data, 0o644)?;
    Ok(true)
}

/// `bootset -n NODESET -b TYPE [-i IMAGE] [-e EXTRA] [-f network|dhcp]`.
pub fn assign(ctx: &Ctx, a: &Assign) -> Result<AssignReport> {
    let cfg = &ctx.cfg;
    let inv = Inventory::load(cfg)?;
    let nodes = resolve_nodes(&inv, &a.nodeset)?;
    match (a.boot_type, &a.image) {
        (BootType::Diskless, None) => {
            return Err(Error::invalid("-b diskless needs -i IMAGE"));
        }
        (BootType::Diskless, Some(i)) => check_image(cfg, i)?,
        (BootType::Install, None) => {
            return Err(Error::invalid("-b install needs -i IMAGE"));
        }
        (BootType::Install, Some(i)) => {
            check_image(cfg, i)?;
            super::install::check_image(cfg, i)?;
        }
        (_, Some(i)) => crate::names::image(i)?,
        _ => {}
    }
    // Render everything first: any error means nothing is written.
    let mut rendered = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let node = &inv.nodes[n];
        rendered.push((
            n.clone(),
            node.mac_hexhyp(),
            render_node(cfg, &inv, node, a)?,
        ));
    }
    // `--once`: each node's previous assignment, read before anything is written; a
    // node with none is refused (there would be nothing to return to).
    let mut previous: Vec<(String, super::seen::Once)> = Vec::new();
    if a.once {
        let now = super::seen::now();
        for n in &nodes {
            let pending = super::seen::load(cfg, n).and_then(|s| s.once);
            if let Some(p) = pending {
                // a second --once before the first was served: still return to the first's previous
                previous.push((n.clone(), super::seen::Once { since: now, ..p }));
                continue;
            }
            let path = node_script_path(cfg, n);
            let (Some((bt, img)), Ok(text)) =
                (read_assignment(cfg, n), std::fs::read_to_string(&path))
            else {
                return Err(Error::invalid(format!(
                    "node {n} has no previous assignment for --once to return to: assign it first (bootset -n {n} -b TYPE); nothing was written"
                )));
            };
            previous.push((
                n.clone(),
                super::seen::Once {
                    since: now,
                    previous_boot_type: Some(bt),
                    previous_image: img,
                    previous_script: Some(text),
                },
            ));
        }
    }
    let mut rep = AssignReport {
        nodes: nodes.len(),
        folded: nodeset::fold(&nodes),
        ..Default::default()
    };
    if ctx.runner.dry_run() {
        for (n, _, _) in &rendered {
            ctx.runner
                .note(format!("write {}", node_script_path(cfg, n).display()));
        }
        return Ok(rep);
    }
    fsutil::ensure_dir(&cfg.nodes_ipxe_dir)?;
    // One listing of the scripts dir and of the seen records instead of a failed open
    // per node: a first bootset of 10,000 nodes probes nothing (issue 13, scale).
    let listing = |dir: &Path| -> BTreeMap<String, bool> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let link = e.file_type().ok()?.is_symlink();
                        Some((e.file_name().to_str()?.to_string(), link))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let present = listing(&cfg.nodes_ipxe_dir);
    let mut changed: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut aliases: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
    for (n, mac, text) in rendered {
        let file = format!("{n}.ipxe");
        let path = cfg.nodes_ipxe_dir.join(&file);
        if present.contains_key(&file)
            && std::fs::read(&path)
                .map(|old| old == text.as_bytes())
                .unwrap_or(false)
        {
            rep.unchanged += 1;
        } else {
            changed.push((path, text.into_bytes()));
        }
        // Static web servers find the node by MAC through an alias.
        if let Some(mac) = mac.filter(|_| cfg.mac_aliases) {
            let name = format!("{mac}.ipxe");
            let alias = cfg.nodes_ipxe_dir.join(&name);
            let want = PathBuf::from(file);
            match present.get(&name) {
                None => aliases.push((alias, want, false)),
                Some(_) if std::fs::read_link(&alias).ok().as_deref() != Some(want.as_path()) => {
                    aliases.push((alias, want, true))
                }
                Some(_) => {}
            }
        }
    }
    rep.written = changed.len();
    fsutil::write_atomic_batch(&changed, 0o644)?;
    let seen_present = listing(&super::seen::dir(cfg));
    let has_record = |n: &str| seen_present.contains_key(&format!("{n}.json"));
    if a.once {
        for (n, once) in previous {
            super::seen::update(cfg, &n, |s| s.once = Some(once))?;
        }
    } else {
        // a plain assignment supersedes a pending --once
        for n in nodes.iter().filter(|n| has_record(n)) {
            if super::seen::load(cfg, n).is_some_and(|s| s.once.is_some()) {
                super::seen::update(cfg, n, |s| s.once = None)?;
            }
        }
    }
    for (alias, want, replace) in aliases {
        // A new alias is created in place (symlink(2) is atomic); one that points
        // elsewhere is replaced by rename.
        if !replace {
            match std::os::unix::fs::symlink(&want, &alias) {
                Ok(()) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&alias, e)),
            }
        }
        let tmp = fsutil::temp_path_for(&alias);
        std::os::unix::fs::symlink(&want, &tmp).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &alias).map_err(|e| Error::io(&alias, e))?;
    }
    // The static entry script for DHCP bootfiles pointing at a plain web server.
    let entry = render_entry(cfg, &static_base(cfg), false)?;
    write_if_changed(&cfg.web_root.join("boot.ipxe"), entry.as_bytes())?;
    Ok(rep)
}

/// One line of `bootset -s`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusLine {
    pub boot_type: String,
    pub image: Option<String>,
    pub nodes: String,
    pub count: usize,
    /// `--once` pending: what these nodes return to after their next script fetch.
    pub once_then: Option<String>,
    /// Of these nodes, those whose image reported booted since their last script.
    pub booted: String,
    /// Those whose assignment changed since they last fetched their script.
    pub reboot_changes: String,
    /// What the server saw of each node it saw (never-seen nodes are left out).
    pub seen: Vec<StatusNode>,
}

/// One node the server saw, in `bootset -s --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusNode {
    pub name: String,
    pub state: super::seen::NodeState,
    #[serde(flatten)]
    pub seen: super::seen::Seen,
    pub reboot_changes: bool,
}

/// Reads a node script's assignment (boot type, image).
pub fn read_assignment(cfg: &Config, node: &str) -> Option<(String, Option<String>)> {
    let text = std::fs::read_to_string(node_script_path(cfg, node)).ok()?;
    let mut bt = None;
    let mut img = None;
    for line in text.lines().take(12) {
        if let Some(v) = line.strip_prefix("set dls-boot-type ") {
            bt = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("set node-image") {
            let v = v.trim();
            img = (!v.is_empty()).then(|| v.to_string());
        }
    }
    bt.map(|b| (b, img))
}

/// `bootset -s [NODESET]`: nodes folded per boot type and image.
pub fn status(ctx: &Ctx, set: Option<&str>) -> Result<Vec<StatusLine>> {
    let cfg = &ctx.cfg;
    let inv = Inventory::load(cfg)?;
    let nodes = match set {
        Some(s) => resolve_nodes(&inv, s)?,
        None => inv.nodes.keys().cloned().collect(),
    };
    type Group = (Vec<String>, Vec<String>, Vec<String>, Vec<StatusNode>);
    type Key = (String, Option<String>, Option<String>);
    let mut groups: BTreeMap<Key, Group> = BTreeMap::new();
    let mut gens: BTreeMap<String, (Option<u32>, Option<String>)> = BTreeMap::new();
    for n in nodes {
        let assigned = read_assignment(cfg, &n);
        let record = super::seen::load(cfg, &n);
        let (bt, img) = assigned
            .clone()
            .unwrap_or_else(|| ("unassigned".into(), None));
        let once = record
            .as_ref()
            .and_then(|s| s.once.as_ref())
            .map(|o| o.then());
        let g = groups.entry((bt, img, once)).or_default();
        if let Some(s) = record {
            let state = super::seen::state_of(&s, assigned.is_some(), false);
            let changes = match &assigned {
                None => s.script_at.is_some(),
                Some((b, i)) => {
                    s.script_boot_type.as_deref() != Some(b.as_str())
                        || s.script_image != *i
                        || (b == "diskless"
                            && i.as_ref().is_some_and(|i| {
                                let (g, d) = gens.entry(i.clone()).or_insert_with(|| {
                                    (
                                        super::seen::generation_of(cfg, i),
                                        super::seen::digest_of(cfg, i),
                                    )
                                });
                                super::seen::image_changed(&s, *g, d.as_deref())
                            }))
                }
            } && s.script_at.is_some();
            if state == super::seen::NodeState::Booted {
                g.1.push(n.clone());
            }
            if changes {
                g.2.push(n.clone());
            }
            g.3.push(StatusNode {
                name: n.clone(),
                state,
                seen: s,
                reboot_changes: changes,
            });
        }
        g.0.push(n);
    }
    Ok(groups
        .into_iter()
        .map(
            |((boot_type, image, once_then), (nodes, booted, changes, seen))| StatusLine {
                boot_type,
                image,
                once_then,
                count: nodes.len(),
                nodes: nodeset::fold(&nodes),
                booted: nodeset::fold(&booted),
                reboot_changes: nodeset::fold(&changes),
                seen,
            },
        )
        .collect())
}

/// Images that nodes boot, with their nodes (for `list`, the TUI, remove checks).
pub fn nodes_by_image(cfg: &Config) -> Result<BTreeMap<String, Vec<String>>> {
    let inv = Inventory::load(cfg)?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in inv.nodes.keys() {
        if let Some((bt, Some(img))) = read_assignment(cfg, n) {
            if bt == "diskless" {
                out.entry(img).or_default().push(n.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_types_are_exact() {
        assert_eq!(BootType::parse("diskless").unwrap(), BootType::Diskless);
        for bad in ["disk less", "Diskless", "diskles", "dis", "osdeployy", ""] {
            let e = BootType::parse(bad).unwrap_err().to_string();
            assert!(e.contains("exactly one of"), "{e}");
        }
    }

    #[test]
    fn templates_render_without_leftover_placeholders() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::under_root(d.path()).unwrap();
        let inv = crate::cluster::inventory::parse_native(
            "c1: {mac: '52:54:00:00:00:01', ip: 10.0.0.1, netmask: 24, gateway: 10.0.0.254, vars: {console: ttyS1, kernel_args: quiet}}\n",
            Path::new("n"),
        )
        .unwrap();
        let a = Assign {
            nodeset: "c1".into(),
            boot_type: BootType::Diskless,
            image: Some("img".into()),
            extra: Some("panic=10".into()),
            net: NetMode::Network,
            wipe: false,
            once: false,
        };
        let s = render_node(&cfg, &inv, &inv.nodes["c1"], &a).unwrap();
        assert!(!s.contains("{{"), "{s}");
        assert!(
            s.contains("set dls-ip ip=10.0.0.1::10.0.0.254:255.255.255.0:c1::none"),
            "{s}"
        );
        assert!(s.contains("set dls-console console=ttyS1"), "{s}");
        assert!(s.contains("set dls-kernel-args quiet panic=10"), "{s}");
        assert!(s.contains("goto diskless"), "{s}");
        let e = render_entry(&cfg, "http://10.0.2.2:8080", true).unwrap();
        assert!(e.contains("set dls-base http://10.0.2.2:8080"), "{e}");
        assert!(e.contains("/nodes/${mac:hexhyp}.ipxe"), "{e}");
        let bad = Assign {
            extra: Some("x ${evil}".into()),
            ..a
        };
        assert!(render_node(&cfg, &inv, &inv.nodes["c1"], &bad).is_err());
    }

    #[test]
    fn menu_items_are_labels_and_default_is_the_assignment() {
        assert_eq!(render_menu(0, BootType::Disk), "");
        for bt in BootType::ALL {
            let m = render_menu(5000, bt);
            assert!(
                m.contains(&format!("choose --default {} --timeout 5000", bt.as_str())),
                "{m}"
            );
            for line in m.lines().filter(|l| l.starts_with("item ")) {
                let label = line.split_whitespace().nth(1).unwrap();
                assert!(
                    NODE_TEMPLATE.contains(&format!("\n:{label}\n")),
                    "no label {label}"
                );
            }
        }
    }

    #[test]
    fn every_goto_target_is_a_label() {
        for bt in BootType::ALL {
            assert!(
                NODE_TEMPLATE.contains(&format!("\n:{}\n", bt.as_str())),
                "no label for {}",
                bt.as_str()
            );
        }
    }

    #[test]
    fn boot_servers_fail_over_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Config::under_root(d.path()).unwrap();
        for (n, u) in [("ra", "http://10.0.1.1"), ("rb", "http://10.0.2.1:8080")] {
            cfg.replicas.push(crate::config::Replica {
                name: n.into(),
                url: u.into(),
                target: format!("/srv/{n}"),
                nfs_root: None,
            });
        }
        let inv = crate::cluster::inventory::parse_native(
            "c1: {vars: {boot_servers: 'ra, rb'}}\nc2: {vars: {boot_servers: 'ra,nope'}}\n",
            Path::new("n"),
        )
        .unwrap();
        let a = Assign {
            nodeset: "c1".into(),
            boot_type: BootType::Diskless,
            image: Some("img".into()),
            extra: None,
            net: NetMode::Dhcp,
            wipe: false,
            once: false,
        };
        let s = render_node(&cfg, &inv, &inv.nodes["c1"], &a).unwrap();
        let ia = s.find("set dls-base http://10.0.1.1\n").expect(&s);
        let ib = s.find("set dls-base http://10.0.2.1:8080\n").expect(&s);
        assert!(ia < ib, "{s}");
        assert!(s.contains("|| goto diskless-2\n:diskless-2\n"), "{s}");
        assert!(
            s.contains("c1: ra did not answer, trying rb (http://10.0.2.1:8080)"),
            "{s}"
        );
        assert!(
            s.contains("dl.bases=http://10.0.1.1,http://10.0.2.1:8080"),
            "{s}"
        );
        // every goto of the script names a label of it
        for l in s.lines() {
            if let Some(t) = l.split("goto ").nth(1) {
                let t = t.split_whitespace().next().unwrap();
                if !t.starts_with("${") {
                    assert!(
                        s.contains(&format!("\n:{t}\n")),
                        "goto {t} has no label: {s}"
                    );
                }
            }
        }
        let e = render_node(&cfg, &inv, &inv.nodes["c2"], &a)
            .unwrap_err()
            .to_string();
        assert!(e.contains("node c2: boot_servers names nope"), "{e}");
    }
}
