//! The command line as clap reads it, and its conversion into core requests: the one
//! place a flag becomes an `ops` option. `cli` dispatches; the TUI fills the same ops
//! options from its forms and never sees these types.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use disklessset::ops::{self, BuildOptions, Layout, LivenetType, Request, SizeSpec};

#[derive(Debug, Parser)]
#[command(
    name = "disklessset",
    version,
    about = "Diskless image manager: livenet (squashfs in RAM) and NFS images, iPXE boot",
    long_about = "Diskless image manager for HPC and bare-metal clusters.\n\nWithout a subcommand on a terminal it opens the full-screen menu; every menu action is also a subcommand below."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Configuration file [default: /etc/disklessset/config.yaml]
    #[arg(long, global = true, env = "DISKLESSSET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Put the whole store (images, kernels, work dir, nfs roots, state, logs) under DIR
    #[arg(long, global = true, env = "DISKLESSSET_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Info logs on stderr too
    #[arg(short = 'i', long = "info", global = true)]
    pub info: bool,
    /// Debug logs on stderr too
    #[arg(short = 'd', long = "debug", global = true)]
    pub debug: bool,
    /// Machine-readable output (list, show, kernels, modules, recover)
    #[arg(long, global = true)]
    pub json: bool,
    /// Print the plan and the exact commands; change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// No confirmation prompts (required for destructive actions when stdin is not a terminal)
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List images with their state, module, layout, size, kernel and generation
    List,
    /// Show one image in detail
    Show { name: String },
    /// Remove an image and everything it owns (asks for confirmation)
    Remove { name: String },
    /// Clone an image into a new one
    Clone { src: String, dst: String },
    /// Force out a corrupted or stuck image (its mounts, work dir and trees)
    Clear { name: String },
    /// Clean what crashes left store-wide: leaked mounts, loop devices, temp files, stale locks
    Recover,
    /// List the image modules
    Modules,
    /// List kernels and whether their initramfs is present
    Kernels,
    /// The demo module
    #[command(subcommand)]
    Demo(DemoCmd),
    /// The livenet module: squashfs images booted into RAM
    #[command(subcommand)]
    Livenet(LivenetCmd),
    /// NFS images: staging trees, golden copies, per-node state
    #[command(subcommand)]
    Nfs(NfsCmd),
    /// Restore an image's previous generation
    Rollback { name: String },
    /// Manage an image's kernel
    #[command(subcommand)]
    Kernel(KernelCmd),
    /// Create images from a parameters file (reference `image_data:` or native `images:`)
    Create(CreateArgs),
    /// Run an Ansible playbook in a livenet image (chroot connection); on success the
    /// image is repacked as a new generation (when this command mounted it)
    Ansible {
        name: String,
        playbook: PathBuf,
        /// On failure, leave the image mounted for inspection instead of discarding
        #[arg(long)]
        keep_on_failure: bool,
        /// Arguments for ansible-playbook (after --)
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run a command inside an image, in a private mount namespace. Not mounted: on a
    /// throwaway overlay (changes discarded); mounted (`livenet mount`): in the mounted
    /// tree (changes kept for `livenet unmount`). Exits with the command's exit code
    Exec {
        name: String,
        /// The command and its arguments (after --)
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// An interactive shell inside an image (same rules as exec)
    Shell { name: String },
    /// The built-in HTTP boot server for the store's boot tree
    Serve {
        /// Address to listen on [default: the config's listen, 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<String>,
        /// Connections served at once [default: the config's max_connections, 10000]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_connections: Option<u64>,
    },
    /// Compare two livenet images or generations (`NAME@3`): packages and files added,
    /// removed, changed; exit 0 when bit-identical, 1 when they differ (issue 15)
    Diff { a: String, b: String },
    /// Build an image again from its build record (declaration, SOURCE_DATE_EPOCH,
    /// package versions pinned) into a new image, and say whether it is bit-identical
    /// to generation 1; exit 1 when it is not (issue 15)
    Rebuild {
        name: String,
        /// The new image's name [default: NAME-rebuild]
        #[arg(long = "as", value_name = "NEW")]
        as_name: Option<String>,
        /// Build at this SOURCE_DATE_EPOCH instead of the recorded one (the result then
        /// differs in timestamps only)
        #[arg(long, value_name = "SECONDS")]
        source_date_epoch: Option<u64>,
    },
    /// Shell completions for disklessset on stdout (bootset: `bootset --completions SHELL`)
    Completions {
        /// bash, zsh, fish (also elvish, powershell)
        shell: clap_complete::Shell,
    },
    /// The man page of disklessset (roff) on stdout: `disklessset man | man -l -`
    /// (bootset: `bootset --man`)
    Man,
    /// Power control through the nodes' BMCs (`bmc:` in the inventory: ipmi, redfish or
    /// libvirt; passwords in the secrets file). Results are folded per outcome; exit 1
    /// if any node failed
    Power(PowerArgs),
    /// The next boot device through the nodes' BMCs (`status` reads it back)
    Bootdev(BootdevArgs),
    /// Push the boot tree to replica boot servers (config `replicas:`) with rsync: each
    /// switches to the new copy in one step and keeps serving the old one if a push
    /// fails. --status compares each replica with the store by content
    Replicate {
        /// Replica names [default: all]
        names: Vec<String>,
        /// Compare instead of pushing: list what is stale on each replica
        #[arg(long)]
        status: bool,
    },
    /// The node inventory (nodes.yml): add, set, remove, import, list, show
    #[command(subcommand)]
    Nodes(NodesCmd),
    /// Remove transient images no node is assigned to nor booted lately, and generations
    /// beyond keep_generations (never the current one, nor one a node uses); each kept
    /// candidate is named with its reason. --dry-run lists what would go
    Gc {
        /// Keep what a node booted (or a transient image changed) within AGE: 7d, 12h,
        /// 30m, 0 [default: the config's gc_keep_booted_days, 7]
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<Duration>,
    },
    /// Per-node secrets (README "Security"): host key fingerprints, key rotation
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Discovery of unknown machines: while on, a machine not in the inventory boots a
    /// discovery system that reports its facts; the policy names it
    #[command(subcommand)]
    Discovery(DiscoveryCmd),
    /// Generate an image's initramfs from its own kernel modules
    Initramfs {
        name: String,
        /// own (minimal, fast) or dracut (the reference's)
        #[arg(long)]
        flavour: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LivenetCmd {
    /// Build a livenet image from package repositories
    Create(Box<LivenetCreateArgs>),
    /// Make the image a writable tree in the work dir (for customisation)
    Mount { name: String },
    /// Repack the customised tree into a new generation and unmount it
    Unmount {
        name: String,
        /// Throw the changes away instead of repacking
        #[arg(long)]
        discard: bool,
    },
    /// Grow or shrink a compat image's rootfs.img (700M, 1.5G, auto)
    Resize { name: String, size: String },
}

/// The build flags `livenet create` and `nfs staging create` share.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// debian, ubuntu, rocky, alma, rhel, fedora
    #[arg(long, default_value = "debian")]
    pub distro: String,
    /// Release (bookworm, 12, noble, 9, ...) [default: the manifest's for the distro]
    #[arg(long)]
    pub release: Option<String>,
    /// standard, small or core
    #[arg(long = "type", default_value = "core")]
    pub livenet_type: String,
    /// Root password from the first line of FILE
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Root password from the first line of stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Public key for root's authorized_keys
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Relabel for SELinux (EL images)
    #[arg(long)]
    pub selinux: bool,
    /// Leave out docs, man pages and locales
    #[arg(long)]
    pub optimize: bool,
    /// Extra packages, comma-separated
    #[arg(long, value_delimiter = ',')]
    pub packages: Vec<String>,
    /// Package mirror URL
    #[arg(long)]
    pub mirror: Option<String>,
    /// The root tree from PATH instead of the repositories: a directory, a tarball
    /// (.tar, .tar.gz, .tar.zst, e.g. `mmdebstrap --format=tar`), an OCI image layout
    /// or a docker-archive tarball (`docker save`)
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    /// With --from: the kernel and modules of this livenet image (for a tree with none)
    #[arg(long, value_name = "IMAGE", requires = "from")]
    pub kernel_from: Option<String>,
    /// A per-host image: `disklessset gc` removes it once no node is assigned to it
    /// nor booted it within `--older-than`
    #[arg(long)]
    pub transient: bool,
}

#[derive(Debug, Args)]
pub struct LivenetCreateArgs {
    pub name: String,
    #[command(flatten)]
    pub build: BuildArgs,
    /// native (squashfs of the tree) or compat (LiveOS/rootfs.img, the reference's)
    #[arg(long, default_value = "native")]
    pub layout: String,
    /// compat layout: rootfs.img size (700M, 1.5G, auto)
    #[arg(long)]
    pub size: Option<String>,
    /// Initramfs flavour: own (minimal, fast) or dracut
    #[arg(long, default_value = "own")]
    pub initramfs: String,
}

/// How many BMCs at once and how long each may take (defaults: the config's `bmc_*`).
#[derive(Debug, Args, Clone, Copy)]
pub struct BmcArgs {
    /// BMCs contacted at once [default: bmc_fanout, 50]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub fanout: Option<u64>,
    /// Seconds one BMC request may take [default: bmc_timeout_secs, 10]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: Option<u64>,
    /// Retries of a request that got no answer [default: bmc_retries, 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: Option<u32>,
}

impl BmcArgs {
    pub fn options(&self) -> ops::BmcOptions {
        ops::BmcOptions {
            fanout: self.fanout.map(|n| n as usize),
            timeout_secs: self.timeout,
            retries: self.retries,
        }
    }
}

#[derive(Debug, Args)]
pub struct PowerArgs {
    /// on, off, cycle, reset (hard), soft (orderly shutdown) or status
    #[arg(value_parser = ["on", "off", "cycle", "reset", "soft", "status"])]
    pub action: String,
    /// Nodes, in ClusterShell syntax: c[001-100],login1 @group
    pub nodeset: String,
    #[command(flatten)]
    pub bmc: BmcArgs,
    /// Wait until each node reports the new state (on, or off for off/soft)
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits per node, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 120, requires = "wait")]
    pub wait_timeout: u64,
}

