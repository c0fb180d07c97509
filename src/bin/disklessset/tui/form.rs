//! Declarative forms: a `FormSpec` lists fields (text with a validator, masked password
//! with its confirmation, choice lists, sizes with units, paths) and how the values become
//! an `Action`; `FormState` does the editing, validation as you type, and the recap shown
//! before any work starts. A new module form is a new `FormSpec` in `forms.rs`.
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::action::Action;

/// Checks one value; the error is shown under the form while typing.
pub type Validator = fn(&str) -> Result<(), String>;

// Size serves the nfs forms; it is exercised by this file's tests until they land.
#[allow(dead_code)]
pub enum FieldKind {
    Text(Validator),
    /// Masked entry (not validated beyond being non-empty).
    Password,
    /// Masked, must equal the field with this key.
    Confirm(&'static str),
    /// One of these values; Left/Right (or Space) cycle.
    Choice(Vec<String>),
    /// A size with units (700M, 1.5G), checked by the core's parser.
    Size,
    /// A node set (c[001-100],login1,@group), expanded as typed by the core's node set
    /// rules with the groups of this inventory (None: it could not be read).
    NodeSet(Option<disklessset::ops::Inventory>),
}

pub struct FieldSpec {
    pub key: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    pub default: String,
    pub help: &'static str,
}

impl FieldSpec {
    pub fn text(key: &'static str, label: &'static str, v: Validator) -> Self {
        FieldSpec {
            key,
            label,
            kind: FieldKind::Text(v),
            default: String::new(),
            help: "",
        }
    }
    pub fn default(mut self, d: &str) -> Self {
        self.default = d.to_string();
        self
    }
    pub fn help(mut self, h: &'static str) -> Self {
        self.help = h;
        self
    }
    fn masked(&self) -> bool {
        matches!(self.kind, FieldKind::Password | FieldKind::Confirm(_))
    }
}

/// The values of a submitted form, by key.
pub struct Values(Vec<(&'static str, String)>);

impl Values {
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

pub struct FormSpec {
    pub title: String,
    /// What the recap says will happen ("Create demo image {name}").
    pub recap: fn(&Values) -> String,
    pub fields: Vec<FieldSpec>,
    pub submit: fn(&Values) -> Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Editing,
    Recap,
}

pub struct FormState {
    pub spec: FormSpec,
    values: Vec<String>,
    touched: Vec<bool>,
    focus: usize,
    pub stage: Stage,
    submitted_once: bool,
}

pub enum FormOutcome {
    None,
    Back,
    Submit(Action),
}

impl FormState {
    pub fn new(spec: FormSpec) -> Self {
        let values: Vec<String> = spec.fields.iter().map(|f| f.default.clone()).collect();
        let n = values.len();
        FormState {
            spec,
            values,
            touched: vec![false; n],
            focus: 0,
            stage: Stage::Editing,
            submitted_once: false,
        }
    }

    fn values(&self) -> Values {
        Values(
            self.spec
                .fields
                .iter()
                .zip(&self.values)
                .map(|(f, v)| (f.key, v.clone()))
                .collect(),
        )
    }

    /// The error of field `i` for its current value, if any.
    pub fn error(&self, i: usize) -> Option<String> {
        let v = &self.values[i];
        match &self.spec.fields[i].kind {
            FieldKind::Text(check) => check(v).err(),
            FieldKind::Password => v.is_empty().then(|| "must not be empty".to_string()),
            FieldKind::Confirm(other) => {
                let j = self.spec.fields.iter().position(|f| f.key == *other)?;
                (self.values[j] != *v).then(|| "the two entries differ".to_string())
            }
            FieldKind::Choice(opts) => (!opts.contains(v)).then(|| "choose a value".to_string()),
            FieldKind::Size => disklessset::ops::parse_size_mib(v)
                .err()
                .map(|e| e.to_string()),
            FieldKind::NodeSet(inv) => {
                disklessset::ops::query::check_nodeset(inv.as_ref(), v).err()
            }
        }
    }

    fn shown_error(&self, i: usize) -> Option<String> {
        if self.touched[i] || self.submitted_once {
            self.error(i)
        } else {
            None
        }
    }

    pub fn on_key(&mut self, k: KeyEvent) -> FormOutcome {
        if self.stage == Stage::Recap {
            return match k.code {
                KeyCode::Enter | KeyCode::Char('y') => {
                    self.stage = Stage::Editing;
                    let action = (self.spec.submit)(&self.values());
                    // The action holds what it needs (a password's hash): drop the
                    // masked clear text now.
                    for (i, f) in self.spec.fields.iter().enumerate() {
                        if f.masked() {
                            self.values[i].clear();
                            self.touched[i] = false;
                        }
                    }
                    FormOutcome::Submit(action)
                }
                KeyCode::Esc | KeyCode::Char('n') => {
                    self.stage = Stage::Editing;
                    FormOutcome::None
                }
                _ => FormOutcome::None,
            };
        }
        let n = self.values.len();
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Esc => return FormOutcome::Back,
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % n,
            KeyCode::BackTab | KeyCode::Up => self.focus = (self.focus + n - 1) % n,
            KeyCode::Enter => {
                if self.focus + 1 < n {
                    self.focus += 1;
                } else {
                    self.submitted_once = true;
                    match (0..n).find(|i| self.error(*i).is_some()) {
                        Some(i) => self.focus = i,
                        None => self.stage = Stage::Recap,
                    }
                }
            }
            KeyCode::Left | KeyCode::Right | KeyCode::Char(' ')
                if matches!(self.spec.fields[self.focus].kind, FieldKind::Choice(_)) =>
            {
                if let FieldKind::Choice(opts) = &self.spec.fields[self.focus].kind {
                    let cur = opts
                        .iter()
                        .position(|o| *o == self.values[self.focus])
                        .unwrap_or(0);
                    let m = opts.len().max(1);
                    let next = if k.code == KeyCode::Left {
                        (cur + m - 1) % m
                    } else {
                        (cur + 1) % m
                    };
                    if let Some(o) = opts.get(next) {
                        self.values[self.focus] = o.clone();
                    }
                    self.touched[self.focus] = true;
                }
            }
            KeyCode::Char('u') if ctrl && !self.on_choice() => {
                self.values[self.focus].clear();
                self.touched[self.focus] = true;
            }
            KeyCode::Backspace if !self.on_choice() => {
                self.values[self.focus].pop();
                self.touched[self.focus] = true;
            }
            KeyCode::Char(c) if !ctrl && !self.on_choice() => {
                self.values[self.focus].push(c);
                self.touched[self.focus] = true;
            }
            _ => {}
        }
        FormOutcome::None
    }

    fn on_choice(&self) -> bool {
        matches!(self.spec.fields[self.focus].kind, FieldKind::Choice(_))
    }

    pub fn help(&self) -> &'static str {
        match self.stage {
            Stage::Editing => {
                "Tab/↑↓ field · Enter next / submit on the last field · ←→ choices · Esc back"
            }
            Stage::Recap => "Enter / y: start · Esc / n: back to the form",
        }
    }

    fn shown_value(&self, i: usize) -> String {
        let f = &self.spec.fields[i];
        let v = &self.values[i];
        if f.masked() {
            "•".repeat(v.chars().count())
        } else if let FieldKind::Choice(_) = f.kind {
            format!("< {v} >")
        } else {
            v.clone()
        }
    }

    pub fn render(&self, f: &mut Frame, area: Rect) {
        match self.stage {
            Stage::Editing => self.render_editing(f, area),
            Stage::Recap => self.render_recap(f, area),
        }
    }

    fn render_editing(&self, f: &mut Frame, area: Rect) {
        let n = self.values.len() as u16;
        let [fields_area, info_area] =
            Layout::vertical([Constraint::Length(n + 2), Constraint::Min(0)]).areas(area);
        let label_w = self
            .spec
            .fields
            .iter()
            .map(|f| f.label.chars().count())
            .max()
            .unwrap_or(0);
        let visible = fields_area.height.saturating_sub(2).max(1) as usize;
        let offset = self.focus.saturating_sub(visible.saturating_sub(1));
        let lines: Vec<Line> = (0..self.values.len())
            .skip(offset)
            .take(visible)
            .map(|i| {
                let focused = i == self.focus;
                let mark = match self.shown_error(i) {
                    Some(_) => Span::styled(" ✘", Style::default().fg(Color::Red)),
                    None if !self.values[i].is_empty() && self.error(i).is_none() => {
                        Span::styled(" ✔", Style::default().fg(Color::Green))
                    }
                    None => Span::raw("  "),
                };
                let vstyle = if focused {
                    Style::default().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default()
                };
                let mut value = self.shown_value(i);
                if focused && !matches!(self.spec.fields[i].kind, FieldKind::Choice(_)) {
                    value.push('▏');
                }
                Line::from(vec![
                    Span::raw(if focused { "> " } else { "  " }),
                    Span::raw(format!("{:<w$} : ", self.spec.fields[i].label, w = label_w)),
                    Span::styled(value, vstyle),
                    mark,
                ])
            })
            .collect();
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {} ", self.spec.title)),
            ),
            fields_area,
        );
        let field = &self.spec.fields[self.focus];
        let mut info = Vec::new();
        if let Some(e) = self.shown_error(self.focus) {
            info.push(Line::styled(
                format!("{}: {e}", field.label),
                Style::default().fg(Color::Red),
            ));
        }
        if !field.help.is_empty() {
            info.push(Line::raw(field.help));
        }
        f.render_widget(Paragraph::new(info).wrap(Wrap { trim: true }), info_area);
    }

