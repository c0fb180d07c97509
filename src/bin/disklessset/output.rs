//! Printing results: aligned tables for people, JSON for scripts.
use anyhow::Result;
use serde::Serialize;

use disklessset::fsutil::human_size;
use disklessset::kernel::KernelInfo;
use disklessset::modules::ModuleInfo;
use disklessset::ops::RecoverReport;
use disklessset::store::{ImageInfo, State};

pub fn json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as left-aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub fn state_label(i: &ImageInfo) -> String {
    match (i.state, &i.holder) {
        (State::InCreation, Some(h)) => format!("in_creation (pid {})", h.pid),
        (s, _) => s.to_string(),
    }
}

pub fn images(list: &[ImageInfo], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("no images");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                state_label(i),
                i.module.clone().unwrap_or_else(|| "-".into()),
                i.layout.clone().unwrap_or_else(|| "-".into()),
                human_size(i.size_bytes),
                i.kernel.clone().unwrap_or_else(|| "-".into()),
                if i.generation > 0 {
                    i.generation.to_string()
                } else {
                    "-".into()
                },
                i.problem.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "STATE", "MODULE", "LAYOUT", "SIZE", "KERNEL", "GEN", "NOTE",
        ],
        &rows,
    );
    Ok(())
}

pub fn image(i: &ImageInfo, as_json: bool) -> Result<()> {
    if as_json {
        return json(i);
    }
    println!("{}", i.name);
    let mut kv: Vec<(&str, String)> = vec![
        ("state", state_label(i)),
        ("directory", i.dir.display().to_string()),
        ("size", human_size(i.size_bytes)),
    ];
    if let Some(h) = &i.holder {
        kv.push(("locked by", format!("pid {} ({})", h.pid, h.operation)));
    }
    if let Some(p) = &i.problem {
        kv.push(("problem", p.clone()));
    }
    for m in &i.mounts {
        kv.push(("mount", m.display().to_string()));
    }
    if let Some(r) = &i.record {
        if let Ok(y) = r.to_yaml() {
            for line in y.lines().skip(1) {
                if let Some((k, v)) = line.trim().split_once(':') {
                    if !line.starts_with("    ") && !line.starts_with("  -") {
                        kv.push((leak(k.trim()), v.trim().to_string()));
                    }
                }
            }
        }
    }
    let n = kv.len();
    for (idx, (k, v)) in kv.into_iter().enumerate() {
        let branch = if idx + 1 == n {
            "└──"
        } else {
            "├──"
        };
        println!("  {branch} {k}: {v}");
    }
    Ok(())
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

pub fn done(as_json: bool, msg: &str) -> Result<()> {
    if as_json {
        json(&serde_json::json!({ "ok": true, "message": msg }))
    } else {
        println!("{msg}");
        Ok(())
    }
}

pub fn recover(r: &RecoverReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(r);
    }
    let mut any = false;
    for (what, items) in [
        ("stale lock cleared", r.stale_locks.clone()),
        (
            "unmounted",
            r.unmounted
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        ),
        ("loop device detached", r.loop_devices.clone()),
        (
            "temp file removed",
            r.temp_files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        ),
    ] {
        for i in items {
            println!("{what}: {i}");
            any = true;
        }
    }
    for c in &r.corrupted {
        println!("corrupted image left in place: {c} (remove it with `disklessset clear {c}`)");
    }
    if !any {
        println!("nothing to recover");
    }
    Ok(())
}

pub fn modules(m: &[ModuleInfo], as_json: bool) -> Result<()> {
    if as_json {
        return json(m);
    }
    let rows: Vec<Vec<String>> = m
        .iter()
        .map(|m| {
            vec![
                m.name.to_string(),
                m.classes.join(","),
                m.actions.join(","),
                m.description.to_string(),
            ]
        })
        .collect();
    table(&["MODULE", "CLASSES", "ACTIONS", "DESCRIPTION"], &rows);
    Ok(())
}

pub fn kernels(k: &[KernelInfo], as_json: bool) -> Result<()> {
    if as_json {
        return json(k);
    }
    if k.is_empty() {
        println!(
            "no kernels (they are published by `livenet create`, or copied to the kernels dir)"
        );
        return Ok(());
    }
    println!("Available kernels:");
    println!("    │");
    let n = k.len();
    for (i, kern) in k.iter().enumerate() {
        let branch = if i + 1 == n { "└──" } else { "├──" };
        let status = if kern.has_initramfs() {
            format!(
                "initramfs present ({})",
                kern.initramfs
                    .iter()
                    .map(|(f, _)| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("missing initramfs-kernel-{}", kern.version)
        };
        let used = if kern.used_by.is_empty() {
            String::new()
        } else {
            format!(" — used by {}", kern.used_by.join(", "))
        };
        println!("    {branch} {} - {status}{used}", kern.file);
    }
    Ok(())
}

pub fn print_plan(plan: &[String]) {
    if plan.is_empty() {
        println!("dry run: nothing to do");
        return;
    }
    println!("dry run: the plan (nothing was changed):");
    for p in plan {
        println!("  {p}");
    }
}
