//! The Nodes screen (`n` in the menu): the inventory (`nodes list`: state, groups,
//! assignment, last seen), a node's detail with its hardware facts on Enter (`nodes
//! show`), and, while discovery is on or machines wait for a name, the discovery list
//! (`discovery list`), re-read every second while discovery is on so reports appear
//! live. The actions are the CLI's requests: `nodes add|set|remove|import`, `bootset`,
//! `discovery accept|start|stop`, `secrets show|rotate` (forms in `nodeforms`, run by
//! `perform`).
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use disklessset::ops::{
    self, human_size, nodes::format_time, Ctx, Discovered, DiscoveryState, NodeDetail, NodeRow,
    NodeState,
};

use super::images::fit_columns;

/// How often the list is re-read while the screen is open.
pub const RELOAD_EVERY: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Nodes,
    Discovery,
}

/// What a key asks the app for.
pub enum Reply {
    None,
    Back,
    Detail(String),
    Add,
    Set(String),
    Remove(String),
    Bootset(String),
    /// The host keys form (`secrets show|rotate`) for these nodes (the selected one).
    HostKeys(String),
    /// The import form (`nodes import FILE`).
    Import,
    /// Accept this pending MAC (the form).
    Accept(String),
    /// Discovery on: ask to stop it; off: the start form.
    ToggleDiscovery(bool),
    Error(String),
}

pub struct NodesView {
    pub rows: Result<Vec<NodeRow>, String>,
    pub disc: Result<DiscoveryState, String>,
    pub focus: Focus,
    selected: usize,
    selected_disc: usize,
    /// The node shown in detail (a popup over the list).
    pub detail: Option<Box<Result<NodeDetail, String>>>,
    /// Lines of the detail popup scrolled away (a small terminal).
    pub detail_scroll: u16,
    loaded: Instant,
}

impl NodesView {
    pub fn new(ctx: &Ctx) -> NodesView {
        let mut v = NodesView {
            rows: Ok(Vec::new()),
            disc: Ok(DiscoveryState::default()),
            focus: Focus::Nodes,
            selected: 0,
            selected_disc: 0,
            detail: None,
            detail_scroll: 0,
            loaded: Instant::now(),
        };
        v.reload(ctx);
        v
    }

    /// Re-reads the inventory and the discovery state, keeping the selection on the same
    /// node and machine.
    pub fn reload(&mut self, ctx: &Ctx) {
        let node = self.selected_node();
        let mac = self.selected_machine().map(|m| m.mac.clone());
        self.rows = ops::nodes::list(ctx, None).map_err(|e| ops::error_line(&e));
        self.disc = ops::query::discovery_state(&ctx.cfg).map_err(|e| ops::error_line(&e));
        if let (Some(n), Ok(rows)) = (node, &self.rows) {
            self.selected = rows.iter().position(|r| r.name == n).unwrap_or(0);
        }
        if let (Some(m), Ok(d)) = (mac, &self.disc) {
            self.selected_disc = d.machines.iter().position(|x| x.mac == m).unwrap_or(0);
        }
        if self.machines().is_empty() {
            self.focus = Focus::Nodes;
        }
        self.loaded = Instant::now();
    }

    /// Time to re-read: discovery is on (reports and sequential names arrive by
    /// themselves) and the last read is a second old. Otherwise the list changes only by
    /// this screen's own actions, which re-read it.
    pub fn due(&self) -> bool {
        self.discovery_on() && self.loaded.elapsed() >= RELOAD_EVERY
    }

    fn node_rows(&self) -> &[NodeRow] {
        self.rows.as_deref().unwrap_or(&[])
    }

    pub fn machines(&self) -> &[Discovered] {
        match &self.disc {
            Ok(d) => &d.machines,
            Err(_) => &[],
        }
    }

    /// The machines waiting for a name.
    pub fn pending(&self) -> Vec<String> {
        self.machines()
            .iter()
            .filter(|m| m.name.is_none())
            .map(|m| m.mac.clone())
            .collect()
    }

    fn discovery_on(&self) -> bool {
        self.disc.as_ref().is_ok_and(|d| d.on)
    }

    /// The discovery pane is shown: discovery is on, or machines reported.
    fn shows_discovery(&self) -> bool {
        self.discovery_on() || !self.machines().is_empty() || self.disc.is_err()
    }

    pub fn selected_node(&self) -> Option<String> {
        self.node_rows().get(self.selected).map(|r| r.name.clone())
    }

    fn selected_machine(&self) -> Option<&Discovered> {
        self.machines().get(self.selected_disc)
    }

