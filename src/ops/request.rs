//! The mutating verbs as data: a front-end fills a [`Request`] (the CLI from its
//! arguments, the TUI from a form or a confirmed popup) and [`run`] performs it. The
//! sentence a person reads and the JSON a script reads are made here, once, so both
//! front-ends say the same thing.
use std::path::PathBuf;

use serde::Serialize;

use crate::boot::bootset::Assign;
use crate::boot::replicate;
use crate::cluster::{expand_nodes, nodeset};
use crate::ctx::Ctx;
use crate::error::Result;
use crate::fsutil::human_size;
use crate::modules::demo::{self, DemoCreate};
use crate::modules::livenet::{self, AnsibleOptions, LivenetCreate, SizeSpec, WorkPaths};
use crate::modules::nfs::{self, StagingCreate};
use crate::power::{BmcOptions, BootRequest, PowerAction, Report as PowerReport, Staging};

use super::nodes::{self as inventory_ops, NodeFields};
use super::{image, kernel, params, power, recover, ParamsOptions};

/// One mutating action, with everything it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Remove {
        name: String,
    },
    Clear {
        name: String,
    },
    Clone {
        src: String,
        dst: String,
    },
    Recover,
    DemoCreate(DemoCreate),
    LivenetCreate(Box<LivenetCreate>),
    LivenetMount {
        name: String,
    },
    LivenetUnmount {
        name: String,
        discard: bool,
    },
    LivenetResize {
        name: String,
        size: SizeSpec,
    },
    Rollback {
        name: String,
    },
    KernelSet {
        name: String,
        version: String,
    },
    Initramfs {
        name: String,
        flavour: Option<String>,
    },
    NfsStagingCreate(Box<StagingCreate>),
    NfsGoldenCreate {
        name: String,
        from: String,
    },
    NfsNodesAdd {
        golden: String,
        nodeset: String,
    },
    NfsNodesRemove {
        golden: String,
        nodeset: String,
    },
    NfsExports,
    Params {
        path: PathBuf,
        options: ParamsOptions,
    },
    Ansible {
        name: String,
        playbook: PathBuf,
        keep_on_failure: bool,
        args: Vec<String>,
    },
    /// `power on|off|cycle|reset|soft NODESET`; `wait`: poll until each node reports
    /// the new state, at most this long.
    Power {
        nodeset: String,
        action: PowerAction,
        options: BmcOptions,
        wait: Option<std::time::Duration>,
    },
    /// `bootdev pxe|disk|bios NODESET [--persistent] [--uefi|--legacy]`.
    Bootdev {
        nodeset: String,
        boot: BootRequest,
        options: BmcOptions,
    },
    /// `bootset ... --reboot [--batch N --interval S]`: assign, then boot the nodes now.
    BootsetReboot {
        assign: Assign,
        staging: Staging,
        options: BmcOptions,
    },
    /// `replicate [NAME...]`: push the boot tree to the replicas named (all when empty).
    Replicate {
        names: Vec<String>,
    },
    /// `nfs exports --for REPLICA [--output FILE]`: the exports file of that server.
    NfsExportsFor {
        replica: String,
        output: Option<PathBuf>,
    },
    // issue 13: the inventory (`nodes add|set|remove|import`).
    NodesAdd {
        nodeset: String,
        fields: NodeFields,
    },
    NodesSet {
        nodeset: String,
        fields: NodeFields,
    },
    NodesRemove {
        nodeset: String,
    },
    NodesImport {
        path: PathBuf,
    },
    /// issue 15: `rebuild NAME [--as NEW] [--source-date-epoch N]` (NEW: `NAME-rebuild`
    /// when None; the epoch: the recorded one when None).
    Rebuild {
        name: String,
        as_name: Option<String>,
        epoch: Option<u64>,
    },
    // issue 15: `gc [--older-than AGE]`: transient images and surplus generations.
    Gc(super::gc::GcOptions),
    // issue 12: per-node secrets (`secrets show|rotate NODESET`).
    SecretsShow {
        nodeset: String,
    },
    SecretsRotate {
        nodeset: String,
    },
    // issue 13: discovery (`discovery start|stop|accept`).
    /// `discovery start [--pool NODESET] [--policy manual|sequential|open]`.
    DiscoveryStart {
        pool: Option<String>,
        policy: String,
    },
    /// `discovery stop`.
    DiscoveryStop,
    /// `discovery accept MAC NODE`.
    DiscoveryAccept {
        mac: String,
        node: String,
    },
    // issue 13 (TUI): `bootset -n NODESET -b TYPE [-i IMAGE] [--once]` as a request, so
    // the Nodes screen assigns through `run` like every other action.
    /// `bootset -n NODESET -b TYPE ...` without `--reboot` (`bootset_assign`).
    BootsetAssign {
        assign: Assign,
    },
}

