//! NFS exports of the NFS images, regenerated from the records: shared roots (staging
//! and golden trees) read-only, per-node directories read-write with `no_root_squash`
//! for that node's address only (the configured `nfs_clients` when the inventory has
//! none). The tool owns one whole file per server kind and never edits anything else:
//! the kernel server's `exports_file` (an `/etc/exports.d/*.exports` file) or an
//! nfs-ganesha snippet the admin `%include`s from ganesha.conf. A running server is
//! reloaded after a change: `exportfs -ra` (kernel) or SIGHUP (ganesha 4.x re-reads
//! its exports on SIGHUP: "Reread exports complete" in its log).
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cluster::inventory::Inventory;
use crate::cluster::nodeset;
use crate::config::{Config, NfsServerKind};
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::store::{self, ImageClass};
use crate::sys::runner::Cmd;

/// One exported directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    pub path: PathBuf,
    pub rw: bool,
    /// `*`, a network or a host.
    pub clients: String,
    /// What it is, for the comment line.
    pub what: String,
}

/// What a refresh did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportsReport {
    pub file: PathBuf,
    pub exports: usize,
    pub changed: bool,
    /// How the running server was reloaded, or why it was not.
    pub reload: String,
}

pub const HEADER: &str = "Written by disklessset from its NFS image records; edits here are overwritten (add your own exports in another file).";

/// Paths that can go into an exports file as they are.
fn check_path(p: &Path) -> Result<String> {
    let s = p.to_string_lossy().into_owned();
    if !p.is_absolute()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\' || c == '#')
    {
        return Err(Error::invalid(format!(
            "{s:?} cannot be exported: NFS paths must be absolute, without spaces, quotes, '#' or backslashes (change nfs_staging_dir / nfs_golden_dir / nfs_nodes_dir)"
        )));
    }
    Ok(s)
}

/// The node names of a golden record's folded `nodes`.
pub fn record_nodes(nodes: Option<&str>) -> Result<Vec<String>> {
    match nodes.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Vec::new()),
        Some(set) => nodeset::expand(set, &|_| None)
            .map_err(|e| Error::invalid(format!("nodes {set:?} of the image record: {e}"))),
    }
}

