//! Turns a confirmed action into ops calls (gitui's `process_confirmed_action`): a core
//! request becomes one job; the few actions that first ask get their popup. The one
//! place the TUI starts work.
use disklessset::ops::{self, Request};

use super::action::Action;
use super::app::{App, Screen};
use super::job::{After, Job};
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
            Action::Run(mut req) => {
                if let Request::DemoCreate(o) = &mut req {
                    o.step_delay = self.opts.demo_step_delay;
                }
                self.start_job(req);
            }
        }
    }

    fn start_job(&mut self, req: Request) {
        let id = self.next_job;
        self.next_job += 1;
        let after = match req.image() {
            Some(name) => After::Images(name.to_string()),
            None => After::Back,
        };
        let job = Job::spawn(
            id,
            req.title(),
            after,
            &self.cfg,
            self.opts.dry_run,
            &self.tx,
            req,
        );
        self.stack.push(Screen::Job(job));
    }
}