    pub fn help(&self) -> &'static str {
        if self.detail.is_some() {
            "↑↓ scroll · Esc / Enter close"
        } else if self.focus == Focus::Discovery {
            "↑↓ · Enter accept (name it) · Tab nodes · d discovery on/off · Esc back"
        } else {
            "↑↓ · Enter facts · a add · s set · r remove · i import · b bootset · k host keys · Tab discovery · d discovery on/off · Esc back"
        }
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Reply {
        if self.detail.is_some() {
            match k.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => {
                    self.detail = None;
                    self.detail_scroll = 0;
                }
                KeyCode::Up => self.detail_scroll = self.detail_scroll.saturating_sub(1),
                KeyCode::Down => self.detail_scroll = self.detail_scroll.saturating_add(1).min(40),
                _ => {}
            }
            return Reply::None;
        }
        let node = self.selected_node();
        let need_node = |n: Option<String>, f: fn(String) -> Reply| match n {
            Some(n) => f(n),
            None => Reply::Error("no node selected: add one with a".into()),
        };
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => return Reply::Back,
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Nodes if !self.machines().is_empty() => Focus::Discovery,
                    Focus::Nodes => return Reply::Error("no machine has reported".into()),
                    Focus::Discovery => Focus::Nodes,
                }
            }
            KeyCode::Up => match self.focus {
                Focus::Nodes => self.selected = self.selected.saturating_sub(1),
                Focus::Discovery => self.selected_disc = self.selected_disc.saturating_sub(1),
            },
            KeyCode::Down => match self.focus {
                Focus::Nodes => {
                    self.selected =
                        (self.selected + 1).min(self.node_rows().len().saturating_sub(1))
                }
                Focus::Discovery => {
                    self.selected_disc =
                        (self.selected_disc + 1).min(self.machines().len().saturating_sub(1))
                }
            },
            KeyCode::Char('d') => return Reply::ToggleDiscovery(self.discovery_on()),
            KeyCode::Enter if self.focus == Focus::Discovery => {
                return match self.selected_machine() {
                    Some(m) => match &m.name {
                        None => Reply::Accept(m.mac.clone()),
                        Some(n) => Reply::Error(format!("{} is node {n} already", m.mac)),
                    },
                    None => Reply::None,
                }
            }
            KeyCode::Enter => return need_node(node, Reply::Detail),
            KeyCode::Char('a') if self.focus == Focus::Discovery => {
                return match self.selected_machine() {
                    Some(m) if m.name.is_none() => Reply::Accept(m.mac.clone()),
                    _ => Reply::Error("select a pending machine to accept".into()),
                }
            }
            KeyCode::Char('a') => return Reply::Add,
            KeyCode::Char('s') => return need_node(node, Reply::Set),
            KeyCode::Char('r') => return need_node(node, Reply::Remove),
            KeyCode::Char('b') => return need_node(node, Reply::Bootset),
            KeyCode::Char('k') => return Reply::HostKeys(node.unwrap_or_default()),
            KeyCode::Char('i') => return Reply::Import,
            _ => {}
        }
        Reply::None
    }

    pub fn render(&self, f: &mut Frame, area: Rect, nodes_file: &str) {
        let disc_h = if self.shows_discovery() {
            (self.machines().len() as u16 + 3).clamp(4, 9)
        } else {
            0
        };
        let [top, bottom] =
            Layout::vertical([Constraint::Min(4), Constraint::Length(disc_h)]).areas(area);
        self.render_nodes(f, top, nodes_file);
        if disc_h > 0 {
            self.render_discovery(f, bottom);
        }
        if let Some(d) = &self.detail {
            render_detail(f, area, d, self.detail_scroll);
        }
    }

    fn render_nodes(&self, f: &mut Frame, area: Rect, nodes_file: &str) {
        let focused = self.focus == Focus::Nodes;
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(border(focused))
            .title(" Nodes ");
        let rows = match &self.rows {
            Err(e) => {
                f.render_widget(
                    Paragraph::new(Line::styled(e.clone(), Style::default().fg(Color::Red)))
                        .wrap(Wrap { trim: true })
                        .block(block),
                    area,
                );
                return;
            }
            Ok(r) if r.is_empty() => {
                f.render_widget(
                    Paragraph::new(format!(
                        "No nodes in {nodes_file}: add some with a (or accept discovered machines)."
                    ))
                    .wrap(Wrap { trim: true })
                    .block(block),
                    area,
                );
                return;
            }
            Ok(r) => r,
        };
        let cells: Vec<[String; 7]> = rows.iter().map(node_cells).collect();
        let header = [
            "NODE",
            "STATE",
            "GROUPS",
            "BOOT",
            "LAST SEEN",
            "MAC",
            "NOTE",
        ];
        let preferred: Vec<usize> = (0..header.len())
            .map(|i| {
                cells
                    .iter()
                    .map(|c| c[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(header[i].len())
                    .min(24)
            })
            .collect();
        let avail = area.width.saturating_sub(2 + 2 + header.len() as u16) as usize;
        let widths: Vec<Constraint> = fit_columns(&preferred, avail)
            .into_iter()
            .map(|w| Constraint::Length(w as u16))
            .collect();
        let trows: Vec<Row> = rows
            .iter()
            .zip(cells)
            .map(|(r, c)| Row::new(c.to_vec()).style(state_style(r)))
            .collect();
        let mut ts = TableState::default().with_selected(focused.then_some(self.selected));
        f.render_stateful_widget(
            Table::new(trows, widths)
                .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
                .block(block)
                .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
                .highlight_symbol("▶ "),
            area,
            &mut ts,
        );
    }

    fn render_discovery(&self, f: &mut Frame, area: Rect) {
        let focused = self.focus == Focus::Discovery;
        let title = match &self.disc {
            Ok(d) => format!(
                " Discovery {} · policy {} · pool {} · {} pending ",
                if d.on { "on" } else { "off" },
                d.policy.as_str(),
                d.pool.as_deref().unwrap_or("none"),
                d.machines.iter().filter(|m| m.name.is_none()).count()
            ),
            Err(_) => " Discovery ".into(),
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(border(focused))
            .title(title);
        let machines = match &self.disc {
            Err(e) => {
                f.render_widget(
                    Paragraph::new(Line::styled(e.clone(), Style::default().fg(Color::Red)))
                        .wrap(Wrap { trim: true })
                        .block(block),
                    area,
                );
                return;
            }
            Ok(d) if d.machines.is_empty() => {
                f.render_widget(
                    Paragraph::new(
                        "Waiting for unknown machines to boot (they report their facts here).",
                    )
                    .block(block),
                    area,
                );
                return;
            }
            Ok(d) => &d.machines,
        };
        let rows: Vec<Row> = machines
            .iter()
            .map(|m| {
                let (name, st) = match &m.name {
                    Some(n) => (format!("→ {n}"), Style::default().fg(Color::DarkGray)),
                    None => ("pending".to_string(), Style::default().fg(Color::Yellow)),
                };
                Row::new(vec![
                    m.mac.clone(),
                    name,
                    dash(&m.facts.arch),
                    count(m.facts.cpus as u64),
                    mib(m.facts.memory_mib),
                    disks(&m.facts.disks),
                    format_time(m.reported_at),
                ])
                .style(st)
            })
            .collect();
        let mut ts = TableState::default().with_selected(focused.then_some(self.selected_disc));
        f.render_stateful_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(17),
                    Constraint::Length(9),
                    Constraint::Length(7),
                    Constraint::Length(4),
                    Constraint::Length(8),
                    Constraint::Length(12),
                    Constraint::Min(10),
                ],
            )
            .header(
                Row::new(["MAC", "NAME", "ARCH", "CPUS", "MEMORY", "DISKS", "REPORTED"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(block)
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
            .highlight_symbol("▶ "),
            area,
            &mut ts,
        );
    }
}

fn border(focused: bool) -> Style {
    if focused {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default()
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn count(n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        n.to_string()
    }
}

fn mib(m: u64) -> String {
    if m == 0 {
        "-".into()
    } else {
        human_size(m * 1024 * 1024)
    }
}

fn disks(d: &[ops::Disk]) -> String {
    match d {
        [] => "-".into(),
        [one] => format!("{} {}", one.name, human_size(one.size_bytes)),
        more => format!("{} disks", more.len()),
    }
}

fn state_style(r: &NodeRow) -> Style {
    let s = match r.state {
        NodeState::Registered => Style::default().fg(Color::DarkGray),
        NodeState::Discovered => Style::default().fg(Color::Yellow),
        NodeState::Assigned => Style::default(),
        NodeState::Booted => Style::default().fg(Color::Green),
    };
    if r.reboot_changes {
        s.fg(Color::Magenta)
    } else {
        s
    }
}

/// The last time the server saw the node: its script fetch or booted call-home.
fn last_seen(r: &NodeRow) -> String {
    match r.seen.script_at.max(r.seen.booted_at) {
        None => "never".into(),
        Some(t) => format_time(t),
    }
}

fn node_cells(r: &NodeRow) -> [String; 7] {
    [
        r.name.clone(),
        r.state.as_str().to_string(),
        if r.groups.is_empty() {
            "-".into()
        } else {
            r.groups.join(",")
        },
        match (&r.boot_type, &r.image) {
            (Some(b), Some(i)) => format!("{b} {i}"),
            (Some(b), None) => b.clone(),
            _ => "-".into(),
        },
        last_seen(r),
        r.mac.clone().unwrap_or_else(|| "-".into()),
        if r.reboot_changes {
            "reboot changes it".into()
        } else {
            String::new()
        },
    ]
}

/// `nodes show NODE` as a popup: fields, what the server saw, variables with their
/// source, hardware facts.
fn render_detail(f: &mut Frame, area: Rect, d: &Result<NodeDetail, String>, scroll: u16) {
    let mut lines: Vec<Line> = Vec::new();
    let title = match d {
        Err(e) => {
            lines.push(Line::styled(e.clone(), Style::default().fg(Color::Red)));
            " Node ".to_string()
        }
        Ok(n) => {
            let r = &n.row;
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            let time = |t: Option<u64>| t.map(format_time).unwrap_or_else(|| "never".into());
            let mut kv = vec![
                ("state", r.state.as_str().to_string()),
                ("mac", opt(&r.mac)),
                ("ip", opt(&r.ip)),
                (
                    "groups",
                    if r.groups.is_empty() {
                        "-".into()
                    } else {
                        r.groups.join(", ")
                    },
                ),
                (
                    "boot",
                    match (&r.boot_type, &r.image) {
                        (Some(b), Some(i)) => format!("{b} {i}"),
                        (Some(b), None) => b.clone(),
                        _ => "unassigned".into(),
                    },
                ),
                ("script fetched", time(r.seen.script_at)),
                ("booted", time(r.seen.booted_at)),
            ];
            if let Some(g) = r.seen.booted_generation {
                kv.push(("booted generation", g.to_string()));
            }
            if r.reboot_changes {
                kv.push(("note", "a reboot changes what it boots".into()));
            }
            for (k, v) in [
                ("netmask", &n.netmask),
                ("gateway", &n.gateway),
                ("interface", &n.interface),
                ("bmc", &n.bmc_address),
            ] {
                if let Some(v) = v {
                    kv.push((k, v.clone()));
                }
            }
            for (k, v) in kv {
                lines.push(Line::raw(format!(" {k:<18} {v}")));
            }
            lines.push(Line::styled(
                " vars",
                Style::default().add_modifier(Modifier::BOLD),
            ));
            if n.vars.is_empty() {
                lines.push(Line::raw("   (none)"));
            }
            for (k, v) in &n.vars {
                lines.push(Line::raw(format!("   {k} = {}  ({})", v.value, v.source)));
            }
            lines.push(Line::styled(
                " facts",
                Style::default().add_modifier(Modifier::BOLD),
            ));
            match &n.facts {
                None => lines.push(Line::raw(
                    "   none reported (discovery records them when the node boots into it)",
                )),
                Some(fa) => {
                    let mut kv: Vec<(&str, String)> = vec![
                        ("reported", format_time(fa.reported_at)),
                        ("macs", fa.macs.join(", ")),
                        ("arch", dash(&fa.arch)),
                        ("cpu", dash(&fa.cpu_model)),
                        ("cpus", count(fa.cpus as u64)),
                        ("memory", mib(fa.memory_mib)),
                    ];
                    for dk in &fa.disks {
                        let model = if dk.model.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", dk.model)
                        };
                        kv.push((
                            "disk",
                            format!("{} {}{model}", dk.name, human_size(dk.size_bytes)),
                        ));
                    }
                    for (k, v) in [
                        ("vendor", &fa.vendor),
                        ("product", &fa.product),
                        ("serial", &fa.serial),
                        ("uuid", &fa.uuid),
                    ] {
                        if !v.is_empty() {
                            kv.push((k, v.clone()));
                        }
                    }
                    for (k, v) in kv {
                        lines.push(Line::raw(format!("   {k:<16} {v}")));
                    }
                }
            }
            format!(" Node {} ", r.name)
        }
    };
    let width = area.width.saturating_sub(4).clamp(20, 76);
    let height = (lines.len() as u16 + 2).min(area.height);
    let scroll = scroll.min((lines.len() as u16 + 2).saturating_sub(height));
    let [r] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(r);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::default().fg(Color::Cyan))
                .title(title),
        ),
        r,
    );
}
