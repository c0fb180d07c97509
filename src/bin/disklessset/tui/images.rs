//! The images view: a table of every image (state, module, layout, size, kernel,
//! generation, nodes) and the actions on the selected one. Menu entries 3, 4 and 9 open
//! it as a picker whose Enter does that entry's action.
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use disklessset::ops::{human_size, ImageInfo, State};

use super::chrome::StoreStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Browse,
    Remove,
    Clone,
    Clear,
    Mount,
    Unmount,
    Resize,
    Rollback,
    Kernel,
    Initramfs,
    /// `shell NAME`, `exec NAME -- CMD`, `ansible NAME PLAYBOOK`: the UI is suspended.
    Shell,
    Exec,
    Ansible,
    /// `rebuild NAME`, `diff NAME B`: forms with the image filled in.
    Rebuild,
    Diff,
}

impl Purpose {
    pub fn title(self) -> &'static str {
        match self {
            Purpose::Browse => "Images",
            Purpose::Remove => "Remove an image: pick it",
            Purpose::Clone => "Clone an image: pick the source",
            Purpose::Clear => "Clear a corrupted image: pick it",
            Purpose::Mount => "Mount an image: pick it",
            Purpose::Unmount => "Unmount an image (repack): pick it",
            Purpose::Resize => "Resize an image: pick it",
            Purpose::Rollback => "Roll an image back one generation: pick it",
            Purpose::Kernel => "Manage the kernel of an image: pick it",
            Purpose::Initramfs => "Generate the initramfs of an image: pick it",
            Purpose::Shell => "Open a shell in an image: pick it",
            Purpose::Exec => "Run a command in an image: pick it",
            Purpose::Ansible => "Run a playbook in an image: pick it",
            Purpose::Rebuild => "Rebuild an image from its record: pick it",
            Purpose::Diff => "Compare an image with another: pick the first",
        }
    }

    /// The livenet module's actions that work on an existing image.
    pub fn for_module_action(action: &str) -> Option<Purpose> {
        match action {
            "mount" => Some(Purpose::Mount),
            "unmount" => Some(Purpose::Unmount),
            "resize" => Some(Purpose::Resize),
            "rollback" => Some(Purpose::Rollback),
            "kernel set" => Some(Purpose::Kernel),
            "initramfs" => Some(Purpose::Initramfs),
            _ => None,
        }
    }
}

/// What the user asked for on the selected image.
pub enum Request {
    None,
    Back,
    Details(String),
    /// Do `Purpose` (never `Browse`) on this image.
    Act(Purpose, String),
}

pub struct ImagesState {
    pub purpose: Purpose,
    pub selected: Option<String>,
}

impl ImagesState {
    pub fn new(purpose: Purpose, selected: Option<String>) -> Self {
        ImagesState { purpose, selected }
    }

    fn index(&self, images: &[ImageInfo]) -> Option<usize> {
        if images.is_empty() {
            return None;
        }
        Some(
            self.selected
                .as_ref()
                .and_then(|s| images.iter().position(|i| &i.name == s))
                .unwrap_or(0),
        )
    }

    pub fn on_key(&mut self, k: KeyEvent, st: &StoreStatus) -> Request {
        let imgs = &st.images;
        let idx = self.index(imgs);
        let name = idx.map(|i| imgs[i].name.clone());
        match k.code {
            KeyCode::Esc => return Request::Back,
            KeyCode::Up => {
                if let Some(i) = idx {
                    self.selected = Some(imgs[i.saturating_sub(1)].name.clone());
                }
            }
            KeyCode::Down => {
                if let Some(i) = idx {
                    self.selected = Some(imgs[(i + 1).min(imgs.len() - 1)].name.clone());
                }
            }
            KeyCode::Enter => {
                if let Some(n) = name {
                    return match self.purpose {
                        Purpose::Browse => Request::Details(n),
                        p => Request::Act(p, n),
                    };
                }
            }
            KeyCode::Char(c) if self.purpose == Purpose::Browse => {
                if let Some(n) = name {
                    let p = match c {
                        'r' => Purpose::Remove,
                        'c' => Purpose::Clone,
                        'x' => Purpose::Clear,
                        'm' => Purpose::Mount,
                        'u' => Purpose::Unmount,
                        's' => Purpose::Resize,
                        'o' => Purpose::Rollback,
                        'k' => Purpose::Kernel,
                        'i' => Purpose::Initramfs,
                        'h' => Purpose::Shell,
                        'e' => Purpose::Exec,
                        'a' => Purpose::Ansible,
                        'b' => Purpose::Rebuild,
                        'd' => Purpose::Diff,
                        _ => return Request::None,
                    };
                    return Request::Act(p, n);
                }
            }
            _ => {}
        }
        Request::None
    }

