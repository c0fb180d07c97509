//! Configuration: every path of the store, with the reference's defaults, from
//! `/etc/disklessset/config.yaml` (or `--config` / `DISKLESSSET_CONFIG`), and
//! `--root DIR` / `DISKLESSSET_ROOT` to put the whole store under one directory.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_CONFIG: &str = "/etc/disklessset/config.yaml";
pub const REF_WEB_ROOT: &str = "/var/www/html/preboot_execution_environment";
/// `serve`'s default connection limit: a mass reboot of thousands of nodes is not refused.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// What the config file may hold. Every key is optional; unknown keys are refused.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Put the whole store under this directory (like `--root`).
    pub root: Option<PathBuf>,
    /// The boot tree served over HTTP (the reference's preboot_execution_environment).
    pub web_root: Option<PathBuf>,
    pub images_dir: Option<PathBuf>,
    pub kernels_dir: Option<PathBuf>,
    /// Where bootset writes `<node>.ipxe`.
    pub nodes_ipxe_dir: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    pub nfs_staging_dir: Option<PathBuf>,
    pub nfs_golden_dir: Option<PathBuf>,
    /// Per-node writable layers of NFS golden images.
    pub nfs_nodes_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
    pub nodes_file: Option<PathBuf>,
    /// The reference's `nodes_parameters.yml`, read too when set.
    pub nodes_parameters_file: Option<PathBuf>,
    /// Where `modules/`, `initramfs/` and `share/` are installed.
    pub data_dir: Option<PathBuf>,
    /// Absolute base URL nodes use to reach the boot tree, e.g. `http://10.0.0.1`.
    pub base_url: Option<String>,
    /// NFS server address written in `root=nfs:` lines.
    pub nfs_server: Option<String>,
    /// Exports file the tool owns (kernel NFS server).
    pub exports_file: Option<PathBuf>,
    /// Which NFS server serves the NFS images: `kernel` (exports file + `exportfs -ra`)
    /// or `ganesha` (an nfs-ganesha config snippet + SIGHUP).
    pub nfs_server_kind: Option<NfsServerKind>,
    /// The nfs-ganesha EXPORT blocks the tool owns (`%include` it from ganesha.conf).
    pub ganesha_exports_file: Option<PathBuf>,
    /// nfs-ganesha's pid file (reloaded with SIGHUP when it runs).
    pub ganesha_pid_file: Option<PathBuf>,
    /// NFS mount options nodes use (`dl.nfs_opts=`), e.g. `vers=4.1,port=20490`.
    pub nfs_mount_options: Option<String>,
    /// Clients allowed on shared NFS roots, and on per-node dirs whose node has no
    /// address in the inventory: `*`, a network (`10.0.0.0/16`) or a host.
    pub nfs_clients: Option<String>,
    /// Paths a node of an NFS golden image keeps across reboots (its own copy).
    pub nfs_persist_paths: Option<Vec<String>>,
    pub listen: Option<String>,
    /// Connections `serve` handles at once (one thread each); beyond, 503 + Retry-After.
    pub max_connections: Option<usize>,
    /// Show an iPXE menu on each node's console for this long before booting its
    /// assigned entry (0: no menu, boot at once).
    pub boot_menu_timeout_ms: Option<u64>,
    pub compression: Option<Compression>,
    pub compression_level: Option<u32>,
    pub keep_generations: Option<u32>,
    /// `gc`: an image or generation a node booted within this many days is kept (the
    /// default of `gc --older-than`).
    pub gc_keep_booted_days: Option<u64>,
    /// Free space added by `livenet resize NAME auto`, in MiB.
    pub resize_headroom_mib: Option<u64>,
    /// Package mirrors per distro family (`debian`, `ubuntu`, ...).
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    /// dnf repositories for EL builds: name -> baseurl.
    #[serde(default)]
    pub dnf_repos: BTreeMap<String, String>,
    /// GPG keys passed to dnf (`file:///...`).
    #[serde(default)]
    pub gpg_keys: Vec<String>,
    /// BMC passwords (power and boot-device control): a YAML file owned by root, mode
    /// 0600 (refused if wider), never inside the web root.
    pub bmc_secrets_file: Option<PathBuf>,
    /// Seconds one BMC request (or one ipmitool/virsh call) may take.
    pub bmc_timeout_secs: Option<u64>,
    /// Retries of a BMC request that got no answer.
    pub bmc_retries: Option<u32>,
    /// BMCs contacted at once by `power`, `bootdev` and `bootset --reboot`.
    pub bmc_fanout: Option<usize>,
    /// Boot servers fed from this store by `disklessset replicate` (scale-out).
    #[serde(default)]
    pub replicas: Vec<ReplicaFile>,
    /// Run `replicate` after every operation that publishes (create, unmount, rollback,
    /// ansible, kernel set, initramfs, bootset).
    pub replicate_on_publish: Option<bool>,
    /// rsync `--bwlimit` for replication, KiB/s (0 or absent: no limit).
    pub replicate_bwlimit_kib: Option<u64>,
    /// bootset writes `nodes/MAC.ipxe` aliases for static web servers (issue 13, scale:
    /// `false` when only `disklessset serve` serves, which finds nodes by MAC itself).
    pub mac_aliases: Option<bool>,
    /// Per-node secrets (host keys, root hashes, extra files), never under the web root
    /// (issue 12; default: `secrets` under state_dir).
    pub secrets_dir: Option<PathBuf>,
    /// How long a node stays armed for its secrets bundle after fetching its script.
    pub secrets_window_secs: Option<u64>,
    /// Image-relative paths the publish check lets through (an admin ships them knowingly).
    #[serde(default)]
    pub secrets_allow: Vec<String>,
    // issue 13: discovery
    /// What a machine does after its discovery report: `poweroff` (default) or `wait`.
    pub discovery_after: Option<DiscoveryAfter>,
    /// The kernel version the discovery system boots (default: the newest published
    /// kernel with an own initramfs).
    pub discovery_kernel: Option<String>,
}

