//! The main menu: the reference's ten numbered actions (plus the nodes, bootset status,
//! power and maintenance screens, on letters).
//! Digits or arrows select, Enter opens. Entries whose core operation is not in this
//! build are shown, dimmed and marked, and say so when opened: never a fake screen.
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Modules,
    List,
    Remove,
    Clone,
    Params,
    Kernel,
    Kernels,
    Initramfs,
    Bootset,
    Power,
    Nodes,
    Maintenance,
    Clear,
    Exit,
}

pub struct Item {
    pub key: &'static str,
    pub label: &'static str,
    pub entry: Entry,
    /// Why it is disabled: the core operation it needs.
    pub missing: Option<&'static str>,
    /// A group heading printed before the item.
    pub heading: Option<&'static str>,
}

pub const NOT_AVAILABLE: &str = "not available in this build";

pub const ITEMS: &[Item] = &[
    Item {
        key: "1",
        label: "Manage and create images (modules)",
        entry: Entry::Modules,
        missing: None,
        heading: Some("Diskless image management"),
    },
    Item {
        key: "2",
        label: "List images",
        entry: Entry::List,
        missing: None,
        heading: None,
    },
    Item {
        key: "3",
        label: "Remove an image",
        entry: Entry::Remove,
        missing: None,
        heading: None,
    },
    Item {
        key: "4",
        label: "Clone an image",
        entry: Entry::Clone,
        missing: None,
        heading: None,
    },
    Item {
        key: "5",
        label: "Create images from a parameters file",
        entry: Entry::Params,
        missing: None,
        heading: None,
    },
    Item {
        key: "6",
        label: "Manage the kernel of an image",
        entry: Entry::Kernel,
        missing: None,
        heading: None,
    },
    Item {
        key: "7",
        label: "List kernels",
        entry: Entry::Kernels,
        missing: None,
        heading: Some("Other actions"),
    },
    Item {
        key: "8",
        label: "Generate an initramfs",
        entry: Entry::Initramfs,
        missing: None,
        heading: None,
    },
    Item {
        key: "n",
        label: "Nodes: inventory, hardware facts, discovery",
        entry: Entry::Nodes,
        missing: None,
        heading: None,
    },
    Item {
        key: "b",
        label: "Boot status of nodes (bootset -s)",
        entry: Entry::Bootset,
        missing: None,
        heading: None,
    },
    Item {
        key: "p",
        label: "Power and boot device of nodes (BMC)",
        entry: Entry::Power,
        missing: None,
        heading: None,
    },
    Item {
        key: "m",
        label: "Maintenance: gc, rebuild, diff, replicate, exports, recover",
        entry: Entry::Maintenance,
        missing: None,
        heading: None,
    },
    Item {
        key: "9",
        label: "Clear a corrupted image (last resort)",
        entry: Entry::Clear,
        missing: None,
        heading: Some(""),
    },
    Item {
        key: "10",
        label: "Exit",
        entry: Entry::Exit,
        missing: None,
        heading: None,
    },
];

#[derive(Default)]
pub struct MenuState {
    pub selected: usize,
    /// The digits typed so far ("1" then "0" selects 10).
    typed: String,
}

impl MenuState {
    /// Moves the selection; returns the item to open on Enter.
    pub fn on_key(&mut self, k: KeyEvent) -> Option<&'static Item> {
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.typed.clear();
                self.selected = (self.selected + ITEMS.len() - 1) % ITEMS.len();
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.typed.clear();
                self.selected = (self.selected + 1) % ITEMS.len();
            }
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = ITEMS.len() - 1,
            KeyCode::Char(c) if c.is_ascii_digit() => {
                let mut t = format!("{}{c}", self.typed);
                if !ITEMS.iter().any(|i| i.key == t) {
                    t = c.to_string();
                }
                if let Some(pos) = ITEMS.iter().position(|i| i.key == t) {
                    self.selected = pos;
                    self.typed = t;
                } else {
                    self.typed.clear();
                }
            }
            KeyCode::Char(c @ ('b' | 'p' | 'n' | 'm')) => {
                self.typed.clear();
                let key = c.to_string();
                if let Some(pos) = ITEMS.iter().position(|i| i.key == key) {
                    self.selected = pos;
                }
            }
            KeyCode::Enter => {
                self.typed.clear();
                return ITEMS.get(self.selected);
            }
            _ => {}
        }
        None
    }

    pub fn render(&self, f: &mut Frame, area: Rect) {
        let mut lines = Vec::new();
        for (i, it) in ITEMS.iter().enumerate() {
            if let Some(h) = it.heading {
                if h.is_empty() {
                    lines.push(Line::raw(""));
                } else {
                    lines.push(Line::styled(
                        format!(" > {h}"),
                        Style::default().add_modifier(Modifier::BOLD),
                    ));
                }
            }
            let sel = i == self.selected;
            let mut st = Style::default();
            if it.missing.is_some() {
                st = st.fg(Color::DarkGray);
            }
            if sel {
                st = st.add_modifier(Modifier::REVERSED);
            }
            let mut spans = vec![
                Span::raw(if sel { " ▶ " } else { "   " }),
                Span::styled(format!("{:>2} - {}", it.key, it.label), st),
            ];
            if it.missing.is_some() {
                spans.push(Span::styled(
                    format!("  ({NOT_AVAILABLE})"),
                    Style::default().fg(Color::DarkGray),
                ));
            }
            lines.push(Line::from(spans));
        }
        lines.push(Line::raw(""));
        lines.push(Line::raw(
            " At any time: Ctrl-C returns to this main menu (and exits from it).",
        ));
        f.render_widget(Paragraph::new(lines), area);
    }
}
