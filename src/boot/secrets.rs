//! Per-node secrets (issue 12): what no image carries, delivered to one node only.
//!
//! `<secrets_dir>` (config `secrets_dir`, default `state_dir/secrets`, never under the
//! web root) holds, all directories 0700 and files 0600:
//!
//! * `images/IMAGE/root.hash`: the root password hash given at creation (the image's
//!   own etc/shadow has root locked), `images/IMAGE/authorized_keys`: root's keys;
//! * `nodes/NODE/ssh_host_{ed25519,rsa,ecdsa}_key[.pub]`: the node's host keys, made
//!   once (`ssh-keygen` through the runner) and kept: stable across reboots and image
//!   changes (delete the directory to rotate them);
//! * `extra/groups/GROUP/...` then `extra/nodes/NODE/...`: extra files, paths relative
//!   to the node's `/` (the node's own win over its groups').
//!
//! The bundle (`GET /secrets/bundle` on the boot server): a ustar archive, base64
//! encoded (busybox's shell strips the HTTP head and decodes it), `text/plain`:
//! `meta/node` (the node's name), `meta/root.hash` (when the image has one) and
//! `files.tar`, the files to install over the node's `/` (paths relative to it),
//! modes and owners kept.
//!
//! Who gets it (all required, see README "Security"): the peer's address is the
//! inventory `ip` of exactly one node; the peer's source port is privileged (< 1024:
//! root on that host); the node is armed: it fetched its own boot script from this
//! server in the last `secrets_window_secs`, and got no bundle since (one delivery per
//! script fetch). The arming is kept in the server's memory only: a restart of the
//! server disarms every node (fails closed), and nothing on disk tells an attacker
//! which node is armed.
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::boot::bootset;
use crate::boot::http::{Request, Response};
use crate::cluster::inventory::{Inventory, Node};
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::store::secrets::{ensure_private_dir, image_dir, image_root_hash};
use crate::sys::runner::{Cmd, Runner};

/// The bundle's path on the boot server.
pub const BUNDLE_PATH: &str = "/secrets/bundle";
/// Host key types made for every node.
pub const HOST_KEY_TYPES: &[&str] = &["ed25519", "rsa", "ecdsa"];
/// Highest source port a node may use (privileged ports: root on the node).
pub const MAX_SOURCE_PORT: u16 = 1023;
const LOG_TARGET: &str = "disklessset::secrets";

/// `<secrets_dir>/nodes/NODE`.
pub fn node_dir(cfg: &Config, node: &str) -> PathBuf {
    cfg.secrets_dir.join("nodes").join(node)
}

/// Whether every host key of the node exists already.
pub fn has_host_keys(cfg: &Config, node: &str) -> bool {
    let dir = node_dir(cfg, node);
    HOST_KEY_TYPES.iter().all(|t| {
        dir.join(format!("ssh_host_{t}_key")).is_file()
            && dir.join(format!("ssh_host_{t}_key.pub")).is_file()
    })
}

/// The node's host keys, made when missing (`ssh-keygen` in a temporary directory,
/// then renamed without replacing: two servers racing keep the first keys).
/// Returns the private key paths in [`HOST_KEY_TYPES`] order.
pub fn ensure_host_keys(runner: &Runner, cfg: &Config, node: &str) -> Result<Vec<PathBuf>> {
    crate::names::node(node)?;
    let dir = node_dir(cfg, node);
    ensure_private_dir(cfg, &dir)?;
    let mut keys = Vec::new();
    for t in HOST_KEY_TYPES {
        let name = format!("ssh_host_{t}_key");
        let key = dir.join(&name);
        let public = dir.join(format!("{name}.pub"));
        if !key.exists() {
            let tmp = tempfile::Builder::new()
                .prefix(".keygen-")
                .tempdir_in(&dir)
                .at(&dir)?;
            let tkey = tmp.path().join(&name);
            let mut cmd = Cmd::new("ssh-keygen")
                .args(["-q", "-t", t, "-N", "", "-C"])
                .arg(format!("root@{node}"))
                .arg("-f")
                .arg(&tkey)
                .package("openssh-client");
            if *t == "rsa" {
                cmd = cmd.args(["-b", "3072"]);
            }
            runner.run(&cmd)?;
            std::fs::set_permissions(&tkey, std::fs::Permissions::from_mode(0o600)).at(&tkey)?;
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &tkey,
                nix::fcntl::AT_FDCWD,
                &key,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => {
                    let tpub = tmp.path().join(format!("{name}.pub"));
                    std::fs::rename(&tpub, &public).at(&tpub)?;
                    tracing::info!(target: LOG_TARGET, "secrets: made the {t} host key of {node}");
                }
                Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(Error::io(&key, std::io::Error::from(e))),
            }
        }
        if !public.exists() {
            // a crash between the two renames: derive the public half again
            let out = runner.run(&Cmd::new("ssh-keygen").arg("-y").arg("-f").arg(&key))?;
            let text = format!("{} root@{node}\n", out.stdout_str().trim());
            crate::fsutil::write_atomic(&public, text.as_bytes(), 0o644)?;
        }
        keys.push(key);
    }
    Ok(keys)
}

