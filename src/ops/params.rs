//! `create --params FILE`: the operation over a validated parameters file.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::modules::{livenet, nfs};
use crate::params::{differences, load, perr, Format, ImageKind};
use crate::store::{self, State};
use crate::sys::mountinfo;

/// Options of `create --params`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamsOptions {
    /// The distro of entries that name none (`--distro`).
    pub distro: Option<String>,
    /// Remove and rebuild images that exist and differ.
    pub replace: bool,
    /// Consent to the removals `replace` implies.
    pub yes: bool,
}

/// What was (or, under --dry-run, would be) done with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Skipped,
    Replaced,
    WouldCreate,
    WouldReplace,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Skipped => "skipped (exists and matches)",
            Action::Replaced => "replaced",
            Action::WouldCreate => "would be created",
            Action::WouldReplace => "would be replaced",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamsOutcome {
    pub name: String,
    pub kind: ImageKind,
    pub action: Action,
    pub kernel: Option<String>,
    /// Why it is replaced.
    pub differences: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamsReport {
    pub file: PathBuf,
    pub format: Format,
    pub dry_run: bool,
    pub images: Vec<ParamsOutcome>,
}

enum Plan {
    Create,
    Skip,
    Replace { diffs: Vec<String>, clear: bool },
}

/// `create --params FILE`: validates the whole file first, then decides for each image
/// (create; skip when it exists and matches; refuse when it differs, unless `replace`),
/// refuses before any work if one entry is refused, then creates in file order. A
/// `kernel:` is checked after the build: the image is kept, and the error names the
/// version found.
pub fn create_from_params(ctx: &Ctx, path: &Path, opts: &ParamsOptions) -> Result<ParamsReport> {
    let pf = load(ctx, path, opts.distro.as_deref())?;
    let dry = ctx.runner.dry_run();
    let file = path.display().to_string();
    let mounts = mountinfo::read()?;
    let existing = if ctx.cfg.images_dir.is_dir() || ctx.cfg.state_dir.is_dir() {
        store::names(&ctx.cfg)?
    } else {
        Vec::new()
    };
    let mut plans = Vec::new();
    let mut refused = Vec::new();
    for ip in &pf.images {
        if !existing.contains(&ip.name) {
            plans.push(Plan::Create);
            continue;
        }
        let info = store::info(&ctx.cfg, &ip.name, &mounts);
        let at = format!("{file}:{}:{}", ip.at.line, ip.at.column);
        let diffs = match (&info.state, &info.record) {
            (State::InCreation, _) => {
                return Err(Error::invalid(format!(
                    "{at}: image {}: it is being created by another process ({}); wait for it",
                    ip.name,
                    info.holder
                        .map(|h| format!("pid {}", h.pid))
                        .unwrap_or_default()
                )))
            }
            (State::Corrupted, _) | (_, None) => vec!["it is corrupted".to_string()],
            (_, Some(rec)) => {
                // issue 12: the root hash lives in the secrets dir, not the record
                let mut rec = rec.clone();
                if rec.password.is_none() {
                    rec.password = store::secrets::image_root_hash(&ctx.cfg, &rec.name);
                }
                differences(ip, &rec)
            }
        };
        if diffs.is_empty() {
            plans.push(Plan::Skip);
        } else if info.state == State::Mounted {
            return Err(Error::WrongState {
                name: ip.name.clone(),
                state: "mounted".into(),
                hint: format!(
                    "it differs from {at} ({}): unmount it first (`livenet unmount {}`)",
                    diffs.join("; "),
                    ip.name
                ),
            });
        } else if opts.replace {
            plans.push(Plan::Replace {
                diffs,
                clear: info.state == State::Corrupted || info.record.is_none(),
            });
        } else {
            refused.push(format!(
                "image {} ({at}) differs: {}",
                ip.name,
                diffs.join("; ")
            ));
            plans.push(Plan::Skip);
        }
    }
    if !refused.is_empty() {
        return Err(Error::invalid(format!(
            "{}; pass --replace to remove and rebuild, or change the file",
            refused.join("; ")
        )));
    }
    let replacing: Vec<&str> = pf
        .images
        .iter()
        .zip(&plans)
        .filter(|(_, p)| matches!(p, Plan::Replace { .. }))
        .map(|(i, _)| i.name.as_str())
        .collect();
    if !replacing.is_empty() && !opts.yes && !dry {
        return Err(Error::NeedsConfirmation(format!(
            "replacing image(s) {} (removed, then rebuilt)",
            replacing.join(", ")
        )));
    }
    let mut report = ParamsReport {
        file: path.to_path_buf(),
        format: pf.format,
        dry_run: dry,
        images: Vec::new(),
    };
    for (ip, plan) in pf.images.iter().zip(plans) {
        let t = std::time::Instant::now();
        let (action, diffs) = match plan {
            Plan::Skip => {
                if dry {
                    ctx.runner.note(format!(
                        "skip image {} (exists and matches {file})",
                        ip.name
                    ));
                }
                report.images.push(ParamsOutcome {
                    name: ip.name.clone(),
                    kind: ip.kind,
                    action: Action::Skipped,
                    kernel: None,
                    differences: Vec::new(),
                    seconds: 0.0,
                });
                continue;
            }
            Plan::Create => (
                if dry {
                    Action::WouldCreate
                } else {
                    Action::Created
                },
                Vec::new(),
            ),
            Plan::Replace { diffs, clear } => {
                if dry {
                    ctx.runner
                        .note(format!("replace image {} ({})", ip.name, diffs.join("; ")));
                }
                if clear {
                    super::image::clear(ctx, &ip.name)?;
                } else {
                    super::image::remove(ctx, &ip.name)?;
                }
                (
                    if dry {
                        Action::WouldReplace
                    } else {
                        Action::Replaced
                    },
                    diffs,
                )
            }
        };
        tracing::info!("{}: {} image {}", file, ip.kind.as_str(), ip.name);
        let kernel = match ip.kind {
            ImageKind::Livenet => {
                let rep = livenet::create(ctx, &ip.create)?;
                Some(rep.kernel)
            }
            ImageKind::NfsStaging => {
                let o = nfs::StagingCreate {
                    name: ip.name.clone(),
                    build: ip.create.build.clone(),
                    initramfs: ip.create.initramfs.clone(),
                };
                Some(nfs::create_staging(ctx, &o)?.kernel)
            }
            ImageKind::NfsGolden => {
                let from = ip.from.clone().ok_or_else(|| {
                    Error::invalid(format!(
                        "{file}:{}:{}: an nfs-golden image needs `from:`",
                        ip.at.line, ip.at.column
                    ))
                })?;
                if dry && store::load(&ctx.cfg, &from).is_err() {
                    // Its staging image is created earlier in this file: not under --dry-run.
                    ctx.runner.note(format!(
                        "create NFS golden image {} from staging image {from}{}",
                        ip.name,
                        ip.nodes
                            .as_deref()
                            .map(|n| format!(", nodes {n}"))
                            .unwrap_or_default()
                    ));
                } else {
                    nfs::create_golden(ctx, &ip.name, &from)?;
                    if let Some(n) = &ip.nodes {
                        nfs::nodes_add(ctx, &ip.name, n)?;
                    }
                }
                None
            }
        };
        if let (Some(want), Some(found)) = (&ip.kernel, &kernel) {
            if !dry && want != found {
                let pos = ip.pos("kernel");
                return Err(perr(
                    path,
                    pos,
                    "kernel",
                    format!(
                        "image {} was built with kernel {found}, not {want} (the kernel comes from the packages the image installs; the image was kept: set `kernel: vmlinuz-{found}` or remove the line and run again, or `disklessset remove {}`)",
                        ip.name, ip.name
                    ),
                ));
            }
        }
        report.images.push(ParamsOutcome {
            name: ip.name.clone(),
            kind: ip.kind,
            action,
            kernel,
            differences: diffs,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    Ok(report)
}
