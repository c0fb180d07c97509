//! Long operations: a worker thread runs one core request (`ops::run`, or the `diff`
//! query) with a `Ctx` whose progress and command output feed the event channel; the
//! screen shows a gauge, the elapsed time and the live log, where a report of several
//! lines (rebuild, gc, diff, secrets) lands when the job ends. Cancelling sets the
//! runner's cancel flag (after a confirmation).
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Wrap};
use ratatui::Frame;

use disklessset::ops::{self, Config, Ctx, Progress, ProgressEvent, Request, Runner};

use super::{logsink, Event};

const MAX_LOG: usize = 1000;
/// Past this many log lines the help mentions scrolling.
const SCROLL_HINT: usize = 12;

/// What a job performs: a core request exactly as the CLI's subcommand does
/// (`ops::run`), or `diff A B` (`ops::diff`, the CLI's query).
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    Run(Request),
    Diff { a: String, b: String },
}

/// What a finished job says: the sentence of the status line, the report lines for the
/// output pane (a report of one line is the sentence alone), and the failure.
struct Done {
    sentence: String,
    lines: Vec<String>,
    failure: Option<String>,
}

impl Work {
    pub fn title(&self) -> String {
        match self {
            Work::Run(r) => r.title(),
            Work::Diff { a, b } => format!("Compare {a} with {b}"),
        }
    }

    /// The image to show afterwards (`Request::image`).
    pub fn image(&self) -> Option<&str> {
        match self {
            Work::Run(r) => r.image(),
            Work::Diff { .. } => None,
        }
    }

    fn perform(&self, ctx: &Ctx) -> ops::Result<Done> {
        let (sentence, lines, failure) = match self {
            Work::Run(r) => {
                let out = ops::run(ctx, r)?;
                (out.sentence(), out.lines, out.failure)
            }
            Work::Diff { a, b } => {
                let lines = ops::diff(ctx, a, b)?.lines();
                let first = lines.first().cloned().unwrap_or_default();
                (first, lines, None)
            }
        };
        Ok(Done {
            sentence,
            lines: if lines.len() > 1 { lines } else { Vec::new() },
            failure,
        })
    }
}

/// Where to go once a successful job is acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    /// The images view with this image selected.
    Images(String),
    /// Back to the screen that started the job.
    Back,
}

pub struct Job {
    pub id: u64,
    pub title: String,
    pub started: Instant,
    pub finished: Option<Duration>,
    pub step: Option<(usize, usize, String)>,
    pub log: Vec<String>,
    pub cancel: Arc<AtomicBool>,
    pub cancel_requested: bool,
    pub outcome: Option<Result<String, String>>,
    pub after: After,
    /// Log lines scrolled away from the bottom (↑↓ PgUp PgDn).
    pub scroll: usize,
}