/// The SHA256 fingerprints of a node's host keys (`ssh-keygen -lf`), one line each;
/// empty when none was made yet.
pub fn fingerprints(runner: &Runner, cfg: &Config, node: &str) -> Result<Vec<String>> {
    crate::names::node(node)?;
    let dir = node_dir(cfg, node);
    let mut out = Vec::new();
    for t in HOST_KEY_TYPES {
        let public = dir.join(format!("ssh_host_{t}_key.pub"));
        if public.is_file() {
            let o = runner.run(
                &Cmd::new("ssh-keygen")
                    .arg("-l")
                    .arg("-f")
                    .arg(&public)
                    .read_only(),
            )?;
            out.push(o.stdout_str().trim().to_string());
        }
    }
    Ok(out)
}

/// A built bundle: the base64 text served and how many files it installs.
pub struct Bundle {
    pub text: String,
    /// Files it installs, the root hash counted as one.
    pub files: usize,
}

struct Entry {
    data: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
}

/// Extra files under `dir` (walked without following symlinks; regular files only),
/// by path relative to it.
fn extra_files(dir: &Path, into: &mut BTreeMap<String, Entry>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.map_err(|e| Error::invalid(format!("secrets: {}: {e}", dir.display())))?;
        if !e.file_type().is_file() {
            continue;
        }
        let Ok(rel) = e.path().strip_prefix(dir) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        let md = e
            .metadata()
            .map_err(|err| Error::invalid(format!("secrets: {}: {err}", e.path().display())))?;
        let data = std::fs::read(e.path()).at(e.path())?;
        into.insert(
            rel,
            Entry {
                data,
                mode: md.mode() & 0o7777,
                uid: u64::from(md.uid()),
                gid: u64::from(md.gid()),
            },
        );
    }
    Ok(())
}

/// Builds the bundle of `node` (making its host keys the first time).
pub fn build_bundle(runner: &Runner, cfg: &Config, node: &Node) -> Result<Bundle> {
    let keys = ensure_host_keys(runner, cfg, &node.name)?;
    let mut files: BTreeMap<String, Entry> = BTreeMap::new();
    for key in &keys {
        let name = key
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data = std::fs::read(key).at(key)?;
        files.insert(
            format!("etc/ssh/{name}"),
            Entry {
                data,
                mode: 0o600,
                uid: 0,
                gid: 0,
            },
        );
        let public = key.with_file_name(format!("{name}.pub"));
        let data = std::fs::read(&public).at(&public)?;
        files.insert(
            format!("etc/ssh/{name}.pub"),
            Entry {
                data,
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        );
    }
    let image = bootset::read_assignment(cfg, &node.name).and_then(|(_, i)| i);
    let mut root_hash = None;
    if let Some(img) = &image {
        root_hash = image_root_hash(cfg, img);
        let ak = image_dir(cfg, img).join("authorized_keys");
        if let Ok(text) = std::fs::read_to_string(&ak) {
            let data = format!("{}\n", text.trim_end()).into_bytes();
            files.insert(
                "root/.ssh/authorized_keys".into(),
                Entry {
                    data,
                    mode: 0o600,
                    uid: 0,
                    gid: 0,
                },
            );
        }
    }
    let extra = cfg.secrets_dir.join("extra");
    for g in &node.groups {
        extra_files(&extra.join("groups").join(g), &mut files)?;
    }
    extra_files(&extra.join("nodes").join(&node.name), &mut files)?;

    let add = |tar: &mut tar::Builder<Vec<u8>>, path: &str, e: &Entry| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, e.data.as_slice())
            .map_err(|err| {
                Error::invalid(format!("secrets: cannot add {path} to the bundle: {err}"))
            })
    };
    let finish = |tar: tar::Builder<Vec<u8>>| -> Result<Vec<u8>> {
        tar.into_inner()
            .map_err(|e| Error::invalid(format!("secrets: cannot finish the bundle: {e}")))
    };
    let meta = |data: Vec<u8>| Entry {
        data,
        mode: 0o600,
        uid: 0,
        gid: 0,
    };
    // files.tar: extracted as is over the node's root (busybox tar picks no members
    // by directory, hence the archive in the archive)
    let mut inner = tar::Builder::new(Vec::new());
    for (rel, e) in &files {
        add(&mut inner, rel, e)?;
    }
    let inner = finish(inner)?;
    let mut tar = tar::Builder::new(Vec::new());
    add(
        &mut tar,
        "meta/node",
        &meta(format!("{}\n", node.name).into_bytes()),
    )?;
    if let Some(h) = &root_hash {
        add(
            &mut tar,
            "meta/root.hash",
            &meta(format!("{h}\n").into_bytes()),
        )?;
    }
    add(&mut tar, "files.tar", &meta(inner))?;
    let raw = finish(tar)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut text = String::with_capacity(b64.len() + b64.len() / 76 + 2);
    for chunk in b64.as_bytes().chunks(76) {
        text.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        text.push('\n');
    }
    Ok(Bundle {
        text,
        files: files.len() + usize::from(root_hash.is_some()),
    })
}

