//! Machine groups by selectors (issue 13, foremanlite's groups): a group of `nodes.yml`
//! may declare `selectors` (tests on a node's name, MAC, IP or a hardware fact) and a
//! `match` expression over their names; the nodes it selects are members of the group
//! as if they listed it.
//!
//! ```yaml
//! groups:
//!   gpu:
//!     selectors:
//!       mac: {regex: '^52:54:00:aa:'}     # the selector name is the field it tests
//!       big: {field: memory_mib, min: 4096} # or `field:` names it
//!       vendor: QEMU                       # a plain value: exact
//!     match: "mac and (big or not vendor)"  # default: every selector, `and`
//!     vars: {role: gpu}
//! ```
//!
//! A test is `exact: V` (MACs compared normalised), `regex: RE` (searched, unanchored:
//! write `^...$`; the `regex` crate's syntax, `(?i)` for case-insensitive), `min: N`
//! and/or `max: N` (inclusive; numeric facts only: cpus, memory_mib, disks). A node
//! lacking the field (no facts reported) fails every test on it.
//!
//! The `match` parser is hand-written: the grammar is four rules (`or`, `and`, `not`,
//! parentheses over names); a general expression crate (evalexpr, ...) would accept far
//! more than this (arithmetic, assignments) and give poorer errors for the names.
use std::fmt;

use regex::Regex;
use yaml_serde::Value;

use super::facts::Facts;
use super::inventory::{normalize_mac, Node};
use crate::yaml::scalar_string;

/// Fields a selector may test besides the facts ([`Facts::KEYS`]).
pub const NODE_FIELDS: &[&str] = &["name", "mac", "ip"];
/// Facts compared as numbers (`min`, `max`).
pub const NUMERIC: &[&str] = &["cpus", "memory_mib", "disks"];

/// One test of a selector.
#[derive(Debug, Clone)]
pub enum Test {
    Exact(String),
    Regex(Regex),
    /// Inclusive bounds.
    Range(Option<u64>, Option<u64>),
}

/// A named test on one field.
#[derive(Debug, Clone)]
pub struct Selector {
    pub name: String,
    pub field: String,
    pub tests: Vec<Test>,
}

/// The `match` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Sel(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    pub fn eval(&self, truth: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Expr::Sel(s) => truth(s),
            Expr::Not(e) => !e.eval(truth),
            Expr::And(a, b) => a.eval(truth) && b.eval(truth),
            Expr::Or(a, b) => a.eval(truth) || b.eval(truth),
        }
    }

    fn names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Sel(s) => out.push(s),
            Expr::Not(e) => e.names(out),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.names(out);
                b.names(out);
            }
        }
    }

    fn prec(&self) -> u8 {
        match self {
            Expr::Or(..) => 1,
            Expr::And(..) => 2,
            Expr::Not(_) | Expr::Sel(_) => 3,
        }
    }
}

