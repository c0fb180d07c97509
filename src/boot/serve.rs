//! `disklessset serve`: the built-in HTTP server for the boot tree. Static files come
//! from the web root (never image_data.yml, dotfiles, temp files or anything outside);
//! the entry script `/boot.ipxe` and per-node scripts are answered dynamically, with
//! absolute URLs derived from the request's `Host`.
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::boot::http::{self, DynamicHandler, Request, Response, Server, ServerConfig};
use crate::boot::{bootset, install, seen};
use crate::cluster::inventory::{normalize_mac, Inventory};
use crate::config::Config;
use crate::error::{Error, Result};

/// Answers `/health`, `/boot.ipxe` and node scripts by MAC or hostname.
pub struct BootHandler {
    cfg: Config,
    inventory: Mutex<Option<(Option<SystemTime>, Arc<Inventory>)>>,
}

impl BootHandler {
    pub fn new(cfg: Config) -> Self {
        BootHandler {
            cfg,
            inventory: Mutex::new(None),
        }
    }

    /// The inventory, reloaded when the nodes file changes.
    fn inventory(&self) -> Option<Arc<Inventory>> {
        let mtime = std::fs::metadata(&self.cfg.nodes_file)
            .and_then(|m| m.modified())
            .ok();
        let mut guard = self.inventory.lock().ok()?;
        if let Some((t, inv)) = guard.as_ref() {
            if *t == mtime {
                return Some(inv.clone());
            }
        }
        match Inventory::load(&self.cfg) {
            Ok(inv) => {
                let inv = Arc::new(inv);
                *guard = Some((mtime, inv.clone()));
                Some(inv)
            }
            Err(e) => {
                tracing::error!("serve: cannot load the inventory: {e}");
                None
            }
        }
    }

    fn base_url(&self, req: &Request) -> String {
        match (&req.host, &self.cfg.base_url) {
            (Some(h), _) if valid_host(h) => format!("http://{h}"),
            (_, Some(b)) => b.clone(),
            _ => "http://${next-server}".to_string(),
        }
    }

    fn ipxe(body: String) -> Response {
        Response::new(200, "text/plain; charset=utf-8", body)
    }

    /// The node a MAC (`52-54-00-..`) or hostname names.
    fn node_of(&self, key: &str) -> Option<String> {
        let inv = self.inventory()?;
        Some(match normalize_mac(key) {
            Some(mac) => inv.by_mac(&mac)?.name.clone(),
            None => inv.nodes.get(key)?.name.clone(),
        })
    }

    /// A node's script by MAC (`52-54-00-..`) or hostname, when no static file exists.
    fn node_script(&self, key: &str) -> Option<Response> {
        let node = self.node_of(key)?;
        let p = self.cfg.nodes_ipxe_dir.join(format!("{node}.ipxe"));
        std::fs::read_to_string(p).ok().map(Self::ipxe)
    }

    /// Records that `node` fetched its script (issue 13: last seen): the boot type,
    /// image and the image's generation it was given.
    fn record_script(&self, node: &str) {
        let assigned = bootset::read_assignment(&self.cfg, node);
        let generation = assigned
            .as_ref()
            .and_then(|(_, i)| i.as_deref())
            .and_then(|i| seen::generation_of(&self.cfg, i));
        let res = seen::update(&self.cfg, node, |s| {
            s.script_at = Some(seen::now());
            s.script_boot_type = assigned.as_ref().map(|(b, _)| b.clone());
            s.script_image = assigned.as_ref().and_then(|(_, i)| i.clone());
            s.script_generation = generation;
        });
        if let Err(e) = res {
            tracing::warn!("serve: cannot record the script fetch of {node}: {e}");
        }
    }

    /// `bootset --once`: when a node with a pending once fetches its script, serve that
    /// script (returned) and put its previous script back (atomically), recording it.
    fn serve_once(&self, node: &str) -> Option<Response> {
        let once = seen::load(&self.cfg, node)?.once?;
        let path = self.cfg.nodes_ipxe_dir.join(format!("{node}.ipxe"));
        let text = std::fs::read_to_string(&path).ok()?;
        let restored = match &once.previous_script {
            Some(prev) => crate::fsutil::write_atomic(&path, prev.as_bytes(), 0o644),
            None => Ok(()),
        };
        if let Err(e) = restored {
            tracing::warn!("serve: cannot restore the previous script of {node}: {e}");
            return Some(Self::ipxe(text));
        }
        let res = seen::update(&self.cfg, node, |s| {
            s.once = None;
            s.once_restored_at = Some(seen::now());
            s.once_restored_to = Some(once.then());
        });
        if let Err(e) = res {
            tracing::warn!("serve: cannot record the once restore of {node}: {e}");
        }
        tracing::info!(
            "serve: {node} fetched its --once script; back to {}",
            once.then()
        );
        Some(Self::ipxe(text))
    }

