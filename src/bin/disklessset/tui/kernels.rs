//! The kernels list (`kernels`): each kernel of the kernels dir, its initramfs files
//! (present / missing) and the images that use it.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use disklessset::ops::KernelInfo;

pub fn render(f: &mut Frame, area: Rect, kernels: &Result<Vec<KernelInfo>, String>, dir: &str) {
    let [table_area, note] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Available kernels ");
    match kernels {
        Err(e) => f.render_widget(
            Paragraph::new(Line::styled(e.clone(), Style::default().fg(Color::Red)))
                .wrap(Wrap { trim: true })
                .block(block),
            table_area,
        ),
        Ok(list) if list.is_empty() => f.render_widget(
            Paragraph::new(format!(
                "No kernels in {dir}: copy vmlinuz-<version> files there."
            ))
            .wrap(Wrap { trim: true })
            .block(block),
            table_area,
        ),
        Ok(list) => {
            let rows: Vec<Row> = list
                .iter()
                .map(|k| {
                    let (initramfs, style) = if k.has_initramfs() {
                        (
                            k.initramfs
                                .iter()
                                .map(|(fl, file)| format!("{file} ({fl})"))
                                .collect::<Vec<_>>()
                                .join(", "),
                            Style::default(),
                        )
                    } else {
                        (
                            format!("missing initramfs-kernel-{}", k.version),
                            Style::default().fg(Color::Yellow),
                        )
                    };
                    let used = if k.used_by.is_empty() {
                        "-".to_string()
                    } else {
                        k.used_by.join(", ")
                    };
                    Row::new(vec![k.file.clone(), initramfs, used]).style(style)
                })
                .collect();
            let longest =
                |f: &dyn Fn(&KernelInfo) -> usize| list.iter().map(f).max().unwrap_or(0).max(7);
            let preferred = [
                longest(&|k| k.file.len()),
                longest(&|k| {
                    k.initramfs
                        .iter()
                        .map(|(fl, file)| fl.len() + file.len() + 5)
                        .sum::<usize>()
                        .max(k.version.len() + 26)
                }),
                longest(&|k| k.used_by.iter().map(|u| u.len() + 2).sum()),
            ];
            let avail = table_area.width.saturating_sub(2 + 2) as usize;
            let widths: Vec<Constraint> = super::images::fit_columns(&preferred, avail)
                .into_iter()
                .map(|w| Constraint::Length(w as u16))
                .collect();
            f.render_widget(
                Table::new(rows, widths)
                    .header(
                        Row::new(["KERNEL", "INITRAMFS", "USED BY"])
                            .style(Style::default().add_modifier(Modifier::BOLD)),
                    )
                    .block(block),
                table_area,
            )
        }
    }
    f.render_widget(
        Paragraph::new("Set an image's kernel: 6. Generate an image's initramfs: 8.")
            .style(Style::default().fg(Color::DarkGray))
            .wrap(Wrap { trim: true }),
        note,
    );
}
