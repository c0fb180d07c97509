//! ClusterShell-compatible node sets: [`expand`] and [`fold`].
//!
//! The syntax and the output follow ClusterShell 1.10 (`nodeset -e` / `nodeset -f`,
//! cross-checked against `nodeset` 1.10.1):
//!
//! * comma lists `c001,login1`; ranges `c[001-100]` (the zero padding is kept;
//!   like ClusterShell, both bounds of a padded range must have the same width:
//!   `c[01-100]` and `c[1-03]` are refused with "padding length mismatch");
//!   several ranges in one bracket `c[1-3,7,10-12]`; steps `c[1-10/2]`;
//!   several brackets in one name `rack[1-2]n[01-04]` (cartesian product);
//!   suffixes `n[1-2]-ib`;
//! * `@group` (and `@source:group`, `@rack[1-2]`) resolved through a callback;
//!   a group's entries are node sets themselves (nested groups allowed, depth 16);
//! * the operators `,` (union), `!` (difference), `&` (intersection) and
//!   `^` (symmetric difference), evaluated strictly left to right with equal
//!   precedence, as ClusterShell does (`c[1-4]!c2&c[1-3]` is `c[1,3]`).
//!
//! Output order is ClusterShell's: nodes are grouped by *pattern* (the name with
//! every number replaced by `%s`), patterns sorted as plain strings; inside a
//! one-number pattern indexes sort by (length, value), so `c1,c2,c01,c10,c001`;
//! for names with several numbers ClusterShell iterates over its folded
//! vectors (largest vector first), and so does [`expand`].
//!
//! [`fold`] mimics `nodeset -f`, which folds on **every** numeric axis:
//! `rack1n01,rack1n02,rack2n01,rack2n02` becomes `rack[1-2]n[01-02]`, while
//! `rack1n01,rack1n02,rack2n01` becomes `rack1n[01-02],rack2n01` and
//! `x1y1,x1y2,x2y1,x10y1` becomes `x[2,10]y1,x1y[1-2]`. The multi-dimensional
//! merge is a port of ClusterShell's `RangeSetND` algorithm, preceded by a
//! linear-time pre-merge so big regular sets stay fast; ClusterShell's final
//! quadratic pass is skipped for very fragmented sets (more than
//! [`FULL_MERGE_MAX_VECTORS`] vectors), where the text may then differ from
//! ClusterShell's (the set is always the same).
//!
//! Deliberate differences (all on inputs ClusterShell treats oddly):
//! negative indexes (`c[-1]`) and whitespace inside the expression are refused;
//! digits glued to a bracket (`c0[1-9]`) are simply concatenated (ClusterShell
//! merges them into the range and may then refuse the padding); node names are
//! checked (letters, digits, `-`, `_`, `.`; not starting with `.`; at most
//! 64 characters). Expansion is capped at [`MAX_NODES`] nodes, checked before
//! anything is allocated.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Largest number of nodes a node set may expand to.
pub const MAX_NODES: usize = 1_000_000;
/// Longest node name accepted.
pub const MAX_NAME_LEN: usize = 64;
/// Above this many vectors (after the linear pre-merge) the quadratic
/// ClusterShell merge pass is skipped.
pub const FULL_MERGE_MAX_VECTORS: usize = 2_000;
const MAX_GROUP_DEPTH: usize = 16;
/// Multi-number patterns with more nodes than this are pre-grouped in linear
/// time before the ClusterShell merge (which starts from single nodes).
const PREMERGE_ABOVE: usize = 50_000;
/// Bound on the merge passes (each pass is a sort and a linear scan).
const MAX_MERGE_PASSES: usize = 256;

/// Why a node set was refused. Every variant names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeSetError {
    #[error("empty node set (give node names such as c[001-100],login1)")]
    Empty,
    #[error("node set {input:?}: unbalanced brackets: {detail}")]
    Unbalanced { input: String, detail: String },
    #[error("node set {input:?}: {detail}")]
    Syntax { input: String, detail: String },
    #[error(
        "node set {input:?}: reversed range {range:?} (the lower bound comes first, e.g. c[1-10])"
    )]
    ReversedRange { input: String, range: String },
    #[error(
        "node set {input:?}: padding length mismatch in {range:?} (both bounds of a zero-padded range need the same width, e.g. 001-100)"
    )]
    PaddingMismatch { input: String, range: String },
    #[error("node set {input:?}: bad range {range:?}: {reason}")]
    BadRange {
        input: String,
        range: String,
        reason: String,
    },
    #[error("node set {input:?}: more than {max} nodes (split it into smaller sets)")]
    TooLarge { input: String, max: usize },
    #[error(
        "node set {input:?}: invalid character {ch:?} (node names use letters, digits, '-', '_' and '.')"
    )]
    BadChar { input: String, ch: char },
    #[error("node set {input:?}: invalid node name {name:?}: {reason}")]
    BadName {
        input: String,
        name: String,
        reason: String,
    },
    #[error("node set {input:?}: unknown group @{group}")]
    UnknownGroup { input: String, group: String },
    #[error("node set {input:?}: missing operand for operator {op:?}")]
    MissingOperand { input: String, op: char },
    #[error("node set {input:?}: groups nested more than {max} deep (a group containing itself?)")]
    GroupDepth { input: String, max: usize },
}

/// Group resolver signature used by [`expand`]: `Some(entries)` for a known
/// group (each entry is itself a node set), `None` for an unknown one.
pub type GroupResolver<'a> = &'a dyn Fn(&str) -> Option<Vec<String>>;

