//! The full-screen menu (`disklessset` without a subcommand, on a terminal).
//!
//! One event channel is fed by the input thread, the signal thread and job worker
//! threads; the main thread alone owns the terminal and the state. Every action calls the
//! same core function as its CLI subcommand: nothing here decides anything about images.
//!
//! Files: `app` (state machine and key handling), `action` (what forms and popups ask
//! for), `perform` (an action into ops calls: the one place work starts), `menu`,
//! `images`, `modules`, `kernels`, `bootset`, `power` (BMC power and boot device),
//! `nodes` (the inventory, facts, discovery, host keys) with `nodeforms` (its forms and
//! those of shell/exec/ansible), `maint` (gc, rebuild, diff, replicate, exports,
//! recover), `form` (declarative forms and their recap)
//! with `forms` (the concrete forms), `popup` (confirmations), `job` (worker threads,
//! progress, live log), `logsink` (tracing to the log pane), `chrome` (title, help and
//! status bars).
mod action;
mod app;
mod bootset;
mod chrome;
mod form;
mod forms;
mod images;
mod job;
mod kernels;
mod logsink;
mod maint;
mod menu;
mod modules;
mod nodeforms;
mod nodes;
mod perform;
mod popup;
mod power;

#[cfg(test)]
mod keys;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self as ct, KeyEvent, KeyEventKind};
use ratatui::Terminal;

use disklessset::ops::{Config, Verbosity};

pub use app::App;

/// Front-end options the TUI shares with the CLI.
#[derive(Debug, Clone)]
pub struct TuiOptions {
    pub dry_run: bool,
    pub verbosity: Verbosity,
    /// Pause between demo creation steps (the CLI's hidden `--step-delay-ms`).
    pub demo_step_delay: Duration,
}

impl Default for TuiOptions {
    fn default() -> Self {
        TuiOptions {
            dry_run: false,
            verbosity: Verbosity::Quiet,
            demo_step_delay: Duration::from_millis(200),
        }
    }
}

/// Everything the main thread reacts to.
#[derive(Debug, Clone)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal changed size (the next draw adapts).
    Resize,
    /// Nothing happened for a while: redraw the elapsed time, refresh the status.
    Tick,
    Progress {
        job: u64,
        index: usize,
        total: usize,
        label: String,
    },
    Log {
        job: u64,
        line: String,
    },
    JobDone {
        job: u64,
        result: std::result::Result<String, String>,
        panicked: bool,
    },
    /// SIGTERM, SIGHUP, SIGINT, SIGQUIT: cancel any job, restore the terminal, exit.
    Signal(i32),
    /// The power status of a node set, read by a worker thread (`power::spawn_status`).
    PowerStatus {
        set: String,
        result: std::result::Result<disklessset::ops::PowerReport, String>,
    },
}

const TICK: Duration = Duration::from_millis(250);

/// Opens the full-screen app; returns the process exit code.
pub fn run(cfg: Config, opts: TuiOptions) -> Result<i32> {
    let (tx, rx) = mpsc::channel();
    logsink::init_logging(&cfg, opts.verbosity);
    let gate = Arc::new(InputGate::default());
    let signals = spawn_signal_thread(tx.clone(), gate.clone())?;
    // ratatui::try_init enters raw mode and the alternate screen, and installs a panic hook
    // that restores the terminal before the previous hook prints the panic.
    let mut terminal = ratatui::try_init().context("opening the terminal")?;
    let restore = RestoreGuard;
    spawn_input_thread(tx.clone(), gate.clone());
    let (fg_cfg, dry_run) = (cfg.clone(), opts.dry_run);
    let mut app = App::new(cfg, opts, tx);
    app.suspender = Box::new(move |fg| {
        suspended(&gate, dry_run, fg, |fg| {
            perform::run_foreground(&fg_cfg, dry_run, fg)
        })
    });
    let res = event_loop(&mut terminal, &mut app, &rx, |_| false);
    drop(restore);
    signals.close();
    if let Some(f) = app.fatal() {
        eprintln!("disklessset: {f}");
    }
    res
}

