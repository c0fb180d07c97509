//! Readable key strings for tests (helix style): `"2<Enter>"`, `"demo1<Tab>hi<ret>"`,
//! `"<Esc>"`, `"<C-c>"`, `"<S-Tab>"`, `"<Up>"`, `"<BS>"`, `"<space>"`, `"<lt>"` for `<`.
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub fn parse(s: &str) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '<' {
            out.push(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
            continue;
        }
        let mut name = String::new();
        for c in it.by_ref() {
            if c == '>' {
                break;
            }
            name.push(c);
        }
        out.push(named(&name));
    }
    out
}

fn named(name: &str) -> KeyEvent {
    let (mods, base) = if let Some(b) = name.strip_prefix("C-") {
        (KeyModifiers::CONTROL, b)
    } else if let Some(b) = name.strip_prefix("S-") {
        (KeyModifiers::SHIFT, b)
    } else {
        (KeyModifiers::NONE, name)
    };
    let code = match base.to_ascii_lowercase().as_str() {
        "enter" | "ret" | "cr" => KeyCode::Enter,
        "esc" => KeyCode::Esc,
        "tab" if mods == KeyModifiers::SHIFT => KeyCode::BackTab,
        "tab" => KeyCode::Tab,
        "bs" | "backspace" => KeyCode::Backspace,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "space" => KeyCode::Char(' '),
        "lt" => KeyCode::Char('<'),
        _ => {
            let mut cs = base.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => KeyCode::Char(c),
                _ => panic!("unknown key name <{name}>"),
            }
        }
    };
    KeyEvent::new(code, mods)
}

#[test]
fn parses_key_strings() {
    let k = parse("2<Enter><C-c><S-Tab>a");
    assert_eq!(k.len(), 5);
    assert_eq!(k[0].code, KeyCode::Char('2'));
    assert_eq!(k[1].code, KeyCode::Enter);
    assert_eq!(k[2].modifiers, KeyModifiers::CONTROL);
    assert_eq!(k[3].code, KeyCode::BackTab);
}