/// Expand a ClusterShell node set into de-duplicated node names, in
/// ClusterShell's order.
pub fn expand(
    set: &str,
    groups: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<Vec<String>, NodeSetError> {
    let trimmed = set.trim();
    if trimmed.is_empty() {
        return Err(NodeSetError::Empty);
    }
    let nodes = eval(trimmed, groups, 0)?;
    Ok(order(nodes))
}

/// Fold node names into ClusterShell notation, like `nodeset -f`.
///
/// Duplicates are ignored; names without digits are kept as they are. Never
/// fails: any string is accepted (a name is split into text and digit runs).
pub fn fold(nodes: &[String]) -> String {
    let unique: HashSet<&str> = nodes.iter().map(String::as_str).collect();
    let mut parts = Vec::new();
    for (_, group) in group_by_pattern(unique.into_iter()) {
        match group {
            PatGroup::Plain(name) => parts.push(name),
            PatGroup::One(lits, mut idx) => {
                idx.sort();
                idx.dedup();
                let folded = fold_1d(&idx);
                let arg = if idx.len() > 1 {
                    format!("[{}]", folded.join(","))
                } else {
                    folded.join(",")
                };
                parts.push(format!("{}{}{}", lits[0], arg, lits[1]));
            }
            PatGroup::Nd(lits, tuples) => {
                for vector in fold_nd(tuples, lits.len() - 1) {
                    let args: Vec<String> = vector
                        .iter()
                        .map(|rs| {
                            if rs.0.len() > 1 {
                                format!("[{}]", fold_1d(&rs.0).join(","))
                            } else {
                                fold_1d(&rs.0).join(",")
                            }
                        })
                        .collect();
                    parts.push(render(&lits, &args));
                }
            }
        }
    }
    parts.join(",")
}

// ---------------------------------------------------------------------------
// Evaluation of an expression

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

fn is_op(c: char) -> bool {
    matches!(c, ',' | '!' | '&' | '^')
}

/// Split at top-level operators: `[(op, operand)]`, the first op being `,`.
fn split_ops(input: &str) -> Result<Vec<(char, &str)>, NodeSetError> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut op = ',';
    for (i, c) in input.char_indices() {
        match c {
            '[' => {
                if depth > 0 {
                    return Err(NodeSetError::Unbalanced {
                        input: input.to_string(),
                        detail: "'[' inside a bracket".into(),
                    });
                }
                depth = 1;
            }
            ']' => {
                if depth == 0 {
                    return Err(NodeSetError::Unbalanced {
                        input: input.to_string(),
                        detail: "']' without '['".into(),
                    });
                }
                depth = 0;
            }
            c if depth == 0 && is_op(c) => {
                let operand = input[start..i].trim();
                if operand.is_empty() {
                    return Err(NodeSetError::MissingOperand {
                        input: input.to_string(),
                        op: if out.is_empty() { c } else { op },
                    });
                }
                out.push((op, operand));
                op = c;
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(NodeSetError::Unbalanced {
            input: input.to_string(),
            detail: "'[' without ']'".into(),
        });
    }
    let operand = input[start..].trim();
    if operand.is_empty() {
        return Err(NodeSetError::MissingOperand {
            input: input.to_string(),
            op,
        });
    }
    out.push((op, operand));
    Ok(out)
}

fn eval(
    input: &str,
    groups: GroupResolver<'_>,
    depth: usize,
) -> Result<HashSet<String>, NodeSetError> {
    if depth > MAX_GROUP_DEPTH {
        return Err(NodeSetError::GroupDepth {
            input: input.to_string(),
            max: MAX_GROUP_DEPTH,
        });
    }
    let mut acc: HashSet<String> = HashSet::new();
    for (op, operand) in split_ops(input)? {
        let set = eval_operand(input, operand, groups, depth)?;
        match op {
            ',' => acc.extend(set),
            '!' => acc.retain(|n| !set.contains(n)),
            '&' => acc.retain(|n| set.contains(n)),
            _ => {
                for n in set {
                    if !acc.remove(&n) {
                        acc.insert(n);
                    }
                }
            }
        }
        if acc.len() > MAX_NODES {
            return Err(NodeSetError::TooLarge {
                input: input.to_string(),
                max: MAX_NODES,
            });
        }
    }
    Ok(acc)
}

fn eval_operand(
    input: &str,
    operand: &str,
    groups: GroupResolver<'_>,
    depth: usize,
) -> Result<HashSet<String>, NodeSetError> {
    if let Some(group_pat) = operand.strip_prefix('@') {
        if group_pat.is_empty() {
            return Err(NodeSetError::Syntax {
                input: input.to_string(),
                detail: "'@' without a group name".into(),
            });
        }
        let mut out = HashSet::new();
        for group in expand_term(input, group_pat, true)? {
            let entries = groups(&group).ok_or_else(|| NodeSetError::UnknownGroup {
                input: input.to_string(),
                group: group.clone(),
            })?;
            for entry in entries {
                let entry = entry.trim();
                if entry.is_empty() {
                    continue;
                }
                out.extend(eval(entry, groups, depth + 1)?);
                if out.len() > MAX_NODES {
                    return Err(NodeSetError::TooLarge {
                        input: input.to_string(),
                        max: MAX_NODES,
                    });
                }
            }
        }
        return Ok(out);
    }
    let names = expand_term(input, operand, false)?;
    for name in &names {
        check_name(input, name)?;
    }
    Ok(names.into_iter().collect())
}

fn check_name(input: &str, name: &str) -> Result<(), NodeSetError> {
    let bad = |reason: &str| NodeSetError::BadName {
        input: input.to_string(),
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.len() > MAX_NAME_LEN {
        return Err(bad("longer than 64 characters"));
    }
    if name.starts_with('.') {
        return Err(bad("starts with '.'"));
    }
    if let Some(ch) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(NodeSetError::BadChar {
            input: input.to_string(),
            ch,
        });
    }
    Ok(())
}

enum Segment {
    Lit(String),
    Range(Vec<String>),
}

/// Expand one operand without operators: text and `[ranges]`.
fn expand_term(input: &str, term: &str, group: bool) -> Result<Vec<String>, NodeSetError> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut lit = String::new();
    let mut rest = term;
    let mut total: usize = 1;
    let mut last_was_bracket = false;
    while let Some(c) = rest.chars().next() {
        if c == '[' {
            if last_was_bracket && lit.is_empty() {
                return Err(NodeSetError::Syntax {
                    input: input.to_string(),
                    detail: format!("illegal reopening bracket in {term:?}"),
                });
            }
            let close = rest.find(']').ok_or_else(|| NodeSetError::Unbalanced {
                input: input.to_string(),
                detail: "'[' without ']'".into(),
            })?;
            let body = &rest[1..close];
            let (values, count) = parse_ranges(input, body)?;
            total = total.saturating_mul(count);
            if total > MAX_NODES {
                return Err(NodeSetError::TooLarge {
                    input: input.to_string(),
                    max: MAX_NODES,
                });
            }
            if !lit.is_empty() {
                segments.push(Segment::Lit(std::mem::take(&mut lit)));
            }
            segments.push(Segment::Range(values));
            rest = &rest[close + 1..];
            last_was_bracket = true;
            continue;
        }
        if c == ']' {
            return Err(NodeSetError::Unbalanced {
                input: input.to_string(),
                detail: "']' without '['".into(),
            });
        }
        if !(is_name_char(c) || (group && c == ':')) {
            return Err(NodeSetError::BadChar {
                input: input.to_string(),
                ch: c,
            });
        }
        lit.push(c);
        last_was_bracket = false;
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        segments.push(Segment::Lit(lit));
    }
    // Cartesian product, first bracket varying slowest.
    let mut out = vec![String::new()];
    for seg in &segments {
        match seg {
            Segment::Lit(s) => out.iter_mut().for_each(|n| n.push_str(s)),
            Segment::Range(values) => {
                let mut next = Vec::with_capacity(out.len() * values.len());
                for prefix in &out {
                    if prefix.len() > MAX_NAME_LEN * 2 {
                        // refused later by check_name; avoid building huge strings
                        next.push(prefix.clone());
                        continue;
                    }
                    for v in values {
                        let mut n = String::with_capacity(prefix.len() + v.len() + 8);
                        n.push_str(prefix);
                        n.push_str(v);
                        next.push(n);
                    }
                }
                out = next;
            }
        }
    }
    Ok(out)
}

/// Parse the body of a bracket (`1-3,7,10-20/2`): the index strings (padding
/// applied) and their count.
fn parse_ranges(input: &str, body: &str) -> Result<(Vec<String>, usize), NodeSetError> {
    let bad = |range: &str, reason: &str| NodeSetError::BadRange {
        input: input.to_string(),
        range: range.to_string(),
        reason: reason.to_string(),
    };
    if body.is_empty() {
        return Err(bad("", "empty range"));
    }
    let mut ranges = Vec::new();
    let mut count: usize = 0;
    for sub in body.split(',') {
        if sub.is_empty() {
            return Err(bad(sub, "empty range"));
        }
        if let Some(c) = sub
            .chars()
            .find(|c| !(c.is_ascii_digit() || *c == '-' || *c == '/'))
        {
            return Err(bad(
                sub,
                &format!("invalid character {c:?} (use digits, '-', ',', '/')"),
            ));
        }
        let (base, step) = match sub.split_once('/') {
            None => (sub, 1u64),
            Some((b, s)) => {
                let step: u64 = s
                    .parse()
                    .map_err(|_| bad(sub, "the step is not a number"))?;
                if step == 0 {
                    return Err(bad(sub, "the step must be at least 1"));
                }
                (b, step)
            }
        };
        let (begin, end) = match base.split_once('-') {
            None => {
                if step != 1 {
                    return Err(bad(sub, "a step needs a range (e.g. 1-10/2)"));
                }
                (base, base)
            }
            Some(("", _)) => return Err(bad(sub, "negative indexes are not supported")),
            Some((b, e)) => (b, e),
        };
        if begin.is_empty() || end.is_empty() || end.contains('-') {
            return Err(bad(sub, "expected N, N-M or N-M/STEP"));
        }
        if begin.len() > 18 || end.len() > 18 {
            return Err(bad(sub, "number too large"));
        }
        let start: u64 = begin.parse().map_err(|_| bad(sub, "not a number"))?;
        let stop: u64 = end.parse().map_err(|_| bad(sub, "not a number"))?;
        // ClusterShell's padding rules (RangeSet._parse).
        let pad = if begin.len() > 1 && begin.starts_with('0') {
            begin.len()
        } else {
            0
        };
        let endpad = if stop != 0 && end.starts_with('0') {
            end.len()
        } else {
            0
        };
        if (pad > 0 || endpad > 0) && begin.len() != end.len() {
            return Err(NodeSetError::PaddingMismatch {
                input: input.to_string(),
                range: sub.to_string(),
            });
        }
        if start > stop {
            return Err(NodeSetError::ReversedRange {
                input: input.to_string(),
                range: sub.to_string(),
            });
        }
        let n = usize::try_from((stop - start) / step + 1).unwrap_or(usize::MAX);
        count = count.saturating_add(n);
        if count > MAX_NODES {
            return Err(NodeSetError::TooLarge {
                input: input.to_string(),
                max: MAX_NODES,
            });
        }
        ranges.push((start, stop, step, pad));
    }
    let mut values = Vec::with_capacity(count);
    for (start, stop, step, pad) in ranges {
        let mut v = start;
        loop {
            values.push(format!("{v:0pad$}"));
            match v.checked_add(step) {
                Some(nv) if nv <= stop => v = nv,
                _ => break,
            }
        }
    }
    Ok((values, count))
}

// ---------------------------------------------------------------------------
// Patterns, indexes and ClusterShell's ordering

/// One numeric index as written (`"007"` is value 7, width 3), ordered like
/// ClusterShell's `RangeSet._sortkey`: by width, then by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Idx {
    width: u8,
    value: u64,
}

