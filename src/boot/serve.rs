//! `disklessset serve`: the built-in HTTP server for the boot tree. Static files come
//! from the web root (never image_data.yml, dotfiles, temp files or anything outside);
//! the entry script `/boot.ipxe` and per-node scripts are answered dynamically, with
//! absolute URLs derived from the request's `Host`.
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::boot::http::{self, DynamicHandler, Request, Response, Server, ServerConfig};
use crate::boot::render::{self, RenderError};
use crate::boot::{bootset, discovery, install, secrets, seen};
use crate::cluster::inventory::{normalize_mac, Inventory};
use crate::config::Config;
use crate::error::{Error, Result};

type InvKey = (Option<SystemTime>, Option<SystemTime>);

/// Answers `/health`, `/boot.ipxe` and node scripts by MAC or hostname.
pub struct BootHandler {
    cfg: Config,
    /// The inventory, keyed by the mtimes of the nodes file and of the facts dir (group
    /// selectors read facts; an atomic write of one renames into the dir).
    inventory: Mutex<Option<(InvKey, Arc<Inventory>)>>,
    /// Nodes armed for their secrets bundle (issue 12, boot::secrets).
    arming: secrets::Arming,
    runner: crate::sys::runner::Runner,
}

impl BootHandler {
    pub fn new(cfg: Config) -> Self {
        let window = std::time::Duration::from_secs(cfg.secrets_window_secs);
        BootHandler {
            cfg,
            inventory: Mutex::new(None),
            arming: secrets::Arming::new(window),
            runner: crate::sys::runner::Runner::new(false),
        }
    }

    /// The inventory, reloaded when the nodes file or the facts change.
    fn inventory(&self) -> Option<Arc<Inventory>> {
        let m = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mtime = (
            m(&self.cfg.nodes_file),
            m(&crate::cluster::facts::dir(&self.cfg)),
        );
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
        let digest = assigned
            .as_ref()
            .and_then(|(_, i)| i.as_deref())
            .and_then(|i| seen::digest_of(&self.cfg, i));
        let res = seen::update(&self.cfg, node, |s| {
            s.script_at = Some(seen::now());
            s.script_boot_type = assigned.as_ref().map(|(b, _)| b.clone());
            s.script_image = assigned.as_ref().and_then(|(_, i)| i.clone());
            s.script_generation = generation;
            s.script_sha256 = digest;
        });
        if let Err(e) = res {
            tracing::warn!("serve: cannot record the script fetch of {node}: {e}");
        }
    }

