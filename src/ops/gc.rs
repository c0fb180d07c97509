//! `disklessset gc` (issue 15): collects transient images nobody uses any more and
//! generations beyond `keep_generations`.
//!
//! What "in use" means, from the facts the store keeps:
//! - *assigned*: a node's boot script names the image (any boot type), a pending
//!   `bootset --once` returns a node to it, or (NFS staging) a golden image was copied
//!   from it;
//! - *booted lately*: a node's record (`boot::seen`) says it fetched its script for the
//!   image, or the image called home as booted, within `--older-than` (default: the
//!   config's `gc_keep_booted_days`, 7 days);
//! - a transient image created or changed within `--older-than` is kept too: a per-host
//!   image made a minute ago and not assigned yet is not garbage.
//!
//! Never collected: the current generation; a generation a node assigned to the image
//! last booted (it may still run it) or booted within the window; an image that is
//! mounted, locked by another process, in creation or corrupted (each named with its
//! reason). Removal goes through `image::remove` (image lock, safe removal) and, for a
//! generation, `sys::remove` under the image lock.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::boot::{bootset, seen};
use crate::cluster::nodeset;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::fsutil::human_size;
use crate::pack::generations;
use crate::store::{self, lock, record, ImageClass, State};

/// `gc` options: `older_than` None takes the config's `gc_keep_booted_days`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcOptions {
    pub older_than: Option<Duration>,
}

/// One thing collected (or that would be, in a dry run).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GcItem {
    pub image: String,
    /// None: the whole (transient) image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    pub bytes: u64,
    /// Why it goes, or why it stays.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct GcReport {
    pub dry_run: bool,
    pub older_than_secs: u64,
    pub keep_generations: u32,
    /// Removed (planned, in a dry run).
    pub removed: Vec<GcItem>,
    /// Candidates kept because something uses them.
    pub kept: Vec<GcItem>,
    /// Candidates left alone because of their state (mounted, locked, ...).
    pub skipped: Vec<GcItem>,
    pub freed_bytes: u64,
}

/// `7d`, `12h`, `30m`, `45s`, `2w`, or plain seconds; `0` keeps nothing for its age.
pub fn parse_age(s: &str) -> Result<Duration> {
    let t = s.trim();
    let bad = || {
        Error::invalid(format!(
            "--older-than {s:?}: use a number with a unit, e.g. 7d, 12h, 30m, 45s (or 0)"
        ))
    };
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 7 * 86400,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        Some(_) => (t, 1),
        None => return Err(bad()),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(bad)
}

/// "7d", "12h", "30m", "45s": the shortest exact form.
pub fn format_age(secs: u64) -> String {
    for (unit, m) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if secs > 0 && secs.is_multiple_of(m) {
            return format!("{}{unit}", secs / m);
        }
    }
    format!("{secs}s")
}

