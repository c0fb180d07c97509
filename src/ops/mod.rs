//! The one door: every action either front-end (CLI, TUI, bootset) performs is one call
//! here, and every type they need is re-exported here. Front-ends import nothing of the
//! core but `ops` (checked by `scripts/check-layers.sh`).
//!
//! - [`run`] performs a [`Request`] (the mutating verbs, as both front-ends fill them)
//!   and returns an [`Outcome`]: the one line a person reads, the JSON a script reads.
//! - Read queries return data the front-ends render: [`list`], [`show`], [`kernels`],
//!   [`module_infos`], [`bootset_status`], and the status-bar queries of [`query`].
//! - `exec`, `shell` and `serve` own the terminal or run until stopped: plain calls.
//!
//! Nothing here knows a terminal exists; long operations report progress through
//! `Ctx::progress`.
pub mod diff;
mod discovery;
pub mod gc;
mod image;
mod kernel;
pub mod nodes;
mod params;
mod power;
pub mod query;
mod rebuild;
mod recover;
mod request;
mod secrets;

pub use crate::boot::replicate::{PushReport, ReplicaStatus};
pub use image::{clear, clone, copy_dir_contents, list, removal_paths, remove, show};
pub use kernel::{initramfs, kernel_set, kernels};
pub use params::{create_from_params, ParamsOptions, ParamsOutcome, ParamsReport};
pub use power::{bootdev_status, power_status, RebootReport};
// issue 15: diff and rebuild
pub use diff::{diff, DiffReport};
pub use rebuild::{default_name as rebuild_default_name, RebuildReport};
pub use recover::{recover, RecoverReport};
pub use request::{replicate_after_publish, run, Outcome, Request};

/// `replicate --status [NAME...]`: each replica compared with the store by content.
pub fn replicate_status(ctx: &Ctx, names: &[String]) -> Result<Vec<ReplicaStatus>> {
    crate::boot::replicate::status(ctx, names)
}

/// One line per configured replica for `list`: up to date, or stale and why.
pub fn replica_notes(cfg: &Config) -> Vec<String> {
    crate::boot::replicate::notes(cfg)
}

// What the front-ends use, from the layers below.
pub use crate::boot::bootset::{
    Assign, AssignReport, BootType, NetMode, StatusLine as BootStatusLine,
};
pub use crate::boot::discovery::{Discovered, DiscoveryState, Policy as DiscoveryPolicy};
pub use crate::boot::seen::{NodeState, Seen as NodeSeen};
pub use crate::build::image::BuildOptions;
pub use crate::build::password::{hash_from_source, hash_password};
pub use crate::cluster::facts::{Disk, Facts};
pub use crate::cluster::Inventory;
pub use crate::config::{Config, ConfigSource};
pub use crate::ctx::{Ctx, Progress, ProgressEvent};
pub use crate::error::{Error, Result};
pub use crate::fsutil::{human_size, parse_size_mib};
pub use crate::kernel::{InitramfsReport, KernelInfo};
pub use crate::logging::{init as init_logging, Verbosity};
pub use crate::modules::demo::DemoCreate;
pub use crate::modules::livenet::{
    AnsibleOptions, AnsibleReport, CreateReport as LivenetCreateReport, ExecOutcome, LivenetCreate,
    ResizeReport, SizeSpec, UnmountReport,
};
pub use crate::modules::nfs::{GoldenReport, NodeEntry, NodesReport, StagingCreate};
pub use crate::modules::ModuleInfo;
pub use crate::power::{
    BmcOptions, BootDevice, BootMode, BootRequest, BootdevInfo, Folded, NodeResult, PowerAction,
    PowerState, Report as PowerReport, Staging,
};
pub use crate::store::{ImageClass, ImageInfo, ImageRecord, Layout, LivenetType, State};
pub use crate::sys::runner::Runner;
pub use nodes::{EditReport, NodeDetail, NodeFields, NodeRow, VarSource};

/// An error and its causes on one line (what front-ends print).
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// The module list (`modules`).
pub fn module_infos() -> Vec<ModuleInfo> {
    crate::modules::infos()
}

/// `bootset -s [NODESET]`: nodes folded per boot type and image.
pub fn bootset_status(ctx: &Ctx, set: Option<&str>) -> Result<Vec<BootStatusLine>> {
    crate::boot::bootset::status(ctx, set)
}

/// `bootset -n NODESET -b TYPE ...`.
pub fn bootset_assign(ctx: &Ctx, a: &Assign) -> Result<AssignReport> {
    crate::boot::bootset::assign(ctx, a)
}

/// `exec NAME -- CMD...` (a private mount namespace; the command owns the terminal).
pub fn exec(ctx: &Ctx, name: &str, cmd: &[String]) -> Result<ExecOutcome> {
    crate::modules::livenet::exec(ctx, name, cmd)
}

/// `shell NAME`.
pub fn shell(ctx: &Ctx, name: &str) -> Result<ExecOutcome> {
    crate::modules::livenet::shell(ctx, name)
}

/// The `__nsrun` helper of exec/shell: front-ends call it first thing; Some(code) when
/// this process is the helper.
pub fn maybe_nsrun() -> Option<i32> {
    // `__reaper`: the watchdog that kills what the runner started once this tool dies
    if let Some(code) = crate::sys::reaper::maybe_reaper() {
        return Some(code);
    }
    crate::sys::ns::maybe_nsrun()
}

/// A bound boot server (`serve`): its address is known before it runs.
pub use crate::boot::http::Server;

/// `serve`: binds the built-in boot server on `listen` for the store's web root;
/// `max_connections` overrides the config's.
pub fn serve_bind(
    cfg: &Config,
    listen: std::net::SocketAddr,
    max_connections: Option<usize>,
) -> Result<Server> {
    crate::boot::serve::bind(cfg, listen, max_connections)
}

/// Runs a bound server until `shutdown` is set.
pub fn serve_run(
    server: Server,
    shutdown: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    crate::boot::serve::run(server, shutdown)
}

/// `nfs nodes list GOLDEN [NODESET]`: a golden image's nodes with what each keeps.
pub fn nfs_nodes_list(ctx: &Ctx, golden: &str, set: Option<&str>) -> Result<Vec<NodeEntry>> {
    crate::modules::nfs::nodes_list(ctx, golden, set)
}