/// What a machine does after it reported its facts (config `discovery_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryAfter {
    #[default]
    Poweroff,
    Wait,
}

impl DiscoveryAfter {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryAfter::Poweroff => "poweroff",
            DiscoveryAfter::Wait => "wait",
        }
    }
}

/// One replica as written in the config file.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplicaFile {
    /// Short name, used in node vars (`boot_servers`) and in `replicate NAME`.
    pub name: String,
    /// How nodes reach what the replica serves, e.g. `http://10.0.1.1`.
    pub url: String,
    /// rsync destination: a local absolute path, or `[user@]host:/path` over SSH.
    pub target: String,
    /// Where the replica holds the NFS trees (for `nfs exports --for NAME`); default:
    /// the same paths as this store.
    pub nfs_root: Option<PathBuf>,
}

/// A validated replica.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Replica {
    pub name: String,
    pub url: String,
    pub target: String,
    pub nfs_root: Option<PathBuf>,
}

/// The NFS server the exports are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NfsServerKind {
    /// Linux knfsd: `/etc/exports.d/*.exports`, reloaded with `exportfs -ra`.
    #[default]
    Kernel,
    /// nfs-ganesha (user space): EXPORT blocks, reloaded with SIGHUP.
    Ganesha,
}

impl NfsServerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NfsServerKind::Kernel => "kernel",
            NfsServerKind::Ganesha => "ganesha",
        }
    }
}

/// Default paths a node of an NFS golden image keeps across reboots.
pub const DEFAULT_PERSIST_PATHS: &[&str] =
    &["/var/log", "/etc/ssh", "/var/lib/disklessset-persist"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Gzip,
    Xz,
    Lz4,
    Lzo,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
            Compression::Lzo => "lzo",
        }
    }
}