#[derive(Debug, Args)]
pub struct BootdevArgs {
    /// pxe, disk, bios (firmware setup), or status (read the override back)
    #[arg(value_parser = ["pxe", "disk", "bios", "status"])]
    pub device: String,
    /// Nodes, in ClusterShell syntax
    pub nodeset: String,
    /// Every boot from now on (default: the next boot only)
    #[arg(long)]
    pub persistent: bool,
    /// Boot in UEFI mode
    #[arg(long, conflicts_with = "legacy")]
    pub uefi: bool,
    /// Boot in legacy BIOS mode (default: the mode the BMC has; IPMI: legacy)
    #[arg(long)]
    pub legacy: bool,
    #[command(flatten)]
    pub bmc: BmcArgs,
}

/// The node fields `nodes add` and `nodes set` take (issue 13).
#[derive(Debug, Args)]
pub struct NodeFieldArgs {
    /// MAC address; repeat it once per node of the set (matched in node order)
    #[arg(long = "mac", value_name = "MAC")]
    pub macs: Vec<String>,
    /// IP address of the first node; the next nodes get the next addresses
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<String>,
    /// Group (repeatable or comma-separated); replaces the node's groups
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Variable KEY=VALUE (repeatable); KEY= removes it
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// BMC address (bmc.address)
    #[arg(long, value_name = "ADDRESS")]
    pub bmc: Option<String>,
}