/// What a performed request says.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The lines a person reads (CLI stdout; the TUI joins them).
    pub lines: Vec<String>,
    /// What `--json` prints.
    pub json: serde_json::Value,
    /// Whether the lines are printed in a dry run (a report of work that was not done
    /// is not: the plan says it all).
    pub in_dry_run: bool,
    /// The operation ran but part of it failed (some nodes): the one line front-ends
    /// print as the error, after the lines; exit status 1.
    pub failure: Option<String>,
}

impl Outcome {
    /// A plain confirmation: `{"ok": true, "message": ...}` for scripts.
    fn done(msg: String) -> Outcome {
        Outcome {
            json: serde_json::json!({ "ok": true, "message": msg }),
            lines: vec![msg],
            in_dry_run: true,
            failure: None,
        }
    }

    /// A report: the report itself for scripts, its sentence (not in a dry run).
    fn report<T: Serialize>(rep: &T, lines: Vec<String>) -> Result<Outcome> {
        Ok(Outcome {
            json: serde_json::to_value(rep)
                .map_err(|e| crate::error::Error::invalid(format!("report: {e}")))?,
            lines,
            in_dry_run: false,
            failure: None,
        })
    }

    /// A node-by-node report: its folded lines (also in a dry run: they say `planned`),
    /// a failure naming the nodes that failed.
    fn nodes(rep: &PowerReport, json: serde_json::Value, mut lines: Vec<String>) -> Outcome {
        lines.extend(rep.lines());
        Outcome {
            json,
            lines,
            in_dry_run: true,
            failure: (!rep.ok).then(|| {
                format!(
                    "{} of {} nodes failed: {} (see their lines above)",
                    rep.failed_count(),
                    rep.nodes.len(),
                    rep.failed
                )
            }),
        }
    }

    /// The lines as one sentence (the TUI's message line).
    pub fn sentence(&self) -> String {
        self.lines.join("; ")
    }
}

impl Request {
    /// A short title (the TUI's job title).
    pub fn title(&self) -> String {
        match self {
            Request::Remove { name } => format!("Remove image {name}"),
            Request::Clear { name } => format!("Clear image {name}"),
            Request::Clone { src, dst } => format!("Clone image {src} into {dst}"),
            Request::Recover => "Recover the store".into(),
            Request::DemoCreate(o) => format!("Create demo image {}", o.name),
            Request::LivenetCreate(o) => format!("Create livenet image {}", o.name),
            Request::LivenetMount { name } => format!("Mount image {name}"),
            Request::LivenetUnmount { name, .. } => format!("Unmount image {name}"),
            Request::LivenetResize { name, size } => format!("Resize image {name} to {size}"),
            Request::Rollback { name } => format!("Roll back image {name}"),
            Request::KernelSet { name, .. } => format!("Set the kernel of image {name}"),
            Request::Initramfs { name, .. } => format!("Generate the initramfs of image {name}"),
            Request::NfsStagingCreate(o) => format!("Create NFS staging image {}", o.name),
            Request::NfsGoldenCreate { name, from } => {
                format!("Create NFS golden image {name} from {from}")
            }
            Request::NfsNodesAdd { golden, nodeset } => {
                format!("Add nodes {nodeset} to image {golden}")
            }
            Request::NfsNodesRemove { golden, nodeset } => {
                format!("Remove nodes {nodeset} of image {golden}")
            }
            Request::NfsExports => "Regenerate the NFS exports".into(),
            Request::Params { path, .. } => format!("Create images from {}", path.display()),
            Request::Ansible { name, .. } => format!("Run a playbook in image {name}"),
            Request::Power {
                nodeset, action, ..
            } => format!("Power {} nodes {nodeset}", action.as_str()),
            Request::Bootdev { nodeset, boot, .. } => {
                format!("Next boot of nodes {nodeset}: {}", boot.describe())
            }
            Request::BootsetReboot { assign, .. } => format!(
                "Assign {} to nodes {} and reboot them",
                assign.boot_type.as_str(),
                assign.nodeset
            ),
            Request::Replicate { names } if names.is_empty() => {
                "Push the boot tree to every replica".into()
            }
            Request::Replicate { names } => {
                format!("Push the boot tree to {}", names.join(", "))
            }
            Request::NfsExportsFor { replica, .. } => {
                format!("Write the NFS exports of replica {replica}")
            }
            Request::NodesAdd { nodeset, .. } => format!("Add nodes {nodeset}"),
            Request::NodesSet { nodeset, .. } => format!("Change nodes {nodeset}"),
            Request::NodesRemove { nodeset } => format!("Remove nodes {nodeset}"),
            Request::NodesImport { path } => format!("Import nodes from {}", path.display()),
            Request::Rebuild { name, .. } => format!("Rebuild image {name} from its record"),
            Request::Gc(_) => "Collect transient images and surplus generations".into(),
            Request::SecretsShow { nodeset } => format!("Host keys of nodes {nodeset}"),
            Request::SecretsRotate { nodeset } => {
                format!("Rotate the host keys of nodes {nodeset}")
            }
            Request::DiscoveryStart { .. } => "Start discovery".into(),
            Request::DiscoveryStop => "Stop discovery".into(),
            Request::DiscoveryAccept { mac, node } => format!("Accept machine {mac} as {node}"),
            Request::BootsetAssign { assign } => format!(
                "Assign {} to nodes {}",
                assign.boot_type.as_str(),
                assign.nodeset
            ),
        }
    }