impl Job {
    /// Starts `work` on a worker thread.
    pub fn spawn(
        id: u64,
        title: String,
        after: After,
        cfg: &Config,
        dry_run: bool,
        tx: &Sender<Event>,
        work: Work,
    ) -> Job {
        let out_tx = tx.clone();
        let runner = Runner::new(dry_run).with_sink(Arc::new(move |line: &str| {
            let _ = out_tx.send(Event::Log {
                job: id,
                line: format!("  | {line}"),
            });
        }));
        let cancel = runner.cancel_flag();
        let prog_tx = tx.clone();
        let progress = Progress::new(move |ev: &ProgressEvent| match ev {
            ProgressEvent::Step {
                index,
                total,
                label,
            } => {
                let _ = prog_tx.send(Event::Progress {
                    job: id,
                    index: *index,
                    total: *total,
                    label: label.clone(),
                });
            }
        });
        let ctx = Ctx::new(cfg.clone(), runner.clone()).with_progress(progress);
        let done_tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tui-job-{id}"))
            .spawn(move || {
                logsink::attach(done_tx.clone(), id);
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| work.perform(&ctx)));
                if let Ok(Ok(done)) = &r {
                    for line in &done.lines {
                        let _ = done_tx.send(Event::Log {
                            job: id,
                            line: line.clone(),
                        });
                    }
                }
                let (result, panicked) = match r {
                    Ok(Ok(out)) => match &out.failure {
                        // Some nodes failed: their lines are in the sentence.
                        Some(f) => (Err(format!("{}; {f}", out.sentence)), false),
                        None => (Ok(out.sentence), false),
                    },
                    Ok(Err(e)) => (Err(ops::error_line(&e)), false),
                    Err(_) => (Err("internal error (see the log file)".to_string()), true),
                };
                if runner.dry_run() {
                    for step in runner.plan() {
                        let _ = done_tx.send(Event::Log {
                            job: id,
                            line: format!("plan: {step}"),
                        });
                    }
                }
                let _ = done_tx.send(Event::JobDone {
                    job: id,
                    result,
                    panicked,
                });
            });
        let mut job = Job {
            id,
            title,
            started: Instant::now(),
            finished: None,
            step: None,
            log: Vec::new(),
            cancel,
            cancel_requested: false,
            outcome: None,
            after,
            scroll: 0,
        };
        if let Err(e) = spawned {
            job.finish(Err(format!("cannot start a worker thread: {e}")));
        }
        job
    }

    pub fn running(&self) -> bool {
        self.outcome.is_none()
    }

    pub fn push_log(&mut self, line: String) {
        if self.log.len() == MAX_LOG {
            self.log.remove(0);
        }
        self.log.push(line);
    }

    pub fn request_cancel(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.cancel_requested = true;
        self.push_log("cancel requested: stopping at the next step".into());
    }

    pub fn finish(&mut self, result: Result<String, String>) {
        self.finished = Some(self.started.elapsed());
        self.outcome = Some(result);
    }

    fn elapsed(&self) -> Duration {
        self.finished.unwrap_or_else(|| self.started.elapsed())
    }

    pub fn help(&self) -> &'static str {
        if self.running() {
            "Esc / Ctrl-C: cancel the job (asks first)"
        } else if self.log.len() > SCROLL_HINT {
            "Enter / Esc: continue · ↑↓ PgUp PgDn: scroll the log"
        } else {
            "Enter / Esc: continue"
        }
    }

    /// Scrolls the log: positive is up (older lines).
    pub fn scroll_by(&mut self, lines: isize) {
        let max = self.log.len().saturating_sub(1);
        self.scroll = self.scroll.saturating_add_signed(lines).min(max);
    }

    pub fn render(&self, f: &mut Frame, area: Rect) {
        let [head, gauge, log] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length(1),
            Constraint::Min(3),
        ])
        .areas(area);
        let secs = self.elapsed().as_secs();
        let elapsed = format!("elapsed {}:{:02}", secs / 60, secs % 60);
        let (status, style) = match &self.outcome {
            None if self.cancel_requested => (
                "cancelling…".to_string(),
                Style::default().fg(Color::Yellow),
            ),
            None => ("running".to_string(), Style::default().fg(Color::Cyan)),
            Some(Ok(m)) => (format!("done: {m}"), Style::default().fg(Color::Green)),
            Some(Err(e)) => (format!("failed: {e}"), Style::default().fg(Color::Red)),
        };
        let step = match &self.step {
            Some((i, n, l)) => format!("step {i}/{n}: {l}"),
            None => match &self.outcome {
                None => "starting…".into(),
                Some(Ok(_)) => "done".into(),
                Some(Err(_)) => "failed".into(),
            },
        };
        f.render_widget(
            Paragraph::new(vec![
                Line::from(vec![
                    Span::styled(
                        self.title.clone(),
                        Style::default().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(format!("  ({elapsed})")),
                ]),
                Line::from(Span::styled(status, style)),
            ])
            .wrap(Wrap { trim: true }),
            head,
        );
        let ratio = match (&self.outcome, &self.step) {
            (Some(Ok(_)), _) => 1.0,
            (_, Some((i, n, _))) if *n > 0 => (*i as f64 / *n as f64).clamp(0.0, 1.0),
            _ => 0.0,
        };
        f.render_widget(
            Gauge::default()
                .gauge_style(Style::default().fg(Color::Cyan))
                .ratio(ratio)
                .label(step),
            gauge,
        );
        let block = Block::default().borders(Borders::TOP).title(" log ");
        let inner_h = log.height.saturating_sub(1) as usize;
        let end = self
            .log
            .len()
            .saturating_sub(self.scroll)
            .max(inner_h.min(self.log.len()));
        let start = end.saturating_sub(inner_h);
        let lines: Vec<Line> = self.log[start..end]
            .iter()
            .map(|l| Line::raw(l.clone()))
            .collect();
        f.render_widget(Paragraph::new(lines).block(block), log);
    }
}