/// Which nodes are armed, until when (in the server's memory only).
pub struct Arming {
    window: Duration,
    armed: Mutex<HashMap<String, Instant>>,
}

impl Arming {
    pub fn new(window: Duration) -> Self {
        Arming {
            window,
            armed: Mutex::new(HashMap::new()),
        }
    }

    /// Arms `node` for one delivery within the window (its script was just served).
    pub fn arm(&self, node: &str) {
        if let Ok(mut m) = self.armed.lock() {
            let now = Instant::now();
            m.retain(|_, until| *until > now);
            m.insert(node.to_string(), now + self.window);
        }
    }

    /// Takes the arming of `node` (one-time): Ok when it was armed and in the window.
    fn take(&self, node: &str) -> std::result::Result<(), String> {
        let mut m = self
            .armed
            .lock()
            .map_err(|_| "the arming table is poisoned".to_string())?;
        match m.remove(node) {
            Some(until) if until > Instant::now() => Ok(()),
            Some(_) => Err(format!(
                "not armed: its boot script was fetched more than {} s ago, secrets_window_secs",
                self.window.as_secs()
            )),
            None => Err(
                "not armed: no boot script fetched since its last bundle; reboot the node".into(),
            ),
        }
    }

    /// Puts an arming back (the delivery failed on our side).
    fn restore(&self, node: &str) {
        self.arm(node);
    }
}

fn peer_ip(peer: &SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        ip => ip,
    }
}

fn node_ip(n: &Node) -> Option<IpAddr> {
    let ip = n.ip.as_deref()?;
    ip.split('/').next()?.trim().parse().ok()
}

fn refuse(peer: &SocketAddr, node: Option<&str>, reason: &str) -> Response {
    match node {
        Some(n) => {
            tracing::warn!(target: LOG_TARGET, "secrets: refused {peer} (node {n}): {reason}")
        }
        None => tracing::warn!(target: LOG_TARGET, "secrets: refused {peer}: {reason}"),
    }
    Response::text(403, format!("403 Forbidden: {reason}\n"))
}

/// Answers `GET /secrets/bundle` (the checks of the module comment, in order: the
/// address names one node, the source port is privileged, the node is armed).
pub fn answer(
    runner: &Runner,
    cfg: &Config,
    inv: Option<&Inventory>,
    arming: &Arming,
    req: &Request,
) -> Response {
    let peer = req.peer;
    if req.method != "GET" {
        return Response::text(405, "405 Method Not Allowed: GET only\n")
            .with_header("Allow", "GET");
    }
    let Some(inv) = inv else {
        return refuse(&peer, None, "the inventory cannot be read");
    };
    let ip = peer_ip(&peer);
    let matching: Vec<&Node> = inv
        .nodes
        .values()
        .filter(|n| node_ip(n) == Some(ip))
        .collect();
    let node = match matching.as_slice() {
        [n] => *n,
        [] => {
            return refuse(
                &peer,
                None,
                &format!("no node of the inventory has address {ip}"),
            )
        }
        many => {
            let names: Vec<&str> = many.iter().map(|n| n.name.as_str()).collect();
            return refuse(
                &peer,
                None,
                &format!("address {ip} is shared by nodes {}", names.join(", ")),
            );
        }
    };
    if peer.port() > MAX_SOURCE_PORT {
        return refuse(
            &peer,
            Some(&node.name),
            &format!("source port {} is not privileged", peer.port()),
        );
    }
    if let Err(reason) = arming.take(&node.name) {
        return refuse(&peer, Some(&node.name), &reason);
    }
    match build_bundle(runner, cfg, node) {
        Ok(b) => {
            tracing::info!(target: LOG_TARGET,
                "secrets: delivered bundle to {} ({peer}, {} files)", node.name, b.files);
            Response::new(200, "text/plain; charset=us-ascii", b.text.into_bytes())
                .with_header("Cache-Control", "no-store")
        }
        Err(e) => {
            arming.restore(&node.name);
            tracing::error!(target: LOG_TARGET, "secrets: cannot build the bundle of {}: {e}", node.name);
            Response::text(
                500,
                "500 Internal Server Error: the bundle cannot be built (see the server log)\n",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arming_is_one_time_and_bounded() {
        let a = Arming::new(Duration::from_secs(60));
        assert!(a.take("c01").is_err());
        a.arm("c01");
        assert!(a.take("c01").is_ok());
        assert!(a.take("c01").is_err());
        let short = Arming::new(Duration::from_millis(1));
        short.arm("c01");
        std::thread::sleep(Duration::from_millis(5));
        let e = short.take("c01").unwrap_err();
        assert!(e.contains("secrets_window_secs"), "{e}");
    }

    #[test]
    fn mapped_v6_peers_are_v4() {
        let p: SocketAddr = "[::ffff:10.0.0.7]:1000".parse().unwrap();
        assert_eq!(peer_ip(&p), "10.0.0.7".parse::<IpAddr>().unwrap());
    }
}
