//! The command-line front-end: parses arguments, builds the context, calls one core
//! operation, prints its result. No logic of its own.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};

use disklessset::config::{Config, ConfigSource};
use disklessset::logging::{self, Verbosity};
use disklessset::modules::{demo, livenet, nfs};
use disklessset::ops::{self, Ctx, Progress, ProgressEvent};
use disklessset::sys::proc::stdin_is_tty;
use disklessset::sys::Runner;

use crate::output;

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
    },
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

#[derive(Debug, Args)]
pub struct LivenetCreateArgs {
    pub name: String,
    /// debian, ubuntu, rocky, alma, rhel, fedora
    #[arg(long, default_value = "debian")]
    pub distro: String,
    /// Release (bookworm, 12, noble, 9, ...) [default: the manifest's for the distro]
    #[arg(long)]
    pub release: Option<String>,
    /// standard, small or core
    #[arg(long = "type", default_value = "core")]
    pub livenet_type: String,
    /// native (squashfs of the tree) or compat (LiveOS/rootfs.img, the reference's)
    #[arg(long, default_value = "native")]
    pub layout: String,
    /// compat layout: rootfs.img size (700M, 1.5G, auto)
    #[arg(long)]
    pub size: Option<String>,
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
    /// Initramfs flavour: own (minimal, fast) or dracut
    #[arg(long, default_value = "own")]
    pub initramfs: String,
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
    /// Regenerate the exports from the records and reload the running NFS server
    Exports,
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

pub fn main() -> i32 {
    // `disklessset __nsrun ...`: the private-namespace helper of exec/shell.
    if let Some(code) = disklessset::inside::maybe_nsrun() {
        return code;
    }
    install_panic_hook();
    // Die quietly on a closed pipe (`disklessset list | head`) like other Unix tools.
    // SAFETY: setting a signal disposition to its default at start-up, single-threaded.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("disklessset: error: {}", one_line(&e));
            1
        }
    }
}

/// The error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("disklessset: internal error{loc}: {msg} (please report this bug; run `disklessset recover` if an operation was interrupted)");
    }));
}

pub fn load_config(g: &Global) -> Result<Config> {
    Ok(Config::load(&ConfigSource {
        config_file: g.config.clone(),
        root: g.root.clone(),
    })?)
}

fn verbosity(g: &Global) -> Verbosity {
    if g.debug {
        Verbosity::Debug
    } else if g.info {
        Verbosity::Info
    } else {
        Verbosity::Quiet
    }
}

/// Asks before a destructive action; refuses without a terminal unless --yes.
fn confirm(g: &Global, what: &str) -> Result<()> {
    if g.yes || g.dry_run {
        return Ok(());
    }
    if !stdin_is_tty() {
        return Err(disklessset::Error::NeedsConfirmation(what.to_string()).into());
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(format!("{what}?"))
        .default(false)
        .interact()
        .context("reading the confirmation")?;
    if ok {
        Ok(())
    } else {
        Err(disklessset::Error::Cancelled.into())
    }
}

fn run(cli: Cli) -> Result<i32> {
    let g = cli.global.clone();
    let cfg = load_config(&g)?;
    let Some(command) = cli.command else {
        if stdin_is_tty() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            let opts = crate::tui::TuiOptions {
                dry_run: g.dry_run,
                verbosity: verbosity(&g),
                ..Default::default()
            };
            return crate::tui::run(cfg, opts);
        }
        eprintln!("disklessset: the full-screen menu needs a terminal; use the subcommands (`disklessset --help`), e.g. `disklessset list`");
        return Ok(2);
    };
    logging::init(&cfg, verbosity(&g), Some(std::io::stderr));
    let runner = Runner::new(g.dry_run);
    // Progress lines go to a terminal only; scripts get the log file and one result line.
    let progress = if g.json || g.dry_run || !stderr_is_tty() {
        Progress::default()
    } else {
        Progress::new(|ev: &ProgressEvent| match ev {
            ProgressEvent::Step {
                index,
                total,
                label,
            } => {
                eprintln!("[{index}/{total}] {label}")
            }
        })
    };
    let ctx = Ctx::new(cfg, runner.clone()).with_progress(progress);
    let code = dispatch(&ctx, &g, command)?;
    if g.dry_run {
        output::print_plan(&runner.plan());
    }
    Ok(code)
}

