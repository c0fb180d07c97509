//! `rebuild NAME [--as NEW]` (issue 15): the image built again from its build record
//! (`build.yml`: the declaration, the epoch, the package manifest), every package
//! pinned to its recorded version, into a **new image** (default `NAME-rebuild`): the
//! original, and the nodes booting it, are not touched, and the two can be compared
//! (`diff`). The rebuilt tree is set up under the original's name (what its os-release
//! and ready unit carry), so that a faithful rebuild is bit-identical to generation 1.
//! Also: what `show` tells of an image's build.
use serde::Serialize;

use crate::build::image::{BuildOptions, Repro};
use crate::build::{pkglist, reproducible as rp};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::modules::livenet::{self, CreateReport, LivenetCreate, SizeSpec};
use crate::store::{self, LivenetType};

use super::diff::{self, DiffReport};

/// What `rebuild` did and found.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub name: String,
    pub rebuilt_as: String,
    pub source_date_epoch: u64,
    pub pinned_packages: usize,
    /// The recorded sha256 of generation 1 of NAME.
    pub recorded_sha256: Option<String>,
    pub sha256: Option<String>,
    pub identical: bool,
    /// The initramfs too (None: no recorded digest).
    pub initramfs_identical: Option<bool>,
    /// When it differs and generation 1 of NAME is still kept: what differs.
    pub diff: Option<DiffReport>,
    pub create: CreateReport,
}

impl RebuildReport {
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "rebuilt {} as {} at SOURCE_DATE_EPOCH={} ({} packages pinned)",
            self.name, self.rebuilt_as, self.source_date_epoch, self.pinned_packages
        )];
        if self.identical {
            v.push(format!(
                "{} is bit-identical to generation 1 of {} (sha256 {})",
                self.rebuilt_as,
                self.name,
                self.sha256.as_deref().unwrap_or("?")
            ));
        } else {
            v.push(format!(
                "{} differs from generation 1 of {} (sha256 {} recorded, {} now)",
                self.rebuilt_as,
                self.name,
                self.recorded_sha256.as_deref().unwrap_or("none"),
                self.sha256.as_deref().unwrap_or("none")
            ));
            match &self.diff {
                Some(d) => v.extend(d.lines()),
                None => v.push(format!(
                    "generation 1 of {} is no longer kept: nothing to compare the files with",
                    self.name
                )),
            }
        }
        match self.initramfs_identical {
            Some(true) => v.push("the initramfs is bit-identical too".into()),
            Some(false) => v.push("the initramfs differs from the recorded one".into()),
            None => {}
        }
        v
    }
}

/// The name a rebuild gets by default.
pub fn default_name(name: &str) -> String {
    format!("{name}-rebuild")
}