fn mtime_secs(p: &Path) -> Option<u64> {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// What the nodes say: image -> nodes assigned to it; node -> its record.
struct Usage {
    assigned: BTreeMap<String, Vec<String>>,
    seen: BTreeMap<String, seen::Seen>,
}

impl Usage {
    fn read(cfg: &Config) -> Usage {
        let mut assigned: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // Every node script (not only the inventory's nodes: a script the inventory
        // lost still boots its node); MAC aliases are symlinks, skipped.
        for e in std::fs::read_dir(&cfg.nodes_ipxe_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_type().map(|t| t.is_symlink()).unwrap_or(true) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(node) = name.strip_suffix(".ipxe") else {
                continue;
            };
            if let Some((_, Some(img))) = bootset::read_assignment(cfg, node) {
                assigned.entry(img).or_default().push(node.to_string());
            }
        }
        let mut seen_map = BTreeMap::new();
        for e in std::fs::read_dir(seen::dir(cfg))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(node) = name.strip_suffix(".json") else {
                continue;
            };
            if let Some(s) = seen::load(cfg, node) {
                if let Some(prev) = s.once.as_ref().and_then(|o| o.previous_image.clone()) {
                    let v = assigned.entry(prev).or_default();
                    if !v.iter().any(|n| n == node) {
                        v.push(node.to_string());
                    }
                }
                seen_map.insert(node.to_string(), s);
            }
        }
        Usage {
            assigned,
            seen: seen_map,
        }
    }

    fn assigned_to(&self, image: &str) -> Option<String> {
        self.assigned
            .get(image)
            .filter(|v| !v.is_empty())
            .map(|v| nodeset::fold(v))
    }

    /// The latest use of `image` (generation `gen`, or any) by a node at or after
    /// `since`: (node, unix time, what).
    fn used_since(&self, image: &str, gen: Option<u32>, since: u64) -> Option<(String, u64)> {
        let mut best: Option<(String, u64)> = None;
        for (node, s) in &self.seen {
            for (img, g, at) in [
                (&s.booted_image, s.booted_generation, s.booted_at),
                (&s.script_image, s.script_generation, s.script_at),
            ] {
                let (Some(img), Some(at)) = (img, at) else {
                    continue;
                };
                if img != image || at <= since || (gen.is_some() && g != gen) {
                    continue;
                }
                if best.as_ref().is_none_or(|(_, b)| at > *b) {
                    best = Some((node.clone(), at));
                }
            }
        }
        best
    }

    /// Nodes assigned to `image` whose last boot (or script) was generation `gen`: they
    /// may still run it.
    fn running(&self, image: &str, gen: u32) -> Vec<String> {
        let Some(nodes) = self.assigned.get(image) else {
            return Vec::new();
        };
        nodes
            .iter()
            .filter(|n| {
                self.seen.get(*n).is_some_and(|s| {
                    let last = match (s.booted_at, s.script_at) {
                        (Some(b), Some(sc)) if sc > b => s.script_generation,
                        (Some(_), _) => s.booted_generation,
                        (None, _) => s.script_generation,
                    };
                    last == Some(gen)
                })
            })
            .cloned()
            .collect()
    }
}