fn dispatch(ctx: &Ctx, g: &Global, command: Command) -> Result<i32> {
    match command {
        Command::List => {
            let list = ops::list(ctx)?;
            output::images(&list, g.json)?;
        }
        Command::Show { name } => {
            let info = ops::show(ctx, &name)?;
            output::image(&info, g.json)?;
        }
        Command::Remove { name } => {
            disklessset::names::image(&name)?;
            let info = ops::show(ctx, &name)?;
            confirm(
                g,
                &format!(
                    "remove image {name} ({} and its work dir)",
                    info.dir.display()
                ),
            )?;
            ops::remove(ctx, &name)?;
            output::done(g.json, &format!("removed image {name}"))?;
        }
        Command::Clone { src, dst } => {
            let rec = ops::clone(ctx, &src, &dst)?;
            output::done(g.json, &format!("cloned {src} into {}", rec.name))?;
        }
        Command::Clear { name } => {
            disklessset::names::image(&name)?;
            confirm(
                g,
                &format!("clear image {name}: delete everything it has, whatever its state"),
            )?;
            ops::clear(ctx, &name)?;
            output::done(g.json, &format!("cleared image {name}"))?;
        }
        Command::Recover => {
            let rep = ops::recover(ctx)?;
            output::recover(&rep, g.json)?;
        }
        Command::Modules => output::modules(&ops::module_infos(), g.json)?,
        Command::Kernels => output::kernels(&ops::kernels(ctx)?, g.json)?,
        Command::Demo(DemoCmd::Create {
            name,
            message,
            crash,
            step_delay_ms,
        }) => {
            let rec = demo::create(
                ctx,
                &demo::DemoCreate {
                    name,
                    message,
                    crash,
                    step_delay: Duration::from_millis(step_delay_ms),
                },
            )?;
            output::done(g.json, &format!("created demo image {}", rec.name))?;
        }
        Command::Livenet(LivenetCmd::Create(a)) => {
            let o = livenet_create_options(&a)?;
            let rep = livenet::create(ctx, &o)?;
            if g.json {
                output::json(&rep)?;
            } else if !g.dry_run {
                println!(
                    "created livenet image {} (kernel {}, squashfs {}, initramfs {} {}; build {:.0}s, pack {:.1}s)",
                    rep.name,
                    rep.kernel,
                    disklessset::fsutil::human_size(rep.squashfs_bytes),
                    rep.initramfs.flavour,
                    disklessset::fsutil::human_size(rep.initramfs.size_bytes),
                    rep.build_seconds,
                    rep.pack_seconds
                );
            }
        }
        Command::Create(a) => {
            let rep = disklessset::params::create_from_params(
                ctx,
                &a.params,
                &disklessset::params::ParamsOptions {
                    distro: a.distro.clone(),
                    replace: a.replace,
                    yes: g.yes,
                },
            )?;
            if g.json {
                output::json(&rep)?;
            } else {
                for i in &rep.images {
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
                    println!("{line}");
                }
            }
        }
        Command::Ansible {
            name,
            playbook,
            keep_on_failure,
            args,
        } => {
            // The playbook's output on a terminal's stderr as it runs (the log file has
            // all of it; scripts keep the one-line error).
            let mut c = ctx.clone();
            if !g.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                c.runner = ctx
                    .runner
                    .tee(std::sync::Arc::new(|l: &str| eprintln!("{l}")));
            }
            let rep = disklessset::inside::ansible(
                &c,
                &name,
                &playbook,
                &args,
                &disklessset::inside::AnsibleOptions { keep_on_failure },
            )?;
            if g.json {
                output::json(&rep)?;
            } else if !g.dry_run {
                match rep.generation {
                    Some(gen) => println!(
                        "playbook applied to image {name}: repacked as generation {gen} (log {})",
                        rep.log.display()
                    ),
                    None if rep.mounted_here => println!(
                        "playbook applied to image {name}: nothing changed (log {})",
                        rep.log.display()
                    ),
                    None => println!(
                        "playbook applied to the mounted image {name}; `disklessset livenet unmount {name}` repacks it (log {})",
                        rep.log.display()
                    ),
                }
            }
        }
        Command::Exec { name, cmd } => {
            let out = disklessset::inside::exec(ctx, &name, &cmd)?;
            return Ok(out.code);
        }
        Command::Shell { name } => {
            let out = disklessset::inside::shell(ctx, &name)?;
            if out.throwaway {
                eprintln!("disklessset: {name} was not mounted: the shell ran on a throwaway overlay, its changes are discarded");
            }
            return Ok(out.code);
        }
        Command::Serve { listen } => {
            let addr = listen.unwrap_or_else(|| ctx.cfg.listen.clone());
            let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
                anyhow::anyhow!("--listen {addr:?}: use ADDRESS:PORT, e.g. 0.0.0.0:8080")
            })?;
            let server = disklessset::boot::serve::bind(&ctx.cfg, addr)?;
            println!(
                "serving {} on http://{} (DHCP bootfile: http://{}/boot.ipxe); Ctrl-C stops",
                ctx.cfg.web_root.display(),
                server.local_addr(),
                server.local_addr()
            );
            let shutdown = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            stop_on_signals(shutdown.clone());
            disklessset::boot::serve::run(server, shutdown)?;
        }
        Command::Initramfs { name, flavour } => {
            let class = disklessset::store::load(&ctx.cfg, &name)?.image_class;
            let rep = match class {
                disklessset::store::ImageClass::NfsStagingImage
                | disklessset::store::ImageClass::NfsGoldenImage => {
                    disklessset::modules::nfs::initramfs(ctx, &name, flavour.as_deref())?
                }
                _ => livenet::initramfs(ctx, &name, flavour.as_deref())?,
            };
            if g.json {
                output::json(&rep)?;
            } else {
                println!(
                    "initramfs {} ({}, {}) built in {:.1}s for image {name}",
                    rep.file.display(),
                    rep.flavour,
                    disklessset::fsutil::human_size(rep.size_bytes),
                    rep.seconds
                );
            }
        }
        Command::Livenet(LivenetCmd::Mount { name }) => {
            let mnt = livenet::mount_image(ctx, &name)?;
            output::done(
                g.json,
                &format!(
                    "image {name} mounted at {} (Ansible inventory: {})",
                    mnt.display(),
                    livenet::WorkPaths::new(&ctx.cfg, &name)
                        .inventory
                        .join("host")
                        .display()
                ),
            )?;
        }
        Command::Livenet(LivenetCmd::Unmount { name, discard }) => {
            let rep = livenet::unmount_image(ctx, &name, discard)?;
            if g.json {
                output::json(&rep)?;
            } else {
                match rep.generation {
                    Some(gen) => println!(
                        "image {name} unmounted; repacked as generation {gen} ({})",
                        disklessset::fsutil::human_size(rep.size_bytes)
                    ),
                    None if discard => println!("image {name} unmounted; changes discarded"),
                    None => println!("image {name} unmounted; nothing changed, no new generation"),
                }
            }
        }
        Command::Livenet(LivenetCmd::Resize { name, size }) => {
            let spec = livenet::SizeSpec::parse(&size)?;
            let rep = livenet::resize(ctx, &name, spec)?;
            if g.json {
                output::json(&rep)?;
            } else {
                println!(
                    "image {name} resized from {}M to {}M (content {}M, minimum {}M); generation {}",
                    rep.old_mib, rep.new_mib, rep.content_mib, rep.min_mib, rep.generation
                );
            }
        }
        Command::Nfs(cmd) => nfs_dispatch(ctx, g, cmd)?,
        Command::Rollback { name } => {
            let gen = livenet::rollback(ctx, &name)?;
            output::done(g.json, &format!("image {name} is back at generation {gen}"))?;
        }
        Command::Kernel(KernelCmd::Set { name, version }) => {
            let rec = livenet::kernel_set(ctx, &name, &version)?;
            output::done(
                g.json,
                &format!(
                    "image {name} now boots {} with {}",
                    rec.kernel.unwrap_or_default(),
                    rec.image.unwrap_or_default()
                ),
            )?;
        }
    }
    Ok(0)
}

