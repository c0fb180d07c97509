//! Power and boot-device control of nodes through their BMCs: a node set, the power
//! status column on demand (read by a worker thread: a slow BMC never freezes the
//! screen), and the actions of `power` / `bootdev`, each behind a confirm popup that
//! names the nodes and their BMCs. The actions are the CLI's requests
//! (`Request::Power`, `Request::Bootdev`), run as jobs.
//!
//! Reusable by another screen listing nodes (the Nodes screen): [`choice_for_key`]
//! maps the keys, [`confirm`] builds the popup for a node set, [`spawn_status`] reads
//! the power column (answered as `Event::PowerStatus`), [`status_by_node`] turns the
//! answer into one cell per node.
use std::collections::BTreeMap;
use std::sync::mpsc::Sender;

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use disklessset::ops::{
    self, BmcOptions, BootDevice, BootRequest, Config, Ctx, Inventory, PowerAction, PowerReport,
    Request, Runner,
};

use super::action::Action;
use super::popup::Confirm;
use super::Event;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Power(PowerAction),
    Boot(BootDevice),
}

/// The action keys, shared with any node list: o on, f off, c cycle, r reset, d soft
/// shutdown, x next boot pxe, k next boot disk, b next boot bios.
pub fn choice_for_key(c: char) -> Option<Choice> {
    Some(match c {
        'o' => Choice::Power(PowerAction::On),
        'f' => Choice::Power(PowerAction::Off),
        'c' => Choice::Power(PowerAction::Cycle),
        'r' => Choice::Power(PowerAction::Reset),
        'd' => Choice::Power(PowerAction::Soft),
        'x' => Choice::Boot(BootDevice::Pxe),
        'k' => Choice::Boot(BootDevice::Disk),
        'b' => Choice::Boot(BootDevice::Bios),
        _ => return None,
    })
}

pub const KEYS_HELP: &str =
    "s status · o on · f off · c cycle · r reset · d soft · x/k/b next boot pxe/disk/bios";

/// How many nodes the popup lists one by one.
const LISTED: usize = 8;

/// The confirm popup of `choice` on node set `set`: the nodes (folded, counted, the
/// first ones with their BMC) and the request it runs once confirmed.
pub fn confirm(cfg: &Config, choice: Choice, set: &str) -> Result<Confirm, String> {
    let inv = ops::query::inventory(cfg).map_err(|e| e.to_string())?;
    let nodes = ops::query::check_nodeset(Some(&inv), set)?;
    if nodes.is_empty() {
        return Err(format!("node set {set:?} names no node"));
    }
    let folded = ops::query::fold_nodes(&nodes);
    let (title, what, request) = match choice {
        Choice::Power(a) => (
            format!("Power {} nodes {folded}?", a.as_str()),
            match a {
                PowerAction::On => "are powered on".to_string(),
                PowerAction::Soft => "are asked to shut down (what runs on them stops)".into(),
                _ => format!("get power {} (what runs on them stops)", a.as_str()),
            },
            Request::Power {
                nodeset: folded.clone(),
                action: a,
                options: BmcOptions::default(),
                wait: None,
            },
        ),
        Choice::Boot(d) => (
            format!("Next boot of nodes {folded}: {}?", d.as_str()),
            format!("boot from {} next time (once)", d.as_str()),
            Request::Bootdev {
                nodeset: folded.clone(),
                boot: BootRequest {
                    device: d,
                    persistent: false,
                    mode: None,
                },
                options: BmcOptions::default(),
            },
        ),
    };
    let mut lines = vec![format!(
        "{} node{} {what}:",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" }
    )];
    for n in nodes.iter().take(LISTED) {
        let bmc = inv
            .nodes
            .get(n)
            .and_then(|node| inv.bmc_of(node))
            .map(|b| {
                format!(
                    "{} {}",
                    b.driver.map(|d| d.as_str()).unwrap_or("?"),
                    b.address.unwrap_or_default().replace("{node}", n)
                )
            })
            .unwrap_or_else(|| "no BMC in the inventory".into());
        lines.push(format!("  {n}  ({bmc})"));
    }
    if nodes.len() > LISTED {
        lines.push(format!("  … and {} more", nodes.len() - LISTED));
    }
    Ok(Confirm {
        title,
        lines,
        yes: match choice {
            Choice::Power(a) => format!("power {}", a.as_str()),
            Choice::Boot(d) => format!("set {}", d.as_str()),
        },
        no: "leave them".into(),
        action: Action::Run(request),
    })
}