    /// Makes the node's host keys in the background if it has none yet (issue 12): its
    /// bundle request follows in seconds, RSA key generation may take longer on a
    /// loaded server.
    fn prepare_keys(&self, node: &str) {
        if secrets::has_host_keys(&self.cfg, node) {
            return;
        }
        let (cfg, runner, name) = (self.cfg.clone(), self.runner.clone(), node.to_string());
        let spawned = std::thread::Builder::new()
            .name("secrets-keygen".into())
            .spawn(move || {
                if let Err(e) = secrets::ensure_host_keys(&runner, &cfg, &name) {
                    tracing::warn!("secrets: cannot make the host keys of {name}: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("secrets: cannot start the key generation of {node}: {e}");
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

    /// `/render/NAME?mac=MAC` (issue 13, templates): template NAME rendered for the node
    /// owning MAC, kept in `state_dir/rendered/NODE/NAME` before it is served (a GET).
    fn render(&self, name: &str, req: &Request) -> Response {
        if render::check_name(name).is_err() {
            tracing::warn!(
                "serve: /render/{name:?}: not a template name (from {})",
                req.peer
            );
            return Response::text(404, "no such template\n");
        }
        let Some(mac) = req.query_param("mac").and_then(normalize_mac) else {
            tracing::warn!(
                "serve: /render/{name}: no ?mac= (or not a MAC) from {}",
                req.peer
            );
            return Response::text(
                400,
                "give the node's MAC: /render/NAME?mac=${net0/mac}
",
            );
        };
        let Some(inv) = self.inventory() else {
            return Response::text(
                500,
                "cannot load the inventory
",
            );
        };
        let Some(node) = inv.by_mac(&mac).map(|n| n.name.clone()) else {
            tracing::warn!("serve: /render/{name}: unknown MAC {mac} from {}", req.peer);
            return Response::text(
                404,
                "unknown node
",
            );
        };
        match render::render(&self.cfg, &inv, &node, name) {
            Ok(text) => {
                if req.method == "GET" {
                    if let Err(e) = render::keep(&self.cfg, &node, name, &text) {
                        tracing::error!(
                            "serve: /render/{name} for {node}: cannot keep the copy: {e}"
                        );
                        return Response::text(
                            500,
                            "cannot keep the rendered copy
",
                        );
                    }
                }
                tracing::info!("serve: rendered templates/{name} for {node}");
                Response::new(200, "text/plain; charset=utf-8", text)
            }
            Err(e @ (RenderError::NoTemplate { .. } | RenderError::NoNode(_))) => {
                tracing::warn!("serve: /render/{name} for {node}: {e}");
                Response::text(
                    404,
                    "no such template
",
                )
            }
            Err(e) => {
                tracing::error!("serve: /render/{name}: {e}");
                Response::text(
                    500,
                    "template error (see the server log)
",
                )
            }
        }
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
            s.booted_sha256 = s.script_sha256.clone();
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

// issue 13: discovery
impl BootHandler {
    /// While discovery is on, the script a MAC the inventory does not know gets.
    fn discovery_script(&self, req: &Request, key: &str) -> Option<Response> {
        let mac = normalize_mac(key)?;
        let inv = self.inventory()?;
        if inv.by_mac(&mac).is_some() {
            return None;
        }
        match discovery::load(&self.cfg) {
            Ok(s) if s.on => {
                tracing::info!("discovery: unknown machine {mac} gets the discovery system");
                Some(Self::ipxe(discovery::script(
                    &self.cfg,
                    &self.base_url(req),
                )))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::error!("discovery: {e}");
                None
            }
        }
    }

    /// `POST /discover/report`: facts as JSON (body read bounded by the server).
    fn discovery_report(&self, req: &Request) -> Response {
        if req.method != "POST" {
            return Response::text(405, "POST the facts as JSON\n").with_header("Allow", "POST");
        }
        let facts = match discovery::parse_report(&req.body) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("discovery: report from {} refused: {e}", req.peer);
                return Response::text(400, format!("{e}\n"));
            }
        };
        match discovery::report(&self.cfg, facts) {
            Ok(discovery::Answer::Named(n)) => Response::text(200, format!("{n}\n")),
            Ok(discovery::Answer::Pending(why)) => Response::text(200, format!("{why}\n")),
            Err(e) => {
                tracing::warn!("discovery: report from {} not recorded: {e}", req.peer);
                Response::text(409, format!("{e}\n"))
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
    fn body_limit(&self, req: &Request) -> Option<usize> {
        (req.method == "POST" && req.path == discovery::REPORT_PATH)
            .then_some(discovery::MAX_REPORT_BYTES)
    }

    fn handle(&self, req: &Request) -> Option<Response> {
        if req.path == discovery::REPORT_PATH {
            return Some(self.discovery_report(req));
        }
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
        if let Some(name) = req.path.strip_prefix("/render/") {
            return Some(self.render(name, req));
        }
        match req.path.as_str() {
            secrets::BUNDLE_PATH => {
                let inv = self.inventory();
                Some(secrets::answer(
                    &self.runner,
                    &self.cfg,
                    inv.as_deref(),
                    &self.arming,
                    req,
                ))
            }
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
                        self.arming.arm(&node);
                        self.prepare_keys(&node);
                        if let Some(r) = self.serve_once(&node) {
                            return Some(r);
                        }
                    }
                }
                if self.cfg.nodes_ipxe_dir.join(format!("{key}.ipxe")).exists() {
                    return None; // the static file (or alias) answers
                }
                if let Some(r) = self.discovery_script(req, key) {
                    return Some(r);
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
        &cfg.secrets_dir,
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