/// The plan: what goes, what stays and why. Reads only.
pub fn plan(ctx: &Ctx, o: &GcOptions) -> Result<GcReport> {
    let cfg = &ctx.cfg;
    store::require_store(cfg)?;
    let older = o
        .older_than
        .unwrap_or(Duration::from_secs(cfg.gc_keep_booted_days * 86400));
    let window = format_age(older.as_secs());
    let now = seen::now();
    let since = now.saturating_sub(older.as_secs());
    let usage = Usage::read(cfg);
    let mut rep = GcReport {
        dry_run: ctx.runner.dry_run(),
        older_than_secs: older.as_secs(),
        keep_generations: cfg.keep_generations,
        ..Default::default()
    };
    let images = store::list(cfg)?;
    // Staging images golden images were copied from.
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in &images {
        if let Some(r) = &i.record {
            if let Some(src) = r.source_image.as_ref() {
                sources.entry(src.clone()).or_default().push(i.name.clone());
            }
        }
    }
    for i in &images {
        let Some(rec) = &i.record else { continue };
        let dir = cfg.image_dir(&i.name);
        let state_skip = |what: &str| -> Option<String> {
            match (i.state, &i.holder) {
                (State::Mounted, _) => Some(format!(
                    "mounted (`disklessset livenet unmount {}` first)",
                    i.name
                )),
                (_, Some(h)) if h.pid != std::process::id() as i32 => {
                    Some(format!("locked by pid {} ({})", h.pid, h.operation))
                }
                (State::InCreation | State::Corrupted, _) => {
                    Some(format!("{} ({what} left alone)", i.state))
                }
                _ => None,
            }
        };
        if record::is_transient(rec) && rec.image_class != ImageClass::NfsGoldenImage {
            let item = |reason: String| GcItem {
                image: i.name.clone(),
                generation: None,
                bytes: i.size_bytes,
                reason,
            };
            if let Some(n) = usage.assigned_to(&i.name) {
                rep.kept.push(item(format!("assigned to {n}")));
                continue;
            }
            if let Some(g) = sources.get(&i.name) {
                rep.kept.push(item(format!(
                    "golden image {} was copied from it",
                    g.join(", ")
                )));
                continue;
            }
            if let Some((node, at)) = usage.used_since(&i.name, None, since) {
                rep.kept.push(item(format!(
                    "booted by {node} at {} (within {window})",
                    seen::format_time(at)
                )));
                continue;
            }
            let changed = [
                mtime_secs(&cfg.image_data_file(&i.name)),
                mtime_secs(&dir.join(generations::IMAGE_FILE)),
            ]
            .into_iter()
            .flatten()
            .max();
            if let Some(at) = changed.filter(|t| *t > since) {
                rep.kept.push(item(format!(
                    "created or changed at {} (within {window})",
                    seen::format_time(at)
                )));
                continue;
            }
            if let Some(why) = state_skip("the image") {
                rep.skipped.push(item(why));
                continue;
            }
            rep.removed.push(item(format!(
                "transient, no node assigned, not booted within {window}"
            )));
            continue;
        }
        if rec.image_class != ImageClass::LivenetImage || rec.generation == 0 {
            continue;
        }
        let kept: Vec<u32> = generations::kept(cfg, &i.name)
            .into_iter()
            .filter(|g| *g != rec.generation)
            .collect();
        let keep = cfg.keep_generations as usize;
        if kept.len() <= keep {
            continue;
        }
        // The newest `keep` previous generations stay; the rest are candidates.
        let mut previous: Vec<u32> = kept
            .iter()
            .copied()
            .filter(|g| *g < rec.generation)
            .collect();
        let newer: Vec<u32> = kept
            .iter()
            .copied()
            .filter(|g| *g > rec.generation)
            .collect();
        previous.sort_unstable();
        let surplus_prev = previous.len().saturating_sub(keep);
        let mut candidates: Vec<u32> = previous[..surplus_prev].to_vec();
        // Generations newer than the current one (left by a rollback) count against
        // the keep too, once the previous ones fill it.
        if previous.len() >= keep {
            candidates.extend(newer);
        }
        for g in candidates {
            let bytes = std::fs::metadata(generations::kept_path(cfg, &i.name, g))
                .map(|m| m.len())
                .unwrap_or(0);
            let item = |reason: String| GcItem {
                image: i.name.clone(),
                generation: Some(g),
                bytes,
                reason,
            };
            let running = usage.running(&i.name, g);
            if !running.is_empty() {
                rep.kept.push(item(format!(
                    "{} last booted it (assigned to the image)",
                    nodeset::fold(&running)
                )));
                continue;
            }
            if let Some((node, at)) = usage.used_since(&i.name, Some(g), since) {
                rep.kept.push(item(format!(
                    "booted by {node} at {} (within {window})",
                    seen::format_time(at)
                )));
                continue;
            }
            if let Some(why) = state_skip("its generations") {
                rep.skipped.push(item(why));
                continue;
            }
            rep.removed.push(item(format!(
                "beyond keep_generations {} (current {})",
                cfg.keep_generations, rec.generation
            )));
        }
    }
    Ok(rep)
}

/// Plans, then removes what the plan says goes (nothing in a dry run). A removal that
/// fails (a lock taken meanwhile, a mount appeared) moves the item to `skipped` with the
/// error; the others go on.
pub fn gc(ctx: &Ctx, o: &GcOptions) -> Result<GcReport> {
    let mut rep = plan(ctx, o)?;
    if ctx.runner.dry_run() {
        rep.freed_bytes = rep.removed.iter().map(|i| i.bytes).sum();
        return Ok(rep);
    }
    let planned = std::mem::take(&mut rep.removed);
    for item in planned {
        let res = match item.generation {
            None => {
                // Assignments may have changed since the plan: look again.
                match Usage::read(&ctx.cfg).assigned_to(&item.image) {
                    Some(n) => Err(Error::invalid(format!("assigned to {n} meanwhile"))),
                    None => super::image::remove(ctx, &item.image),
                }
            }
            Some(g) => remove_generation(ctx, &item.image, g),
        };
        match res {
            Ok(()) => {
                tracing::info!(
                    "gc: removed {} {}",
                    item.image,
                    item.generation
                        .map(|g| format!("generation {g}"))
                        .unwrap_or_default()
                );
                rep.freed_bytes += item.bytes;
                rep.removed.push(item);
            }
            Err(e) => rep.skipped.push(GcItem {
                reason: e.to_string(),
                ..item
            }),
        }
    }
    Ok(rep)
}

