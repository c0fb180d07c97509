//! The maintenance screen (`m` in the main menu): the store-wide verbs, each opened by
//! its letter (or ↑↓ and Enter), each with the CLI command it is: `gc`, `rebuild`,
//! `diff`, `replicate`, `nfs exports [--for]`, `recover`. What they open (a form, an
//! image picker, a job) is decided by the app; every one ends in an ops call.
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use disklessset::ops::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Gc,
    Rebuild,
    Diff,
    Replicate,
    Exports,
    ExportsFor,
    Recover,
}

pub struct Item {
    pub key: char,
    pub label: &'static str,
    /// The CLI command it is.
    pub cli: &'static str,
    pub entry: Entry,
}

pub const ITEMS: &[Item] = &[
    Item {
        key: 'g',
        label: "Collect transient images, surplus generations",
        cli: "gc [--older-than AGE]",
        entry: Entry::Gc,
    },
    Item {
        key: 'r',
        label: "Rebuild an image from its record",
        cli: "rebuild NAME",
        entry: Entry::Rebuild,
    },
    Item {
        key: 'd',
        label: "Compare two images or generations",
        cli: "diff A B",
        entry: Entry::Diff,
    },
    Item {
        key: 'e',
        label: "Push the boot tree to the replicas",
        cli: "replicate [NAME...]",
        entry: Entry::Replicate,
    },
    Item {
        key: 'x',
        label: "Regenerate the NFS exports",
        cli: "nfs exports",
        entry: Entry::Exports,
    },
    Item {
        key: 'f',
        label: "Write a replica's NFS exports file",
        cli: "nfs exports --for R",
        entry: Entry::ExportsFor,
    },
    Item {
        key: 'v',
        label: "Recover the store after a crash",
        cli: "recover",
        entry: Entry::Recover,
    },
];

pub const HELP: &str =
    "g gc · r rebuild · d diff · e replicate · x exports · f exports for a replica · v recover · ↑↓ Enter · Esc back";

/// The verbs that start at once, as the CLI's request (`nfs exports`, `recover`: the
/// CLI asks nothing before them either; `perform` still asks whatever the core says to).
pub fn immediate(e: Entry) -> Option<Request> {
    match e {
        Entry::Exports => Some(Request::NfsExports),
        Entry::Recover => Some(Request::Recover),
        _ => None,
    }
}

pub enum Reply {
    None,
    Back,
    Open(Entry),
}

#[derive(Default)]
pub struct MaintState {
    pub selected: usize,
}

impl MaintState {
    pub fn on_key(&mut self, k: KeyEvent) -> Reply {
        let n = ITEMS.len();
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => return Reply::Back,
            KeyCode::Up => self.selected = (self.selected + n - 1) % n,
            KeyCode::Down => self.selected = (self.selected + 1) % n,
            KeyCode::Enter => {
                if let Some(it) = ITEMS.get(self.selected) {
                    return Reply::Open(it.entry);
                }
            }
            KeyCode::Char(c) => {
                if let Some(pos) = ITEMS.iter().position(|i| i.key == c) {
                    self.selected = pos;
                    return Reply::Open(ITEMS[pos].entry);
                }
            }
            _ => {}
        }
        Reply::None
    }

    pub fn render(&self, f: &mut Frame, area: Rect) {
        let w = ITEMS
            .iter()
            .map(|i| i.label.chars().count())
            .max()
            .unwrap_or(0);
        let mut lines = vec![Line::raw("")];
        for (i, it) in ITEMS.iter().enumerate() {
            let sel = i == self.selected;
            let st = if sel {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            lines.push(Line::from(vec![
                Span::raw(if sel { " ▶ " } else { "   " }),
                Span::styled(format!("{} - {:<w$}", it.key, it.label), st),
                Span::styled(
                    format!("  {}", it.cli),
                    Style::default().fg(Color::DarkGray),
                ),
            ]));
        }
        lines.push(Line::raw(""));
        lines.push(Line::raw(
            " Each is the CLI command shown (disklessset ...); destructive ones ask first.",
        ));
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Maintenance "),
            ),
            area,
        );
    }
}