/// Digit runs longer than this are treated as plain text (they would not
/// fit the index type; no real node name has them).
const MAX_INDEX_DIGITS: usize = 19;

impl Idx {
    fn parse(digits: &str) -> Option<Idx> {
        if digits.is_empty() || digits.len() > MAX_INDEX_DIGITS {
            return None;
        }
        Some(Idx {
            width: u8::try_from(digits.len()).ok()?,
            value: digits.parse().ok()?,
        })
    }

    /// The digits as written, in a stack buffer.
    fn digits(self) -> ([u8; 20], usize) {
        let mut buf = [b'0'; 20];
        let w = usize::from(self.width).min(20);
        let mut v = self.value;
        let mut i = w;
        while i > 0 {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        (buf, w)
    }

    /// Plain string comparison of the written forms (Python's `str < str`).
    fn cmp_text(self, other: Idx) -> Ordering {
        let (a, la) = self.digits();
        let (b, lb) = other.digits();
        a[..la].cmp(&b[..lb])
    }

    fn text(self) -> String {
        format!("{:0w$}", self.value, w = usize::from(self.width))
    }

    fn padded(self) -> bool {
        self.width > 1 && self.text_len_of_value() < usize::from(self.width)
    }

    fn text_len_of_value(self) -> usize {
        let mut n = 1;
        let mut v = self.value;
        while v >= 10 {
            v /= 10;
            n += 1;
        }
        n
    }
}

enum PatGroup {
    /// A name without digits.
    Plain(String),
    /// Literal pieces (2) and the indexes of a one-number pattern.
    One(Vec<String>, Vec<Idx>),
    /// Literal pieces (dim + 1) and index tuples.
    Nd(Vec<String>, Vec<Vec<Idx>>),
}

/// Split a name like ClusterShell's `(\D*)(\d*)` scan: the pattern key with
/// `%s` for each digit run (`rack1n02` -> `rack%sn%s`) and the digit runs.
fn split_name(name: &str) -> (String, Vec<Idx>) {
    let mut key = String::with_capacity(name.len() + 4);
    let mut idxs = Vec::new();
    let bytes = name.as_bytes();
    let mut i = 0;
    let mut lit_start = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if let Some(idx) = Idx::parse(&name[start..i]) {
                key.push_str(&name[lit_start..start]);
                key.push_str("%s");
                idxs.push(idx);
                lit_start = i;
            }
        } else {
            i += 1;
        }
    }
    key.push_str(&name[lit_start..]);
    (key, idxs)
}

