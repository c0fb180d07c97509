//! `bootset`: assign boot types and images to nodes, and show the status.
//! Compatible with the reference: `bootset -n c[001-100] -b diskless -i myimage`.
use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, Parser};

use disklessset::ops::{
    self, Assign, BmcOptions, BootType, Config, ConfigSource, Ctx, NetMode, Request, Runner,
    Staging, Verbosity,
};

#[derive(Debug, Parser)]
#[command(
    name = "bootset",
    version,
    about = "Assign boot types and diskless images to nodes (iPXE), and show their status"
)]
struct Cli {
    /// Nodes, in ClusterShell syntax: c[001-100],login1 rack[1-2]n[01-04] @group
    #[arg(short = 'n', long = "nodes", value_name = "NODESET")]
    nodes: Option<String>,
    /// Boot type: exactly one of osdeploy, diskless, next, clone, clonedeploy, disk, install
    #[arg(short = 'b', long = "boot", value_name = "TYPE")]
    boot: Option<String>,
    /// Diskless image (must exist, be created and have an initramfs)
    #[arg(short = 'i', long = "image", value_name = "IMAGE")]
    image: Option<String>,
    /// Extra kernel parameters for these nodes
    #[arg(
        short = 'e',
        long = "extra",
        value_name = "EXTRA",
        allow_hyphen_values = true
    )]
    extra: Option<String>,
    /// network: static ip= from the inventory; dhcp: DHCP with timeouts
    #[arg(short = 'f', long = "force-network", value_name = "network|dhcp")]
    net: Option<String>,
    /// Status: nodes folded per boot type and image (optionally only NODESET)
    #[arg(short = 's', long = "status", value_name = "NODESET", num_args = 0..=1, default_missing_value = "")]
    status: Option<String>,
    /// With -b install: the installer may repartition a disk that already holds
    /// partitions (without it, such a disk is refused and left untouched)
    #[arg(long)]
    wipe: bool,
    /// Only for the next boot: once the server has served this script to the node, it
    /// puts the node's previous assignment back (refused for a node with none)
    #[arg(long)]
    once: bool,
    /// Then boot the nodes now through their BMCs (`bmc:` in the inventory): next boot
    /// PXE once, then a power cycle (power on when off)
    #[arg(long)]
    reboot: bool,
    /// With --reboot: power requests in groups of N nodes (against boot storms)
    #[arg(long, value_name = "N", requires = "reboot", value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// With --reboot --batch: seconds from the start of one group to the next
    #[arg(long, value_name = "S", requires = "batch", default_value_t = 0)]
    interval: u64,
    /// With --reboot: BMCs contacted at once [default: bmc_fanout, 50]
    #[arg(long, value_name = "N", requires = "reboot", value_parser = clap::value_parser!(u64).range(1..=1000))]
    fanout: Option<u64>,
    /// With --reboot: seconds one BMC request may take [default: bmc_timeout_secs, 10]
    #[arg(long, value_name = "SECS", requires = "reboot", value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: Option<u64>,
    /// Quiet: print nothing on success
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Machine-readable output
    #[arg(long)]
    json: bool,
    /// Print what would be written; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Configuration file [default: /etc/disklessset/config.yaml]
    #[arg(long, env = "DISKLESSSET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Put the whole store under DIR
    #[arg(long, env = "DISKLESSSET_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    /// Debug logs on stderr
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Print shell completions for bootset (bash, zsh, fish) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// Print the man page of bootset (roff) and exit: `bootset --man | man -l -`
    #[arg(long, exclusive = true)]
    man: bool,
}