    pub fn help(&self) -> &'static str {
        match self.purpose {
            Purpose::Browse => "↑↓ · Enter details · r remove · c clone · x clear · m/u mount/unmount · s resize · o rollback · k kernel · i initramfs · h shell · e exec · a ansible · b rebuild · d diff · Esc back",
            Purpose::Remove | Purpose::Clear | Purpose::Rollback => {
                "↑↓ select · Enter (asks first) · Esc back"
            }
            _ => "↑↓ select · Enter choose · Esc back",
        }
    }

    pub fn render(&self, f: &mut Frame, area: Rect, st: &StoreStatus) {
        let [table_area, detail_area] =
            Layout::vertical([Constraint::Min(4), Constraint::Length(5)]).areas(area);
        let block = Block::default()
            .borders(Borders::ALL)
            .title(format!(" {} ", self.purpose.title()));
        if let Some(e) = &st.error {
            f.render_widget(
                Paragraph::new(e.as_str())
                    .wrap(Wrap { trim: true })
                    .block(block),
                area,
            );
            return;
        }
        if st.images.is_empty() {
            f.render_widget(
                Paragraph::new("No images yet: create one with 1 (modules).").block(block),
                area,
            );
            return;
        }
        let header = Row::new([
            "NAME", "STATE", "MODULE", "LAYOUT", "SIZE", "KERNEL", "GEN", "NODES",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD));
        let rows: Vec<Row> = st
            .images
            .iter()
            .map(|i| {
                let style = match i.state {
                    State::Corrupted => Style::default().fg(Color::Red),
                    State::InCreation => Style::default().fg(Color::Yellow),
                    State::Mounted => Style::default().fg(Color::Cyan),
                    State::Created => Style::default(),
                };
                Row::new(vec![
                    i.name.clone(),
                    i.state_label(),
                    i.module.clone().unwrap_or_else(|| "-".into()),
                    i.layout.clone().unwrap_or_else(|| "-".into()),
                    human_size(i.size_bytes),
                    i.kernel.clone().unwrap_or_else(|| "-".into()),
                    if i.generation > 0 {
                        i.generation.to_string()
                    } else {
                        "-".into()
                    },
                    st.nodes.get(&i.name).cloned().unwrap_or_else(|| "-".into()),
                ])
                .style(style)
            })
            .collect();
        // Preferred widths from the content, shrunk to fit (see `fit_columns`).
        let longest = |f: &dyn Fn(&ImageInfo) -> usize, min: usize| {
            st.images.iter().map(f).max().unwrap_or(0).max(min)
        };
        let preferred = [
            longest(&|i| i.name.len(), 4).min(32),
            longest(&|i| i.state_label().len(), 5),
            longest(&|i| i.module.as_deref().unwrap_or("-").len(), 6),
            longest(&|i| i.layout.as_deref().unwrap_or("-").len(), 6),
            6,
            longest(&|i| i.kernel.as_deref().unwrap_or("-").len(), 6).min(40),
            3,
            longest(&|i| st.nodes.get(&i.name).map_or(1, String::len), 5).min(40),
        ];
        let avail = table_area.width.saturating_sub(2 + 2 + 7) as usize;
        let widths: Vec<Constraint> = fit_columns(&preferred, avail)
            .into_iter()
            .map(|w| Constraint::Length(w as u16))
            .collect();
        let mut ts = TableState::default().with_selected(self.index(&st.images));
        f.render_stateful_widget(
            Table::new(rows, widths)
                .header(header)
                .block(block)
                .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
                .highlight_symbol("▶ "),
            table_area,
            &mut ts,
        );
        let mut lines = Vec::new();
        if let Some(i) = self.index(&st.images).map(|x| &st.images[x]) {
            lines.push(Line::raw(format!("{}: {}", i.name, i.dir.display())));
            if let Some(p) = &i.problem {
                lines.push(Line::styled(p.clone(), Style::default().fg(Color::Red)));
            }
        }
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), detail_area);
    }
}