/// Turns the command line into the core's create options (the password is hashed here,
/// by the core's function, and the clear text dropped).
pub(crate) fn livenet_create_options(a: &LivenetCreateArgs) -> Result<livenet::LivenetCreate> {
    use disklessset::build::password;
    use disklessset::store::{Layout, LivenetType};
    let mut o = livenet::LivenetCreate::new(&a.name);
    disklessset::names::image(&a.name)?;
    o.distro = a.distro.clone();
    o.release = a.release.clone();
    o.livenet_type = LivenetType::parse(&a.livenet_type)?;
    o.layout = Layout::parse(&a.layout)?;
    o.size = a
        .size
        .as_deref()
        .map(livenet::SizeSpec::parse)
        .transpose()?;
    o.password_hash = password::hash_from_source(a.password_file.as_deref(), a.password_stdin)?;
    o.ssh_pub_key_file = a.ssh_key.clone();
    o.selinux = a.selinux;
    o.optimize = a.optimize;
    o.packages = a
        .packages
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect();
    o.mirror = a.mirror.clone();
    o.initramfs = a.initramfs.clone();
    Ok(o)
}

fn nfs_dispatch(ctx: &Ctx, g: &Global, cmd: NfsCmd) -> Result<()> {
    use disklessset::fsutil::human_size;
    match cmd {
        NfsCmd::Staging(NfsStagingCmd::Create(a)) => {
            let o = nfs_create_options(&a)?;
            let rep = nfs::create_staging(ctx, &o)?;
            if g.json {
                output::json(&rep)?;
            } else if !g.dry_run {
                println!(
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
            }
        }
        NfsCmd::Golden(NfsGoldenCmd::Create { name, from }) => {
            let rep = nfs::create_golden(ctx, &name, &from)?;
            if g.json {
                output::json(&rep)?;
            } else if !g.dry_run {
                println!(
                    "created NFS golden image {} from {} in {} ({:.1}s); exports: {}",
                    rep.name,
                    rep.source_image,
                    rep.tree.display(),
                    rep.copy_seconds,
                    rep.exports.reload
                );
            }
        }
        NfsCmd::Nodes(NfsNodesCmd::Add { golden, nodeset }) => {
            let rep = nfs::nodes_add(ctx, &golden, &nodeset)?;
            if g.json {
                output::json(&rep)?;
            } else if !g.dry_run {
                let already = if rep.unchanged.is_empty() {
                    String::new()
                } else {
                    format!(" ({} already there)", rep.unchanged)
                };
                println!(
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
            }
        }
        NfsCmd::Nodes(NfsNodesCmd::Remove { golden, nodeset }) => {
            let nodes = nfs::expand_nodes(&ctx.cfg, &nodeset)?;
            confirm(
                g,
                &format!(
                    "remove nodes {} of image {golden} and the state they keep",
                    disklessset::boot::nodeset::fold(&nodes)
                ),
            )?;
            let rep = nfs::nodes_remove(ctx, &golden, &nodeset)?;
            if g.json {
                output::json(&rep)?;
            } else if !g.dry_run {
                println!(
                    "image {golden}: removed {}; nodes now {}; exports: {}",
                    rep.changed,
                    if rep.nodes.is_empty() {
                        "none"
                    } else {
                        &rep.nodes
                    },
                    rep.exports.reload
                );
            }
        }
        NfsCmd::Nodes(NfsNodesCmd::List { golden, nodeset }) => {
            let list = nfs::nodes_list(ctx, &golden, nodeset.as_deref())?;
            if g.json {
                output::json(&list)?;
            } else {
                for n in &list {
                    println!(
                        "{}\t{}\t{}\t{}",
                        n.node,
                        if n.exists {
                            human_size(n.bytes)
                        } else {
                            "missing".to_string()
                        },
                        n.ip.as_deref().unwrap_or("-"),
                        n.dir.display()
                    );
                }
            }
        }
        NfsCmd::Exports => {
            let rep = nfs::exports::refresh(ctx)?;
            if g.json {
                output::json(&rep)?;
            } else if !g.dry_run {
                println!(
                    "{}: {} exports ({})",
                    rep.file.display(),
                    rep.exports,
                    rep.reload
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn nfs_create_options(a: &NfsCreateArgs) -> Result<nfs::StagingCreate> {
    use disklessset::build::password;
    use disklessset::store::LivenetType;
    disklessset::names::image(&a.name)?;
    let mut o = nfs::StagingCreate::new(&a.name);
    o.distro = a.distro.clone();
    o.release = a.release.clone();
    o.livenet_type = LivenetType::parse(&a.livenet_type)?;
    o.password_hash = password::hash_from_source(a.password_file.as_deref(), a.password_stdin)?;
    o.ssh_pub_key_file = a.ssh_key.clone();
    o.selinux = a.selinux;
    o.optimize = a.optimize;
    o.packages = a
        .packages
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect();
    o.mirror = a.mirror.clone();
    o.initramfs = a.initramfs.clone();
    Ok(o)
}

static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// SIGINT/SIGTERM/SIGHUP set `flag` (a watcher thread bridges the async-signal-safe static).
fn stop_on_signals(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only stores to an atomic.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    std::thread::spawn(move || loop {
        if SIGNALLED.load(std::sync::atomic::Ordering::SeqCst) {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    });
}

fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the file descriptor.
    unsafe { libc::isatty(2) == 1 }
}