fn main() {
    // the process watchdog of the runner (`__reaper`), when this process is one
    if let Some(code) = ops::maybe_nsrun() {
        std::process::exit(code);
    }
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: the default SIGPIPE disposition at start-up, single-threaded, no handler
    // function (a quiet exit on a closed pipe: `bootset -s | head`).
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            std::process::exit(code);
        }
    };
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("bootset: error: {}", msg.join(": ").replace('\n', " "));
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    if let Some(shell) = cli.completions {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "bootset", &mut std::io::stdout());
        return Ok(0);
    }
    if cli.man {
        clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
        return Ok(0);
    }
    let cfg = Config::load(&ConfigSource {
        config_file: cli.config.clone(),
        root: cli.root.clone(),
    })?;
    let verbosity = if cli.debug {
        Verbosity::Debug
    } else {
        Verbosity::Quiet
    };
    ops::init_logging(&cfg, verbosity, Some(std::io::stderr));
    let runner = Runner::new(cli.dry_run);
    let ctx = Ctx::new(cfg, runner.clone());
    if let Some(set) = &cli.status {
        let set = (!set.is_empty())
            .then_some(set.as_str())
            .or(cli.nodes.as_deref());
        let lines = ops::bootset_status(&ctx, set)?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&lines)?);
        } else if lines.is_empty() {
            println!(
                "no nodes in the inventory ({})",
                ctx.cfg.nodes_file.display()
            );
        } else {
            for l in lines {
                // issue 13: what the server saw, after the count.
                let mut seen = String::new();
                if !l.booted.is_empty() {
                    seen.push_str(&format!("; booted {}", l.booted));
                }
                if !l.reboot_changes.is_empty() {
                    seen.push_str(&format!("; a reboot changes {}", l.reboot_changes));
                }
                let once = l
                    .once_then
                    .as_ref()
                    .map(|t| format!(" (once, then {t})"))
                    .unwrap_or_default();
                match &l.image {
                    Some(i) => println!(
                        "{} {i}{once}: {} ({} nodes{seen})",
                        l.boot_type, l.nodes, l.count
                    ),
                    None => println!(
                        "{}{once}: {} ({} nodes{seen})",
                        l.boot_type, l.nodes, l.count
                    ),
                }
            }
        }
        return Ok(0);
    }
    let (Some(nodes), Some(boot)) = (&cli.nodes, &cli.boot) else {
        eprintln!("bootset: error: give -n NODESET and -b TYPE (or -s for the status); see bootset --help");
        return Ok(2);
    };
    let a = Assign {
        nodeset: nodes.clone(),
        boot_type: BootType::parse(boot)?,
        image: cli.image.clone(),
        extra: cli.extra.clone(),
        net: match &cli.net {
            Some(f) => NetMode::parse(f)?,
            None => NetMode::Default,
        },
        wipe: cli.wipe,
        once: cli.once,
    };
    if cli.reboot {
        let req = Request::BootsetReboot {
            assign: a,
            staging: Staging {
                batch: cli.batch.map(|b| b as usize),
                interval_secs: cli.interval,
            },
            options: BmcOptions {
                fanout: cli.fanout.map(|f| f as usize),
                timeout_secs: cli.timeout,
                retries: None,
            },
        };
        let out = ops::run(&ctx, &req)?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&out.json)?);
        } else if !cli.quiet || out.failure.is_some() {
            for l in &out.lines {
                println!("{l}");
            }
        }
        if cli.dry_run {
            for p in runner.plan() {
                println!("{p}");
            }
        }
        if let Some(f) = &out.failure {
            eprintln!("bootset: error: {f}");
            return Ok(1);
        }
        return Ok(0);
    }
    let rep = ops::bootset_assign(&ctx, &a)?;
    if cli.dry_run {
        for p in runner.plan() {
            println!("{p}");
        }
    } else if cli.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else if !cli.quiet {
        println!(
            "{}: {}{} ({} written, {} unchanged)",
            rep.folded,
            a.boot_type.as_str(),
            a.image.map(|i| format!(" {i}")).unwrap_or_default(),
            rep.written,
            rep.unchanged
        );
    }
    // replicate_on_publish: the new node scripts reach the replicas too
    if rep.written > 0 {
        for l in ops::replicate_after_publish(&ctx) {
            if cli.json || cli.quiet {
                eprintln!("{l}");
            } else {
                println!("{l}");
            }
        }
    }
    Ok(0)
}