/// One image in detail (`show NAME`).
/// `booted_by`: the nodes bootset assigns to the image, folded.
pub fn render_details(
    f: &mut Frame,
    area: Rect,
    info: &Result<ImageInfo, String>,
    booted_by: Option<&str>,
) {
    let block = Block::default().borders(Borders::ALL).title(" Image ");
    let lines: Vec<Line> = match info {
        Err(e) => vec![Line::styled(e.clone(), Style::default().fg(Color::Red))],
        Ok(i) => {
            let mut v = vec![
                ("name", i.name.clone()),
                ("state", i.state_label()),
                ("directory", i.dir.display().to_string()),
                ("size", human_size(i.size_bytes)),
            ];
            if let Some(r) = &i.record {
                v.push(("image_class", r.image_class.as_str().to_string()));
                let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
                v.push(("kernel", opt(&r.kernel)));
                v.push(("initramfs", opt(&r.image)));
                if let Some(t) = r.livenet_type {
                    v.push(("livenet_type", t.as_str().to_string()));
                }
                if let Some(s) = r.livenet_size {
                    v.push(("livenet_size", format!("{s} MiB")));
                }
                if let Some(l) = r.layout {
                    v.push(("layout", l.as_str().to_string()));
                }
                if r.generation > 0 {
                    v.push(("generation", r.generation.to_string()));
                }
                if let Some(m) = &r.message {
                    v.push(("message", m.clone()));
                }
                if let Some(n) = &r.nodes {
                    v.push(("nodes", n.clone()));
                }
                v.push(("is_mounted", r.is_mounted.to_string()));
                v.push(("creation_date", opt(&r.creation_date)));
            }
            v.push(("booted by", booted_by.unwrap_or("-").to_string()));
            for m in &i.mounts {
                v.push(("mount", m.display().to_string()));
            }
            if let Some(p) = &i.problem {
                v.push(("problem", p.clone()));
            }
            let n = v.len();
            v.into_iter()
                .enumerate()
                .map(|(k, (key, val))| {
                    let branch = if k + 1 == n { "└──" } else { "├──" };
                    Line::raw(format!(" {branch} {key}: {val}"))
                })
                .collect()
        }
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

/// Shrinks preferred column widths to fit `avail` columns, deterministically (the layout
/// solver's answer for over-constrained tables varies from run to run): the widest column
/// loses one cell at a time down to 3, then the last columns are dropped.
pub fn fit_columns(preferred: &[usize], avail: usize) -> Vec<usize> {
    let mut w = preferred.to_vec();
    while w.iter().sum::<usize>() > avail {
        let widest = w
            .iter()
            .enumerate()
            .filter(|(_, x)| **x > 3)
            .max_by_key(|(i, x)| (**x, usize::MAX - *i))
            .map(|(i, _)| i);
        match widest {
            Some(i) => w[i] -= 1,
            None => match w.iter().rposition(|x| *x > 0) {
                Some(i) => w[i] = 0,
                None => break,
            },
        }
    }
    w
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_fit() {
        assert_eq!(super::fit_columns(&[4, 10, 6], 30), vec![4, 10, 6]);
        assert_eq!(super::fit_columns(&[4, 10, 6], 16), vec![4, 6, 6]);
        assert_eq!(super::fit_columns(&[4, 10, 6], 5), vec![3, 0, 0]);
    }
}
