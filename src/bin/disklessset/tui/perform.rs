//! Turns a confirmed action into ops calls (gitui's `process_confirmed_action`): a core
//! request becomes one job; the few actions that first ask get their popup. The one
//! place the TUI starts work.
use std::sync::Arc;

use disklessset::ops::{self, Config, Ctx, Request, Runner};

use super::action::{Action, Foreground};
use super::app::{App, Screen};
use super::job::{After, Job, Work};
use super::popup::Confirm;

impl App {
    pub(super) fn perform(&mut self, a: Action) {
        match a {
            Action::Nothing => {}
            Action::Invalid(e) => self.error(e),
            Action::CancelJob => {
                if let Some(Screen::Job(j)) = self.stack.last_mut() {
                    if j.running() {
                        j.request_cancel();
                    }
                }
            }
            Action::AskNfsNodesRemove { image, set } => {
                let nodes = match ops::query::expand_nodes(&self.cfg, &set) {
                    Ok(n) => n,
                    Err(e) => return self.error(e.to_string()),
                };
                let root = ops::query::nfs_nodes_root(&self.cfg, &image);
                let mut lines = vec![format!(
                    "Nodes {} of image {image} and the state they keep:",
                    ops::query::fold_nodes(&nodes)
                )];
                lines.extend(
                    nodes
                        .iter()
                        .map(|n| format!("  {}", root.join(n).display())),
                );
                self.popup = Some(Confirm {
                    title: format!("Remove nodes of image {image}?"),
                    lines,
                    yes: "remove them".into(),
                    no: "keep them".into(),
                    action: Action::Run(Request::NfsNodesRemove {
                        golden: image,
                        nodeset: set,
                    }),
                });
            }
            Action::Ask { request, preview } => self.ask(request, preview),
            Action::Diff { a, b } => self.start_job(Work::Diff { a, b }),
            Action::Foreground(fg) => self.foreground = Some(fg),
            Action::Run(mut req) => {
                if let Request::DemoCreate(o) = &mut req {
                    o.step_delay = self.opts.demo_step_delay;
                }
                self.start_job(Work::Run(req));
            }
        }
    }

    /// The CLI's confirmation of a request (`Request::confirmation`, the same sentence
    /// its prompt shows) as a popup; with `preview`, the lines of the request's dry run
    /// first (`gc --dry-run`: what goes, what is kept and why). No confirmation: run.
    fn ask(&mut self, req: Request, preview: bool) {
        let ctx = self.ctx();
        let question = match req.confirmation(&ctx) {
            Ok(q) => q,
            Err(e) => return self.error(ops::error_line(&e)),
        };
        let Some(question) = question else {
            return self.perform(Action::Run(req));
        };
        let mut lines = Vec::new();
        if preview {
            let dry = Ctx::new(self.cfg.clone(), Runner::new(true));
            match ops::run(&dry, &req) {
                Ok(out) => {
                    lines.push("A dry run says:".to_string());
                    lines.extend(out.lines.iter().map(|l| format!("  {l}")));
                    lines.push(String::new());
                }
                Err(e) => return self.error(ops::error_line(&e)),
            }
        }
        lines.push(format!("This will {question}."));
        self.popup = Some(Confirm {
            title: format!("{}?", req.title()),
            lines,
            yes: "go ahead".into(),
            no: "cancel".into(),
            action: Action::Run(req),
        });
    }

    fn start_job(&mut self, work: Work) {
        let id = self.next_job;
        self.next_job += 1;
        let after = match work.image() {
            Some(name) => After::Images(name.to_string()),
            None => After::Back,
        };
        let job = Job::spawn(
            id,
            work.title(),
            after,
            &self.cfg,
            self.opts.dry_run,
            &self.tx,
            work,
        );
        self.stack.push(Screen::Job(job));
    }
}

/// Performs a foreground command with the terminal it was handed (the UI is suspended):
/// the CLI's `ops::shell`, `ops::exec`, `Request::Ansible` (its output printed as it
/// comes). The outcome is the line the status bar shows: the exit code, and whether the
/// changes were discarded (a throwaway overlay), wait in the mounted tree, or became a
/// new generation.
pub fn run_foreground(cfg: &Config, dry_run: bool, fg: &Foreground) -> Result<String, String> {
    let runner = Runner::new(dry_run);
    let err = |e: ops::Error| ops::error_line(&e);
    let what = |name: &str, code: i32, throwaway: bool, verb: &str| {
        let changes = if throwaway {
            format!("{name} was not mounted: it ran on a throwaway overlay, its changes are discarded (m mounts it to keep changes)")
        } else {
            format!("its changes are in the mounted tree of {name}: u (unmount) repacks them as a new generation")
        };
        let line = format!("{verb} in image {name} exited with code {code}; {changes}");
        if code == 0 || verb == "shell" {
            Ok(line)
        } else {
            Err(line)
        }
    };
    let out = match fg {
        Foreground::Shell { name } => {
            let ctx = Ctx::new(cfg.clone(), runner.clone());
            let o = ops::shell(&ctx, name).map_err(err)?;
            what(name, o.code, o.throwaway, "shell")
        }
        Foreground::Exec { name, cmd } => {
            let ctx = Ctx::new(cfg.clone(), runner.clone());
            let o = ops::exec(&ctx, name, cmd).map_err(err)?;
            what(name, o.code, o.throwaway, "command")
        }
        Foreground::Ansible {
            name,
            playbook,
            keep_on_failure,
            args,
        } => {
            let printing = runner
                .clone()
                .with_sink(Arc::new(|l: &str| println!("{l}")));
            let ctx = Ctx::new(cfg.clone(), printing);
            let req = Request::Ansible {
                name: name.clone(),
                playbook: playbook.clone(),
                keep_on_failure: *keep_on_failure,
                args: args.clone(),
            };
            ops::run(&ctx, &req).map(|o| o.sentence()).map_err(err)
        }
    };
    if dry_run {
        for step in runner.plan() {
            println!("plan: {step}");
        }
    }
    out
}
