//! Confirm popups: a question, the exact things that will be affected, and the action
//! they return once confirmed (gitui style). Nothing runs until `y`.
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::action::Action;

pub struct Confirm {
    pub title: String,
    pub lines: Vec<String>,
    pub yes: String,
    pub no: String,
    pub action: Action,
}

pub enum Answer {
    Yes(Action),
    No,
    Pending,
}

impl Confirm {
    pub fn on_key(&mut self, k: KeyEvent) -> Answer {
        match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                Answer::Yes(std::mem::replace(&mut self.action, Action::Nothing))
            }
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Answer::No,
            _ => Answer::Pending,
        }
    }

    pub fn render(&self, f: &mut Frame, area: Rect) {
        let want = self
            .lines
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
            .max(self.title.chars().count())
            + 6;
        let width = want
            .max(30)
            .min(area.width.saturating_sub(2).max(1) as usize) as u16;
        let inner_w = width.saturating_sub(2).max(1) as usize;
        let wrapped: usize = self
            .lines
            .iter()
            .map(|l| l.chars().count().max(1).div_ceil(inner_w))
            .sum();
        let height = (wrapped as u16 + 5).min(area.height);
        let [r] = Layout::horizontal([Constraint::Length(width)])
            .flex(Flex::Center)
            .areas(area);
        let [r] = Layout::vertical([Constraint::Length(height)])
            .flex(Flex::Center)
            .areas(r);
        let mut text: Vec<Line> = self.lines.iter().map(|l| Line::raw(l.clone())).collect();
        text.push(Line::raw(""));
        text.push(Line::styled(
            format!("[y] {}   [n] / Esc {}", self.yes, self.no),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: false }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(Style::default().fg(Color::Yellow))
                    .title(format!(" {} ", self.title)),
            ),
            r,
        );
    }
}