    fn render_recap(&self, f: &mut Frame, area: Rect) {
        let vals = self.values();
        let mut lines = vec![
            Line::styled(
                (self.spec.recap)(&vals),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Line::raw(""),
        ];
        for (i, fs) in self.spec.fields.iter().enumerate() {
            if matches!(fs.kind, FieldKind::Confirm(_)) {
                continue;
            }
            let v = if fs.masked() {
                "(set, hidden)".to_string()
            } else {
                self.values[i].clone()
            };
            lines.push(Line::raw(format!("  {}: {v}", fs.label)));
        }
        lines.push(Line::raw(""));
        lines.push(Line::raw("Nothing has been done yet. Start?"));
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {} — recap ", self.spec.title)),
            ),
            area,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keys::parse;

    fn spec() -> FormSpec {
        FormSpec {
            title: "t".into(),
            recap: |_| "r".into(),
            fields: vec![
                FieldSpec {
                    key: "pw",
                    label: "Password",
                    kind: FieldKind::Password,
                    default: String::new(),
                    help: "",
                },
                FieldSpec {
                    key: "pw2",
                    label: "Again",
                    kind: FieldKind::Confirm("pw"),
                    default: String::new(),
                    help: "",
                },
                FieldSpec {
                    key: "size",
                    label: "Size",
                    kind: FieldKind::Size,
                    default: "1.5G".into(),
                    help: "",
                },
                FieldSpec {
                    key: "type",
                    label: "Type",
                    kind: FieldKind::Choice(vec!["standard".into(), "small".into()]),
                    default: "standard".into(),
                    help: "",
                },
            ],
            submit: |_| Action::Nothing,
        }
    }

    #[test]
    fn password_confirmation_and_sizes_are_checked() {
        let mut s = FormState::new(spec());
        for k in parse("abc<Tab>abd<Tab><C-u>12X") {
            s.on_key(k);
        }
        assert!(s.error(1).is_some());
        assert!(s.error(2).is_some());
        for k in parse("<BS><BS><BS>700M<S-Tab>") {
            s.on_key(k);
        }
        assert!(s.error(2).is_none());
        for k in parse("<BS>c<Tab><Tab><Right><Enter>") {
            s.on_key(k);
        }
        assert_eq!(s.values[3], "small");
        assert_eq!(s.stage, Stage::Recap);
    }
}