/// Restores the terminal however `run` ends (error, early return).
struct RestoreGuard;

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The event loop, shared by `run` and the tests: draw, wait for one event (or a tick),
/// handle it and whatever else is already queued, until the app exits or `until` holds.
pub(crate) fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    rx: &Receiver<Event>,
    mut until: impl FnMut(&App) -> bool,
) -> Result<i32> {
    loop {
        terminal
            .draw(|f| app.render(f))
            .map_err(|e| anyhow::anyhow!("drawing the screen: {e}"))?;
        if let Some(code) = app.exit_code() {
            return Ok(code);
        }
        if until(app) {
            return Ok(0);
        }
        let ev = match rx.recv_timeout(TICK) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => Event::Tick,
            Err(RecvTimeoutError::Disconnected) => return Ok(0),
        };
        app.handle(ev);
        // Handle what queued up meanwhile before drawing again (log floods, typed-ahead keys).
        for _ in 0..256 {
            if app.exit_code().is_some() || app.foreground.is_some() {
                break;
            }
            match rx.try_recv() {
                Ok(ev) => app.handle(ev),
                Err(_) => break,
            }
        }
        if let Some(fg) = app.take_foreground() {
            app.run_foreground(fg);
            // The command drew on the real screen: repaint everything, not a diff.
            terminal
                .clear()
                .map_err(|e| anyhow::anyhow!("clearing the screen: {e}"))?;
        }
    }
}

/// Stops the input thread reading the terminal while a foreground command owns it
/// (gitui's external editor): the thread polls with a short timeout and checks `paused`
/// between polls; `pause` returns once it is idle, so no keystroke meant for the command
/// is read by the UI.
#[derive(Default)]
pub struct InputGate {
    paused: AtomicBool,
    idle: AtomicBool,
}

const INPUT_POLL: Duration = Duration::from_millis(50);

impl InputGate {
    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.idle.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn resume(&self) {
        self.idle.store(false, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
    }

    fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
}

/// Suspends the UI around `work`: input thread paused, raw mode off, alternate screen
/// left, cursor shown; afterwards (exec, ansible and any dry run wait for Enter first,
/// so their output or plan can be read) raw mode and the alternate screen are back and input resumes.
/// The caller repaints.
fn suspended(
    gate: &InputGate,
    dry_run: bool,
    fg: &action::Foreground,
    work: impl FnOnce(&action::Foreground) -> std::result::Result<String, String>,
) -> std::result::Result<String, String> {
    use ratatui::crossterm::{cursor, execute, terminal};
    gate.pause();
    let mut out = std::io::stdout();
    let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
    let (what, wait) = match fg {
        action::Foreground::Shell { name } => (format!("a shell in image {name}"), false),
        action::Foreground::Exec { name, cmd } => {
            (format!("`{}` in image {name}", cmd.join(" ")), true)
        }
        action::Foreground::Ansible { name, playbook, .. } => (
            format!("playbook {} in image {name}", playbook.display()),
            true,
        ),
    };
    println!("disklessset: running {what}; the menu comes back when it ends.");
    let r = work(fg);
    if wait || dry_run {
        match &r {
            Ok(m) => println!("disklessset: {m}"),
            Err(e) => println!("disklessset: {e}"),
        }
        println!("Press Enter to return to disklessset.");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    let _ = terminal::enable_raw_mode();
    let _ = execute!(out, terminal::EnterAlternateScreen, cursor::Hide);
    gate.resume();
    r
}

fn spawn_input_thread(tx: Sender<Event>, gate: Arc<InputGate>) {
    std::thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || loop {
            if gate.paused() {
                gate.idle.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match ct::poll(INPUT_POLL) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => break,
            }
            let ev = match ct::read() {
                Ok(ct::Event::Key(k)) if k.kind != KeyEventKind::Release => Event::Key(k),
                Ok(ct::Event::Resize(..)) => Event::Resize,
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.send(ev).is_err() {
                break;
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::warn!("cannot start the input thread: {e}"));
}

fn spawn_signal_thread(
    tx: Sender<Event>,
    gate: Arc<InputGate>,
) -> Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT, SIGQUIT])
        .context("installing the signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("tui-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                // Ctrl-C / Ctrl-\ typed in a foreground command are the command's.
                if gate.paused() && (sig == SIGINT || sig == SIGQUIT) {
                    continue;
                }
                if tx.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(handle)
}
