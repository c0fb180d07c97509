//! Printing results: aligned tables for people, JSON for scripts.
use anyhow::Result;
use serde::Serialize;

use disklessset::ops::{
    human_size, ImageInfo, KernelInfo, ModuleInfo, NodeDetail, NodeEntry, NodeRow, Outcome,
    PowerReport,
};

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
                match (&i.problem, i.transient) {
                    (Some(p), true) => format!("transient; {p}"),
                    (Some(p), false) => p.clone(),
                    (None, true) => "transient".into(),
                    (None, false) => String::new(),
                },
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
        ("state", i.state_label()),
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
    if let Some(d) = &i.sha256 {
        kv.push(("sha256", d.clone()));
    }
    if let Some(b) = &i.build {
        if let Some(e) = b["record"]["source_date_epoch"].as_u64() {
            kv.push(("source_date_epoch", e.to_string()));
        }
        if let Some(p) = b["packages"].as_array() {
            kv.push(("packages", format!("{} (show --json lists them)", p.len())));
        }
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

/// `diff` (issue 15): the report's lines, or its JSON.
pub fn diff(r: &disklessset::ops::DiffReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(r);
    }
    for l in r.lines() {
        println!("{l}");
    }
    Ok(())
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// A performed request: its JSON for scripts, else its lines (not in a dry run when
/// they report work that was not done).
pub fn outcome(o: &Outcome, as_json: bool, dry_run: bool) -> Result<()> {
    if as_json {
        return json(&o.json);
    }
    if !dry_run || o.in_dry_run {
        for l in &o.lines {
            println!("{l}");
        }
    }
    Ok(())
}

/// A node-by-node BMC report (`power status`, `bootdev status`): folded lines, or the
/// report as JSON; exit 1 with a one-line error naming the failed nodes.
pub fn power_report(r: &PowerReport, as_json: bool) -> Result<i32> {
    if as_json {
        json(r)?;
    } else {
        for l in r.lines() {
            println!("{l}");
        }
    }
    if r.ok {
        Ok(0)
    } else {
        eprintln!(
            "disklessset: error: {} of {} nodes failed: {} (see their lines above)",
            r.failed_count(),
            r.nodes.len(),
            r.failed
        );
        Ok(1)
    }
}

pub fn nfs_nodes(list: &[NodeEntry], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    for n in list {
        println!(
            "{}\t{}\t{}\t{}",
            n.node,
            if n.exists {
                human_size(n.bytes)
            } else {
                "missing".to_string()
            },
            n.ip.as_deref().unwrap_or("-"),
            n.dir.display()
        );
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

/// `replicate --status`: one line per replica, then its stale paths.
pub fn replica_status(list: &[disklessset::ops::ReplicaStatus], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    for r in list {
        let release = r
            .release
            .map_or("nothing".into(), |n| format!("release {n}"));
        if r.up_to_date {
            println!(
                "replica {} ({}): up to date, serves {release}",
                r.replica, r.url
            );
        } else {
            println!(
                "replica {} ({}): STALE, serves {release}; {} paths differ from the store:",
                r.replica,
                r.url,
                r.stale.len()
            );
            for p in &r.stale {
                println!("  {p}");
            }
        }
        if let Some(p) = r.last_push.as_ref().and_then(|p| p.error.as_ref()) {
            println!("  last push failed: {p}");
        }
    }
    Ok(())
}

// issue 13: the inventory.
fn seen_time(t: Option<u64>) -> String {
    t.map(disklessset::ops::nodes::format_time)
        .unwrap_or_else(|| "-".into())
}

pub fn node_rows(rows: &[NodeRow], as_json: bool) -> Result<()> {
    if as_json {
        return json(rows);
    }
    if rows.is_empty() {
        println!("no nodes");
        return Ok(());
    }
    let out: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.state.as_str().to_string(),
                r.mac.clone().unwrap_or_else(|| "-".into()),
                r.ip.clone().unwrap_or_else(|| "-".into()),
                if r.groups.is_empty() {
                    "-".into()
                } else {
                    r.groups.join(",")
                },
                match (&r.boot_type, &r.image) {
                    (Some(b), Some(i)) => format!("{b} {i}"),
                    (Some(b), None) => b.clone(),
                    _ => "-".into(),
                },
                seen_time(r.seen.script_at),
                seen_time(r.seen.booted_at),
                if r.reboot_changes {
                    "reboot changes it".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        &[
            "NODE", "STATE", "MAC", "IP", "GROUPS", "BOOT", "SCRIPT", "BOOTED", "NOTE",
        ],
        &out,
    );
    Ok(())
}

pub fn node_detail(d: &NodeDetail, as_json: bool) -> Result<()> {
    if as_json {
        return json(d);
    }
    let r = &d.row;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("node:       {}", r.name);
    println!("state:      {}", r.state.as_str());
    println!("mac:        {}", opt(&r.mac));
    println!("ip:         {}", opt(&r.ip));
    println!("netmask:    {}", opt(&d.netmask));
    println!("gateway:    {}", opt(&d.gateway));
    println!("groups:     {}", r.groups.join(", "));
    println!("bmc:        {}", opt(&d.bmc_address));
    println!(
        "boot:       {} {}",
        opt(&r.boot_type),
        r.image.clone().unwrap_or_default()
    );
    println!(
        "script:     {} ({} {} generation {})",
        seen_time(r.seen.script_at),
        opt(&r.seen.script_boot_type),
        opt(&r.seen.script_image),
        r.seen
            .script_generation
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "booted:     {} ({} generation {})",
        seen_time(r.seen.booted_at),
        opt(&r.seen.booted_image),
        r.seen
            .booted_generation
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into())
    );
    if r.reboot_changes {
        println!("note:       its assignment changed since it last fetched its script: a reboot changes it");
    }
    if !d.vars.is_empty() {
        println!("vars:");
        for (k, v) in &d.vars {
            println!("  {k} = {}    [{}]", v.value, v.source);
        }
    }
    if let Some(f) = &d.facts {
        facts(f);
    }
    Ok(())
}

/// `nodes render`: the text on stdout, whether it matches the kept copy on stderr.
pub fn rendering(r: &disklessset::ops::nodes::Rendering, as_json: bool) -> Result<()> {
    if as_json {
        return json(r);
    }
    print!("{}", r.text);
    match r.same_as_kept {
        None => eprintln!(
            "note: not served to {} yet (the server keeps what it serves in {})",
            r.node, r.kept_path
        ),
        Some(true) => eprintln!(
            "note: same as the copy served to {} ({})",
            r.node, r.kept_path
        ),
        Some(false) => eprintln!(
            "note: DIFFERS from the copy served to {} ({}): a reprovision now gets this new text",
            r.node, r.kept_path
        ),
    }
    Ok(())
}

/// `discovery list`: the state line, then one line per machine that reported.
pub fn discovery(s: &disklessset::ops::DiscoveryState, as_json: bool) -> Result<()> {
    if as_json {
        return json(s);
    }
    println!(
        "discovery {}: policy {}, pool {}",
        if s.on { "on" } else { "off" },
        s.policy.as_str(),
        s.pool.as_deref().unwrap_or("none")
    );
    let rows: Vec<Vec<String>> = s
        .machines
        .iter()
        .map(|m| {
            let f = &m.facts;
            vec![
                m.mac.clone(),
                m.name.clone().unwrap_or_else(|| "(pending)".into()),
                seen_time(Some(m.reported_at)),
                f.arch.clone(),
                f.cpus.to_string(),
                format!("{} MiB", f.memory_mib),
                f.disks
                    .iter()
                    .map(|d| format!("{} {}", d.name, human_size(d.size_bytes)))
                    .collect::<Vec<_>>()
                    .join(", "),
                [f.vendor.as_str(), f.product.as_str()]
                    .join(" ")
                    .trim()
                    .to_string(),
            ]
        })
        .collect();
    table(
        &[
            "MAC", "NODE", "REPORTED", "ARCH", "CPUS", "MEMORY", "DISKS", "MACHINE",
        ],
        &rows,
    );
    Ok(())
}

/// The facts block of `nodes show`.
pub fn facts(f: &disklessset::ops::Facts) {
    println!("facts:      reported {}", seen_time(Some(f.reported_at)));
    println!("  macs:     {}", f.macs.join(", "));
    println!("  arch:     {}", f.arch);
    println!("  cpu:      {} x {}", f.cpus, f.cpu_model);
    println!("  memory:   {} MiB", f.memory_mib);
    for d in &f.disks {
        println!(
            "  disk:     {} {} ({} bytes) {}",
            d.name,
            human_size(d.size_bytes),
            d.size_bytes,
            d.model
        );
    }
    println!("  machine:  {} {}", f.vendor, f.product);
    println!("  serial:   {}", f.serial);
    println!("  uuid:     {}", f.uuid);
}