/// `rebuild NAME [--as NEW]`.
/// `epoch`: another `SOURCE_DATE_EPOCH` than the recorded one (to see that only
/// timestamps depend on it).
pub fn rebuild(
    ctx: &Ctx,
    name: &str,
    as_name: Option<&str>,
    epoch: Option<u64>,
) -> Result<RebuildReport> {
    crate::names::image(name)?;
    store::require_store(&ctx.cfg)?;
    let rec = store::load(&ctx.cfg, name)?;
    if rec.image_class != store::ImageClass::LivenetImage {
        return Err(Error::invalid(format!(
            "image {name} is not a livenet image ({}): rebuild makes livenet images only (its build record, {}, says what it was built from)",
            rec.image_class.as_str(),
            rp::record_path(&ctx.cfg, name).display()
        )));
    }
    let record = rp::load_record(&ctx.cfg, name)?.ok_or_else(|| {
        Error::invalid(format!(
            "image {name} has no build record ({}): it was made before reproducible builds or not by `livenet create`; nothing to rebuild from",
            rp::record_path(&ctx.cfg, name).display()
        ))
    })?;
    let new = as_name
        .map(str::to_string)
        .unwrap_or_else(|| default_name(name));
    let epoch = epoch.unwrap_or(record.source_date_epoch);
    crate::names::image(&new)?;
    // mmdebstrap: `pkg=version` and an apt preferences file; dnf: every recorded
    // `name-[epoch:]version-release` asked for (build::dnf::pinned_specs).
    let pins = if record.builder == "mmdebstrap" || record.builder == "dnf" {
        pkglist::pins_of(&record.manifest)
    } else {
        Vec::new()
    };
    if let Some(k) = &record.ssh_pub_key_file {
        if !k.is_file() {
            return Err(Error::invalid(format!(
                "image {name} was built with the SSH key file {}, which no longer exists: put it back to rebuild",
                k.display()
            )));
        }
    }
    let mut o = LivenetCreate::new(&new);
    o.build = BuildOptions {
        distro: record.distro.clone(),
        release: Some(record.release.clone()),
        livenet_type: LivenetType::parse(&record.livenet_type)?,
        password_hash: rec.password.clone(),
        ssh_pub_key_file: record.ssh_pub_key_file.clone(),
        selinux: record.selinux,
        optimize: record.optimize,
        packages: record.packages.clone(),
        mirror: record.mirror.clone(),
        from: record.from.clone(),
        kernel_from: None,
        // a rebuild is a check the admin removes or keeps, never collected by itself
        transient: false,
        repro: Repro {
            epoch: Some(epoch),
            pins: pins.clone(),
            setup_name: Some(
                record
                    .rebuilt_from
                    .clone()
                    .unwrap_or_else(|| name.to_string()),
            ),
        },
    };
    if let Some(l) = &record.layout {
        o.layout = crate::store::Layout::parse(l)?;
    }
    if o.layout == crate::store::Layout::Compat {
        o.size = record.size_mib.map(SizeSpec::Mib);
    }
    if let Some(f) = &record.initramfs {
        o.initramfs = f.clone();
    }
    let create = livenet::create(ctx, &o)?;
    if ctx.runner.dry_run() {
        return Ok(RebuildReport {
            name: name.into(),
            rebuilt_as: new,
            source_date_epoch: epoch,
            pinned_packages: pins.len(),
            recorded_sha256: record.squashfs_sha256,
            sha256: None,
            identical: false,
            initramfs_identical: None,
            diff: None,
            create,
        });
    }
    let now = rp::load_record(&ctx.cfg, &new)?;
    let sha256 = now.as_ref().and_then(|r| r.squashfs_sha256.clone());
    let identical = sha256.is_some() && sha256 == record.squashfs_sha256;
    let initramfs_identical = record
        .initramfs_sha256
        .as_ref()
        .map(|d| now.as_ref().and_then(|r| r.initramfs_sha256.as_ref()) == Some(d));
    let diff = if identical {
        None
    } else {
        diff::diff(ctx, &format!("{name}@1"), &new).ok()
    };
    Ok(RebuildReport {
        name: name.into(),
        rebuilt_as: new,
        source_date_epoch: epoch,
        pinned_packages: pins.len(),
        recorded_sha256: record.squashfs_sha256,
        sha256,
        identical,
        initramfs_identical,
        diff,
        create,
    })
}

/// What `show` tells of an image's build: the record (without the manifest) and the
/// packages of the current generation.
pub fn build_info(ctx: &Ctx, name: &str) -> Option<serde_json::Value> {
    let record = rp::load_record(&ctx.cfg, name).ok().flatten();
    let packages = match crate::pack::generations::current_digest(&ctx.cfg, name) {
        Some(d) => pkglist::load(&ctx.cfg, name, &d).ok().flatten(),
        // an NFS image: its tree is the image (read as it is now)
        None => store::load(&ctx.cfg, name)
            .ok()
            .and_then(|r| crate::modules::nfs::tree_of(&ctx.cfg, &r))
            .filter(|t| t.is_dir())
            .and_then(|t| pkglist::read_tree(ctx, &t).ok())
            .filter(|p| !p.is_empty()),
    };
    if record.is_none() && packages.is_none() {
        return None;
    }
    let mut rec = record.map(|r| serde_json::to_value(&r).unwrap_or_default());
    if let Some(serde_json::Value::Object(m)) = rec.as_mut() {
        m.remove("manifest");
    }
    Some(serde_json::json!({
        "record": rec,
        "packages": packages,
    }))
}
