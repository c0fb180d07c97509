//! The state machine: a stack of screens (the main menu at the bottom), at most one
//! confirm popup, the store status. `handle` takes every event; `render` draws.
//! Submitted forms and confirmed popups give an `Action`; `perform` turns it into a job.
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;

use disklessset::ops::{
    self, BootStatusLine as StatusLine, Config, Ctx, ImageClass, ImageInfo, KernelInfo, Runner,
};

use super::action::{Action, Foreground};
use super::bootset;
use super::chrome::{self, MsgKind, StoreStatus};
use super::form::{FormOutcome, FormState, Stage};
use super::forms;
use super::images::{self, ImagesState, Purpose, Request as Pick};
use super::job::{After, Job};
use super::kernels;
use super::maint::{self, MaintState, Reply as MaintReply};
use super::menu::{Entry, MenuState, NOT_AVAILABLE};
use super::modules::{self, ModuleEntry, Picked, Picker};
use super::nodeforms;
use super::nodes::{NodesView, Reply as NodesReply};
use super::popup::{Answer, Confirm};
use super::power::{self, PowerView, Reply as PowerReply};

use super::{Event, TuiOptions};

pub enum Screen {
    Menu(MenuState),
    Modules(Picker, Vec<ModuleEntry>),
    ModuleActions {
        module: String,
        picker: Picker,
        actions: Vec<&'static str>,
    },
    Images(ImagesState),
    Details(Box<Result<ImageInfo, String>>),
    Form(FormState),
    Kernels(Result<Vec<KernelInfo>, String>),
    Bootset(Result<Vec<StatusLine>, String>),
    Power(PowerView),
    Nodes(Box<NodesView>),
    Maint(MaintState),
    Job(Job),
}

/// Runs a foreground command with the real terminal (`run` sets the one that suspends
/// the UI; tests keep the default, which refuses).
pub type Suspender = Box<dyn FnMut(&Foreground) -> Result<String, String>>;

/// How long a signal waits for a running job to stop before the UI exits anyway.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);
const REFRESH_EVERY: Duration = Duration::from_secs(2);

pub struct App {
    pub(super) cfg: Config,
    pub(super) opts: TuiOptions,
    pub(super) tx: Sender<Event>,
    pub(super) stack: Vec<Screen>,
    pub(super) popup: Option<Confirm>,
    status: StoreStatus,
    message: Option<(String, MsgKind)>,
    exit: Option<i32>,
    fatal: Option<String>,
    pub(super) next_job: u64,
    terminating: Option<(i32, Instant)>,
    last_refresh: Instant,
    /// Key events handled so far (tests wait on it).
    pub keys_seen: usize,
    /// A foreground command to run once the current events are handled.
    pub(super) foreground: Option<Foreground>,
    pub(super) suspender: Suspender,
}

