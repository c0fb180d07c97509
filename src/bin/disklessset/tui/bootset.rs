//! The boot status of nodes (`bootset -s`): the core's status lines, one per boot type
//! and image, with the nodes folded.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use disklessset::ops::BootStatusLine as StatusLine;

pub fn render(f: &mut Frame, area: Rect, status: &Result<Vec<StatusLine>, String>, nodes: &str) {
    let [table_area, note] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Boot status of nodes ");
    match status {
        Err(e) => f.render_widget(
            Paragraph::new(Line::styled(e.clone(), Style::default().fg(Color::Red)))
                .wrap(Wrap { trim: true })
                .block(block),
            table_area,
        ),
        Ok(lines) if lines.is_empty() => f.render_widget(
            Paragraph::new(format!("No nodes: describe them in {nodes}."))
                .wrap(Wrap { trim: true })
                .block(block),
            table_area,
        ),
        Ok(lines) => {
            let rows: Vec<Row> = lines
                .iter()
                .map(|l| {
                    let style = if l.boot_type == "unassigned" {
                        Style::default().fg(Color::DarkGray)
                    } else {
                        Style::default()
                    };
                    Row::new(vec![
                        l.boot_type.clone(),
                        l.image.clone().unwrap_or_else(|| "-".into()),
                        l.count.to_string(),
                        l.nodes.clone(),
                    ])
                    .style(style)
                })
                .collect();
            let image_w = lines
                .iter()
                .map(|l| l.image.as_deref().map_or(1, str::len))
                .max()
                .unwrap_or(1)
                .clamp(5, 32) as u16;
            let table = Table::new(
                rows,
                [
                    Constraint::Length(11),
                    Constraint::Length(image_w),
                    Constraint::Length(5),
                    Constraint::Min(10),
                ],
            )
            .header(
                Row::new(["BOOT TYPE", "IMAGE", "COUNT", "NODES"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(block);
            f.render_widget(table, table_area);
        }
    }
    f.render_widget(
        Paragraph::new(format!(
            "Nodes from {nodes}. Assign boot types with `bootset -n NODESET -b TYPE`."
        ))
        .wrap(Wrap { trim: true }),
        note,
    );
}