/// Every export the records call for, in a stable order.
pub fn collect(cfg: &Config, inv: &Inventory) -> Result<Vec<Export>> {
    let mut out = Vec::new();
    for name in store::names(cfg)? {
        let Ok(rec) = store::load(cfg, &name) else {
            continue; // in creation or corrupted: nothing to export yet
        };
        match rec.image_class {
            ImageClass::NfsStagingImage => out.push(Export {
                path: cfg.nfs_staging_dir.join(&name),
                rw: false,
                clients: cfg.nfs_clients.clone(),
                what: format!("staging image {name} (shared root, read-only)"),
            }),
            ImageClass::NfsGoldenImage => {
                out.push(Export {
                    path: cfg.nfs_golden_dir.join(&name),
                    rw: false,
                    clients: cfg.nfs_clients.clone(),
                    what: format!("golden image {name} (shared root, read-only)"),
                });
                for node in record_nodes(rec.nodes.as_deref())? {
                    let ip = inv.nodes.get(&node).and_then(|n| n.ip.clone());
                    out.push(Export {
                        path: cfg.nfs_nodes_dir.join(&name).join(&node),
                        rw: true,
                        clients: ip.clone().unwrap_or_else(|| cfg.nfs_clients.clone()),
                        what: format!(
                            "node {node} of golden image {name} (its own state, read-write{})",
                            if ip.is_some() {
                                ", its address only"
                            } else {
                                ""
                            }
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `/etc/exports` syntax (exports(5)).
pub fn render_kernel(exports: &[Export]) -> Result<String> {
    let mut s = format!("# {HEADER}\n");
    for e in exports {
        let p = check_path(&e.path)?;
        let opts = if e.rw {
            "rw,sync,no_subtree_check,no_root_squash"
        } else {
            // Read-only, and root reads as root: a root file system has files only root
            // may read (shadow, sudoers, ssh config); nobody can write through it.
            "ro,sync,no_subtree_check,no_root_squash"
        };
        s.push_str(&format!("# {}\n{p} {}({opts})\n", e.what, e.clients));
    }
    Ok(s)
}

/// A stable export id for a path (nfs-ganesha file handles carry it): FNV-1a of the
/// path into 1000..=64999, probing past collisions.
fn export_id(path: &str, used: &mut Vec<u32>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in path.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut id = 1000 + h % 64_000;
    while used.contains(&id) {
        id = if id >= 64_999 { 1000 } else { id + 1 };
    }
    used.push(id);
    id
}

/// nfs-ganesha EXPORT blocks (VFS, NFSv4), the pseudo path being the real path.
pub fn render_ganesha(exports: &[Export]) -> Result<String> {
    let mut s = format!("# {HEADER}\n# Include it from ganesha.conf: %include \"THIS FILE\"\n");
    let mut used = Vec::new();
    for e in exports {
        let p = check_path(&e.path)?;
        let id = export_id(&p, &mut used);
        let access = if e.rw { "RW" } else { "RO" };
        s.push_str(&format!(
            "\n# {what}\nEXPORT {{\n    Export_Id = {id};\n    Path = \"{p}\";\n    Pseudo = \"{p}\";\n    Protocols = 4;\n    Transports = TCP;\n    SecType = sys;\n    Access_Type = None;\n    Squash = No_Root_Squash;\n    FSAL {{ Name = VFS; }}\n    CLIENT {{ Clients = {clients}; Access_Type = {access}; Protocols = 4; }}\n}}\n",
            what = e.what,
            clients = e.clients,
        ));
    }
    Ok(s)
}

/// Serialises refreshes of the exports (two `nodes add` at once): the returned file holds
/// the lock (flock, std's `File::lock`) until it is closed.
fn exports_lock(cfg: &Config) -> Result<std::fs::File> {
    let dir = cfg.locks_dir();
    fsutil::ensure_dir(&dir)?;
    let p = dir.join("nfs-exports.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .at(&p)?;
    f.lock().at(&p)?;
    Ok(f)
}

/// The file the configured server kind reads.
pub fn exports_path(cfg: &Config) -> &Path {
    match cfg.nfs_server_kind {
        NfsServerKind::Kernel => &cfg.exports_file,
        NfsServerKind::Ganesha => &cfg.ganesha_exports_file,
    }
}

/// Regenerates the exports from the records, writes them when they changed (atomically)
/// and reloads the running server.
pub fn refresh(ctx: &Ctx) -> Result<ExportsReport> {
    let cfg = &ctx.cfg;
    let inv = Inventory::load(cfg)?;
    let exports: Vec<Export> = collect(cfg, &inv)?
        .into_iter()
        .filter(|e| ctx.runner.dry_run() || e.path.is_dir())
        .collect();
    let text = match cfg.nfs_server_kind {
        NfsServerKind::Kernel => render_kernel(&exports)?,
        NfsServerKind::Ganesha => render_ganesha(&exports)?,
    };
    let file = exports_path(cfg).to_path_buf();
    let mut rep = ExportsReport {
        file: file.clone(),
        exports: exports.len(),
        changed: false,
        reload: String::new(),
    };
    if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "write {} ({} exports) and reload the {} NFS server if it runs",
            file.display(),
            exports.len(),
            cfg.nfs_server_kind.as_str()
        ));
        return Ok(rep);
    }
    let _l = exports_lock(cfg)?;
    if std::fs::read_to_string(&file).ok().as_deref() == Some(text.as_str()) {
        rep.reload = "unchanged".into();
        return Ok(rep);
    }
    if let Some(d) = file.parent() {
        fsutil::ensure_dir(d)?;
    }
    fsutil::write_atomic(&file, text.as_bytes(), 0o644)?;
    rep.changed = true;
    rep.reload = reload(ctx)?;
    tracing::info!("exports {}: {}", file.display(), rep.reload);
    Ok(rep)
}

/// Reloads the running server; says what it did.
fn reload(ctx: &Ctx) -> Result<String> {
    let cfg = &ctx.cfg;
    match cfg.nfs_server_kind {
        NfsServerKind::Kernel => {
            let threads = std::fs::read_to_string("/proc/fs/nfsd/threads")
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .unwrap_or(0);
            if threads == 0 {
                return Ok("no kernel NFS server runs: the exports apply when it starts".into());
            }
            ctx.runner
                .run(&Cmd::new("exportfs").package("nfs-kernel-server").arg("-ra"))?;
            Ok("kernel NFS server reloaded (exportfs -ra)".into())
        }
        NfsServerKind::Ganesha => {
            let pf = &cfg.ganesha_pid_file;
            let pid = std::fs::read_to_string(pf)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
                .filter(|p| *p > 1);
            let Some(pid) = pid else {
                return Ok(format!(
                    "no nfs-ganesha pid in {}: the exports apply when it starts",
                    pf.display()
                ));
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !comm.trim().starts_with("ganesha") {
                return Ok(format!(
                    "pid {pid} of {} is not nfs-ganesha (stale pid file): the exports apply when it starts",
                    pf.display()
                ));
            }
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGHUP,
            )
            .map_err(|e| Error::sys(format!("SIGHUP to nfs-ganesha (pid {pid})"), e))?;
            Ok(format!("nfs-ganesha (pid {pid}) reloaded (SIGHUP)"))
        }
    }
}

/// `nfs exports --for REPLICA`: the exports file another NFS server (a replica holding
/// copies of the NFS trees under its `nfs_root`) needs, written to `output` (default
/// `state_dir/replicas/NAME.exports` or `.ganesha.conf`). Nothing is reloaded: the file
/// is for that server (copy it there with the trees).
pub fn for_replica(ctx: &Ctx, replica: &str, output: Option<&Path>) -> Result<ExportsReport> {
    let cfg = &ctx.cfg;
    let r = cfg.replica(replica)?;
    let inv = Inventory::load(cfg)?;
    let exports: Vec<Export> = collect(cfg, &inv)?
        .into_iter()
        .map(|mut e| {
            e.path = crate::boot::replicate::nfs_path_on(cfg, r, &e.path);
            e
        })
        .collect();
    let text = match cfg.nfs_server_kind {
        NfsServerKind::Kernel => render_kernel(&exports)?,
        NfsServerKind::Ganesha => render_ganesha(&exports)?,
    };
    let file = match output {
        Some(p) => p.to_path_buf(),
        None => cfg.state_dir.join("replicas").join(format!(
            "{}.{}",
            r.name,
            match cfg.nfs_server_kind {
                NfsServerKind::Kernel => "exports",
                NfsServerKind::Ganesha => "ganesha.conf",
            }
        )),
    };
    let mut rep = ExportsReport {
        file: file.clone(),
        exports: exports.len(),
        changed: false,
        reload: format!("not reloaded: copy it to replica {}", r.name),
    };
    if ctx.runner.dry_run() {
        ctx.runner.note(format!(
            "write {} ({} exports for replica {})",
            file.display(),
            exports.len(),
            r.name
        ));
        return Ok(rep);
    }
    if let Some(d) = file.parent() {
        fsutil::ensure_dir(d)?;
    }
    rep.changed = std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str());
    fsutil::write_atomic(&file, text.as_bytes(), 0o644)?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &str, rw: bool, c: &str) -> Export {
        Export {
            path: PathBuf::from(p),
            rw,
            clients: c.into(),
            what: "x".into(),
        }
    }

    #[test]
    fn kernel_lines() {
        let t = render_kernel(&[
            ex("/g/gold", false, "*"),
            ex("/n/gold/c001", true, "10.0.0.5"),
        ])
        .unwrap();
        assert!(t.starts_with("# Written by disklessset"), "{t}");
        assert!(
            t.contains("\n/g/gold *(ro,sync,no_subtree_check,no_root_squash)\n"),
            "{t}"
        );
        assert!(
            t.contains("\n/n/gold/c001 10.0.0.5(rw,sync,no_subtree_check,no_root_squash)\n"),
            "{t}"
        );
    }

    #[test]
    fn ganesha_blocks_have_stable_distinct_ids() {
        let e = [
            ex("/g/gold", false, "*"),
            ex("/n/gold/c001", true, "10.0.0.5"),
        ];
        let a = render_ganesha(&e).unwrap();
        let b = render_ganesha(&e).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.matches("EXPORT {").count(), 2);
        assert!(
            a.contains("CLIENT { Clients = 10.0.0.5; Access_Type = RW;"),
            "{a}"
        );
        assert!(a.contains("CLIENT { Clients = *; Access_Type = RO;"), "{a}");
        let ids: Vec<&str> = a.lines().filter(|l| l.contains("Export_Id")).collect();
        assert_ne!(ids[0], ids[1]);
        // adding an export does not renumber the others
        let more =
            render_ganesha(&[ex("/a/first", false, "*"), e[0].clone(), e[1].clone()]).unwrap();
        for id in ids {
            assert!(more.contains(id), "{id} kept in {more}");
        }
    }

    #[test]
    fn odd_paths_are_refused() {
        for p in ["/a b", "/a\"b", "rel/x", "/a#b"] {
            let e = render_kernel(&[ex(p, false, "*")]).unwrap_err().to_string();
            assert!(e.contains("cannot be exported"), "{e}");
        }
    }

    #[test]
    fn export_ids_probe_past_collisions() {
        let mut used = Vec::new();
        let a = export_id("/x", &mut used);
        let mut used2 = vec![a];
        let b = export_id("/x", &mut used2);
        assert_ne!(a, b);
        assert!((1000..=64_999).contains(&b));
    }
}