    /// The image the request creates or changes (the TUI shows it afterwards); None when
    /// it removes one or acts on several.
    pub fn image(&self) -> Option<&str> {
        match self {
            Request::DemoCreate(o) => Some(&o.name),
            Request::LivenetCreate(o) => Some(&o.name),
            Request::NfsStagingCreate(o) => Some(&o.name),
            Request::Clone { dst, .. } => Some(dst),
            Request::NfsGoldenCreate { name, .. }
            | Request::LivenetMount { name }
            | Request::LivenetUnmount { name, .. }
            | Request::LivenetResize { name, .. }
            | Request::Rollback { name }
            | Request::KernelSet { name, .. }
            | Request::Initramfs { name, .. }
            | Request::Ansible { name, .. } => Some(name),
            _ => None,
        }
    }

    /// What a destructive request deletes, as the question to ask before it (None: no
    /// confirmation needed).
    pub fn confirmation(&self, ctx: &Ctx) -> Result<Option<String>> {
        Ok(match self {
            Request::Remove { name } => {
                crate::names::image(name)?;
                let info = image::show(ctx, name)?;
                Some(format!(
                    "remove image {name} ({} and its work dir)",
                    info.dir.display()
                ))
            }
            Request::Clear { name } => {
                crate::names::image(name)?;
                Some(format!(
                    "clear image {name}: delete everything it has, whatever its state"
                ))
            }
            Request::NfsNodesRemove { golden, nodeset } => {
                let nodes = expand_nodes(&ctx.cfg, nodeset)?;
                Some(format!(
                    "remove nodes {} of image {golden} and the state they keep",
                    nodeset::fold(&nodes)
                ))
            }
            Request::Power {
                nodeset, action, ..
            } if *action != PowerAction::On => {
                let nodes = expand_nodes(&ctx.cfg, nodeset)?;
                Some(format!(
                    "power {} nodes {} (what runs on them stops)",
                    action.as_str(),
                    nodeset::fold(&nodes)
                ))
            }
            Request::NodesRemove { nodeset } => Some(format!(
                "remove nodes {nodeset} from the inventory ({})",
                ctx.cfg.nodes_file.display()
            )),
            Request::Gc(o) => super::gc::confirmation(ctx, o)?,
            Request::SecretsRotate { nodeset } => {
                let nodes = expand_nodes(&ctx.cfg, nodeset)?;
                Some(format!(
                    "delete the SSH host keys of nodes {} (new ones at their next boot: SSH clients will warn until their known_hosts is updated)",
                    nodeset::fold(&nodes)
                ))
            }
            _ => None,
        })
    }
}

