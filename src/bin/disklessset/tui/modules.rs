//! Menu entry 1: the modules (from the core's registry) and each module's actions.
//! Modules the reference has but this build lacks (livenet, nfs) are listed, disabled.
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use disklessset::ops;

use super::menu::NOT_AVAILABLE;

/// The reference's modules, in its menu order.
const KNOWN: [&str; 3] = ["demo", "livenet", "nfs"];

pub struct ModuleEntry {
    pub name: String,
    pub description: String,
    pub actions: Vec<&'static str>,
    pub available: bool,
}

pub fn entries() -> Vec<ModuleEntry> {
    let infos = ops::module_infos();
    let mut v: Vec<ModuleEntry> = infos
        .iter()
        .map(|m| ModuleEntry {
            name: m.name.to_string(),
            description: m.description.to_string(),
            actions: m.actions.clone(),
            available: true,
        })
        .collect();
    for k in KNOWN {
        if !v.iter().any(|m| m.name == k) {
            v.push(ModuleEntry {
                name: k.to_string(),
                description: format!("{k} images ({NOT_AVAILABLE})"),
                actions: Vec::new(),
                available: false,
            });
        }
    }
    v
}

/// A numbered list with digit/arrow selection, used for modules and module actions.
pub struct Picker {
    pub title: String,
    pub items: Vec<(String, bool)>,
    pub selected: usize,
}

pub enum Picked {
    None,
    Back,
    Open(usize),
}

impl Picker {
    pub fn on_key(&mut self, k: KeyEvent) -> Picked {
        let n = self.items.len().max(1);
        match k.code {
            KeyCode::Esc => return Picked::Back,
            KeyCode::Up | KeyCode::Char('k') => self.selected = (self.selected + n - 1) % n,
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1) % n,
            KeyCode::Char(c) if c.is_ascii_digit() => {
                let d = c.to_digit(10).unwrap_or(0) as usize;
                if d >= 1 && d <= self.items.len() {
                    self.selected = d - 1;
                }
            }
            KeyCode::Enter if !self.items.is_empty() => return Picked::Open(self.selected),
            _ => {}
        }
        Picked::None
    }

    pub fn render(&self, f: &mut Frame, area: Rect) {
        let mut lines = vec![Line::raw("")];
        for (i, (label, enabled)) in self.items.iter().enumerate() {
            let sel = i == self.selected;
            let mut st = Style::default();
            if !enabled {
                st = st.fg(Color::DarkGray);
            }
            if sel {
                st = st.add_modifier(Modifier::REVERSED);
            }
            lines.push(Line::from(vec![
                Span::raw(if sel { " ▶ " } else { "   " }),
                Span::styled(format!("{} - {label}", i + 1), st),
            ]));
        }
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {} ", self.title)),
            ),
            area,
        );
    }
}
