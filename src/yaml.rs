//! YAML helpers: error messages with line and column, and the reference's Python-isms
//! (`True`/`False`, `Type.STANDARD`, `['gzip']` list reprs, `None`).
use yaml_serde::Value;

/// One-line description of a YAML error with its position.
pub fn describe_error(e: &yaml_serde::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(loc) if !msg.contains("line ") => {
            format!("line {} column {}: {msg}", loc.line(), loc.column())
        }
        _ => msg,
    }
}

/// Interprets a scalar the way the reference (Python) wrote it.
pub fn py_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim() {
            "True" | "true" | "yes" | "Yes" | "1" => Some(true),
            "False" | "false" | "no" | "No" | "0" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::Null => Some(false),
        _ => None,
    }
}

/// A Python list repr (`['gzip', "vim"]`, `[]`) or a real YAML sequence, or a comma list.
pub fn py_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Null => Some(vec![]),
        Value::Sequence(seq) => seq.iter().map(scalar_string).collect(),
        Value::String(s) => {
            let t = s.trim();
            if t == "None" || t.is_empty() {
                return Some(vec![]);
            }
            let inner = if t.starts_with('[') && t.ends_with(']') {
                &t[1..t.len() - 1]
            } else {
                t
            };
            Some(
                inner
                    .split(',')
                    .map(|p| p.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            )
        }
        _ => None,
    }
}

/// Any scalar as a string (numbers and bools included); None for mappings/sequences.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        Value::Null => None,
        _ => None,
    }
}

/// `Type.STANDARD` -> `standard`; `standard` -> `standard`.
pub fn py_enum(v: &str) -> String {
    let t = v.trim();
    let t = t.rsplit('.').next().unwrap_or(t);
    t.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_isms() {
        assert_eq!(py_bool(&Value::String("True".into())), Some(true));
        assert_eq!(py_bool(&Value::Bool(false)), Some(false));
        assert_eq!(
            py_list(&Value::String("['gzip', \"vim\"]".into())),
            Some(vec!["gzip".to_string(), "vim".to_string()])
        );
        assert_eq!(py_list(&Value::String("[]".into())), Some(vec![]));
        assert_eq!(py_enum("Type.CORE"), "core");
        let v: Value = yaml_serde::from_str("a: ['gzip']\nb: True\n").unwrap();
        assert_eq!(py_list(&v["a"]), Some(vec!["gzip".to_string()]));
        assert_eq!(py_bool(&v["b"]), Some(true));
    }
}