impl App {
    pub fn new(cfg: Config, opts: TuiOptions, tx: Sender<Event>) -> App {
        let status = chrome::read_status(&cfg);
        App {
            cfg,
            opts,
            tx,
            stack: vec![Screen::Menu(MenuState::default())],
            popup: None,
            status,
            message: None,
            exit: None,
            fatal: None,
            next_job: 1,
            terminating: None,
            last_refresh: Instant::now(),
            keys_seen: 0,
            foreground: None,
            suspender: Box::new(|_| Err("no terminal to hand over".into())),
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.exit
    }

    /// An error to print once the terminal is restored (a job panicked).
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    pub fn job(&self) -> Option<&Job> {
        self.stack.iter().rev().find_map(|s| match s {
            Screen::Job(j) => Some(j),
            _ => None,
        })
    }

    fn job_mut(&mut self, id: u64) -> Option<&mut Job> {
        self.stack.iter_mut().rev().find_map(|s| match s {
            Screen::Job(j) if j.id == id => Some(j),
            _ => None,
        })
    }

    /// A power status read is under way (tests wait on it).
    #[cfg(test)]
    pub fn power_loading(&self) -> bool {
        self.stack
            .iter()
            .any(|s| matches!(s, Screen::Power(v) if v.loading))
    }

    pub fn job_running(&self) -> bool {
        self.job().map(Job::running).unwrap_or(false)
    }

    pub(super) fn ctx(&self) -> Ctx {
        Ctx::new(self.cfg.clone(), Runner::new(self.opts.dry_run))
    }

    pub(super) fn refresh(&mut self) {
        self.status = chrome::read_status(&self.cfg);
        self.last_refresh = Instant::now();
    }

    fn push(&mut self, s: Screen) {
        self.stack.push(s);
        self.refresh();
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
        self.refresh();
    }

    pub(super) fn info(&mut self, m: impl Into<String>) {
        self.message = Some((m.into(), MsgKind::Info));
    }

    /// The store's images of one NFS class (staging: golden create's sources; golden:
    /// the images that have nodes).
    fn nfs_images(&self, class: ImageClass) -> ops::Result<Vec<String>> {
        ops::query::images_of_class(&self.cfg, class)
    }

    pub(super) fn error(&mut self, m: impl Into<String>) {
        self.message = Some((m.into(), MsgKind::Error));
    }

    // ------------------------------------------------------------------ events

    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::Key(k) if k.kind != KeyEventKind::Release => {
                self.keys_seen += 1;
                self.on_key(k);
            }
            Event::Key(_) | Event::Resize => {}
            Event::Tick => {
                if let Some((sig, since)) = self.terminating {
                    if since.elapsed() > TERMINATE_GRACE {
                        self.exit = Some(128 + sig);
                    }
                }
                if !self.job_running() && self.last_refresh.elapsed() > REFRESH_EVERY {
                    self.refresh();
                }
                // The discovery list is live: re-read while the Nodes screen is on top.
                let ctx = self.ctx();
                if let Some(Screen::Nodes(v)) = self.stack.last_mut() {
                    if v.due() && v.detail.is_none() && self.popup.is_none() {
                        v.reload(&ctx);
                    }
                }
            }
            Event::Progress {
                job,
                index,
                total,
                label,
            } => {
                if let Some(j) = self.job_mut(job) {
                    j.step = Some((index, total, label));
                }
            }
            Event::Log { job, line } => {
                if let Some(j) = self.job_mut(job) {
                    j.push_log(line);
                }
            }
            Event::JobDone {
                job,
                result,
                panicked,
            } => {
                if let Some(j) = self.job_mut(job) {
                    j.finish(result.clone());
                }
                self.refresh();
                if panicked {
                    // ratatui's panic hook has restored the terminal already: leave.
                    self.fatal = Some(format!(
                        "a job failed with an internal error: {}",
                        result.err().unwrap_or_default()
                    ));
                    self.exit = Some(70);
                } else if let Some((sig, _)) = self.terminating {
                    self.exit = Some(128 + sig);
                }
            }
            Event::PowerStatus { set, result } => {
                for s in self.stack.iter_mut() {
                    if let Screen::Power(v) = s {
                        v.apply(&set, &result);
                    }
                }
            }
            Event::Signal(sig) => {
                let running = self.job_running();
                if let Some(j) = self.stack.iter_mut().rev().find_map(|s| match s {
                    Screen::Job(j) if j.running() => Some(j),
                    _ => None,
                }) {
                    j.request_cancel();
                }
                if running {
                    self.popup = None;
                    self.terminating = Some((sig, Instant::now()));
                    self.error(format!(
                        "signal {sig}: cancelling the running job, then exiting"
                    ));
                } else {
                    self.exit = Some(128 + sig);
                }
            }
        }
    }

    fn on_key(&mut self, k: KeyEvent) {
        self.message = None;
        if self.terminating.is_some() {
            return;
        }
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            if self.popup.take().is_some() {
                return;
            }
            if self.job_running() {
                self.ask_cancel();
            } else if self.stack.len() > 1 {
                self.stack.truncate(1);
                self.refresh();
            } else {
                self.exit = Some(0);
            }
            return;
        }
        if let Some(p) = &mut self.popup {
            match p.on_key(k) {
                Answer::Yes(a) => {
                    self.popup = None;
                    self.perform(a);
                }
                Answer::No => self.popup = None,
                Answer::Pending => {}
            }
            return;
        }
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        match top {
            Screen::Menu(m) => {
                if let Some(item) = m.on_key(k) {
                    self.open(item.entry, item.key, item.label, item.missing);
                }
            }
            Screen::Modules(p, entries) => match p.on_key(k) {
                Picked::Back => self.pop(),
                Picked::Open(i) => {
                    if let Some(e) = entries.get(i) {
                        if e.available {
                            let picker = Picker {
                                title: format!("{} module", e.name),
                                items: e
                                    .actions
                                    .iter()
                                    .map(|a| {
                                        (action_label(&e.name, a), action_available(&e.name, a))
                                    })
                                    .collect(),
                                selected: 0,
                            };
                            let s = Screen::ModuleActions {
                                module: e.name.clone(),
                                picker,
                                actions: e.actions.clone(),
                            };
                            self.push(s);
                        } else {
                            let m = format!("module {}: {NOT_AVAILABLE}", e.name);
                            self.error(m);
                        }
                    }
                }
                Picked::None => {}
            },
            Screen::ModuleActions {
                module,
                picker,
                actions,
            } => match picker.on_key(k) {
                Picked::Back => self.pop(),
                Picked::Open(i) => {
                    let module = module.clone();
                    match (module.as_str(), actions.get(i).copied()) {
                        ("demo", Some("create")) => {
                            self.push(Screen::Form(FormState::new(forms::demo_create())))
                        }
                        ("livenet", Some("create")) => {
                            self.push(Screen::Form(FormState::new(forms::livenet_create())))
                        }
                        ("nfs", Some("staging create")) => {
                            self.push(Screen::Form(FormState::new(forms::nfs_staging_create())))
                        }
                        ("nfs", Some("golden create")) => match self
                            .nfs_images(ImageClass::NfsStagingImage)
                        {
                            Ok(v) if v.is_empty() => self.error(
                                "no NFS staging image to copy: create one first (staging create)",
                            ),
                            Ok(v) => {
                                self.push(Screen::Form(FormState::new(forms::nfs_golden_create(v))))
                            }
                            Err(e) => self.error(e.to_string()),
                        },
                        ("nfs", Some(a @ ("nodes add" | "nodes remove"))) => {
                            match self.nfs_images(ImageClass::NfsGoldenImage) {
                                Ok(v) if v.is_empty() => self
                                    .error("no NFS golden image: create one first (golden create)"),
                                Ok(v) => {
                                    let inv = ops::query::inventory(&self.cfg).ok();
                                    let spec = if a == "nodes add" {
                                        forms::nfs_nodes_add(v, inv)
                                    } else {
                                        forms::nfs_nodes_remove(v, inv)
                                    };
                                    self.push(Screen::Form(FormState::new(spec)))
                                }
                                Err(e) => self.error(e.to_string()),
                            }
                        }
                        (_, Some(a)) if Purpose::for_module_action(a).is_some() => {
                            if let Some(p) = Purpose::for_module_action(a) {
                                self.push(Screen::Images(ImagesState::new(p, None)));
                            }
                        }
                        (m, a) => {
                            self.error(format!("{m} {}: {NOT_AVAILABLE}", a.unwrap_or("action")))
                        }
                    }
                }
                Picked::None => {}
            },
            Screen::Images(st) => {
                let req = st.on_key(k, &self.status);
                self.on_request(req);
            }
            Screen::Details(_) | Screen::Kernels(_) | Screen::Bootset(_) => {
                if matches!(k.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
                    self.pop();
                }
            }
            Screen::Power(v) => {
                let reply = v.on_key(k);
                let set = v.set.clone();
                self.on_power(reply, set);
            }
            Screen::Nodes(v) => {
                let reply = v.on_key(k);
                self.on_nodes(reply);
            }
            Screen::Maint(m) => {
                let reply = m.on_key(k);
                self.on_maint(reply);
            }
            Screen::Form(fs) => match fs.on_key(k) {
                FormOutcome::Back => self.pop(),
                FormOutcome::Submit(a) => self.perform(a),
                FormOutcome::None => {}
            },
            Screen::Job(j) => match k.code {
                KeyCode::Up => j.scroll_by(1),
                KeyCode::Down => j.scroll_by(-1),
                KeyCode::PageUp => j.scroll_by(10),
                KeyCode::PageDown => j.scroll_by(-10),
                KeyCode::Esc if j.running() => self.ask_cancel(),
                KeyCode::Esc | KeyCode::Enter if !j.running() => self.leave_job(),
                _ => {}
            },
        }
    }

    fn open(&mut self, entry: Entry, key: &str, label: &str, missing: Option<&'static str>) {
        if let Some(why) = missing {
            self.error(format!("{key} - {label}: {why}"));
            return;
        }
        match entry {
            Entry::Modules => {
                let entries = modules::entries();
                let picker = Picker {
                    title: "Select the module".into(),
                    items: entries
                        .iter()
                        .map(|e| (format!("{}: {}", e.name, e.description), e.available))
                        .collect(),
                    selected: 0,
                };
                self.push(Screen::Modules(picker, entries));
            }
            Entry::List => self.push(Screen::Images(ImagesState::new(Purpose::Browse, None))),
            Entry::Remove => self.push(Screen::Images(ImagesState::new(Purpose::Remove, None))),
            Entry::Clone => self.push(Screen::Images(ImagesState::new(Purpose::Clone, None))),
            Entry::Clear => self.push(Screen::Images(ImagesState::new(Purpose::Clear, None))),
            Entry::Kernel => self.push(Screen::Images(ImagesState::new(Purpose::Kernel, None))),
            Entry::Kernels => {
                let k = ops::kernels(&self.ctx()).map_err(|e| e.to_string());
                self.push(Screen::Kernels(k));
            }
            Entry::Exit => self.exit = Some(0),
            Entry::Initramfs => {
                self.push(Screen::Images(ImagesState::new(Purpose::Initramfs, None)))
            }
            Entry::Params => self.push(Screen::Form(FormState::new(forms::params_file()))),
            Entry::Bootset => {
                let s = ops::bootset_status(&self.ctx(), None).map_err(|e| e.to_string());
                self.push(Screen::Bootset(s));
            }
            Entry::Power => {
                let v = PowerView::new(&self.cfg);
                self.push(Screen::Power(v));
            }
            Entry::Nodes => {
                let v = NodesView::new(&self.ctx());
                self.push(Screen::Nodes(Box::new(v)));
            }
            Entry::Maintenance => self.push(Screen::Maint(MaintState::default())),
        }
    }

    /// A verb of the maintenance screen: its form, the image picker, or (when the CLI
    /// asks nothing either) its job at once.
    fn on_maint(&mut self, reply: MaintReply) {
        let replicas: Vec<String> = self.cfg.replicas.iter().map(|r| r.name.clone()).collect();
        match reply {
            MaintReply::None => {}
            MaintReply::Back => self.pop(),
            MaintReply::Open(e) => match e {
                _ if maint::immediate(e).is_some() => {
                    if let Some(request) = maint::immediate(e) {
                        self.perform(Action::Ask {
                            request,
                            preview: false,
                        });
                    }
                }
                maint::Entry::Gc => self.push(Screen::Form(FormState::new(forms::gc()))),
                maint::Entry::Rebuild => {
                    self.push(Screen::Images(ImagesState::new(Purpose::Rebuild, None)))
                }
                maint::Entry::Diff => {
                    self.push(Screen::Images(ImagesState::new(Purpose::Diff, None)))
                }
                maint::Entry::Replicate => {
                    self.push(Screen::Form(FormState::new(forms::replicate(&replicas))))
                }
                maint::Entry::ExportsFor if replicas.is_empty() => self.error(
                    "no replicas in the configuration (replicas:): nothing to write exports for",
                ),
                maint::Entry::ExportsFor => self.push(Screen::Form(FormState::new(
                    forms::nfs_exports_for(replicas),
                ))),
                maint::Entry::Exports | maint::Entry::Recover => {}
            },
        }
    }

    /// A key of the Nodes screen: the detail popup, a form, a confirmation, back.
    fn on_nodes(&mut self, reply: NodesReply) {
        let inv = || ops::query::inventory(&self.cfg).ok();
        match reply {
            NodesReply::None => {}
            NodesReply::Back => self.pop(),
            NodesReply::Error(e) => self.error(e),
            NodesReply::Detail(n) => {
                let d = ops::nodes::show(&self.ctx(), &n).map_err(|e| ops::error_line(&e));
                if let Some(Screen::Nodes(v)) = self.stack.last_mut() {
                    v.detail = Some(Box::new(d));
                }
            }
            NodesReply::Add => self.push(Screen::Form(FormState::new(nodeforms::nodes_add()))),
            NodesReply::Set(n) => {
                let spec = nodeforms::nodes_set(&n, inv());
                self.push(Screen::Form(FormState::new(spec)));
            }
            NodesReply::HostKeys(n) => {
                let spec = nodeforms::host_keys(&n, inv());
                self.push(Screen::Form(FormState::new(spec)));
            }
            NodesReply::Import => {
                self.push(Screen::Form(FormState::new(nodeforms::nodes_import())))
            }
            NodesReply::Bootset(n) => {
                let images = self.status.images.iter().map(|i| i.name.clone()).collect();
                let spec = nodeforms::bootset(&n, images, inv());
                self.push(Screen::Form(FormState::new(spec)));
            }
            NodesReply::Remove(n) => {
                let req = ops::Request::NodesRemove { nodeset: n.clone() };
                let what = match req.confirmation(&self.ctx()) {
                    Ok(q) => q.unwrap_or_default(),
                    Err(e) => return self.error(ops::error_line(&e)),
                };
                self.popup = Some(Confirm {
                    title: format!("Remove node {n}?"),
                    lines: vec![
                        format!("This will {what}."),
                        "Its hardware facts go with it; its boot assignment stays until `bootset`."
                            .into(),
                    ],
                    yes: "remove it".into(),
                    no: "keep it".into(),
                    action: Action::Run(req),
                });
            }
            NodesReply::Accept(mac) => {
                let pending = match self.stack.last() {
                    Some(Screen::Nodes(v)) => v.pending(),
                    _ => Vec::new(),
                };
                let spec = nodeforms::discovery_accept(pending, &mac);
                self.push(Screen::Form(FormState::new(spec)));
            }
            NodesReply::ToggleDiscovery(true) => {
                self.popup = Some(Confirm {
                    title: "Stop discovery?".into(),
                    lines: vec![
                        "Unknown machines asking for a boot script get none again; pending ones stay listed for accept.".into(),
                    ],
                    yes: "stop it".into(),
                    no: "leave it on".into(),
                    action: Action::Run(ops::Request::DiscoveryStop),
                });
            }
            NodesReply::ToggleDiscovery(false) => {
                self.push(Screen::Form(FormState::new(nodeforms::discovery_start())))
            }
        }
    }

    /// The foreground command asked for, if any (the event loop runs it).
    pub(super) fn take_foreground(&mut self) -> Option<Foreground> {
        self.foreground.take()
    }

    /// Runs the foreground command through the suspender and shows its outcome.
    pub(super) fn run_foreground(&mut self, fg: Foreground) {
        let r = (self.suspender)(&fg);
        // Back to the images view with the image selected, whatever screen asked.
        while matches!(self.stack.last(), Some(Screen::Form(_))) && self.stack.len() > 1 {
            self.stack.pop();
        }
        self.refresh();
        match r {
            Ok(m) => self.info(m),
            Err(e) => self.error(e),
        }
        if let Some(Screen::Images(st)) = self.stack.last_mut() {
            st.selected = Some(fg.image().to_string());
        }
    }

    /// A key of the power view: a status read, a confirm popup, back.
    fn on_power(&mut self, reply: PowerReply, set: String) {
        match reply {
            PowerReply::None => {}
            PowerReply::Back => self.pop(),
            PowerReply::Error(e) => self.error(e),
            PowerReply::Status => power::spawn_status(&self.cfg, self.opts.dry_run, set, &self.tx),
            PowerReply::Reboot => {
                let images = self.status.images.iter().map(|i| i.name.clone()).collect();
                let inv = ops::query::inventory(&self.cfg).ok();
                let spec = forms::bootset_reboot(&set, images, inv);
                self.push(Screen::Form(FormState::new(spec)));
            }
            PowerReply::Ask(choice) => match power::confirm(&self.cfg, choice, &set) {
                Ok(c) => self.popup = Some(c),
                Err(e) => self.error(e),
            },
        }
    }

    fn on_request(&mut self, req: Pick) {
        match req {
            Pick::None => {}
            Pick::Back => self.pop(),
            Pick::Details(n) => {
                let info = ops::show(&self.ctx(), &n).map_err(|e| e.to_string());
                self.push(Screen::Details(Box::new(info)));
            }
            Pick::Act(p, n) => self.act(p, n),
        }
    }

    /// An action on one image: a confirmation, a form, or straight to a job.
    fn act(&mut self, p: Purpose, n: String) {
        match p {
            Purpose::Browse => {}
            Purpose::Clone => self.push(Screen::Form(FormState::new(forms::clone(&n)))),
            Purpose::Resize => self.push(Screen::Form(FormState::new(forms::resize(&n)))),
            Purpose::Mount => self.perform(Action::Run(ops::Request::LivenetMount { name: n })),
            Purpose::Initramfs => self.perform(Action::Run(ops::Request::Initramfs {
                name: n,
                flavour: None,
            })),
            Purpose::Unmount => self.perform(Action::Run(ops::Request::LivenetUnmount {
                name: n,
                discard: false,
            })),
            Purpose::Shell => self.perform(Action::Foreground(Foreground::Shell { name: n })),
            Purpose::Exec => self.push(Screen::Form(FormState::new(nodeforms::exec(&n)))),
            Purpose::Ansible => self.push(Screen::Form(FormState::new(nodeforms::ansible(&n)))),
            Purpose::Rebuild => self.push(Screen::Form(FormState::new(forms::rebuild(&n)))),
            Purpose::Diff => self.push(Screen::Form(FormState::new(forms::diff(&n)))),
            Purpose::Kernel => {
                let versions: Vec<String> = match ops::kernels(&self.ctx()) {
                    Ok(k) => k.into_iter().map(|k| k.version).collect(),
                    Err(e) => return self.error(e.to_string()),
                };
                if versions.is_empty() {
                    let dir = self.cfg.kernels_dir.display().to_string();
                    return self.error(format!(
                        "no kernels in {dir}: copy vmlinuz-<version> files there"
                    ));
                }
                let current = self
                    .status
                    .images
                    .iter()
                    .find(|i| i.name == n)
                    .and_then(|i| i.record.as_ref())
                    .and_then(|r| r.kernel_version().map(str::to_string));
                let spec = forms::kernel_set(&n, versions, current.as_deref());
                self.push(Screen::Form(FormState::new(spec)));
            }
            Purpose::Rollback => {
                let state = self.state_of(&n);
                self.popup = Some(Confirm {
                    title: format!("Roll image {n} back?"),
                    lines: vec![format!(
                        "Image {n} ({state}) goes back to its previous generation; nodes booting it get that one."
                    )],
                    yes: "roll back".into(),
                    no: "keep the current one".into(),
                    action: Action::Run(ops::Request::Rollback { name: n }),
                });
            }
            Purpose::Remove => {
                let state = self.state_of(&n);
                let mut lines = vec![format!(
                    "Image {n} ({state}) and everything it owns will be deleted:"
                )];
                lines.extend(self.paths_to_delete(&n));
                self.popup = Some(Confirm {
                    title: format!("Remove image {n}?"),
                    lines,
                    yes: "remove it".into(),
                    no: "keep it".into(),
                    action: Action::Run(ops::Request::Remove { name: n }),
                });
            }
            Purpose::Clear => {
                let state = self.state_of(&n);
                let mut lines = vec![format!(
                    "Image {n} ({state}): everything below is unmounted and deleted, whatever its state:"
                )];
                lines.extend(self.paths_to_delete(&n));
                lines.push("Use only as a last resort.".into());
                self.popup = Some(Confirm {
                    title: format!("Clear image {n}?"),
                    lines,
                    yes: "clear it".into(),
                    no: "keep it".into(),
                    action: Action::Run(ops::Request::Clear { name: n }),
                });
            }
        }
    }

    fn state_of(&self, name: &str) -> String {
        self.status
            .images
            .iter()
            .find(|i| i.name == name)
            .map(ImageInfo::state_label)
            .unwrap_or_else(|| "unknown state".into())
    }

    /// The paths the core's remove/clear would delete that exist now.
    fn paths_to_delete(&self, name: &str) -> Vec<String> {
        let v: Vec<String> = ops::removal_paths(&self.cfg, name)
            .into_iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .map(|p| format!("  {}", p.display()))
            .collect();
        if v.is_empty() {
            vec!["  (nothing on disk)".into()]
        } else {
            v
        }
    }

    fn ask_cancel(&mut self) {
        let Some(j) = self.job() else {
            return;
        };
        if j.cancel_requested {
            return;
        }
        self.popup = Some(Confirm {
            title: "Cancel the running job?".into(),
            lines: vec![
                format!("{} is running.", j.title),
                "Cancelling stops it at its next step; what it leaves is cleaned by `clear`."
                    .into(),
            ],
            yes: "cancel it".into(),
            no: "let it run".into(),
            action: Action::CancelJob,
        });
    }

    fn leave_job(&mut self) {
        let Some(Screen::Job(j)) = self.stack.pop() else {
            return;
        };
        match (&j.outcome, &j.after) {
            (Some(Ok(m)), After::Images(name)) => {
                let m = m.clone();
                self.stack.truncate(1);
                self.push(Screen::Images(ImagesState::new(
                    Purpose::Browse,
                    Some(name.clone()),
                )));
                self.info(m);
            }
            (Some(Ok(m)), After::Back) => {
                let m = m.clone();
                // A form of the Nodes, maintenance or images screen did its work: back
                // to that screen (the Nodes list re-read).
                let len = self.stack.len();
                if len >= 2
                    && matches!(self.stack.last(), Some(Screen::Form(_)))
                    && matches!(
                        self.stack.get(len - 2),
                        Some(Screen::Nodes(_) | Screen::Maint(_) | Screen::Images(_))
                    )
                {
                    self.stack.pop();
                }
                let ctx = self.ctx();
                if let Some(Screen::Nodes(v)) = self.stack.last_mut() {
                    v.reload(&ctx);
                }
                self.refresh();
                self.info(m);
            }
            (Some(Err(e)), _) => {
                let e = e.clone();
                let ctx = self.ctx();
                if let Some(Screen::Nodes(v)) = self.stack.last_mut() {
                    v.reload(&ctx);
                }
                self.refresh();
                self.error(e);
            }
            (None, _) => self.stack.push(Screen::Job(j)),
        }
    }

    // ------------------------------------------------------------------ drawing

    fn title_help(&self) -> (String, &'static str) {
        let Some(top) = self.stack.last() else {
            return (String::new(), "");
        };
        match top {
            Screen::Menu(_) => (
                "Diskless image management".into(),
                "1-10, n b p m or ↑↓ select · Enter open · Ctrl-C exit",
            ),
            Screen::Modules(..) => (
                "Modules".into(),
                "digits or ↑↓ select · Enter open · Esc back",
            ),
            Screen::ModuleActions { module, .. } => (
                format!("{module} module"),
                "digits or ↑↓ select · Enter open · Esc back",
            ),
            Screen::Images(s) => (s.purpose.title().into(), s.help()),
            Screen::Details(_) => ("Image details".into(), "Esc back"),
            Screen::Form(f) => (
                match f.stage {
                    Stage::Editing => f.spec.title.clone(),
                    Stage::Recap => format!("{} — recap", f.spec.title),
                },
                f.help(),
            ),
            Screen::Kernels(_) => ("Kernels".into(), "Esc back"),
            Screen::Bootset(_) => ("Boot status of nodes".into(), "Esc back"),
            Screen::Power(v) => ("Power and boot device of nodes".into(), v.help()),
            Screen::Nodes(v) => ("Nodes".into(), v.help()),
            Screen::Maint(_) => ("Maintenance".into(), maint::HELP),
            Screen::Job(j) => (j.title.clone(), j.help()),
        }
    }

    pub fn render(&self, f: &mut Frame) {
        let (title, help) = self.title_help();
        let body = chrome::draw(
            f,
            &title,
            help,
            self.message.as_ref(),
            &self.status,
            self.opts.dry_run,
        );
        match self.stack.last() {
            Some(Screen::Menu(m)) => m.render(f, body),
            Some(Screen::Modules(p, _)) => p.render(f, body),
            Some(Screen::ModuleActions { picker, .. }) => picker.render(f, body),
            Some(Screen::Images(s)) => s.render(f, body, &self.status),
            Some(Screen::Details(i)) => {
                let booted_by = i
                    .as_ref()
                    .as_ref()
                    .ok()
                    .and_then(|i| self.status.nodes.get(&i.name))
                    .map(String::as_str);
                images::render_details(f, body, i, booted_by)
            }
            Some(Screen::Form(fs)) => fs.render(f, body),
            Some(Screen::Kernels(k)) => {
                kernels::render(f, body, k, &self.cfg.kernels_dir.display().to_string())
            }
            Some(Screen::Bootset(s)) => {
                bootset::render(f, body, s, &self.cfg.nodes_file.display().to_string())
            }
            Some(Screen::Power(v)) => v.render(f, body),
            Some(Screen::Nodes(v)) => v.render(f, body, &self.cfg.nodes_file.display().to_string()),
            Some(Screen::Maint(m)) => m.render(f, body),
            Some(Screen::Job(j)) => j.render(f, body),
            None => {}
        }
        if let Some(p) = &self.popup {
            p.render(f, f.area());
        }
    }
}

