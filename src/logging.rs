//! Logging with tracing: always to `<log_dir>/disklessset.log` when the store exists,
//! also to stderr with `-i`/`-d`, and never to the terminal while the full-screen UI runs
//! (the TUI passes its own writer instead of stderr).
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::Config;

/// Verbosity from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    #[default]
    Quiet,
    Info,
    Debug,
}

/// Installs the global subscriber. `terminal` receives log lines when given (stderr for
/// the CLI with -i/-d, a channel for the TUI). Returns the log file path if one is open.
pub fn init<W>(
    cfg: &Config,
    verbosity: Verbosity,
    terminal: Option<W>,
) -> Option<std::path::PathBuf>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let file_level = match verbosity {
        Verbosity::Debug => LevelFilter::DEBUG,
        _ => LevelFilter::INFO,
    };
    let term_level = match verbosity {
        Verbosity::Quiet => LevelFilter::WARN,
        Verbosity::Info => LevelFilter::INFO,
        Verbosity::Debug => LevelFilter::DEBUG,
    };
    let (file_layer, path) = match open_log(&cfg.log_dir) {
        Some((f, p)) => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(Mutex::new(f))
                    .with_filter(file_level),
            ),
            Some(p),
        ),
        None => (None, None),
    };
    // The TLS and HTTP libraries' own lines (a refused certificate, per request) stay in
    // the log file: on the terminal, the operation's one-line error says it.
    let term_filter = Targets::new()
        .with_default(term_level)
        .with_target("rustls", LevelFilter::OFF)
        .with_target("rustls_platform_verifier", LevelFilter::OFF)
        .with_target("ureq", LevelFilter::OFF)
        .with_target("ureq_proto", LevelFilter::OFF);
    let term_layer = terminal.map(|w| {
        tracing_subscriber::fmt::layer()
            .with_writer(w)
            .with_ansi(stderr_is_tty())
            .with_target(false)
            .without_time()
            .with_filter(term_filter)
    });
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(term_layer)
        .try_init();
    path
}

/// Opens the log file when the log dir exists or its parent does (never creates a store).
fn open_log(dir: &Path) -> Option<(std::fs::File, std::path::PathBuf)> {
    if !dir.is_dir() {
        let parent_ok = dir.parent().map(|p| p.is_dir()).unwrap_or(false);
        if !parent_ok || std::fs::create_dir_all(dir).is_err() {
            return None;
        }
    }
    let p = dir.join("disklessset.log");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .ok()
        .map(|f| (f, p))
}

fn stderr_is_tty() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}