/// Reads the power status of `set` on a worker thread; the answer comes back as
/// `Event::PowerStatus`.
pub fn spawn_status(cfg: &Config, dry_run: bool, set: String, tx: &Sender<Event>) {
    let cfg = cfg.clone();
    let tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("tui-power-status".into())
        .spawn(move || {
            let ctx = Ctx::new(cfg, Runner::new(dry_run));
            let result = ops::power_status(&ctx, &set, &BmcOptions::default())
                .map_err(|e| ops::error_line(&e));
            let _ = tx.send(Event::PowerStatus { set, result });
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the power status thread: {e}");
    }
}

/// One cell per node: `on`, `off`, or `unknown: ERROR`.
pub fn status_by_node(r: &PowerReport) -> BTreeMap<String, String> {
    r.nodes
        .iter()
        .map(|n| {
            let state = n.state.map(|s| s.as_str()).unwrap_or("unknown");
            let cell = match &n.error {
                Some(e) => format!("{state}: {e}"),
                None => state.to_string(),
            };
            (n.node.clone(), cell)
        })
        .collect()
}

/// What a key in the view asks the app for.
pub enum Reply {
    None,
    Back,
    Status,
    /// The assign-and-reboot form (`bootset ... --reboot`) for this node set.
    Reboot,
    Ask(Choice),
    Error(String),
}

/// The view: a node set (typed), its nodes, their power status once read.
pub struct PowerView {
    pub set: String,
    pub editing: bool,
    inv: Result<Inventory, String>,
    /// The last status read: per node, `on`/`off`/`unknown: error`.
    status: Option<Result<BTreeMap<String, String>, String>>,
    pub loading: bool,
}

impl PowerView {
    /// Starts on every node of the inventory that has a BMC.
    pub fn new(cfg: &Config) -> PowerView {
        let inv = ops::query::inventory(cfg).map_err(|e| e.to_string());
        let set = match &inv {
            Ok(i) => {
                let with: Vec<String> = i
                    .nodes
                    .values()
                    .filter(|n| i.bmc_of(n).is_some_and(|b| b.driver.is_some()))
                    .map(|n| n.name.clone())
                    .collect();
                ops::query::fold_nodes(&with)
            }
            Err(_) => String::new(),
        };
        PowerView {
            editing: set.is_empty(),
            set,
            inv,
            status: None,
            loading: false,
        }
    }

    fn nodes(&self) -> Result<Vec<String>, String> {
        let inv = self.inv.as_ref().map_err(Clone::clone)?;
        ops::query::check_nodeset(Some(inv), &self.set)
    }

    pub fn apply(&mut self, set: &str, r: &Result<PowerReport, String>) {
        if set != self.set {
            return;
        }
        self.loading = false;
        self.status = Some(r.as_ref().map(status_by_node).map_err(Clone::clone));
    }

    pub fn help(&self) -> &'static str {
        if self.editing {
            "type a node set (c[001-010],@group) · Enter done · Esc back"
        } else {
            "e edit · s status · o/f/c/r/d power · x/k/b next boot · a assign+reboot · Esc back"
        }
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Reply {
        if self.editing {
            match k.code {
                KeyCode::Char(c) => {
                    self.set.push(c);
                    self.status = None;
                }
                KeyCode::Backspace => {
                    self.set.pop();
                    self.status = None;
                }
                KeyCode::Enter => {
                    if let Err(e) = self.nodes() {
                        return Reply::Error(e);
                    }
                    self.editing = false;
                }
                KeyCode::Esc => return Reply::Back,
                _ => {}
            }
            return Reply::None;
        }
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => Reply::Back,
            KeyCode::Char('e') | KeyCode::Char('/') => {
                self.editing = true;
                Reply::None
            }
            KeyCode::Char('a') => Reply::Reboot,
            KeyCode::Char('s') => match self.nodes() {
                Ok(n) if n.is_empty() => Reply::Error("the node set names no node".into()),
                Ok(_) => {
                    self.loading = true;
                    Reply::Status
                }
                Err(e) => Reply::Error(e),
            },
            KeyCode::Char(c) => match choice_for_key(c) {
                Some(ch) => Reply::Ask(ch),
                None => Reply::None,
            },
            _ => Reply::None,
        }
    }

    pub fn render(&self, f: &mut Frame, area: Rect) {
        let [top, table_area, note] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Min(3),
            Constraint::Length(2),
        ])
        .areas(area);
        let cursor = if self.editing { "█" } else { "" };
        f.render_widget(
            Paragraph::new(vec![Line::from(format!(" Nodes: {}{cursor}", self.set))]),
            top,
        );
        let block = Block::default().borders(Borders::ALL).title(" Power ");
        let inv = match &self.inv {
            Ok(i) => i,
            Err(e) => {
                f.render_widget(
                    Paragraph::new(Line::styled(e.clone(), Style::default().fg(Color::Red)))
                        .wrap(Wrap { trim: true })
                        .block(block),
                    table_area,
                );
                return;
            }
        };
        let nodes = self.nodes().unwrap_or_default();
        let rows: Vec<Row> = nodes
            .iter()
            .map(|n| {
                let bmc = inv.nodes.get(n).and_then(|node| inv.bmc_of(node));
                let (driver, address) = match &bmc {
                    Some(b) => (
                        b.driver.map(|d| d.as_str()).unwrap_or("-").to_string(),
                        b.address.clone().unwrap_or_default().replace("{node}", n),
                    ),
                    None => ("-".into(), "no BMC".into()),
                };
                let cell = match &self.status {
                    _ if self.loading => "…".to_string(),
                    Some(Ok(m)) => m.get(n).cloned().unwrap_or_else(|| "-".into()),
                    Some(Err(_)) | None => "-".into(),
                };
                let style = if cell.starts_with("unknown") {
                    Style::default().fg(Color::Red)
                } else if cell == "off" {
                    Style::default().fg(Color::DarkGray)
                } else {
                    Style::default()
                };
                Row::new(vec![n.clone(), driver, address, cell]).style(style)
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(24),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(["NODE", "DRIVER", "BMC", "POWER"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(block);
        f.render_widget(table, table_area);
        let msg = match &self.status {
            Some(Err(e)) => e.clone(),
            _ if self.loading => "reading the power status…".into(),
            None => "Press s to read the power status from the BMCs.".into(),
            Some(Ok(m)) => {
                let count = |p: &str| m.values().filter(|c| c.starts_with(p)).count();
                format!(
                    "{} nodes: {} on, {} off, {} unknown. {KEYS_HELP}",
                    m.len(),
                    count("on"),
                    count("off"),
                    count("unknown")
                )
            }
        };
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), note);
    }
}
