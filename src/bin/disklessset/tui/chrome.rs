//! The frame around every screen: title bar, help line, message line, status bar (store
//! path, image count, locks held by other processes).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// What the status bar and the images view show (`ops::query::store_summary`).
pub use disklessset::ops::query::StoreSummary as StoreStatus;

/// Reads the store status.
pub fn read_status(cfg: &disklessset::ops::Config) -> StoreStatus {
    disklessset::ops::query::store_summary(cfg)
}

pub enum MsgKind {
    Info,
    Error,
}

/// Splits the screen and draws title, help, message and status; returns the body area.
pub fn draw(
    f: &mut Frame,
    title: &str,
    help: &str,
    message: Option<&(String, MsgKind)>,
    status: &StoreStatus,
    dry_run: bool,
) -> Rect {
    let area = f.area();
    let msg_h = match message {
        Some((m, _)) if m.chars().count() + 1 > area.width as usize => 2,
        Some(_) => 1,
        None => 0,
    };
    // Two lines when it does not fit one; three for the longest (the images view's keys
    // on 80 columns).
    let help_len = help.chars().count() + 1;
    let help_h = if help_len > 2 * area.width as usize {
        3
    } else if help_len > area.width as usize {
        2
    } else {
        1
    };
    let [top, body, msg, help_area, status_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(msg_h),
        Constraint::Length(help_h),
        Constraint::Length(1),
    ])
    .areas(area);
    let bar = Style::default().fg(Color::Black).bg(Color::Cyan);
    let mut t = vec![Span::styled(
        format!(" disklessset — {title}"),
        bar.add_modifier(Modifier::BOLD),
    )];
    if dry_run {
        t.push(Span::styled("  [dry run: nothing changes]", bar));
    }
    f.render_widget(Paragraph::new(Line::from(t)).style(bar), top);
    if let Some((m, kind)) = message {
        let st = match kind {
            MsgKind::Info => Style::default().fg(Color::Green),
            MsgKind::Error => Style::default().fg(Color::Red),
        };
        f.render_widget(
            Paragraph::new(Line::styled(format!(" {m}"), st)).wrap(Wrap { trim: true }),
            msg,
        );
    }
    f.render_widget(
        Paragraph::new(Line::styled(
            format!(" {help}"),
            Style::default().fg(Color::DarkGray),
        ))
        .wrap(Wrap { trim: true }),
        help_area,
    );
    let count = if status.error.is_some() {
        "no store yet".to_string()
    } else {
        match status.images.len() {
            1 => "1 image".to_string(),
            n => format!("{n} images"),
        }
    };
    let locks = if status.foreign_locks.is_empty() {
        "no locks held by other processes".to_string()
    } else {
        format!("locked: {}", status.foreign_locks.join(", "))
    };
    f.render_widget(
        Paragraph::new(Line::raw(format!(
            " store {} │ {count} │ {locks}",
            status.store.display()
        )))
        .style(Style::default().bg(Color::DarkGray).fg(Color::White)),
        status_area,
    );
    body
}