fn action_label(module: &str, action: &str) -> String {
    let label = match (module, action) {
        (m, "create") => format!("Create a {m} image"),
        ("nfs", "staging create") => "Create an NFS staging image".into(),
        ("nfs", "golden create") => "Create an NFS golden image (copy of a staging one)".into(),
        ("nfs", "nodes add") => "Add nodes to a golden image".into(),
        ("nfs", "nodes remove") => "Remove nodes of a golden image".into(),
        (_, "mount") => "Mount an image (to customise it)".into(),
        (_, "unmount") => "Unmount an image (repack it)".into(),
        (_, "resize") => "Resize an image".into(),
        (_, "rollback") => "Roll an image back one generation".into(),
        (_, "kernel set") => "Set the kernel of an image".into(),
        (_, "initramfs") => "Generate the initramfs of an image".into(),
        (_, a) => a.to_string(),
    };
    if action_available(module, action) {
        label
    } else if module == "nfs" {
        format!("{label} (not in the TUI yet: use `disklessset {module} {action}`)")
    } else {
        format!("{label} ({NOT_AVAILABLE})")
    }
}

fn action_available(module: &str, action: &str) -> bool {
    matches!(
        (module, action),
        ("demo" | "livenet", "create")
            | (
                "nfs",
                "staging create" | "golden create" | "nodes add" | "nodes remove"
            )
    ) || Purpose::for_module_action(action).is_some()
}