/// The resolved configuration every operation uses.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub source: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub web_root: PathBuf,
    pub images_dir: PathBuf,
    pub kernels_dir: PathBuf,
    pub nodes_ipxe_dir: PathBuf,
    pub work_dir: PathBuf,
    pub nfs_staging_dir: PathBuf,
    pub nfs_golden_dir: PathBuf,
    pub nfs_nodes_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub nodes_file: PathBuf,
    pub nodes_parameters_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub base_url: Option<String>,
    pub nfs_server: Option<String>,
    pub exports_file: PathBuf,
    pub nfs_server_kind: NfsServerKind,
    pub ganesha_exports_file: PathBuf,
    pub ganesha_pid_file: PathBuf,
    pub nfs_mount_options: Option<String>,
    pub nfs_clients: String,
    pub nfs_persist_paths: Vec<String>,
    pub listen: String,
    pub max_connections: usize,
    pub boot_menu_timeout_ms: u64,
    pub compression: Compression,
    pub compression_level: u32,
    pub keep_generations: u32,
    pub gc_keep_booted_days: u64,
    pub resize_headroom_mib: u64,
    pub mirrors: BTreeMap<String, String>,
    pub dnf_repos: BTreeMap<String, String>,
    pub gpg_keys: Vec<String>,
    pub bmc_secrets_file: PathBuf,
    pub bmc_timeout_secs: u64,
    pub bmc_retries: u32,
    pub bmc_fanout: usize,
    pub replicas: Vec<Replica>,
    pub replicate_on_publish: bool,
    pub replicate_bwlimit_kib: u64,
    pub mac_aliases: bool,
    pub secrets_dir: PathBuf,
    pub secrets_window_secs: u64,
    pub secrets_allow: Vec<String>,
    pub discovery_after: DiscoveryAfter,
    pub discovery_kernel: Option<String>,
}

/// Where the configuration comes from: flags and environment, already merged by the front-end.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `--config` or `DISKLESSSET_CONFIG`; when None the default file is read if it exists.
    pub config_file: Option<PathBuf>,
    /// `--root` or `DISKLESSSET_ROOT`.
    pub root: Option<PathBuf>,
}