impl NodeFieldArgs {
    pub fn fields(&self) -> Result<ops::NodeFields> {
        Ok(ops::NodeFields::parse(
            &self.macs,
            self.ip.as_deref(),
            &self.groups,
            &self.vars,
            self.bmc.as_deref(),
        )?)
    }
}

#[derive(Debug, Subcommand)]
pub enum NodesCmd {
    /// Add nodes (NODESET: c[001-100],login1) to nodes.yml; refused if one exists
    Add {
        nodeset: String,
        #[command(flatten)]
        fields: NodeFieldArgs,
    },
    /// Change existing nodes' fields
    Set {
        nodeset: String,
        #[command(flatten)]
        fields: NodeFieldArgs,
    },
    /// Remove nodes from nodes.yml (asks for confirmation)
    Remove { nodeset: String },
    /// Add or update nodes from a CSV file (header: node,mac,ip,groups,bmc)
    Import { file: PathBuf },
    /// List nodes with their state, assignment and last boot seen by the server
    List { nodeset: Option<String> },
    /// One node in detail: fields, variables with their source, what the server saw
    Show { node: String },
    /// Render template NAME (templates/ beside nodes.yml) for NODE, as the server would
    /// serve it at /render/NAME; says whether it differs from the copy kept when served
    Render { node: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// The nodes' SSH host key fingerprints (never the keys)
    Show { nodeset: String },
    /// Delete the nodes' host keys: new ones are made at their next boot (asks first)
    Rotate { nodeset: String },
}

#[derive(Debug, Subcommand)]
pub enum DiscoveryCmd {
    /// Turn discovery on (no restart of `serve` needed)
    Start {
        /// The names given to new machines, in power-on order (e.g. 'd[01-10]')
        #[arg(long, value_name = "NODESET")]
        pool: Option<String>,
        /// manual (pending until `accept`), sequential (next name of the pool), open (any)
        #[arg(long, default_value = "manual")]
        policy: String,
    },
    /// Turn discovery off (the list of reported machines is kept)
    Stop,
    /// The machines that reported: MAC, name (or pending), facts
    List,
    /// Name a pending machine: adds NODE with its MAC to nodes.yml and records its facts
    Accept { mac: String, node: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The parameters file (see share/params/ for both formats)
    #[arg(long, value_name = "FILE")]
    pub params: PathBuf,
    /// Distro of the images that name none (reference files never do) [default: debian]
    #[arg(long)]
    pub distro: Option<String>,
    /// Remove and rebuild the images that exist and differ from the file (with --yes)
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Subcommand)]
pub enum NfsCmd {
    /// Staging images: a root tree under the NFS root, customised in place
    #[command(subcommand)]
    Staging(NfsStagingCmd),
    /// Golden images: frozen copies of a staging image that nodes boot read-only
    #[command(subcommand)]
    Golden(NfsGoldenCmd),
    /// The nodes of a golden image: each keeps its own state, not a copy of the image
    #[command(subcommand)]
    Nodes(NfsNodesCmd),
    /// Regenerate the exports from the records and reload the running NFS server; with
    /// --for REPLICA, write that replica's exports file instead (its nfs_root paths)
    Exports {
        /// A replica of the config (`replicas:`): write the exports it needs, reload nothing
        #[arg(long = "for", value_name = "REPLICA")]
        for_replica: Option<String>,
        /// With --for: where to write it [default: STATE_DIR/replicas/REPLICA.exports]
        #[arg(long, value_name = "FILE", requires = "for_replica")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NfsStagingCmd {
    /// Build a staging image from package repositories (the build options of livenet create)
    Create(Box<NfsCreateArgs>),
}

#[derive(Debug, Subcommand)]
pub enum NfsGoldenCmd {
    /// Copy a staging image into a golden image
    Create {
        name: String,
        /// The staging image to copy
        #[arg(long)]
        from: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NfsNodesCmd {
    /// Give nodes their own directory and export (NODESET: c[001-100],login1,@group)
    Add { golden: String, nodeset: String },
    /// Remove nodes and their kept state (asks for confirmation)
    Remove { golden: String, nodeset: String },
    /// List a golden image's nodes with what each keeps
    List {
        golden: String,
        nodeset: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct NfsCreateArgs {
    pub name: String,
    #[command(flatten)]
    pub build: BuildArgs,
    /// Initramfs flavour: own (the only one with an overlay and per-node kept paths for NFS roots)
    #[arg(long, default_value = "own")]
    pub initramfs: String,
}

#[derive(Debug, Subcommand)]
pub enum KernelCmd {
    /// Change an image's kernel (refused if that kernel has no initramfs)
    Set { name: String, version: String },
}

#[derive(Debug, Subcommand)]
pub enum DemoCmd {
    /// Create a demo image holding a message
    Create {
        name: String,
        #[arg(long, default_value = "hello from disklessset")]
        message: String,
        /// Die mid-creation on purpose (to exercise recovery)
        #[arg(long)]
        crash: bool,
        /// Pause between creation steps, in milliseconds
        #[arg(long, default_value_t = 200, hide = true)]
        step_delay_ms: u64,
    },
}

/// `--older-than`, by the core's rule.
fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    ops::gc::parse_age(s).map_err(|e| e.to_string())
}

impl BuildArgs {
    /// The core's build options (the password is hashed here, by the core's function,
    /// and the clear text dropped).
    pub fn options(&self) -> Result<BuildOptions> {
        Ok(BuildOptions {
            distro: self.distro.clone(),
            release: self.release.clone(),
            livenet_type: LivenetType::parse(&self.livenet_type)?,
            password_hash: ops::hash_from_source(
                self.password_file.as_deref(),
                self.password_stdin,
            )?,
            ssh_pub_key_file: self.ssh_key.clone(),
            selinux: self.selinux,
            optimize: self.optimize,
            packages: self
                .packages
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect(),
            mirror: self.mirror.clone(),
            from: self.from.clone(),
            kernel_from: self.kernel_from.clone(),
            repro: Default::default(),
            transient: self.transient,
        })
    }
}

impl LivenetCreateArgs {
    pub fn request(&self) -> Result<Request> {
        ops::query::check_image_name(&self.name)?;
        let mut o = ops::LivenetCreate::new(&self.name);
        o.build = self.build.options()?;
        o.layout = Layout::parse(&self.layout)?;
        o.size = self.size.as_deref().map(SizeSpec::parse).transpose()?;
        o.initramfs = self.initramfs.clone();
        Ok(Request::LivenetCreate(Box::new(o)))
    }
}

impl NfsCreateArgs {
    pub fn request(&self) -> Result<Request> {
        ops::query::check_image_name(&self.name)?;
        let mut o = ops::StagingCreate::new(&self.name);
        o.build = self.build.options()?;
        o.initramfs = self.initramfs.clone();
        Ok(Request::NfsStagingCreate(Box::new(o)))
    }
}

impl Command {
    /// The core request of a mutating command (None: a query, or a command that owns
    /// the terminal or runs until stopped).
    pub fn request(&self, g: &Global) -> Result<Option<Request>> {
        let s = |v: &String| v.clone();
        Ok(Some(match self {
            Command::Remove { name } => Request::Remove { name: s(name) },
            Command::Clone { src, dst } => Request::Clone {
                src: s(src),
                dst: s(dst),
            },
            Command::Clear { name } => Request::Clear { name: s(name) },
            Command::Recover => Request::Recover,
            Command::Demo(DemoCmd::Create {
                name,
                message,
                crash,
                step_delay_ms,
            }) => Request::DemoCreate(ops::DemoCreate {
                name: s(name),
                message: s(message),
                crash: *crash,
                step_delay: Duration::from_millis(*step_delay_ms),
            }),
            Command::Livenet(LivenetCmd::Create(a)) => a.request()?,
            Command::Livenet(LivenetCmd::Mount { name }) => Request::LivenetMount { name: s(name) },
            Command::Livenet(LivenetCmd::Unmount { name, discard }) => Request::LivenetUnmount {
                name: s(name),
                discard: *discard,
            },
            Command::Livenet(LivenetCmd::Resize { name, size }) => Request::LivenetResize {
                name: s(name),
                size: SizeSpec::parse(size)?,
            },
            Command::Rollback { name } => Request::Rollback { name: s(name) },
            Command::Rebuild {
                name,
                as_name,
                source_date_epoch,
            } => Request::Rebuild {
                name: s(name),
                as_name: as_name.clone(),
                epoch: *source_date_epoch,
            },
            Command::Kernel(KernelCmd::Set { name, version }) => Request::KernelSet {
                name: s(name),
                version: s(version),
            },
            Command::Initramfs { name, flavour } => Request::Initramfs {
                name: s(name),
                flavour: flavour.clone(),
            },
            Command::Nfs(NfsCmd::Staging(NfsStagingCmd::Create(a))) => a.request()?,
            Command::Nfs(NfsCmd::Golden(NfsGoldenCmd::Create { name, from })) => {
                Request::NfsGoldenCreate {
                    name: s(name),
                    from: s(from),
                }
            }
            Command::Nfs(NfsCmd::Nodes(NfsNodesCmd::Add { golden, nodeset })) => {
                Request::NfsNodesAdd {
                    golden: s(golden),
                    nodeset: s(nodeset),
                }
            }
            Command::Nfs(NfsCmd::Nodes(NfsNodesCmd::Remove { golden, nodeset })) => {
                Request::NfsNodesRemove {
                    golden: s(golden),
                    nodeset: s(nodeset),
                }
            }
            Command::Nfs(NfsCmd::Exports {
                for_replica: None, ..
            }) => Request::NfsExports,
            Command::Nfs(NfsCmd::Exports {
                for_replica: Some(r),
                output,
            }) => Request::NfsExportsFor {
                replica: s(r),
                output: output.clone(),
            },
            Command::Replicate {
                names,
                status: false,
            } => Request::Replicate {
                names: names.clone(),
            },
            Command::Create(a) => Request::Params {
                path: a.params.clone(),
                options: ops::ParamsOptions {
                    distro: a.distro.clone(),
                    replace: a.replace,
                    yes: g.yes,
                },
            },
            Command::Ansible {
                name,
                playbook,
                keep_on_failure,
                args,
            } => Request::Ansible {
                name: s(name),
                playbook: playbook.clone(),
                keep_on_failure: *keep_on_failure,
                args: args.clone(),
            },
            Command::Power(a) if a.action != "status" => Request::Power {
                nodeset: s(&a.nodeset),
                action: ops::PowerAction::parse(&a.action)?,
                options: a.bmc.options(),
                wait: a.wait.then(|| Duration::from_secs(a.wait_timeout)),
            },
            Command::Bootdev(a) if a.device != "status" => Request::Bootdev {
                nodeset: s(&a.nodeset),
                boot: ops::BootRequest {
                    device: ops::BootDevice::parse(&a.device)?,
                    persistent: a.persistent,
                    mode: if a.uefi {
                        Some(ops::BootMode::Uefi)
                    } else if a.legacy {
                        Some(ops::BootMode::Legacy)
                    } else {
                        None
                    },
                },
                options: a.bmc.options(),
            },
            Command::Nodes(NodesCmd::Add { nodeset, fields }) => Request::NodesAdd {
                nodeset: s(nodeset),
                fields: fields.fields()?,
            },
            Command::Nodes(NodesCmd::Set { nodeset, fields }) => Request::NodesSet {
                nodeset: s(nodeset),
                fields: fields.fields()?,
            },
            Command::Nodes(NodesCmd::Remove { nodeset }) => Request::NodesRemove {
                nodeset: s(nodeset),
            },
            Command::Nodes(NodesCmd::Import { file }) => {
                Request::NodesImport { path: file.clone() }
            }
            Command::Gc { older_than } => Request::Gc(ops::gc::GcOptions {
                older_than: *older_than,
            }),
            Command::Nodes(
                NodesCmd::List { .. } | NodesCmd::Show { .. } | NodesCmd::Render { .. },
            ) => return Ok(None),
            Command::Secrets(SecretsCmd::Show { nodeset }) => Request::SecretsShow {
                nodeset: s(nodeset),
            },
            Command::Secrets(SecretsCmd::Rotate { nodeset }) => Request::SecretsRotate {
                nodeset: s(nodeset),
            },
            Command::Discovery(DiscoveryCmd::Start { pool, policy }) => Request::DiscoveryStart {
                pool: pool.clone(),
                policy: s(policy),
            },
            Command::Discovery(DiscoveryCmd::Stop) => Request::DiscoveryStop,
            Command::Discovery(DiscoveryCmd::Accept { mac, node }) => Request::DiscoveryAccept {
                mac: s(mac),
                node: s(node),
            },
            Command::Discovery(DiscoveryCmd::List) => return Ok(None),
            Command::Power(_)
            | Command::Bootdev(_)
            | Command::Replicate { status: true, .. }
            | Command::List
            | Command::Show { .. }
            | Command::Modules
            | Command::Kernels
            | Command::Nfs(NfsCmd::Nodes(NfsNodesCmd::List { .. }))
            | Command::Exec { .. }
            | Command::Shell { .. }
            | Command::Serve { .. }
            | Command::Completions { .. }
            | Command::Diff { .. }
            | Command::Man => return Ok(None),
        }))
    }
}