/// The literal pieces of a name around its indexes (`["rack", "n", ""]`),
/// consistent with [`split_name`].
fn literals(name: &str) -> Vec<String> {
    let mut lits = Vec::new();
    let bytes = name.as_bytes();
    let mut i = 0;
    let mut lit_start = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if Idx::parse(&name[start..i]).is_some() {
                lits.push(name[lit_start..start].to_string());
                lit_start = i;
            }
        } else {
            i += 1;
        }
    }
    lits.push(name[lit_start..].to_string());
    lits
}

/// Group names by pattern key (`rack%sn%s`), the map being in ClusterShell's
/// pattern order (plain string order of the key).
fn group_by_pattern<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, PatGroup> {
    let mut map: HashMap<String, PatGroup> = HashMap::new();
    for name in names {
        let (key, mut idxs) = split_name(name);
        match idxs.len() {
            0 => {
                map.insert(key, PatGroup::Plain(name.to_string()));
            }
            1 => {
                let entry = map
                    .entry(key)
                    .or_insert_with(|| PatGroup::One(literals(name), Vec::new()));
                if let (PatGroup::One(_, v), Some(i)) = (entry, idxs.pop()) {
                    v.push(i);
                }
            }
            _ => {
                let entry = map
                    .entry(key)
                    .or_insert_with(|| PatGroup::Nd(literals(name), Vec::new()));
                if let PatGroup::Nd(_, v) = entry {
                    v.push(idxs);
                }
            }
        }
    }
    map.into_iter().collect()
}

fn render(lits: &[String], args: &[String]) -> String {
    let mut s = String::new();
    for (i, lit) in lits.iter().enumerate() {
        s.push_str(lit);
        if let Some(a) = args.get(i) {
            s.push_str(a);
        }
    }
    s
}