impl Config {
    /// Loads the config file (if any) and resolves every path.
    pub fn load(src: &ConfigSource) -> Result<Config> {
        let (file, path) = match &src.config_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::Config {
                    file: p.display().to_string(),
                    msg: format!("cannot read it ({e}): check --config / DISKLESSSET_CONFIG"),
                })?;
                (parse_config(&text, p)?, Some(p.clone()))
            }
            None => {
                let p = Path::new(DEFAULT_CONFIG);
                match std::fs::read_to_string(p) {
                    Ok(text) => (parse_config(&text, p)?, Some(p.to_path_buf())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        (ConfigFile::default(), None)
                    }
                    Err(e) => {
                        return Err(Error::Config {
                            file: p.display().to_string(),
                            msg: format!("cannot read it: {e}"),
                        })
                    }
                }
            }
        };
        Config::resolve(file, src.root.clone(), path)
    }

    /// Resolves a parsed config file; `root` (from `--root`) wins over every path key.
    pub fn resolve(
        f: ConfigFile,
        root: Option<PathBuf>,
        source: Option<PathBuf>,
    ) -> Result<Config> {
        let root = root.or(f.root.clone());
        if let Some(r) = &root {
            if !r.is_absolute() {
                return Err(Error::Config {
                    file: source_name(&source),
                    msg: format!(
                        "root {} must be an absolute path (use e.g. $PWD/{})",
                        r.display(),
                        r.display()
                    ),
                });
            }
        }
        let under = |rel: &str| root.as_ref().map(|r| r.join(rel));
        let pick = |key: Option<PathBuf>, rel: &str, default: PathBuf| -> PathBuf {
            under(rel).or(key).unwrap_or(default)
        };
        let web_root = pick(f.web_root.clone(), "www", PathBuf::from(REF_WEB_ROOT));
        let images_dir = pick(
            f.images_dir.clone(),
            "www/diskless/images",
            web_root.join("diskless/images"),
        );
        let kernels_dir = pick(
            f.kernels_dir.clone(),
            "www/diskless/kernels",
            web_root.join("diskless/kernels"),
        );
        let nodes_ipxe_dir = pick(
            f.nodes_ipxe_dir.clone(),
            "www/nodes",
            web_root.join("nodes"),
        );
        let work_dir = pick(
            f.work_dir.clone(),
            "workdir",
            PathBuf::from("/var/tmp/diskless/workdir"),
        );
        let nfs_staging_dir = pick(
            f.nfs_staging_dir.clone(),
            "nfsimages/staging",
            PathBuf::from("/diskless/images/nfsimages/staging"),
        );
        let nfs_golden_dir = pick(
            f.nfs_golden_dir.clone(),
            "nfsimages/golden",
            PathBuf::from("/diskless/images/nfsimages/golden"),
        );
        let nfs_nodes_dir = pick(
            f.nfs_nodes_dir.clone(),
            "nfsimages/nodes",
            PathBuf::from("/diskless/images/nfsimages/nodes"),
        );
        let state_dir = pick(
            f.state_dir.clone(),
            "state",
            PathBuf::from("/var/lib/disklessset"),
        );
        let log_dir = pick(
            f.log_dir.clone(),
            "log",
            PathBuf::from("/var/log/disklessset"),
        );
        let nodes_file = pick(
            f.nodes_file.clone(),
            "nodes.yml",
            PathBuf::from("/etc/disklessset/nodes.yml"),
        );
        let bmc_secrets_file = pick(
            f.bmc_secrets_file.clone(),
            "bmc-secrets.yml",
            PathBuf::from("/etc/disklessset/bmc-secrets.yml"),
        );
        let bmc_timeout_secs = f.bmc_timeout_secs.unwrap_or(10);
        let bmc_retries = f.bmc_retries.unwrap_or(1);
        let bmc_fanout = f.bmc_fanout.unwrap_or(50);
        if bmc_timeout_secs == 0 || bmc_timeout_secs > 600 {
            return Err(Error::Config {
                file: source_name(&source),
                msg: format!(
                    "bmc_timeout_secs: {bmc_timeout_secs} is out of range: allowed 1..=600"
                ),
            });
        }
        if bmc_retries > 10 {
            return Err(Error::Config {
                file: source_name(&source),
                msg: format!("bmc_retries: {bmc_retries} is out of range: allowed 0..=10"),
            });
        }
        if bmc_fanout == 0 || bmc_fanout > 1000 {
            return Err(Error::Config {
                file: source_name(&source),
                msg: format!("bmc_fanout: {bmc_fanout} is out of range: allowed 1..=1000"),
            });
        }
        let replicas = validate_replicas(&f.replicas, &source)?;
        let exports_file = pick(
            f.exports_file.clone(),
            "exports/disklessset.exports",
            PathBuf::from("/etc/exports.d/disklessset.exports"),
        );
        let ganesha_exports_file = pick(
            f.ganesha_exports_file.clone(),
            "exports/disklessset.ganesha.conf",
            PathBuf::from("/etc/ganesha/disklessset.conf"),
        );
        let ganesha_pid_file = f
            .ganesha_pid_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/ganesha/ganesha.pid"));
        let nfs_persist_paths = match &f.nfs_persist_paths {
            Some(v) => v.clone(),
            None => DEFAULT_PERSIST_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        for p in &nfs_persist_paths {
            check_persist_path(p).map_err(|msg| Error::Config {
                file: source_name(&source),
                msg: format!("nfs_persist_paths: {msg}"),
            })?;
        }
        let nfs_clients = f.nfs_clients.clone().unwrap_or_else(|| "*".to_string());
        if nfs_clients.is_empty()
            || !nfs_clients
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "*.:/-_".contains(c))
        {
            return Err(Error::Config {
                file: source_name(&source),
                msg: format!(
                    "nfs_clients: {nfs_clients:?} is not a client spec: use *, a network such as 10.0.0.0/16, or a host"
                ),
            });
        }
        if let Some(o) = &f.nfs_mount_options {
            if o.is_empty()
                || !o
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".,=_-".contains(c))
            {
                return Err(Error::Config {
                    file: source_name(&source),
                    msg: format!(
                        "nfs_mount_options: {o:?} is not a mount option list: write e.g. vers=4.2 or vers=4.1,port=20490"
                    ),
                });
            }
        }
        if let Some(s) = &f.nfs_server {
            if s.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(Error::Config {
                    file: source_name(&source),
                    msg: format!(
                        "nfs_server: {s:?} must be an IPv4 address (nodes mount it before any name resolution)"
                    ),
                });
            }
        }
        for (key, p) in [
            ("web_root", &web_root),
            ("images_dir", &images_dir),
            ("kernels_dir", &kernels_dir),
            ("work_dir", &work_dir),
            ("state_dir", &state_dir),
        ] {
            if !p.is_absolute() {
                return Err(Error::Config {
                    file: source_name(&source),
                    msg: format!("{key}: {} must be an absolute path", p.display()),
                });
            }
        }
        let compression_level = f.compression_level.unwrap_or(3);
        let compression = f.compression.unwrap_or(Compression::Zstd);
        let max_level = match compression {
            Compression::Zstd => 22,
            Compression::Gzip => 9,
            Compression::Xz | Compression::Lz4 | Compression::Lzo => 9,
        };
        if compression_level == 0 || compression_level > max_level {
            return Err(Error::Config {
                file: source_name(&source),
                msg: format!(
                    "compression_level: {compression_level} is out of range for {}: allowed 1..={max_level}",
                    compression.as_str()
                ),
            });
        }
        let keep_generations = f.keep_generations.unwrap_or(2);
        if keep_generations == 0 {
            return Err(Error::Config {
                file: source_name(&source),
                msg: "keep_generations: must be at least 1 (the previous generation is what rollback restores)".into(),
            });
        }
        if f.max_connections == Some(0) {
            return Err(Error::Config {
                file: source_name(&source),
                msg: "max_connections: must be at least 1 (default 10000)".into(),
            });
        }
        if let Some(u) = &f.base_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(Error::Config {
                    file: source_name(&source),
                    msg: format!("base_url: {u:?} must start with http:// or https://"),
                });
            }
        }
        let secrets_dir = pick(f.secrets_dir.clone(), "secrets", state_dir.join("secrets"));
        if !secrets_dir.is_absolute() {
            return Err(Error::Config {
                file: source_name(&source),
                msg: format!(
                    "secrets_dir: {} must be an absolute path",
                    secrets_dir.display()
                ),
            });
        }
        // An explicit secrets_dir inside the web root is refused; the default one (under a
        // state_dir a config put there) is kept out of what is served (serve::private_paths).
        let explicit = root.is_none() && f.secrets_dir.is_some();
        if (explicit && secrets_dir.starts_with(&web_root)) || web_root.starts_with(&secrets_dir) {
            return Err(Error::Config {
                file: source_name(&source),
                msg: format!(
                    "secrets_dir {} is inside (or holds) the web root {}: anyone could download the node secrets; put it elsewhere (default: state_dir/secrets)",
                    secrets_dir.display(),
                    web_root.display()
                ),
            });
        }
        let secrets_window_secs = f.secrets_window_secs.unwrap_or(600);
        if secrets_window_secs == 0 || secrets_window_secs > 86_400 {
            return Err(Error::Config {
                file: source_name(&source),
                msg: format!(
                    "secrets_window_secs: {secrets_window_secs} is out of range: allowed 1..=86400"
                ),
            });
        }
        for a in &f.secrets_allow {
            let rel = a.trim_start_matches('/');
            if rel.is_empty() || rel.split('/').any(|c| c == ".." || c == ".") {
                return Err(Error::Config {
                    file: source_name(&source),
                    msg: format!(
                        "secrets_allow: {a:?} is not an image path: write e.g. etc/ssl/private/site.key"
                    ),
                });
            }
        }
        let secrets_allow = f
            .secrets_allow
            .iter()
            .map(|a| a.trim_start_matches('/').trim_end_matches('/').to_string())
            .collect();
        Ok(Config {
            source,
            root,
            web_root,
            images_dir,
            kernels_dir,
            nodes_ipxe_dir,
            work_dir,
            nfs_staging_dir,
            nfs_golden_dir,
            nfs_nodes_dir,
            state_dir,
            log_dir,
            nodes_file,
            nodes_parameters_file: f.nodes_parameters_file,
            data_dir: f.data_dir.unwrap_or_else(default_data_dir),
            base_url: f.base_url.map(|u| u.trim_end_matches('/').to_string()),
            nfs_server: f.nfs_server,
            exports_file,
            nfs_server_kind: f.nfs_server_kind.unwrap_or_default(),
            ganesha_exports_file,
            ganesha_pid_file,
            nfs_mount_options: f.nfs_mount_options,
            nfs_clients,
            nfs_persist_paths,
            listen: f.listen.unwrap_or_else(|| "127.0.0.1:8080".to_string()),
            max_connections: f.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            boot_menu_timeout_ms: f.boot_menu_timeout_ms.unwrap_or(0),
            compression,
            compression_level,
            keep_generations,
            gc_keep_booted_days: f.gc_keep_booted_days.unwrap_or(7),
            resize_headroom_mib: f.resize_headroom_mib.unwrap_or(128),
            mirrors: f.mirrors,
            dnf_repos: f.dnf_repos,
            gpg_keys: f.gpg_keys,
            bmc_secrets_file,
            bmc_timeout_secs,
            bmc_retries,
            bmc_fanout,
            replicas,
            replicate_on_publish: f.replicate_on_publish.unwrap_or(false),
            replicate_bwlimit_kib: f.replicate_bwlimit_kib.unwrap_or(0),
            mac_aliases: f.mac_aliases.unwrap_or(true),
            secrets_dir,
            secrets_window_secs,
            secrets_allow,
            discovery_after: f.discovery_after.unwrap_or_default(),
            discovery_kernel: f.discovery_kernel,
        })
    }

    /// The replica called `name`, or an error listing the configured ones.
    pub fn replica(&self, name: &str) -> Result<&Replica> {
        self.replicas
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.replicas.iter().map(|r| r.name.as_str()).collect();
                Error::invalid(format!(
                    "no replica named {name} in the config (replicas: {})",
                    if known.is_empty() {
                        "none: add a `replicas:` list".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    /// A store rooted at `dir` with every other setting at its default (tests, quick start).
    pub fn under_root(dir: &Path) -> Result<Config> {
        Config::resolve(ConfigFile::default(), Some(dir.to_path_buf()), None)
    }

    pub fn image_dir(&self, name: &str) -> PathBuf {
        self.images_dir.join(name)
    }

    pub fn image_data_file(&self, name: &str) -> PathBuf {
        self.image_dir(name).join("image_data.yml")
    }

    pub fn image_workdir(&self, name: &str) -> PathBuf {
        self.work_dir.join(name)
    }

    pub fn locks_dir(&self) -> PathBuf {
        self.state_dir.join("locks")
    }

    pub fn mirror(&self, distro: &str) -> Option<&str> {
        self.mirrors.get(distro).map(String::as_str)
    }

    /// Directories the store owns, created on first use.
    pub fn store_dirs(&self) -> Vec<&Path> {
        vec![
            &self.images_dir,
            &self.kernels_dir,
            &self.nodes_ipxe_dir,
            &self.work_dir,
            &self.state_dir,
            &self.log_dir,
        ]
    }
}

/// A path a node may keep across reboots: absolute, no `.`/`..`, not `/`, plain characters.
pub fn check_persist_path(p: &str) -> std::result::Result<(), String> {
    let ok_chars = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c));
    if !p.starts_with('/') || !ok_chars {
        return Err(format!(
            "{p:?} must be an absolute path of letters, digits and / . _ - + @"
        ));
    }
    let comps: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty() {
        return Err("/ cannot be kept per node (it is the shared image)".into());
    }
    if comps.iter().any(|c| *c == "." || *c == "..") {
        return Err(format!("{p:?} must not hold . or .. components"));
    }
    if matches!(comps[0], "proc" | "sys" | "dev" | "run" | "tmp") {
        return Err(format!(
            "{p:?} is a run-time file system of the node, not image content"
        ));
    }
    Ok(())
}

fn source_name(source: &Option<PathBuf>) -> String {
    source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(built-in defaults)".to_string())
}

/// Parses the config file text; unknown keys and bad values name the key and the allowed values.
/// Checks the `replicas:` list: names by the name rule and unique, http(s) URLs, rsync
/// targets that cannot be read as an option or a daemon module.
fn validate_replicas(list: &[ReplicaFile], source: &Option<PathBuf>) -> Result<Vec<Replica>> {
    let bad = |msg: String| Error::Config {
        file: source_name(source),
        msg,
    };
    let mut out: Vec<Replica> = Vec::new();
    for r in list {
        if crate::names::image(&r.name).is_err() {
            return Err(bad(format!(
                "replicas: name {:?} is not a valid name: use letters, digits, '-', '_' and '.'",
                r.name
            )));
        }
        if out.iter().any(|o| o.name == r.name) {
            return Err(bad(format!(
                "replicas: name {} is given twice: names must be unique",
                r.name
            )));
        }
        let url = r.url.trim_end_matches('/').to_string();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|h| h.is_empty() || h.chars().any(|c| c.is_whitespace() || c == '$')) {
            return Err(bad(format!(
                "replicas: {}: url {:?} is not an http:// or https:// URL (e.g. http://10.0.1.1)",
                r.name, r.url
            )));
        }
        let t = r.target.trim_end_matches('/');
        let remote = t
            .split_once(':')
            .filter(|(host, path)| !host.contains('/') && path.starts_with('/'));
        let ok = !t.is_empty()
            && !t.starts_with('-')
            && !t.contains("::")
            && !t.starts_with("rsync://")
            && !t.chars().any(|c| c.is_control())
            && (t.starts_with('/') && !t.contains(':') || remote.is_some());
        if !ok || t == "/" {
            return Err(bad(format!(
                "replicas: {}: target {:?} must be an absolute local path or [user@]host:/path (rsync over SSH)",
                r.name, r.target
            )));
        }
        out.push(Replica {
            name: r.name.clone(),
            url,
            target: t.to_string(),
            nfs_root: r.nfs_root.clone(),
        });
    }
    Ok(out)
}

