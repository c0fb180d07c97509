//! What every operation needs: the configuration, the command runner, and where its
//! progress goes. The bottom of the operation layers: everything from `store` up takes a
//! `&Ctx`; nothing here knows an operation.
use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::sys::runner::Runner;

/// A progress event of a long operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ProgressEvent {
    Step {
        index: usize,
        total: usize,
        label: String,
    },
}

type ProgressFn = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

/// Where progress goes (a TUI gauge, a CLI line, nowhere).
#[derive(Clone, Default)]
pub struct Progress(Option<ProgressFn>);

impl Progress {
    pub fn new(f: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        Progress(Some(Arc::new(f)))
    }

    pub fn step(&self, index: usize, total: usize, label: &str) {
        tracing::info!("[{index}/{total}] {label}");
        if let Some(f) = &self.0 {
            f(&ProgressEvent::Step {
                index,
                total,
                label: label.to_string(),
            });
        }
    }
}

/// What every operation needs: the configuration, the runner, a progress sink.
#[derive(Clone)]
pub struct Ctx {
    pub cfg: Config,
    pub runner: Runner,
    pub progress: Progress,
}

impl Ctx {
    pub fn new(cfg: Config, runner: Runner) -> Self {
        Ctx {
            cfg,
            runner,
            progress: Progress::default(),
        }
    }

    pub fn with_progress(mut self, p: Progress) -> Self {
        self.progress = p;
        self
    }
}