/// Removes kept generation `g` of `name` under the image lock, through the safe removal;
/// refuses the current one.
fn remove_generation(ctx: &Ctx, name: &str, g: u32) -> Result<()> {
    let _l = lock::lock_image(&ctx.cfg, name, "gc")?;
    let rec = store::load(&ctx.cfg, name)?;
    if rec.generation == g {
        return Err(Error::invalid(format!(
            "generation {g} of {name} is the current one"
        )));
    }
    let p = generations::kept_path(&ctx.cfg, name, g);
    crate::sys::remove::remove_tree(&ctx.runner, &crate::fsutil::digest_sidecar(&p))?;
    crate::sys::remove::remove_tree(&ctx.runner, &p)
}

/// The lines a person reads.
pub fn lines(rep: &GcReport) -> Vec<String> {
    let what = |i: &GcItem| match i.generation {
        Some(g) => format!("generation {g} of image {}", i.image),
        None => format!("transient image {}", i.image),
    };
    let verb = if rep.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out: Vec<String> = rep
        .removed
        .iter()
        .map(|i| format!("{verb} {} ({}): {}", what(i), human_size(i.bytes), i.reason))
        .collect();
    out.extend(
        rep.kept
            .iter()
            .map(|i| format!("kept {}: {}", what(i), i.reason)),
    );
    out.extend(
        rep.skipped
            .iter()
            .map(|i| format!("skipped {}: {}", what(i), i.reason)),
    );
    if rep.removed.is_empty() {
        out.push("nothing to collect".into());
    } else {
        out.push(format!(
            "{} {} item(s), {}",
            if rep.dry_run { "would free" } else { "freed" },
            rep.removed.len(),
            human_size(rep.removed.iter().map(|i| i.bytes).sum())
        ));
    }
    out
}

/// The confirmation question (None: nothing would be removed).
pub fn confirmation(ctx: &Ctx, o: &GcOptions) -> Result<Option<String>> {
    let dry = Ctx::new(ctx.cfg.clone(), crate::sys::runner::Runner::new(true));
    let rep = plan(&dry, o)?;
    if rep.removed.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = rep
        .removed
        .iter()
        .map(|i| match i.generation {
            Some(g) => format!("{}@{g}", i.image),
            None => i.image.clone(),
        })
        .collect();
    Ok(Some(format!(
        "remove {} ({})",
        names.join(", "),
        human_size(rep.removed.iter().map(|i| i.bytes).sum())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d").unwrap().as_secs(), 7 * 86400);
        assert_eq!(parse_age("12h").unwrap().as_secs(), 12 * 3600);
        assert_eq!(parse_age("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_age("45s").unwrap().as_secs(), 45);
        assert_eq!(parse_age("0").unwrap().as_secs(), 0);
        assert_eq!(parse_age("90").unwrap().as_secs(), 90);
        for bad in ["", "d", "7x", "-1d", "1.5d", "7 days"] {
            let e = parse_age(bad).unwrap_err().to_string();
            assert!(e.contains("--older-than"), "{bad}: {e}");
        }
        assert_eq!(format_age(7 * 86400), "7d");
        assert_eq!(format_age(86400 * 3), "3d");
        assert_eq!(format_age(1800), "30m");
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(61), "61s");
    }
}