impl std::fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeSpec::Mib(m) => write!(f, "{m}M"),
            SizeSpec::Auto => f.write_str("auto"),
        }
    }
}

/// Whether a request may change what the boot tree holds (the replicas then need a push
/// when `replicate_on_publish` is set).
fn publishes(req: &Request) -> bool {
    !matches!(
        req,
        Request::Recover
            | Request::Power { .. }
            | Request::Bootdev { .. }
            | Request::LivenetMount { .. }
            | Request::NfsExports
            | Request::NfsExportsFor { .. }
            | Request::Replicate { .. }
            | Request::SecretsShow { .. }
            | Request::SecretsRotate { .. }
            | Request::DiscoveryStart { .. }
            | Request::DiscoveryStop
    )
}

/// Performs a request; with `replicate_on_publish`, a request that published pushes the
/// boot tree to the replicas afterwards (a failed push is reported and recorded, and
/// `list` shows the replica stale; the request itself stays done).
pub fn run(ctx: &Ctx, req: &Request) -> Result<Outcome> {
    let mut out = run_request(ctx, req)?;
    if publishes(req) {
        out.lines.extend(replicate_after_publish(ctx));
    }
    Ok(out)
}

/// The hook of `replicate_on_publish` (also called after a `bootset` assignment).
pub fn replicate_after_publish(ctx: &Ctx) -> Vec<String> {
    if !ctx.cfg.replicate_on_publish || ctx.cfg.replicas.is_empty() || ctx.runner.dry_run() {
        return Vec::new();
    }
    match replicate::push(ctx, &[]) {
        Ok(reps) => reps.iter().map(push_line).collect(),
        Err(e) => {
            tracing::warn!("replicate after publish: {e}");
            vec![format!("replicas not updated: {e}")]
        }
    }
}

fn push_line(r: &replicate::PushReport) -> String {
    match &r.error {
        None => format!(
            "replica {}: serves release {} ({} files, {} transferred)",
            r.replica,
            r.release.unwrap_or(0),
            r.files_transferred,
            human_size(r.bytes_transferred)
        ),
        Some(e) => format!(
            "replica {}: push FAILED, it still serves release {}: {e}",
            r.replica,
            r.release.map_or("none".into(), |n| n.to_string())
        ),
    }
}

