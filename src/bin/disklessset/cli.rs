//! The command-line front-end: parses arguments (`args`), builds the context, makes one
//! `ops` call, prints its result (`output`). No logic of its own.
use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{CommandFactory, Parser};

use disklessset::ops::{
    self, Config, ConfigSource, Ctx, Progress, ProgressEvent, Runner, Verbosity,
};

use crate::args::{Cli, Command, DiscoveryCmd, Global, NfsCmd, NfsNodesCmd, NodesCmd};
use crate::output;

pub fn main() -> i32 {
    // `disklessset __nsrun ...`: the private-namespace helper of exec/shell.
    if let Some(code) = ops::maybe_nsrun() {
        return code;
    }
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    if !matches!(cli.command, Some(Command::Serve { .. })) {
        quiet_on_closed_pipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("disklessset: error: {}", one_line(&e));
            1
        }
    }
}

/// `disklessset list | head`: die quietly on a closed pipe like other Unix tools. Not for
/// `serve`: a server must survive clients that go away mid-download (it keeps SIGPIPE
/// ignored, as Rust starts it, and handles EPIPE per connection).
fn quiet_on_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any
    // thread exists; no handler function is involved.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        tracing::debug!("cannot restore SIGPIPE: {e}");
    }
}

/// The error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    ops::error_line(e.as_ref())
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
    if !std::io::stdin().is_terminal() {
        return Err(ops::Error::NeedsConfirmation(what.to_string()).into());
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(format!("{what}?"))
        .default(false)
        .interact()
        .context("reading the confirmation")?;
    if ok {
        Ok(())
    } else {
        Err(ops::Error::Cancelled.into())
    }
}

fn run(cli: Cli) -> Result<i32> {
    let g = cli.global.clone();
    // Generated from the clap definitions; need no store or config.
    match &cli.command {
        Some(Command::Completions { shell }) => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "disklessset", &mut std::io::stdout());
            return Ok(0);
        }
        Some(Command::Man) => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(0);
        }
        _ => {}
    }
    let cfg = load_config(&g)?;
    let Some(command) = cli.command else {
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
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
    ops::init_logging(&cfg, verbosity(&g), Some(std::io::stderr));
    let runner = Runner::new(g.dry_run);
    // Progress lines go to a terminal only; scripts get the log file and one result line.
    let progress = if g.json || g.dry_run || !std::io::stderr().is_terminal() {
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
    if let Some(req) = command.request(g)? {
        if let Some(q) = req.confirmation(ctx)? {
            confirm(g, &q)?;
        }
        let mut c = ctx.clone();
        if matches!(req, ops::Request::Ansible { .. }) && !g.json && std::io::stderr().is_terminal()
        {
            // The playbook's output on a terminal's stderr as it runs (the log file has
            // all of it; scripts keep the one-line error).
            c.runner = ctx.runner.tee(Arc::new(|l: &str| eprintln!("{l}")));
        }
        let out = ops::run(&c, &req)?;
        output::outcome(&out, g.json, g.dry_run)?;
        if let Some(f) = &out.failure {
            eprintln!("disklessset: error: {f}");
            return Ok(1);
        }
        return Ok(0);
    }
    match command {
        Command::List => {
            output::images(&ops::list(ctx)?, g.json)?;
            if !g.json {
                for n in ops::replica_notes(&ctx.cfg) {
                    println!("{n}");
                }
            }
        }
        Command::Replicate { names, .. } => {
            let st = ops::replicate_status(ctx, &names)?;
            output::replica_status(&st, g.json)?;
            if st.iter().any(|r| !r.up_to_date) {
                return Ok(1);
            }
        }
        Command::Show { name } => output::image(&ops::show(ctx, &name)?, g.json)?,
        Command::Diff { a, b } => {
            let rep = ops::diff(ctx, &a, &b)?;
            output::diff(&rep, g.json)?;
            return Ok(if rep.identical { 0 } else { 1 });
        }
        Command::Modules => output::modules(&ops::module_infos(), g.json)?,
        Command::Kernels => output::kernels(&ops::kernels(ctx)?, g.json)?,
        Command::Nfs(NfsCmd::Nodes(NfsNodesCmd::List { golden, nodeset })) => output::nfs_nodes(
            &ops::nfs_nodes_list(ctx, &golden, nodeset.as_deref())?,
            g.json,
        )?,
        Command::Nodes(NodesCmd::List { nodeset }) => {
            output::node_rows(&ops::nodes::list(ctx, nodeset.as_deref())?, g.json)?
        }
        Command::Nodes(NodesCmd::Render { node, name }) => {
            output::rendering(&ops::nodes::render(ctx, &node, &name)?, g.json)?
        }
        Command::Nodes(NodesCmd::Show { node }) => {
            output::node_detail(&ops::nodes::show(ctx, &node)?, g.json)?
        }
        Command::Discovery(DiscoveryCmd::List) => {
            output::discovery(&ops::query::discovery_state(&ctx.cfg)?, g.json)?
        }
        Command::Power(a) => {
            let rep = ops::power_status(ctx, &a.nodeset, &a.bmc.options())?;
            return output::power_report(&rep, g.json);
        }
        Command::Bootdev(a) => {
            let rep = ops::bootdev_status(ctx, &a.nodeset, &a.bmc.options())?;
            return output::power_report(&rep, g.json);
        }
        Command::Exec { name, cmd } => return Ok(ops::exec(ctx, &name, &cmd)?.code),
        Command::Shell { name } => {
            let out = ops::shell(ctx, &name)?;
            if out.throwaway {
                eprintln!("disklessset: {name} was not mounted: the shell ran on a throwaway overlay, its changes are discarded");
            }
            return Ok(out.code);
        }
        Command::Serve {
            listen,
            max_connections,
        } => {
            let addr = listen.unwrap_or_else(|| ctx.cfg.listen.clone());
            let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
                anyhow::anyhow!("--listen {addr:?}: use ADDRESS:PORT, e.g. 0.0.0.0:8080")
            })?;
            let max = max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let server = ops::serve_bind(&ctx.cfg, addr, max)?;
            println!(
                "serving {} on http://{} (DHCP bootfile: http://{}/boot.ipxe); Ctrl-C stops",
                ctx.cfg.web_root.display(),
                server.local_addr(),
                server.local_addr()
            );
            let shutdown = Arc::new(AtomicBool::new(false));
            for sig in [
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGHUP,
            ] {
                signal_hook::flag::register(sig, shutdown.clone())
                    .context("installing the signal handlers")?;
            }
            ops::serve_run(server, shutdown)?;
        }
        other => anyhow::bail!("internal: {other:?} has no handler"),
    }
    Ok(0)
}