/// Put nodes in ClusterShell's iteration order.
fn order(nodes: HashSet<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(nodes.len());
    let groups = group_by_pattern(nodes.iter().map(String::as_str));
    drop(nodes);
    for (_, group) in groups {
        match group {
            PatGroup::Plain(name) => out.push(name),
            PatGroup::One(lits, mut idx) => {
                idx.sort();
                idx.dedup();
                for i in idx {
                    out.push(format!("{}{}{}", lits[0], i.text(), lits[1]));
                }
            }
            PatGroup::Nd(lits, tuples) => {
                let dim = lits.len() - 1;
                for vector in fold_nd(tuples, dim) {
                    // odometer over the cartesian product, last axis fastest
                    let mut pos = vec![0usize; dim];
                    'product: loop {
                        let args: Vec<String> =
                            (0..dim).map(|a| vector[a].0[pos[a]].text()).collect();
                        out.push(render(&lits, &args));
                        let mut axis = dim;
                        loop {
                            if axis == 0 {
                                break 'product;
                            }
                            axis -= 1;
                            pos[axis] += 1;
                            if pos[axis] < vector[axis].0.len() {
                                break;
                            }
                            pos[axis] = 0;
                        }
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// One-dimensional folding: port of ClusterShell's RangeSet._slices_padding
// with autostep disabled (the `nodeset -f` default).

struct Run {
    start: i128,
    padded: bool,
    pad: usize,
    step: Option<i128>,
    last: i128,
}

fn fmt_idx(v: i128, pad: usize) -> String {
    format!("{v:0pad$}")
}

fn flush_run(run: &Run, out: &mut Vec<String>) {
    let pad = if run.padded { run.pad } else { 0 };
    match run.step {
        Some(1) => out.push(format!(
            "{}-{}",
            fmt_idx(run.start, pad),
            fmt_idx(run.last, pad)
        )),
        Some(s) if s > 1 => {
            let mut j = run.start;
            while j <= run.last {
                out.push(fmt_idx(j, pad));
                j += s;
            }
        }
        _ => out.push(fmt_idx(run.start, pad)),
    }
}

/// Fold sorted, unique indexes into range strings (`["1-3", "07"]`).
fn fold_1d(items: &[Idx]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<Run> = None;
    for si in items {
        let idx = i128::from(si.value);
        let digitlen = usize::from(si.width);
        let padded = si.padded();
        let Some(run) = cur.as_mut() else {
            cur = Some(Run {
                start: idx,
                padded,
                pad: digitlen,
                step: None,
                last: idx,
            });
            continue;
        };
        let padding_mismatch = if run.padded {
            digitlen != run.pad
        } else {
            padded
        };
        let step_mismatch = !padding_mismatch && run.step.is_some_and(|s| s != idx - run.last);
        if padding_mismatch || step_mismatch {
            let (stepped, step) = match run.step {
                Some(s) => (s == 1, s),
                None => (true, 1),
            };
            let pad = if run.padded { run.pad } else { 0 };
            if stepped {
                if run.start == run.last {
                    out.push(fmt_idx(run.start, pad));
                } else {
                    out.push(format!(
                        "{}-{}",
                        fmt_idx(run.start, pad),
                        fmt_idx(run.last, pad)
                    ));
                }
                run.start = idx;
                run.padded = padded;
                run.pad = digitlen;
            } else {
                let stop = if padding_mismatch {
                    run.last + 1
                } else {
                    run.last - step + 1
                };
                let mut j = run.start;
                while j < stop && step > 0 {
                    out.push(fmt_idx(j, pad));
                    j += step;
                }
                if padding_mismatch {
                    run.start = idx;
                    run.padded = padded;
                    run.pad = digitlen;
                } else {
                    run.start = run.last;
                }
            }
            run.step = if step_mismatch {
                Some(idx - run.last)
            } else {
                None
            };
            run.last = idx;
            continue;
        }
        run.step = Some(idx - run.last);
        run.last = idx;
    }
    if let Some(run) = cur {
        flush_run(&run, &mut out);
    }
    out
}

// ---------------------------------------------------------------------------
// N-dimensional folding: port of ClusterShell's RangeSetND folding.

/// A sorted, de-duplicated set of indexes of one axis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct RangeSet(Vec<Idx>);

impl RangeSet {
    fn union_in_place(&mut self, other: &Self) {
        match (self.0.last(), other.0.first()) {
            (Some(last), Some(first)) if last < first => self.0.extend_from_slice(&other.0),
            (None, _) => self.0.clone_from(&other.0),
            (_, None) => {}
            _ => *self = self.union(other),
        }
    }

    fn union(&self, other: &Self) -> Self {
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    out.push(a[i]);
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        RangeSet(out)
    }

    /// (disjoint, self ⊆ other, other ⊆ self)
    fn relation(&self, other: &Self) -> (bool, bool, bool) {
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j, mut common) = (0, 0, 0usize);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                Ordering::Less => i += 1,
                Ordering::Greater => j += 1,
                Ordering::Equal => {
                    common += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        (common == 0, common == a.len(), common == b.len())
    }
}

type Vector = Vec<RangeSet>;

fn product(v: &Vector) -> usize {
    v.iter()
        .fold(1usize, |acc, rs| acc.saturating_mul(rs.0.len()))
}

/// ClusterShell's `RangeSetND._sort` key: bigger vectors first, then per axis
/// bigger sets first, then first and last index compared as plain strings.
fn cmp_vectors(a: &Vector, b: &Vector) -> Ordering {
    product(b).cmp(&product(a)).then_with(|| {
        for (x, y) in a.iter().zip(b.iter()) {
            let ord = y.0.len().cmp(&x.0.len()).then_with(|| {
                let (xf, yf) = (x.0[0], y.0[0]);
                let (xl, yl) = (x.0[x.0.len() - 1], y.0[y.0.len() - 1]);
                xf.cmp_text(yf).then_with(|| xl.cmp_text(yl))
            });
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    })
}

fn fold_nd(mut tuples: Vec<Vec<Idx>>, dim: usize) -> Vec<Vector> {
    tuples.sort();
    tuples.dedup();
    let mut vecs: Vec<Vector> = if tuples.len() > PREMERGE_ABOVE {
        premerge(tuples, dim)
    } else {
        // ClusterShell starts from single-node vectors
        tuples
            .into_iter()
            .map(|t| t.into_iter().map(|i| RangeSet(vec![i])).collect())
            .collect()
    };
    cs_merge(&mut vecs);
    vecs
}

/// Linear-time grouping used for big sets before the ClusterShell merge.
fn premerge(tuples: Vec<Vec<Idx>>, dim: usize) -> Vec<Vector> {
    // 1: consecutive (sorted) tuples sharing all axes but the last
    let mut vecs: Vec<Vector> = Vec::new();
    let mut iter = tuples.into_iter().peekable();
    while let Some(first) = iter.next() {
        let head: Vec<Idx> = first[..dim - 1].to_vec();
        let mut last = vec![first[dim - 1]];
        while let Some(next) = iter.peek() {
            if next[..dim - 1] != head[..] {
                break;
            }
            last.push(next[dim - 1]);
            iter.next();
        }
        let mut v: Vector = head.into_iter().map(|i| RangeSet(vec![i])).collect();
        last.sort();
        v.push(RangeSet(last));
        vecs.push(v);
    }
    // 2: vectors equal on all axes but one are merged on that axis
    loop {
        let before = vecs.len();
        for axis in (0..dim).rev() {
            let mut slots: HashMap<Vec<RangeSet>, usize> = HashMap::new();
            let mut merged: Vec<Vector> = Vec::with_capacity(vecs.len());
            for v in vecs {
                let key: Vec<RangeSet> = v
                    .iter()
                    .enumerate()
                    .filter(|(a, _)| *a != axis)
                    .map(|(_, rs)| rs.clone())
                    .collect();
                match slots.get(&key) {
                    Some(&slot) => merged[slot][axis].union_in_place(&v[axis]),
                    None => {
                        slots.insert(key, merged.len());
                        merged.push(v);
                    }
                }
            }
            vecs = merged;
        }
        if vecs.len() == before || vecs.len() <= 1 {
            break;
        }
    }
    vecs
}

/// How two vectors merge (see [`merge_plan`]).
enum Merge {
    Same,
    Union(usize),
    KeepFirst,
    TakeSecond(usize),
}

/// Port of ClusterShell's `RangeSetND._fold_multivariate_merge`, merging in
/// place (ClusterShell rebuilds sets and pops from a list, quadratic on big
/// sets).
fn cs_merge(vecs: &mut Vec<Vector>) {
    let mut full = false;
    let mut chg = true;
    let mut passes = 0usize;
    while chg && passes < MAX_MERGE_PASSES {
        passes += 1;
        chg = false;
        vecs.sort_by(cmp_vectors);
        let mut slots: Vec<Option<Vector>> = std::mem::take(vecs).into_iter().map(Some).collect();
        let n = slots.len();
        for i1 in 0..n.saturating_sub(1) {
            let Some(mut item1) = slots[i1].take() else {
                continue;
            };
            for slot in slots.iter_mut().skip(i1 + 1) {
                let Some(item2) = slot.as_ref() else {
                    continue;
                };
                match merge_plan(&item1, item2) {
                    Some(plan) => {
                        if let Some(item2) = slot.take() {
                            apply_merge(&mut item1, item2, plan);
                        }
                        chg = true;
                    }
                    None if !full => break,
                    None => {}
                }
            }
            slots[i1] = Some(item1);
        }
        *vecs = slots.into_iter().flatten().collect();
        if !chg && !full && vecs.len() <= FULL_MERGE_MAX_VECTORS {
            chg = true;
            full = true;
        }
    }
}

/// Whether two vectors merge: they must differ on at most one axis, where
/// disjoint sets are joined and a strictly contained set gives way to the
/// bigger one.
fn merge_plan(a: &Vector, b: &Vector) -> Option<Merge> {
    let mut plan = Merge::Same;
    for (axis, (rg1, rg2)) in a.iter().zip(b.iter()).enumerate() {
        if rg1 == rg2 {
            continue;
        }
        if !matches!(plan, Merge::Same) {
            return None;
        }
        let (disjoint, a_in_b, b_in_a) = rg1.relation(rg2);
        plan = if disjoint {
            Merge::Union(axis)
        } else if b_in_a {
            Merge::KeepFirst
        } else if a_in_b {
            Merge::TakeSecond(axis)
        } else {
            return None;
        };
    }
    Some(plan)
}

fn apply_merge(item1: &mut Vector, mut item2: Vector, plan: Merge) {
    match plan {
        Merge::Same | Merge::KeepFirst => {}
        Merge::Union(axis) => item1[axis].union_in_place(&item2[axis]),
        Merge::TakeSecond(axis) => item1[axis] = std::mem::take(&mut item2[axis]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn no_groups(_: &str) -> Option<Vec<String>> {
        None
    }

    fn e(s: &str) -> Result<String, NodeSetError> {
        expand(s, &no_groups).map(|v| v.join(" "))
    }

    fn f(s: &str) -> String {
        let v: Vec<String> = s.split(',').map(str::to_string).collect();
        fold(&v)
    }

    /// Expected values produced by ClusterShell 1.10.1 `nodeset -e`.
    #[test]
    fn expand_matches_clustershell() {
        let cases: &[(&str, &str)] = &[
            (
                "c[001-010]",
                "c001 c002 c003 c004 c005 c006 c007 c008 c009 c010",
            ),
            ("c[1-10]", "c1 c2 c3 c4 c5 c6 c7 c8 c9 c10"),
            ("c[1-3,7,10-12]", "c1 c2 c3 c7 c10 c11 c12"),
            (
                "rack[1-2]n[01-04]",
                "rack1n01 rack1n02 rack1n03 rack1n04 rack2n01 rack2n02 rack2n03 rack2n04",
            ),
            ("n[1-2]-ib", "n1-ib n2-ib"),
            ("c[1-10/2]", "c1 c3 c5 c7 c9"),
            ("c[01-10/3]", "c01 c04 c07 c10"),
            ("c[9-11]", "c9 c10 c11"),
            ("c[1-3],c[2-5]", "c1 c2 c3 c4 c5"),
            ("c[1-5]!c[2-3]", "c1 c4 c5"),
            ("c[1-5]&c[2-8]", "c2 c3 c4 c5"),
            ("c[1-5]^c[3-8]", "c1 c2 c6 c7 c8"),
            ("b1,a2,a10,a1,login1,c", "a1 a2 a10 b1 c login1"),
            ("c001,c1", "c1 c001"),
            ("c[001-003],c[1-3]", "c1 c2 c3 c001 c002 c003"),
            ("[1-3]", "1 2 3"),
            ("c[1-3]x[1-2]y", "c1x1y c1x2y c2x1y c2x2y c3x1y c3x2y"),
            ("c[0-2]", "c0 c1 c2"),
            ("c[00-02]", "c00 c01 c02"),
            ("c[1-2],d1!c1", "c2 d1"),
            ("c[1-4]!c2&c[1-3]", "c1 c3"),
            ("c1!c2,c3", "c1 c3"),
            ("x-1,x-01", "x-1 x-01"),
            ("a[1-2]b,a[1-2]c", "a1b a2b a1c a2c"),
            ("a.b", "a.b"),
            ("c[1,1,2]", "c1 c2"),
            ("c2,c01,c001,c10,c0010,c1", "c1 c2 c01 c10 c001 c0010"),
            ("c,c1,c-ib,c1-ib,d", "c c1 c1-ib c-ib d"),
            ("x1y2,x1y1,x2y1,x10y1", "x2y1 x10y1 x1y1 x1y2"),
            ("a1b[1-2],a2b[1-3]", "a2b1 a2b2 a2b3 a1b1 a1b2"),
            (
                "a[1-3]b[1-3]!a2b2",
                "a1b1 a1b2 a1b3 a3b1 a3b2 a3b3 a2b1 a2b3",
            ),
            ("x_1,x.1,x-1,x1", "x1 x-1 x.1 x_1"),
            ("c1,C1,_1", "C1 _1 c1"),
            ("c1[1-2]", "c11 c12"),
            ("c[1-2]0", "c10 c20"),
            ("c[1-2]-[3-4]", "c1-3 c1-4 c2-3 c2-4"),
            ("c[00-00]", "c00"),
            ("c[000-010/5]", "c000 c005 c010"),
            ("n[1-2]-ib,n1", "n1 n1-ib n2-ib"),
            ("a1b1,a01b1,a1b01", "a1b1 a1b01 a01b1"),
            (" c1 ", "c1"),
        ];
        for (input, want) in cases {
            assert_eq!(e(input).as_deref(), Ok(*want), "expand {input:?}");
        }
    }

    /// Expected values produced by ClusterShell 1.10.1 `nodeset -f`.
    #[test]
    fn fold_matches_clustershell() {
        let cases: &[(&str, &str)] = &[
            ("c001,c002,c003,c010", "c[001-003,010]"),
            ("c9,c10", "c[9-10]"),
            ("c09,c10", "c[09-10]"),
            ("rack1n01,rack1n02,rack2n01,rack2n02", "rack[1-2]n[01-02]"),
            ("rack1n01,rack1n02,rack2n01", "rack1n[01-02],rack2n01"),
            ("c2,c01,c001,c10,c0010,c1", "c[1-2,01,10,001,0010]"),
            ("c,c1,c-ib,c1-ib,d", "c,c1,c1-ib,c-ib,d"),
            ("x1y2,x1y1,x2y1,x10y1", "x[2,10]y1,x1y[1-2]"),
            ("c1-ib,c2-ib,c3-ib,c1,c2", "c[1-2],c[1-3]-ib"),
            ("1,2,10", "[1-2,10]"),
            ("a1.b2,a1.b1", "a1.b[1-2]"),
            ("c01x,c1x", "c[1,01]x"),
            ("c10,c20", "c[10,20]"),
            ("c05,c98,c99,c100", "c[05,98-99,100]"),
            ("c98,c99,c100", "c[98-100]"),
            ("c05,c07,c98,c99,c100", "c[05,07,98-99,100]"),
            ("c1,c3,c5,c6", "c[1,3,5-6]"),
            ("a2b1,a2b2,a2b3,a1b1,a1b2", "a2b[1-3],a1b[1-2]"),
            (
                "a1b1,a1b2,a1b3,a3b1,a3b2,a3b3,a2b1,a2b3",
                "a[1,3]b[1-3],a2b[1,3]",
            ),
            ("r1n1,r1n2,r2n2,r2n3", "r1n[1-2],r2n[2-3]"),
            ("a1b1,a01b1,a1b01", "a1b[1,01],a01b1"),
            ("x_1,x.1,x-1,x1", "x1,x-1,x.1,x_1"),
            ("c1,C1,_1", "C1,_1,c1"),
            ("login1", "login1"),
            ("login", "login"),
            ("c1,c1,c2", "c[1-2]"),
        ];
        for (input, want) in cases {
            assert_eq!(f(input), *want, "fold {input:?}");
        }
        assert_eq!(fold(&[]), "");
    }

    #[test]
    fn big_sets_stay_fast() {
        // ClusterShell path (merge from single nodes)
        let nodes = expand("r[1-100]n[1-200]!r5n5", &no_groups).unwrap();
        assert_eq!(nodes.len(), 19_999);
        assert_eq!(nodes[0], "r1n1");
        assert_eq!(fold(&nodes), "r[1-4,6-100]n[1-200],r5n[1-4,6-200]");
        // pre-merged path (more than PREMERGE_ABOVE nodes in one pattern)
        let nodes = expand("r[1-300]n[1-300]!r5n5", &no_groups).unwrap();
        assert_eq!(nodes.len(), 89_999);
        assert_eq!(fold(&nodes), "r[1-4,6-300]n[1-300],r5n[1-4,6-300]");
        let big = expand("c[1-200000]", &no_groups).unwrap();
        assert_eq!(big.len(), 200_000);
        assert_eq!(big[199_999], "c200000");
        assert_eq!(fold(&big), "c[1-200000]");
        // a fragmented 2-D set: every other node
        let sparse: Vec<String> = (0..20_000)
            .map(|i| format!("r{}n{}", i % 137, 2 * i))
            .collect();
        let folded = fold(&sparse);
        let mut want = sparse.clone();
        want.sort();
        let mut got = expand(&folded, &no_groups).unwrap();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn groups() {
        let resolver = |g: &str| -> Option<Vec<String>> {
            match g {
                "compute" => Some(vec!["c[1-3]".into(), "c7".into()]),
                "login" => Some(vec!["login[1-2]".into()]),
                "all" => Some(vec!["@compute,@login".into()]),
                "rack1" => Some(vec!["r1n[1-2]".into()]),
                "rack2" => Some(vec!["r2n[1-2]".into()]),
                "src:gpu" => Some(vec!["g1".into()]),
                "loop" => Some(vec!["@loop".into()]),
                "empty" => Some(vec![]),
                "bad" => Some(vec!["c[3-1]".into()]),
                _ => None,
            }
        };
        let ex = |s: &str| expand(s, &resolver).map(|v| v.join(" "));
        assert_eq!(ex("@compute").unwrap(), "c1 c2 c3 c7");
        assert_eq!(ex("@all!c2").unwrap(), "c1 c3 c7 login1 login2");
        assert_eq!(ex("@rack[1-2]").unwrap(), "r1n1 r1n2 r2n1 r2n2");
        assert_eq!(ex("@src:gpu,x1").unwrap(), "g1 x1");
        assert_eq!(ex("@empty").unwrap(), "");
        assert!(matches!(
            ex("@nope"),
            Err(NodeSetError::UnknownGroup { group, .. }) if group == "nope"
        ));
        assert!(matches!(ex("@loop"), Err(NodeSetError::GroupDepth { .. })));
        assert!(matches!(
            ex("@bad"),
            Err(NodeSetError::ReversedRange { .. })
        ));
        assert!(matches!(ex("@"), Err(NodeSetError::Syntax { .. })));
    }

    #[test]
    fn errors() {
        use NodeSetError as E;
        let err = |s: &str| expand(s, &no_groups).unwrap_err();
        assert_eq!(err(""), E::Empty);
        assert_eq!(err("   "), E::Empty);
        assert!(matches!(err("c[1-2"), E::Unbalanced { .. }));
        assert!(matches!(err("c1-2]"), E::Unbalanced { .. }));
        assert!(matches!(err("c[1[2]]"), E::Unbalanced { .. }));
        assert!(matches!(err("c[1-2][3-4]"), E::Syntax { .. }));
        assert!(matches!(err("c[10-1]"), E::ReversedRange { range, .. } if range == "10-1"));
        assert!(matches!(err("c[]"), E::BadRange { .. }));
        assert!(matches!(err("c[1,]"), E::BadRange { .. }));
        assert!(matches!(err("c[a-b]"), E::BadRange { .. }));
        assert!(matches!(err("c[1-]"), E::BadRange { .. }));
        assert!(matches!(err("c[-1]"), E::BadRange { .. }));
        assert!(matches!(err("c[1-10/0]"), E::BadRange { .. }));
        assert!(matches!(err("c[5/2]"), E::BadRange { .. }));
        assert!(matches!(err("c[1-2-3]"), E::BadRange { .. }));
        assert!(matches!(err("c[99999999999999999999]"), E::BadRange { .. }));
        assert!(matches!(err("c[01-100]"), E::PaddingMismatch { .. }));
        assert!(matches!(err("c[1-03]"), E::PaddingMismatch { .. }));
        assert!(matches!(err("c[09-100]"), E::PaddingMismatch { .. }));
        assert!(matches!(err("c[1-1000001]"), E::TooLarge { .. }));
        assert!(matches!(err("c[1-1000]n[1-1001]"), E::TooLarge { .. }));
        assert!(matches!(
            err("a[1-999999999999999]b[1-999999999999999]"),
            E::TooLarge { .. }
        ));
        assert!(matches!(err("c[1-600000],d[1-600000]"), E::TooLarge { .. }));
        assert!(matches!(err("c1 c2"), E::BadChar { ch: ' ', .. }));
        assert!(matches!(err("c/1"), E::BadChar { ch: '/', .. }));
        assert!(matches!(err("c1;rm"), E::BadChar { ch: ';', .. }));
        assert!(matches!(err("é1"), E::BadChar { .. }));
        assert!(matches!(err(".hidden"), E::BadName { .. }));
        assert!(matches!(err(&"a".repeat(65)), E::BadName { .. }));
        assert!(matches!(err("c1,,c2"), E::MissingOperand { .. }));
        assert!(matches!(err("c[1-3]!"), E::MissingOperand { op: '!', .. }));
        assert!(matches!(err("!c1"), E::MissingOperand { .. }));
        // messages name the input and the rule
        let msg = err("c[10-1]").to_string();
        assert!(msg.contains("c[10-1]") && msg.contains("reversed"), "{msg}");
        let msg = err("c[1-1000001]").to_string();
        assert!(msg.contains("1000000"), "{msg}");
    }

    fn node_name() -> impl Strategy<Value = String> {
        // a few patterns with 0-2 numbers, sometimes padded
        (
            prop::sample::select(vec!["c", "n", "rack", "gpu-", "a.b", "x_", ""]),
            prop::option::of((0u32..40, 0usize..4)),
            prop::sample::select(vec!["", "-ib", "n", "p", ".x"]),
            prop::option::of((0u32..12, 0usize..3)),
        )
            .prop_map(|(p, n1, mid, n2)| {
                let mut s = p.to_string();
                if let Some((v, w)) = n1 {
                    s.push_str(&format!("{v:0w$}"));
                }
                s.push_str(mid);
                if let Some((v, w)) = n2 {
                    s.push_str(&format!("{v:0w$}"));
                }
                if s.is_empty() || s.starts_with('.') {
                    s.insert(0, 'z');
                }
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn expand_never_panics(s in "\\PC{0,40}") {
            let _ = expand(&s, &no_groups);
        }

        #[test]
        fn expand_never_panics_on_syntax_soup(s in "[a-c0-9\\[\\]\\-,!&^@/.]{0,30}") {
            let _ = expand(&s, &|_: &str| Some(vec!["g[1-2]".to_string()]));
        }

        #[test]
        fn fold_never_panics(v in prop::collection::vec("\\PC{0,12}", 0..20)) {
            let _ = fold(&v);
        }

        #[test]
        fn expand_fold_roundtrip(v in prop::collection::vec(node_name(), 1..60)) {
            let canonical = expand(&v.join(","), &no_groups).unwrap();
            let folded = fold(&v);
            let again = expand(&folded, &no_groups).unwrap();
            prop_assert_eq!(&again, &canonical, "folded: {}", folded);
            // folding is stable
            prop_assert_eq!(fold(&again), folded);
        }
    }
}