fn run_request(ctx: &Ctx, req: &Request) -> Result<Outcome> {
    match req {
        Request::Remove { name } => {
            image::remove(ctx, name)?;
            Ok(Outcome::done(format!("removed image {name}")))
        }
        Request::Clear { name } => {
            image::clear(ctx, name)?;
            Ok(Outcome::done(format!("cleared image {name}")))
        }
        Request::Clone { src, dst } => {
            let rec = image::clone(ctx, src, dst)?;
            Ok(Outcome::done(format!("cloned {src} into {}", rec.name)))
        }
        Request::Recover => {
            let r = recover::recover(ctx)?;
            let mut lines = Vec::new();
            for (what, items) in [
                ("stale lock cleared", r.stale_locks.clone()),
                ("left-over processes killed", r.killed.clone()),
                (
                    "unmounted",
                    r.unmounted
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                ),
                ("loop device detached", r.loop_devices.clone()),
                (
                    "temp file removed",
                    r.temp_files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                ),
            ] {
                lines.extend(items.into_iter().map(|i| format!("{what}: {i}")));
            }
            let any = !lines.is_empty();
            for c in &r.corrupted {
                lines.push(format!(
                    "corrupted image left in place: {c} (remove it with `disklessset clear {c}`)"
                ));
            }
            if !any {
                lines.push("nothing to recover".into());
            }
            let mut o = Outcome::report(&r, lines)?;
            o.in_dry_run = true;
            Ok(o)
        }
        Request::DemoCreate(o) => {
            let rec = demo::create(ctx, o)?;
            Ok(Outcome::done(format!("created demo image {}", rec.name)))
        }
        Request::LivenetCreate(o) => {
            let rep = livenet::create(ctx, o)?;
            let line = format!(
                "created livenet image {} (kernel {}, squashfs {}, initramfs {} {}; build {:.0}s, pack {:.1}s)",
                rep.name,
                rep.kernel,
                human_size(rep.squashfs_bytes),
                rep.initramfs.flavour,
                human_size(rep.initramfs.size_bytes),
                rep.build_seconds,
                rep.pack_seconds
            );
            Outcome::report(&rep, vec![line])
        }
        Request::LivenetMount { name } => {
            let mnt = livenet::mount_image(ctx, name)?;
            Ok(Outcome::done(format!(
                "image {name} mounted at {} (Ansible inventory: {})",
                mnt.display(),
                WorkPaths::new(&ctx.cfg, name)
                    .inventory
                    .join("host")
                    .display()
            )))
        }
        Request::LivenetUnmount { name, discard } => {
            let rep = livenet::unmount_image(ctx, name, *discard)?;
            let line = match rep.generation {
                Some(gen) => format!(
                    "image {name} unmounted; repacked as generation {gen} ({})",
                    human_size(rep.size_bytes)
                ),
                None if *discard => format!("image {name} unmounted; changes discarded"),
                None => format!("image {name} unmounted; nothing changed, no new generation"),
            };
            let mut o = Outcome::report(&rep, vec![line])?;
            o.in_dry_run = true;
            Ok(o)
        }
        Request::LivenetResize { name, size } => {
            let rep = livenet::resize(ctx, name, *size)?;
            let line = format!(
                "image {name} resized from {}M to {}M (content {}M, minimum {}M); generation {}",
                rep.old_mib, rep.new_mib, rep.content_mib, rep.min_mib, rep.generation
            );
            let mut o = Outcome::report(&rep, vec![line])?;
            o.in_dry_run = true;
            Ok(o)
        }
        Request::Rollback { name } => {
            let gen = livenet::rollback(ctx, name)?;
            Ok(Outcome::done(format!(
                "image {name} is back at generation {gen}"
            )))
        }
        Request::KernelSet { name, version } => {
            let rec = kernel::kernel_set(ctx, name, version)?;
            Ok(Outcome::done(format!(
                "image {name} now boots {} with {}",
                rec.kernel.unwrap_or_default(),
                rec.image.unwrap_or_default()
            )))
        }
        Request::Initramfs { name, flavour } => {
            let rep = kernel::initramfs(ctx, name, flavour.as_deref())?;
            let line = format!(
                "initramfs {} ({}, {}) built in {:.1}s for image {name}",
                rep.file.display(),
                rep.flavour,
                human_size(rep.size_bytes),
                rep.seconds
            );
            let mut o = Outcome::report(&rep, vec![line])?;
            o.in_dry_run = true;
            Ok(o)
        }
        Request::NfsStagingCreate(o) => {
            let rep = nfs::create_staging(ctx, o)?;
            let line = format!(
                "created NFS staging image {} in {} (kernel {}, tree {}, initramfs {} {}; build {:.0}s); exports: {}",
                rep.name,
                rep.tree.display(),
                rep.kernel,
                human_size(rep.tree_bytes),
                rep.initramfs.flavour,
                human_size(rep.initramfs.size_bytes),
                rep.build_seconds,
                rep.exports.reload
            );
            Outcome::report(&rep, vec![line])
        }
        Request::NfsGoldenCreate { name, from } => {
            let rep = nfs::create_golden(ctx, name, from)?;
            let line = format!(
                "created NFS golden image {} from {} in {} ({:.1}s); exports: {}",
                rep.name,
                rep.source_image,
                rep.tree.display(),
                rep.copy_seconds,
                rep.exports.reload
            );
            Outcome::report(&rep, vec![line])
        }
        Request::NfsNodesAdd { golden, nodeset } => {
            let rep = nfs::nodes_add(ctx, golden, nodeset)?;
            let already = if rep.unchanged.is_empty() {
                String::new()
            } else {
                format!(" ({} already there)", rep.unchanged)
            };
            let line = format!(
                "image {golden}: added {}{already}; nodes now {} ({}) in {:.2}s; exports: {}",
                if rep.changed.is_empty() {
                    "no node"
                } else {
                    &rep.changed
                },
                rep.nodes,
                rep.count,
                rep.seconds,
                rep.exports.reload
            );
            Outcome::report(&rep, vec![line])
        }
        Request::NfsNodesRemove { golden, nodeset } => {
            let rep = nfs::nodes_remove(ctx, golden, nodeset)?;
            let line = format!(
                "image {golden}: removed {}; nodes now {}; exports: {}",
                rep.changed,
                if rep.nodes.is_empty() {
                    "none"
                } else {
                    &rep.nodes
                },
                rep.exports.reload
            );
            Outcome::report(&rep, vec![line])
        }
        Request::NfsExports => {
            let rep = nfs::exports::refresh(ctx)?;
            let line = format!(
                "{}: {} exports ({})",
                rep.file.display(),
                rep.exports,
                rep.reload
            );
            Outcome::report(&rep, vec![line])
        }
        Request::Params { path, options } => {
            let rep = params::create_from_params(ctx, path, options)?;
            let lines = rep
                .images
                .iter()
                .map(|i| {
                    let mut line = format!(
                        "{} image {}: {}",
                        i.kind.as_str(),
                        i.name,
                        i.action.as_str()
                    );
                    if let Some(k) = i.kernel.as_deref().filter(|_| !rep.dry_run) {
                        line.push_str(&format!(" (kernel {k}, {:.0}s)", i.seconds));
                    }
                    if !i.differences.is_empty() {
                        line.push_str(&format!(" [{}]", i.differences.join("; ")));
                    }
                    line
                })
                .collect();
            let mut o = Outcome::report(&rep, lines)?;
            o.in_dry_run = true;
            Ok(o)
        }
        Request::Ansible {
            name,
            playbook,
            keep_on_failure,
            args,
        } => {
            let rep = livenet::ansible(
                ctx,
                name,
                playbook,
                args,
                &AnsibleOptions {
                    keep_on_failure: *keep_on_failure,
                },
            )?;
            let line = match rep.generation {
                Some(gen) => format!(
                    "playbook applied to image {name}: repacked as generation {gen} (log {})",
                    rep.log.display()
                ),
                None if rep.mounted_here => format!(
                    "playbook applied to image {name}: nothing changed (log {})",
                    rep.log.display()
                ),
                None => format!(
                    "playbook applied to the mounted image {name}; `disklessset livenet unmount {name}` repacks it (log {})",
                    rep.log.display()
                ),
            };
            Outcome::report(&rep, vec![line])
        }
        Request::Power {
            nodeset,
            action,
            options,
            wait,
        } => {
            let rep = power::power(ctx, nodeset, *action, options, *wait)?;
            Ok(Outcome::nodes(&rep, to_json(&rep)?, Vec::new()))
        }
        Request::Bootdev {
            nodeset,
            boot,
            options,
        } => {
            let rep = power::bootdev(ctx, nodeset, boot, options)?;
            Ok(Outcome::nodes(&rep, to_json(&rep)?, Vec::new()))
        }
        Request::BootsetReboot {
            assign,
            staging,
            options,
        } => {
            let rep = power::bootset_reboot(ctx, assign, staging, options)?;
            let line = format!(
                "{}: {}{} ({} written, {} unchanged); rebooting{}:",
                rep.assign.folded,
                assign.boot_type.as_str(),
                assign
                    .image
                    .as_deref()
                    .map(|i| format!(" {i}"))
                    .unwrap_or_default(),
                rep.assign.written,
                rep.assign.unchanged,
                match staging.batch {
                    Some(b) => format!(" {b} at a time, {} s apart", staging.interval_secs),
                    None => String::new(),
                }
            );
            Ok(Outcome::nodes(&rep.reboot, to_json(&rep)?, vec![line]))
        }
        Request::Replicate { names } => {
            let reps = replicate::push(ctx, names)?;
            let failed: Vec<&str> = reps
                .iter()
                .filter(|r| !r.ok)
                .map(|r| r.replica.as_str())
                .collect();
            let mut o = Outcome::report(&reps, reps.iter().map(push_line).collect())?;
            o.failure = (!failed.is_empty() && !ctx.runner.dry_run()).then(|| {
                format!(
                    "{} of {} replicas failed: {} (they keep serving their previous release)",
                    failed.len(),
                    reps.len(),
                    failed.join(", ")
                )
            });
            Ok(o)
        }
        Request::NfsExportsFor { replica, output } => {
            let rep = nfs::exports::for_replica(ctx, replica, output.as_deref())?;
            let line = format!(
                "{}: {} exports for replica {replica}",
                rep.file.display(),
                rep.exports
            );
            Outcome::report(&rep, vec![line])
        }
        Request::NodesAdd { .. }
        | Request::NodesSet { .. }
        | Request::NodesRemove { .. }
        | Request::NodesImport { .. } => run_nodes(ctx, req),
        Request::Rebuild {
            name,
            as_name,
            epoch,
        } => {
            let rep = super::rebuild::rebuild(ctx, name, as_name.as_deref(), *epoch)?;
            let mut o = Outcome::report(&rep, rep.lines())?;
            // A rebuild that is not bit-identical is reported, and fails the command.
            o.failure = (!rep.identical && !ctx.runner.dry_run()).then(|| {
                format!(
                    "the rebuild {} is not bit-identical to generation 1 of {name} (see above)",
                    rep.rebuilt_as
                )
            });
            Ok(o)
        }
        Request::Gc(o) => {
            let rep = super::gc::gc(ctx, o)?;
            let mut out = Outcome::report(&rep, super::gc::lines(&rep))?;
            out.in_dry_run = true;
            Ok(out)
        }
        Request::SecretsShow { nodeset } => {
            let keys = super::secrets::show(ctx, nodeset)?;
            let mut lines = Vec::new();
            for k in &keys {
                if k.fingerprints.is_empty() {
                    lines.push(format!(
                        "{}: no host keys yet (made when it first fetches its boot script)",
                        k.node
                    ));
                }
                for f in &k.fingerprints {
                    lines.push(format!("{}: {f}", k.node));
                }
            }
            let mut o = Outcome::report(&keys, lines)?;
            o.in_dry_run = true;
            Ok(o)
        }
        Request::SecretsRotate { nodeset } => {
            let done = super::secrets::rotate(ctx, nodeset)?;
            Ok(Outcome::done(if done.is_empty() {
                format!("nodes {nodeset}: no host keys to rotate")
            } else {
                format!(
                    "host keys of {} removed: new ones are made at their next boot",
                    nodeset::fold(&done)
                )
            }))
        }
        Request::DiscoveryStart { .. }
        | Request::DiscoveryStop
        | Request::DiscoveryAccept { .. } => super::discovery::run(ctx, req),
        Request::BootsetAssign { assign } => {
            // The line `bootset` prints; `run` replicates afterwards like bootset does.
            let rep = crate::boot::bootset::assign(ctx, assign)?;
            let line = format!(
                "{}: {}{} ({} written, {} unchanged)",
                rep.folded,
                assign.boot_type.as_str(),
                assign
                    .image
                    .as_deref()
                    .map(|i| format!(" {i}"))
                    .unwrap_or_default(),
                rep.written,
                rep.unchanged
            );
            Outcome::report(&rep, vec![line])
        }
    }
}

