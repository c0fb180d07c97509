//! Comparing a parameters file's entry with an existing image (re-runs skip what
//! matches and refuse what differs).
use super::{ImageKind, ImageParams};
use crate::modules::livenet::SizeSpec;
use crate::store::{ImageRecord, Layout};

/// How an existing image differs from its entry (empty: it matches). The password is
/// compared by checking the file's password against the stored hash; it is never shown.
pub fn differences(ip: &ImageParams, rec: &ImageRecord) -> Vec<String> {
    let mut d = Vec::new();
    let mut cmp = |field: &str, want: String, have: String| {
        if want != have {
            d.push(format!(
                "{field}: the file says {want}, the image has {have}"
            ));
        }
    };
    let none = || "none".to_string();
    cmp(
        "image_class",
        ip.kind.class().as_str().to_string(),
        rec.image_class.as_str().to_string(),
    );
    if ip.kind == ImageKind::NfsGolden {
        cmp(
            "from",
            ip.from.clone().unwrap_or_else(none),
            rec.source_image.clone().unwrap_or_else(none),
        );
        return d;
    }
    let b = &ip.create;
    cmp(
        "distro",
        b.build.distro.clone(),
        rec.distro.clone().unwrap_or_else(|| "unknown".into()),
    );
    cmp(
        "release",
        b.build.release.clone().unwrap_or_else(none),
        rec.release_version.clone().unwrap_or_else(none),
    );
    cmp(
        "type",
        b.build.livenet_type.as_str().to_string(),
        rec.livenet_type
            .map(|t| t.as_str().to_string())
            .unwrap_or_else(none),
    );
    if ip.kind == ImageKind::Livenet {
        cmp(
            "layout",
            b.layout.as_str().to_string(),
            rec.layout.unwrap_or(Layout::Native).as_str().to_string(),
        );
        match (b.size, rec.livenet_size) {
            // A floor (reference files): an image grown to fit its content matches.
            (Some(SizeSpec::Mib(m)), Some(have)) if b.size_at_least && have >= m => {}
            (Some(SizeSpec::Mib(m)), have) => cmp(
                "size",
                format!("{m}M"),
                have.map(|s| format!("{s}M")).unwrap_or_else(none),
            ),
            _ => {}
        }
        if ip.initramfs_given {
            cmp(
                "initramfs",
                b.initramfs.clone(),
                rec.initramfs_flavour.clone().unwrap_or_else(none),
            );
        }
    }
    cmp(
        "selinux",
        b.build.selinux.to_string(),
        rec.selinux.to_string(),
    );
    cmp(
        "optimize",
        b.build.optimize.to_string(),
        rec.optimize.to_string(),
    );
    cmp(
        "transient",
        b.build.transient.to_string(),
        crate::store::record::is_transient(rec).to_string(),
    );
    let mut want = b.build.packages.clone();
    want.sort();
    let mut have = rec.additional_packages.clone();
    have.sort();
    cmp("packages", format!("{want:?}"), format!("{have:?}"));
    cmp(
        "ssh_pub_key",
        b.build
            .ssh_pub_key_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(none),
        rec.ssh_pub_key.clone().unwrap_or_else(none),
    );
    if let Some(k) = &ip.kernel {
        cmp(
            "kernel",
            k.clone(),
            rec.kernel_version()
                .map(str::to_string)
                .unwrap_or_else(none),
        );
    }
    let pw_ok = match (&ip.password, &b.build.password_hash, &rec.password) {
        (Some(secret), _, Some(h)) => secret.matches(h),
        (None, Some(want), Some(h)) => want == h,
        (None, None, None) => true,
        _ => false,
    };
    if !pw_ok {
        d.push("password: the file's password is not the image's".into());
    }
    d
}