pub fn parse_config(text: &str, path: &Path) -> Result<ConfigFile> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    yaml_serde::from_str::<ConfigFile>(text).map_err(|e| Error::Config {
        file: path.display().to_string(),
        msg: crate::yaml::describe_error(&e),
    })
}

/// Where `modules/`, `initramfs/` and `share/` live: next to the executable when installed
/// (`PREFIX/share/disklessset`), else the source tree this binary was built from.
fn default_data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DISKLESSSET_DATA") {
        return PathBuf::from(d);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            let p = prefix.join("share/disklessset");
            if p.join("modules").is_dir() {
                return p;
            }
        }
    }
    let p = PathBuf::from("/usr/share/disklessset");
    if p.join("modules").is_dir() {
        return p;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_references() {
        let c = Config::resolve(ConfigFile::default(), None, None).unwrap();
        assert_eq!(
            c.images_dir,
            Path::new("/var/www/html/preboot_execution_environment/diskless/images")
        );
        assert_eq!(
            c.kernels_dir,
            Path::new("/var/www/html/preboot_execution_environment/diskless/kernels")
        );
        assert_eq!(c.work_dir, Path::new("/var/tmp/diskless/workdir"));
        assert_eq!(
            c.nfs_staging_dir,
            Path::new("/diskless/images/nfsimages/staging")
        );
        assert_eq!(
            c.nfs_golden_dir,
            Path::new("/diskless/images/nfsimages/golden")
        );
    }

    #[test]
    fn root_puts_everything_under_it() {
        let c = Config::under_root(Path::new("/tmp/x")).unwrap();
        for p in [
            &c.web_root,
            &c.images_dir,
            &c.kernels_dir,
            &c.work_dir,
            &c.state_dir,
            &c.log_dir,
            &c.nodes_file,
            &c.nfs_golden_dir,
            &c.exports_file,
        ] {
            assert!(p.starts_with("/tmp/x"), "{}", p.display());
        }
        assert!(c.images_dir.starts_with(&c.web_root));
    }

    #[test]
    fn unknown_key_is_named_with_allowed_ones() {
        let e = parse_config("imagez_dir: /x\n", Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("imagez_dir"), "{e}");
        assert!(e.contains("images_dir"), "{e}");
        assert!(e.contains("c.yaml"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = parse_config("compression: bzip9\n", Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bzip9") && e.contains("zstd"), "{e}");
        let f = parse_config("compression: gzip\ncompression_level: 12\n", Path::new("c")).unwrap();
        let e = Config::resolve(f, None, None).unwrap_err().to_string();
        assert!(
            e.contains("compression_level") && e.contains("1..=9"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod shipped_example {
    #[test]
    fn share_config_example_parses() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("share/config.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        let f = super::parse_config(&text, &p).unwrap();
        super::Config::resolve(f, None, None).unwrap();
    }
}