/// The inventory edits (issue 13).
fn run_nodes(ctx: &Ctx, req: &Request) -> Result<Outcome> {
    use crate::cluster::edit::Edit;
    let rep = match req {
        Request::NodesAdd { nodeset, fields } => inventory_ops::edit(
            ctx,
            &Edit::Add {
                nodeset: nodeset.clone(),
                fields: fields.clone(),
            },
            "nodes add",
        )?,
        Request::NodesSet { nodeset, fields } => inventory_ops::edit(
            ctx,
            &Edit::Set {
                nodeset: nodeset.clone(),
                fields: fields.clone(),
            },
            "nodes set",
        )?,
        Request::NodesRemove { nodeset } => inventory_ops::edit(
            ctx,
            &Edit::Remove {
                nodeset: nodeset.clone(),
            },
            "nodes remove",
        )?,
        Request::NodesImport { path } => inventory_ops::import(ctx, path)?,
        _ => {
            return Err(crate::error::Error::invalid(
                "internal: not a nodes request",
            ))
        }
    };
    let mut parts = Vec::new();
    for (what, v) in [
        ("added", &rep.added),
        ("changed", &rep.changed),
        ("removed", &rep.removed),
    ] {
        if !v.is_empty() {
            parts.push(format!("{what} {v}"));
        }
    }
    if parts.is_empty() {
        parts.push("no node changed".into());
    }
    let mut line = format!("{}: {}; {} nodes", rep.file, parts.join(", "), rep.nodes);
    if let Some(b) = &rep.backup {
        line.push_str(&format!(
            " (rewritten: comments are not kept, the previous file is {b})"
        ));
    }
    let mut o = Outcome::report(&rep, vec![line])?;
    o.in_dry_run = true;
    Ok(o)
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| crate::error::Error::invalid(format!("report: {e}")))
}