impl fmt::Display for Expr {
    /// Minimal parentheses: `a and (b or not c)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |f: &mut fmt::Formatter<'_>, e: &Expr, min: u8| {
            if e.prec() < min {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match self {
            Expr::Sel(s) => f.write_str(s),
            Expr::Not(e) => {
                f.write_str("not ")?;
                side(f, e, 3)
            }
            Expr::And(a, b) => {
                side(f, a, 2)?;
                f.write_str(" and ")?;
                side(f, b, 2)
            }
            Expr::Or(a, b) => {
                side(f, a, 1)?;
                f.write_str(" or ")?;
                side(f, b, 1)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokens(s: &str) -> Result<Vec<(usize, Tok)>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push((i + 1, Tok::Open));
            i += 1;
        } else if c == ')' {
            out.push((i + 1, Tok::Close));
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            let start = i;
            while i < b.len()
                && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-')
            {
                i += 1;
            }
            let w = &s[start..i];
            out.push((
                start + 1,
                match w {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    _ => Tok::Name(w.to_string()),
                },
            ));
        } else {
            return Err(format!(
                "unexpected {:?} at column {}: use selector names, and, or, not, parentheses",
                s[i..].chars().next().unwrap_or(c),
                i + 1
            ));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn col(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|(c, _)| *c)
            .unwrap_or(self.len + 1)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.not()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let col = self.col();
        match self.toks.get(self.pos).map(|(_, t)| t.clone()) {
            Some(Tok::Name(n)) => {
                self.pos += 1;
                Ok(Expr::Sel(n))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(format!(
                        "missing ')' at column {} (the '(' at column {col})",
                        self.col()
                    ));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(t) => Err(format!(
                "expected a selector name or '(' at column {col}, found {}",
                match t {
                    Tok::And => "and",
                    Tok::Or => "or",
                    Tok::Not => "not",
                    Tok::Close => "')'",
                    Tok::Open | Tok::Name(_) => "?",
                }
            )),
            None => Err(format!(
                "expected a selector name or '(' at column {col}, found the end"
            )),
        }
    }
}

/// Parses a `match` expression (names unchecked; see [`GroupSelect::parse`]).
pub fn parse_match(s: &str) -> Result<Expr, String> {
    let toks = tokens(s)?;
    let mut p = Parser {
        toks,
        pos: 0,
        len: s.len(),
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!(
            "unexpected {} at column {}: join selectors with and / or",
            match &p.toks[p.pos].1 {
                Tok::Name(n) => n.as_str(),
                Tok::Close => "')'",
                Tok::Open => "'('",
                Tok::And => "and",
                Tok::Or => "or",
                Tok::Not => "not",
            },
            p.col()
        ));
    }
    Ok(e)
}

/// A group's selection: its selectors and match expression.
#[derive(Debug, Clone)]
pub struct GroupSelect {
    pub selectors: Vec<Selector>,
    pub expr: Expr,
}

fn known_field(f: &str) -> bool {
    NODE_FIELDS.contains(&f) || Facts::KEYS.contains(&f)
}

fn fields_list() -> String {
    let mut v: Vec<&str> = NODE_FIELDS.to_vec();
    v.extend(Facts::KEYS.iter().filter(|k| !NODE_FIELDS.contains(k)));
    v.join(", ")
}

fn number(v: &Value, what: &str) -> Result<u64, String> {
    scalar_string(v)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("{what}: must be a whole number, e.g. 4096"))
}

fn parse_selector(name: &str, v: &Value, what: &str) -> Result<Selector, String> {
    let mut field = name.to_string();
    let mut tests = Vec::new();
    let (mut min, mut max) = (None, None);
    match v {
        Value::Mapping(m) => {
            for (k, tv) in m {
                let k = k.as_str().unwrap_or_default();
                match k {
                    "field" => {
                        field = scalar_string(tv)
                            .ok_or_else(|| format!("{what}.field: must be a field name"))?
                    }
                    "exact" => tests
                        .push(Test::Exact(scalar_string(tv).ok_or_else(|| {
                            format!("{what}.exact: must be a string or number")
                        })?)),
                    "regex" => {
                        let re = scalar_string(tv)
                            .ok_or_else(|| format!("{what}.regex: must be a string"))?;
                        let r = Regex::new(&re).map_err(|e| {
                            let msg = e.to_string();
                            let last = msg.lines().last().unwrap_or_default().trim().to_string();
                            format!(
                                "{what}.regex: {re:?} is not a valid regular expression ({last}); fix it (regex crate syntax, e.g. '^52:54:00:')"
                            )
                        })?;
                        tests.push(Test::Regex(r));
                    }
                    "min" => min = Some(number(tv, &format!("{what}.min"))?),
                    "max" => max = Some(number(tv, &format!("{what}.max"))?),
                    other => {
                        return Err(format!(
                            "{what}.{other}: unknown test; use exact, regex, min, max (and field)"
                        ))
                    }
                }
            }
        }
        other => match scalar_string(other) {
            Some(s) => tests.push(Test::Exact(s)),
            None => {
                return Err(format!(
                    "{what}: must be a value (exact) or a mapping {{exact|regex|min|max: ...}}"
                ))
            }
        },
    }
    if !known_field(&field) {
        return Err(format!(
            "{what}: unknown field {field:?}; selectors test {} (name the field with `field:`)",
            fields_list()
        ));
    }
    if min.is_some() || max.is_some() {
        if !NUMERIC.contains(&field.as_str()) {
            return Err(format!(
                "{what}: min/max compare numbers; {field} is not numeric (numeric: {}); use exact or regex",
                NUMERIC.join(", ")
            ));
        }
        tests.push(Test::Range(min, max));
    }
    if tests.is_empty() {
        return Err(format!("{what}: no test; give exact, regex, min or max"));
    }
    Ok(Selector {
        name: name.to_string(),
        field,
        tests,
    })
}

impl GroupSelect {
    /// Parses a group's `selectors` and `match` (None when it has no selectors). Errors
    /// name `groups.G...` and say the fix.
    pub fn parse(
        group: &str,
        selectors: Option<&Value>,
        matching: Option<&Value>,
    ) -> Result<Option<GroupSelect>, String> {
        let Some(sv) = selectors else {
            if matching.is_some() {
                return Err(format!(
                    "groups.{group}.match: there are no selectors to match; add `selectors:` or remove `match:`"
                ));
            }
            return Ok(None);
        };
        let Value::Mapping(m) = sv else {
            return Err(format!(
                "groups.{group}.selectors: must be a mapping of name: {{exact|regex|min|max: ...}}"
            ));
        };
        let mut sels = Vec::new();
        for (k, v) in m {
            let name = k
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("groups.{group}.selectors: names must be strings"))?;
            if matches!(name.as_str(), "and" | "or" | "not")
                || name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "groups.{group}.selectors.{name}: a selector name is letters, digits, _ or - (not and/or/not)"
                ));
            }
            sels.push(parse_selector(
                &name,
                v,
                &format!("groups.{group}.selectors.{name}"),
            )?);
        }
        if sels.is_empty() {
            return Err(format!(
                "groups.{group}.selectors: is empty; add a selector or remove `selectors:`"
            ));
        }
        let expr = match matching {
            None => {
                let mut it = sels.iter().map(|s| Expr::Sel(s.name.clone()));
                let first = it.next().ok_or_else(|| "no selector".to_string())?;
                it.fold(first, |a, b| Expr::And(Box::new(a), Box::new(b)))
            }
            Some(v) => {
                let text = scalar_string(v).ok_or_else(|| {
                    format!("groups.{group}.match: must be a string such as \"a and (b or not c)\"")
                })?;
                let e = parse_match(&text)
                    .map_err(|e| format!("groups.{group}.match: {text:?}: {e}"))?;
                let mut names = Vec::new();
                e.names(&mut names);
                if let Some(u) = names.iter().find(|n| !sels.iter().any(|s| s.name == **n)) {
                    return Err(format!(
                        "groups.{group}.match: unknown selector {u:?}; the group's selectors are {}",
                        sels.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
                e
            }
        };
        Ok(Some(GroupSelect {
            selectors: sels,
            expr,
        }))
    }

    /// Whether any selector needs the node's facts (so they are read only then).
    pub fn needs_facts(&self) -> bool {
        self.selectors
            .iter()
            .any(|s| !matches!(s.field.as_str(), "name" | "ip"))
    }

    /// Whether the group selects this node.
    pub fn selects(&self, node: &Node, facts: Option<&Facts>) -> bool {
        let truth = |name: &str| {
            self.selectors
                .iter()
                .find(|s| s.name == name)
                .is_some_and(|s| s.matches(node, facts))
        };
        self.expr.eval(&truth)
    }
}

impl Selector {
    /// The values of the field on this node (a MAC: the inventory's and every reported one).
    fn values(&self, node: &Node, facts: Option<&Facts>) -> Vec<String> {
        match self.field.as_str() {
            "name" => vec![node.name.clone()],
            "ip" => node.ip.iter().cloned().collect(),
            "mac" => {
                let mut v: Vec<String> = node.mac.iter().cloned().collect();
                if let Some(f) = facts {
                    v.extend(f.macs.iter().filter_map(|m| normalize_mac(m)));
                }
                v
            }
            key => facts.and_then(|f| f.get(key)).into_iter().collect(),
        }
    }

    /// All the selector's tests hold for one of the field's values.
    pub fn matches(&self, node: &Node, facts: Option<&Facts>) -> bool {
        let is_mac = self.field == "mac";
        self.values(node, facts).iter().any(|v| {
            self.tests.iter().all(|t| match t {
                Test::Exact(want) if is_mac => normalize_mac(want).as_deref() == Some(v.as_str()),
                Test::Exact(want) => want == v,
                Test::Regex(r) => r.is_match(v),
                Test::Range(lo, hi) => v
                    .parse::<u64>()
                    .is_ok_and(|n| lo.is_none_or(|lo| n >= lo) && hi.is_none_or(|hi| n <= hi)),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        parse_match(s)
            .map(|e| e.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn match_precedence_and_parentheses() {
        assert_eq!(p("a"), "a");
        assert_eq!(p("a and b or c"), "a and b or c");
        assert_eq!(p("a or b and c"), "a or b and c");
        assert_eq!(
            parse_match("a or b and c").unwrap(),
            Expr::Or(
                Box::new(Expr::Sel("a".into())),
                Box::new(Expr::And(
                    Box::new(Expr::Sel("b".into())),
                    Box::new(Expr::Sel("c".into()))
                ))
            )
        );
        assert_eq!(p("(a or b) and c"), "(a or b) and c");
        assert_eq!(
            p("mac and (memory_mib or not vendor)"),
            "mac and (memory_mib or not vendor)"
        );
        assert_eq!(p("not not a"), "not not a");
        assert_eq!(p("not (a and b)"), "not (a and b)");
        assert_eq!(p("  ((a))  "), "a");
    }

    #[test]
    fn match_evaluates() {
        let e = parse_match("a and (b or not c)").unwrap();
        let t = |on: &'static [&'static str]| move |n: &str| on.contains(&n);
        assert!(e.eval(&t(&["a", "b", "c"])));
        assert!(e.eval(&t(&["a"])));
        assert!(!e.eval(&t(&["a", "c"])));
        assert!(!e.eval(&t(&["b"])));
    }

    #[test]
    fn match_errors_say_where() {
        for (s, want) in [
            ("", "found the end"),
            ("a and", "column 6, found the end"),
            ("(a or b", "missing ')'"),
            ("a b", "unexpected b at column 3"),
            ("a && b", "unexpected '&' at column 3"),
            ("and a", "column 1, found and"),
            ("a )", "unexpected ')'"),
            ("()", "found ')'"),
        ] {
            let e = parse_match(s).unwrap_err();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    fn group(yaml: &str) -> Result<Option<GroupSelect>, String> {
        let v: Value = yaml_serde::from_str(yaml).unwrap();
        let m = v.as_mapping().unwrap();
        GroupSelect::parse("gpu", m.get("selectors"), m.get("match"))
    }

    #[test]
    fn selectors_select() {
        let g = group(
            "selectors: {mac: {regex: '^52:54:00:aa:'}, big: {field: memory_mib, min: 4096}, vendor: QEMU}\nmatch: mac and (big or not vendor)\n",
        )
        .unwrap()
        .unwrap();
        let node = |mac: &str| Node {
            name: "c1".into(),
            mac: Some(mac.into()),
            ..Default::default()
        };
        let f = |mem: u64, vendor: &str| Facts {
            memory_mib: mem,
            vendor: vendor.into(),
            ..Default::default()
        };
        assert!(g.selects(&node("52:54:00:aa:00:01"), Some(&f(8192, "QEMU"))));
        assert!(!g.selects(&node("52:54:00:aa:00:01"), Some(&f(1024, "QEMU"))));
        assert!(g.selects(&node("52:54:00:aa:00:01"), Some(&f(1024, "Dell"))));
        assert!(
            g.selects(&node("52:54:00:aa:00:01"), None),
            "no facts: not vendor holds"
        );
        assert!(!g.selects(&node("52:54:00:bb:00:01"), Some(&f(8192, "QEMU"))));
        assert!(g.needs_facts());
        // default: all selectors and-ed, exact MAC normalised
        let g = group("selectors: {name: {regex: '^c0'}, mac: 52-54-00-AA-00-01}\n")
            .unwrap()
            .unwrap();
        assert_eq!(g.expr.to_string(), "name and mac");
        assert!(g.selects(
            &Node {
                name: "c01".into(),
                mac: Some("52:54:00:aa:00:01".into()),
                ..Default::default()
            },
            None
        ));
        assert!(!g.selects(
            &Node {
                name: "d01".into(),
                mac: Some("52:54:00:aa:00:01".into()),
                ..Default::default()
            },
            None
        ));
    }

    #[test]
    fn selector_errors_name_group_and_fix() {
        for (y, want) in [
            (
                "selectors: {mac: {regex: '^52:(54'}}",
                "groups.gpu.selectors.mac.regex",
            ),
            (
                "selectors: {mac: {regex: x}}\nmatch: mac and nope",
                "unknown selector \"nope\"",
            ),
            (
                "selectors: {mac: {regex: x}}\nmatch: mac and (",
                "groups.gpu.match",
            ),
            ("selectors: {colour: red}", "unknown field \"colour\""),
            ("selectors: {name: {min: 3}}", "not numeric"),
            ("selectors: {mac: {rgx: x}}", "unknown test"),
            ("match: a", "no selectors"),
            ("selectors: {cpus: {min: lots}}", "whole number"),
        ] {
            let e = group(y).unwrap_err();
            assert!(e.contains(want), "{y}: {e}");
        }
    }
}