    /// `/booted/KEY` (KEY: MAC or hostname): the image's ready unit calls home.
    fn booted(&self, key: &str) -> Response {
        let Some(node) = self.node_of(key) else {
            return Response::text(404, "unknown node\n");
        };
        let res = seen::update(&self.cfg, &node, |s| {
            s.booted_at = Some(seen::now());
            s.booted_image = s.script_image.clone();
            s.booted_generation = s.script_generation;
        });
        match res {
            Ok(_) => Response::text(200, format!("recorded {node} as booted\n")),
            Err(e) => {
                tracing::warn!("serve: cannot record the boot of {node}: {e}");
                Response::text(500, "cannot record\n")
            }
        }
    }
}

/// A Host header we are willing to echo into scripts: host[:port], no spaces or quotes.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
}

impl DynamicHandler for BootHandler {
    fn handle(&self, req: &Request) -> Option<Response> {
        if let Some(key) = req.path.strip_prefix("/booted/") {
            if req.method == "GET" || req.method == "POST" {
                return Some(self.booted(key));
            }
        }
        if req.method == "POST" {
            // The installer's report (boot type `install`): flip the node to `disk`.
            let node = req.path.strip_prefix("/installed/")?;
            return Some(match install::mark_installed(&self.cfg, node, "ok") {
                Ok(s) => Response::text(200, s),
                Err(e) => {
                    tracing::warn!("serve: install report for {node:?}: {e}");
                    Response::text(409, format!("{e}\n"))
                }
            });
        }
        if req.method != "GET" && req.method != "HEAD" {
            return None;
        }
        match req.path.as_str() {
            "/health" => Some(if self.cfg.images_dir.is_dir() {
                Response::text(200, "ok\n")
            } else {
                Response::text(503, "store not readable\n")
            }),
            "/boot.ipxe" => match bootset::render_entry(&self.cfg, &self.base_url(req), true) {
                Ok(s) => Some(Self::ipxe(s)),
                Err(e) => Some(Response::text(500, format!("{e}\n"))),
            },
            p => {
                let nodes_prefix = format!(
                    "/{}/",
                    bootset::rel_to_web(&self.cfg, &self.cfg.nodes_ipxe_dir)
                );
                let key = p.strip_prefix(&nodes_prefix)?.strip_suffix(".ipxe")?;
                if key.contains('/') {
                    return None;
                }
                if req.method == "GET" {
                    if let Some(node) = self.node_of(key) {
                        self.record_script(&node);
                        if let Some(r) = self.serve_once(&node) {
                            return Some(r);
                        }
                    }
                }
                if self.cfg.nodes_ipxe_dir.join(format!("{key}.ipxe")).exists() {
                    return None; // the static file (or alias) answers
                }
                self.node_script(key)
            }
        }
    }
}

/// Names never served (nor replicated): the image records and any YAML, dotfiles, temp
/// files. Globs with one `*`.
pub const PRIVATE_NAMES: &[&str] = &["image_data.yml", ".*", "*.tmp", "*.yml", "*.yaml"];

/// Whether a file name matches [`PRIVATE_NAMES`].
pub fn is_private_name(name: &str) -> bool {
    PRIVATE_NAMES.iter().any(|g| match g.split_once('*') {
        Some((pre, suf)) => {
            name.len() >= pre.len() + suf.len() && name.starts_with(pre) && name.ends_with(suf)
        }
        None => name == *g,
    })
}

/// The store's private dirs a config placed inside the web root (the work dir, state,
/// logs, NFS trees are outside it by default), relative to it: never served, never
/// replicated.
pub fn private_paths(cfg: &Config) -> Vec<String> {
    [
        &cfg.work_dir,
        &cfg.state_dir,
        &cfg.log_dir,
        &cfg.nfs_staging_dir,
        &cfg.nfs_golden_dir,
        &cfg.nfs_nodes_dir,
    ]
    .into_iter()
    .filter_map(|p| p.strip_prefix(&cfg.web_root).ok())
    .map(|rel| rel.display().to_string())
    .filter(|rel| !rel.is_empty())
    .collect()
}

/// Binds the server on `listen` for the store's web root.
pub fn bind(cfg: &Config, listen: SocketAddr, max_connections: Option<usize>) -> Result<Server> {
    if !cfg.web_root.is_dir() {
        return Err(Error::invalid(format!(
            "web root {} does not exist: create an image first, or check --root/web_root",
            cfg.web_root.display()
        )));
    }
    let mut sc = ServerConfig::new(&cfg.web_root, listen);
    sc.max_connections = max_connections.unwrap_or(cfg.max_connections);
    sc.deny_names = PRIVATE_NAMES.iter().map(|n| n.to_string()).collect();
    sc.deny_paths = private_paths(cfg);
    http::bind(sc, Arc::new(BootHandler::new(cfg.clone())))
        .map_err(|e| Error::invalid(format!("serve on {listen}: {e}")))
}

/// Serves until `shutdown` is set.
pub fn run(server: Server, shutdown: Arc<AtomicBool>) -> Result<()> {
    server
        .run(shutdown)
        .map_err(|e| Error::invalid(format!("serve: {e}")))
}
