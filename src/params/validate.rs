//! Parsing and validation of a parameters file into [`ImageParams`]: every field
//! checked with its position (`FILE:LINE:COLUMN: FIELD: problem (allowed: ...)`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::raw::*;
use super::*;
use crate::build::{self, password};
use crate::error::{Error, Result};
use crate::modules::livenet::{LivenetCreate, SizeSpec};
use crate::store::{Layout, LivenetType};

pub(crate) fn perr(file: &Path, pos: Pos, field: &str, problem: impl Into<String>) -> Error {
    Error::Param {
        file: file.to_path_buf(),
        line: pos.line,
        column: pos.column,
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A YAML (syntax or shape) error as `FILE:LINE:COLUMN: FIELD: problem`.
pub(crate) fn yaml_error(file: &Path, text: &str, e: &serde_saphyr::Error) -> Error {
    let pos = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Pos {
            line: l.line(),
            column: l.column().max(1),
        })
        .unwrap_or(Pos::START);
    let raw = e.without_snippet().to_string();
    let first = raw.lines().next().unwrap_or("invalid YAML").trim();
    let mut msg = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if let Some(rest) = msg.strip_prefix("line ") {
        // "line N column M: message"
        if let Some((_, m)) = rest.split_once(": ") {
            msg = m.to_string();
        }
    }
    let mut field = key_on_line(text, pos).unwrap_or_else(|| "(document)".to_string());
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((f, tail)) = rest.split_once('`') {
            field = f.to_string();
            let allowed = tail
                .split_once("expected one of ")
                .map(|(_, a)| a.replace('`', ""))
                .or_else(|| {
                    tail.split_once("expected ")
                        .map(|(_, a)| a.replace('`', ""))
                })
                .unwrap_or_default();
            msg = if allowed.is_empty() {
                "unknown field".to_string()
            } else {
                format!("unknown field (allowed: {allowed})")
            };
        }
    } else if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        field = rest.split(',').next().unwrap_or(rest).trim().to_string();
        msg = "given twice".to_string();
    } else if let Some(rest) = msg.strip_prefix("missing field `") {
        field = rest.split('`').next().unwrap_or(rest).to_string();
        msg = "missing".to_string();
    }
    perr(file, pos, &field, msg.replace('\n', " "))
}

/// The mapping key written on the line of `pos`, before its column.
pub(crate) fn key_on_line(text: &str, pos: Pos) -> Option<String> {
    let line = text.lines().nth(pos.line.checked_sub(1)? as usize)?;
    let before: String = line
        .chars()
        .take(pos.column.saturating_sub(1) as usize)
        .collect();
    let t = before.trim_start();
    let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
    let (k, _) = t.split_once(':')?;
    let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
    if k.is_empty() || k.contains(' ') {
        None
    } else {
        Some(k.to_string())
    }
}

// ------------------------------------------------------------------ parsing

/// Field helpers bound to one file.
pub(crate) struct P<'a> {
    pub(crate) file: &'a Path,
}

impl P<'_> {
    /// A scalar's text, trimmed; None when absent, empty or Python's `None`.
    pub(crate) fn text(&self, v: &Option<S>) -> Option<(String, Pos)> {
        let s = v.as_ref()?;
        let t = s.value.trim();
        if t.is_empty() || t == "None" {
            None
        } else {
            Some((t.to_string(), Pos::of(s)))
        }
    }

    pub(crate) fn boolean(&self, field: &str, v: &Option<S>) -> Result<Option<bool>> {
        let Some((t, pos)) = self.text(v) else {
            return Ok(None);
        };
        match t.as_str() {
            "True" | "true" | "TRUE" | "yes" | "Yes" | "on" => Ok(Some(true)),
            "False" | "false" | "FALSE" | "no" | "No" | "off" => Ok(Some(false)),
            _ => Err(perr(
                self.file,
                pos,
                field,
                format!("{t:?} is not a boolean (allowed: true, false, True, False)"),
            )),
        }
    }

    pub(crate) fn err(&self, pos: Pos, field: &str, problem: impl Into<String>) -> Error {
        perr(self.file, pos, field, problem)
    }

    /// Rewraps a core validation error at a field's position.
    pub(crate) fn wrap(&self, pos: Pos, field: &str, e: Error) -> Error {
        self.err(pos, field, e.to_string())
    }

    pub(crate) fn name(&self, v: &Option<S>, at: Pos) -> Result<(String, Pos)> {
        let (n, pos) = self
            .text(v)
            .ok_or_else(|| self.err(at, "name", "missing (every image needs a name)"))?;
        crate::names::image(&n).map_err(|e| self.wrap(pos, "name", e))?;
        Ok((n, pos))
    }

    pub(crate) fn packages(
        &self,
        field: &str,
        v: &Option<Spanned<PyList>>,
    ) -> Result<Option<Vec<String>>> {
        let Some(l) = v else { return Ok(None) };
        let pos = Pos::of(l);
        let mut out: Vec<String> = Vec::new();
        for p in &l.value.0 {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            build::manifest::check_package(p).map_err(|e| self.err(pos, field, e))?;
            if !out.iter().any(|x| x == p) {
                out.push(p.to_string());
            }
        }
        Ok(Some(out))
    }

    pub(crate) fn kernel(&self, v: &Option<S>) -> Result<Option<String>> {
        let Some((k, pos)) = self.text(v) else {
            return Ok(None);
        };
        let ver = k.strip_prefix("vmlinuz-").unwrap_or(&k).to_string();
        crate::names::kernel(&ver).map_err(|e| self.wrap(pos, "kernel", e))?;
        Ok(Some(ver))
    }

    /// A clear password: hashed at once; the clear text stays in a Secret.
    pub(crate) fn password(&self, v: &Option<S>) -> Result<Option<(String, Secret)>> {
        let Some(s) = v else { return Ok(None) };
        // The password is taken as written (not trimmed): spaces may be part of it.
        let clear = s.value.clone();
        if clear.is_empty() {
            return Ok(None);
        }
        if clear.starts_with("$6$") && password::check_hash(&clear).is_ok() {
            return Err(self.err(
                Pos::of(s),
                "password",
                "looks like a crypt hash: parameters files take the clear password (the native format also accepts `password_hash:`)",
            ));
        }
        let hash =
            password::hash_password(&clear).map_err(|e| self.wrap(Pos::of(s), "password", e))?;
        Ok(Some((hash, Secret(clear))))
    }

    pub(crate) fn ssh_key(&self, v: &Option<S>) -> Option<(PathBuf, Pos)> {
        let (t, pos) = self.text(v)?;
        let p = PathBuf::from(&t);
        let p = if p.is_absolute() {
            p
        } else {
            // Relative to the parameters file's directory.
            self.file.parent().map(|d| d.join(&p)).unwrap_or(p)
        };
        Some((p, pos))
    }
}

/// Parses and validates a parameters file's text (no store, no network): every field's
/// shape and value, names, sizes, enums, packages. Releases are checked by [`load`].
/// `distro` is the command line's `--distro` (the default for entries without one).
pub fn parse(text: &str, file: &Path, distro: Option<&str>) -> Result<ParamsFile> {
    #[derive(Deserialize)]
    struct Probe {
        image_data: Option<IgnoredAny>,
        images: Option<IgnoredAny>,
    }
    let p = P { file };
    if let Some(d) = distro {
        build::Distro::parse(d).map_err(|e| Error::invalid(format!("--distro: {e}")))?;
    }
    let top_err = || {
        p.err(
            Pos::START,
            "(top level)",
            "expected a mapping with `image_data:` (reference format) or `images:` (native format) (allowed: image_data, images)",
        )
    };
    if text.trim().is_empty() {
        return Err(top_err());
    }
    let probe: Probe = serde_saphyr::from_str(text).map_err(|e| match e.location() {
        Some(l) if l.line() > 1 || l.column() > 1 => yaml_error(file, text, &e),
        _ => top_err(),
    })?;
    let images = match (probe.image_data.is_some(), probe.images.is_some()) {
        (true, false) => {
            let doc: RefDoc =
                serde_saphyr::from_str(text).map_err(|e| yaml_error(file, text, &e))?;
            vec![reference_image(&p, &doc.image_data, distro)?]
        }
        (false, true) => {
            let doc: NativeDoc =
                serde_saphyr::from_str(text).map_err(|e| yaml_error(file, text, &e))?;
            native_images(&p, &doc, distro)?
        }
        (true, true) => {
            return Err(p.err(
                Pos::START,
                "(top level)",
                "both `image_data:` and `images:`: a file is either reference or native format",
            ))
        }
        (false, false) => return Err(top_err()),
    };
    let format = if probe.image_data.is_some() {
        Format::Reference
    } else {
        Format::Native
    };
    Ok(ParamsFile {
        path: file.to_path_buf(),
        format,
        images,
    })
}

pub(crate) fn reference_image(
    p: &P,
    img: &Spanned<RefImage>,
    distro: Option<&str>,
) -> Result<ImageParams> {
    let at = Pos::of(img);
    let r = &img.value;
    let (name, name_pos) = p.name(&r.name, at)?;
    let (class, class_pos) = p.text(&r.image_class).ok_or_else(|| {
        p.err(
            at,
            "image_class",
            format!("missing (allowed: {REFERENCE_CLASSES})"),
        )
    })?;
    let kind = match class.as_str() {
        "LivenetImage" => ImageKind::Livenet,
        "NfsStagingImage" => ImageKind::NfsStaging,
        "NfsGoldenImage" => {
            return Err(p.err(
                class_pos,
                "image_class",
                format!("NfsGoldenImage cannot be created from a reference parameters file (it needs a staging image: use the native format's `kind: nfs-golden` with `from:`) (allowed: {REFERENCE_CLASSES})"),
            ))
        }
        other => {
            return Err(p.err(
                class_pos,
                "image_class",
                format!("unknown image class {other:?} (allowed: {REFERENCE_CLASSES})"),
            ))
        }
    };
    let mut positions = BTreeMap::new();
    positions.insert("name", name_pos);
    positions.insert("image_class", class_pos);
    let mut b = LivenetCreate::new(&name);
    b.build.distro = distro.unwrap_or("debian").to_string();
    if let Some((rel, pos)) = p.text(&r.release_version) {
        b.build.release = Some(rel);
        positions.insert("release", pos);
    }
    if kind == ImageKind::NfsStaging {
        for (field, v) in [
            ("livenet_type", &r.livenet_type),
            ("livenet_size", &r.livenet_size),
        ] {
            if let Some((_, pos)) = p.text(v) {
                return Err(p.err(
                    pos,
                    field,
                    "not used by NfsStagingImage (allowed: name, password, kernel, ssh_pub_key, selinux, optimize, transient, additional_packages, release_version, image_class)",
                ));
            }
        }
        b.build.livenet_type = LivenetType::Standard;
    } else {
        if let Some((t, pos)) = p.text(&r.livenet_type) {
            b.build.livenet_type = LivenetType::parse(&t).map_err(|_| {
                p.err(
                    pos,
                    "livenet_type",
                    format!("unknown type {t:?} (allowed: Type.STANDARD, Type.SMALL, Type.CORE)"),
                )
            })?;
        }
        // The reference's livenet images are all LiveOS/rootfs.img of livenet_size MiB.
        b.layout = Layout::Compat;
        b.size = Some(SizeSpec::Auto);
        if let Some((s, pos)) = p.text(&r.livenet_size) {
            b.size = Some(size_mib(p, pos, "livenet_size", &s)?);
            b.size_at_least = true;
            positions.insert("livenet_size", pos);
        }
    }
    let password = p.password(&r.password)?;
    if let Some(s) = &r.password {
        positions.insert("password", Pos::of(s));
    }
    if let Some((k, pos)) = p.ssh_key(&r.ssh_pub_key) {
        b.build.ssh_pub_key_file = Some(k);
        positions.insert("ssh_pub_key", pos);
    }
    b.build.selinux = p.boolean("selinux", &r.selinux)?.unwrap_or(false);
    b.build.optimize = p.boolean("optimize", &r.optimize)?.unwrap_or(false);
    b.build.transient = p.boolean("transient", &r.transient)?.unwrap_or(false);
    b.build.packages = p
        .packages("additional_packages", &r.additional_packages)?
        .unwrap_or_default();
    if let Some(l) = &r.additional_packages {
        positions.insert("packages", Pos::of(l));
    }
    let kernel = p.kernel(&r.kernel)?;
    if let Some(k) = &r.kernel {
        positions.insert("kernel", Pos::of(k));
    }
    let (hash, secret) = password
        .map(|(h, s)| (Some(h), Some(s)))
        .unwrap_or((None, None));
    b.build.password_hash = hash;
    Ok(ImageParams {
        name,
        kind,
        at,
        create: b,
        kernel,
        from: None,
        nodes: None,
        initramfs_given: false,
        positions,
        password: secret,
    })
}

/// A size: `livenet_size: 700` (MiB), `size: 1.5G`, `auto`.
pub(crate) fn size_mib(p: &P, pos: Pos, field: &str, s: &str) -> Result<SizeSpec> {
    SizeSpec::parse(s).map_err(|_| {
        p.err(
            pos,
            field,
            format!("{s:?} is not a livenet size (allowed: 100 to 51200 MiB, e.g. 700, 700M, 1.5G, or auto)"),
        )
    })
}

pub(crate) fn native_images(
    p: &P,
    doc: &NativeDoc,
    distro: Option<&str>,
) -> Result<Vec<ImageParams>> {
    if let Some((v, pos)) = p.text(&doc.version) {
        if v != "1" {
            return Err(p.err(
                pos,
                "version",
                format!("{v:?} is not supported (allowed: 1)"),
            ));
        }
    }
    let empty = NativeImage::default();
    let defaults = match &doc.defaults {
        Some(d) => {
            for (field, v) in [
                ("name", &d.value.name),
                ("kind", &d.value.kind),
                ("from", &d.value.from),
                ("nodes", &d.value.nodes),
                ("password", &d.value.password),
            ] {
                if let Some(s) = v {
                    return Err(p.err(
                        Pos::of(s),
                        field,
                        "not allowed in defaults (give it per image)",
                    ));
                }
            }
            &d.value
        }
        None => &empty,
    };
    if doc.images.value.is_empty() {
        return Err(p.err(
            Pos::of(&doc.images),
            "images",
            "empty: declare at least one image",
        ));
    }
    let mut out: Vec<ImageParams> = Vec::new();
    for img in &doc.images.value {
        let ip = native_image(p, img, defaults, distro)?;
        if let Some(prev) = out.iter().find(|o| o.name == ip.name) {
            return Err(p.err(
                ip.pos("name"),
                "name",
                format!(
                    "image {} is declared twice (first at line {})",
                    ip.name, prev.at.line
                ),
            ));
        }
        if let Some(from) = &ip.from {
            if from == &ip.name {
                return Err(p.err(
                    ip.pos("from"),
                    "from",
                    "an image cannot be made from itself",
                ));
            }
            if let Some(src) = out.iter().find(|o| &o.name == from) {
                if src.kind != ImageKind::NfsStaging {
                    return Err(p.err(
                        ip.pos("from"),
                        "from",
                        format!(
                            "{from} is a {} image (allowed: an nfs-staging image)",
                            src.kind.as_str()
                        ),
                    ));
                }
            }
        }
        out.push(ip);
    }
    Ok(out)
}

pub(crate) fn native_image(
    p: &P,
    img: &Spanned<NativeImage>,
    d: &NativeImage,
    distro: Option<&str>,
) -> Result<ImageParams> {
    let at = Pos::of(img);
    let i = &img.value;
    let (name, name_pos) = p.name(&i.name, at)?;
    let (kind_s, kind_pos) = p.text(&i.kind).ok_or_else(|| {
        p.err(
            at,
            "kind",
            format!("missing (allowed: {})", ImageKind::NATIVE_NAMES),
        )
    })?;
    let kind = match kind_s.as_str() {
        "livenet" => ImageKind::Livenet,
        "nfs-staging" | "nfs_staging" => ImageKind::NfsStaging,
        "nfs-golden" | "nfs_golden" => ImageKind::NfsGolden,
        other => {
            return Err(p.err(
                kind_pos,
                "kind",
                format!(
                    "unknown kind {other:?} (allowed: {})",
                    ImageKind::NATIVE_NAMES
                ),
            ))
        }
    };
    let mut positions = BTreeMap::new();
    positions.insert("name", name_pos);
    positions.insert("kind", kind_pos);
    // The image's own value, else the defaults'.
    let pick = |own: &Option<S>, def: &Option<S>| -> Option<S> {
        match p.text(own) {
            Some(_) => own.clone(),
            None => def.clone(),
        }
    };
    let build_fields: [(&str, &Option<S>); 13] = [
        ("distro", &i.distro),
        ("release", &i.release),
        ("type", &i.livenet_type),
        ("layout", &i.layout),
        ("size", &i.size),
        ("password", &i.password),
        ("password_hash", &i.password_hash),
        ("ssh_pub_key", &i.ssh_pub_key),
        ("selinux", &i.selinux),
        ("optimize", &i.optimize),
        ("transient", &i.transient),
        ("mirror", &i.mirror),
        ("initramfs", &i.initramfs),
    ];
    let mut b = LivenetCreate::new(&name);
    if kind == ImageKind::NfsGolden {
        for (field, v) in build_fields.iter().chain([("kernel", &i.kernel)].iter()) {
            if let Some(s) = v {
                return Err(p.err(
                    Pos::of(s),
                    field,
                    "not used by nfs-golden images: they copy their staging image (allowed: name, kind, from, nodes)",
                ));
            }
        }
        if let Some(l) = &i.packages {
            return Err(p.err(
                Pos::of(l),
                "packages",
                "not used by nfs-golden images: they copy their staging image (allowed: name, kind, from, nodes)",
            ));
        }
        let (from, from_pos) = p.text(&i.from).ok_or_else(|| {
            p.err(
                at,
                "from",
                "missing: an nfs-golden image is made from an nfs-staging image",
            )
        })?;
        crate::names::image(&from).map_err(|e| p.wrap(from_pos, "from", e))?;
        positions.insert("from", from_pos);
        let nodes = match p.text(&i.nodes) {
            Some((n, pos)) => {
                crate::cluster::nodeset::expand(&n, &|_| Some(Vec::new()))
                    .map_err(|e| p.err(pos, "nodes", e.to_string()))?;
                positions.insert("nodes", pos);
                Some(n)
            }
            None => None,
        };
        return Ok(ImageParams {
            name,
            kind,
            at,
            create: b,
            kernel: None,
            from: Some(from),
            nodes,
            initramfs_given: false,
            positions,
            password: None,
        });
    }
    for (field, v) in [("from", &i.from), ("nodes", &i.nodes)] {
        if let Some(s) = v {
            return Err(p.err(
                Pos::of(s),
                field,
                format!(
                    "only for nfs-golden images (this is a {} image)",
                    kind.as_str()
                ),
            ));
        }
    }
    if kind == ImageKind::NfsStaging {
        for (field, v) in [
            ("layout", &i.layout),
            ("size", &i.size),
            ("initramfs", &i.initramfs),
        ] {
            if let Some(s) = v {
                return Err(p.err(
                    Pos::of(s),
                    field,
                    "only for livenet images (an nfs-staging image is a plain tree)",
                ));
            }
        }
    }
    // distro: the image's, the defaults', --distro, debian.
    match pick(&i.distro, &d.distro) {
        Some(s) => {
            let t = s.value.trim().to_string();
            build::Distro::parse(&t).map_err(|_| {
                p.err(
                    Pos::of(&s),
                    "distro",
                    format!("unknown distro {t:?} (allowed: {})", build::DISTROS),
                )
            })?;
            positions.insert("distro", Pos::of(&s));
            b.build.distro = t.to_ascii_lowercase();
        }
        None => b.build.distro = distro.unwrap_or("debian").to_string(),
    }
    if let Some((r, pos)) = p.text(&pick(&i.release, &d.release)) {
        b.build.release = Some(r);
        positions.insert("release", pos);
    }
    b.build.livenet_type = if kind == ImageKind::NfsStaging {
        LivenetType::Standard
    } else {
        LivenetType::Core
    };
    if let Some((t, pos)) = p.text(&pick(&i.livenet_type, &d.livenet_type)) {
        b.build.livenet_type = LivenetType::parse(&t).map_err(|_| {
            p.err(
                pos,
                "type",
                format!("unknown type {t:?} (allowed: standard, small, core)"),
            )
        })?;
    }
    if kind == ImageKind::Livenet {
        if let Some((l, pos)) = p.text(&pick(&i.layout, &d.layout)) {
            b.layout = Layout::parse(&l).map_err(|_| {
                p.err(
                    pos,
                    "layout",
                    format!("unknown layout {l:?} (allowed: native, compat)"),
                )
            })?;
        }
        if let Some((s, pos)) = p.text(&pick(&i.size, &d.size)) {
            if b.layout != Layout::Compat {
                return Err(p.err(
                    pos,
                    "size",
                    "only for the compat layout: a native image needs no size (allowed with layout: compat)",
                ));
            }
            b.size = Some(size_mib(p, pos, "size", &s)?);
            positions.insert("size", pos);
        }
        if let Some((f, pos)) = p.text(&pick(&i.initramfs, &d.initramfs)) {
            crate::kernel::initramfs_name(&f, "x").map_err(|_| {
                p.err(
                    pos,
                    "initramfs",
                    format!("unknown flavour {f:?} (allowed: own, dracut)"),
                )
            })?;
            b.initramfs = f;
        }
    }
    let initramfs_given = p.text(&i.initramfs).is_some() || p.text(&d.initramfs).is_some();
    let password = p.password(&i.password)?;
    let hash = p.text(&pick(&i.password_hash, &d.password_hash));
    if let (Some(_), Some((_, pos))) = (&password, &hash) {
        return Err(p.err(
            *pos,
            "password_hash",
            "give either password or password_hash, not both",
        ));
    }
    if let Some((h, pos)) = &hash {
        password::check_hash(h).map_err(|e| p.wrap(*pos, "password_hash", e))?;
    }
    if let Some(s) = &i.password {
        positions.insert("password", Pos::of(s));
    }
    if let Some((k, pos)) = p.ssh_key(&pick(&i.ssh_pub_key, &d.ssh_pub_key)) {
        b.build.ssh_pub_key_file = Some(k);
        positions.insert("ssh_pub_key", pos);
    }
    b.build.selinux = match p.boolean("selinux", &i.selinux)? {
        Some(v) => v,
        None => p.boolean("selinux", &d.selinux)?.unwrap_or(false),
    };
    b.build.optimize = match p.boolean("optimize", &i.optimize)? {
        Some(v) => v,
        None => p.boolean("optimize", &d.optimize)?.unwrap_or(false),
    };
    b.build.transient = match p.boolean("transient", &i.transient)? {
        Some(v) => v,
        None => p.boolean("transient", &d.transient)?.unwrap_or(false),
    };
    let pk = if i.packages.is_some() {
        &i.packages
    } else {
        &d.packages
    };
    b.build.packages = p.packages("packages", pk)?.unwrap_or_default();
    if let Some(l) = pk {
        positions.insert("packages", Pos::of(l));
    }
    if let Some((m, pos)) = p.text(&pick(&i.mirror, &d.mirror)) {
        build::check_url(&m).map_err(|e| p.err(pos, "mirror", e))?;
        b.build.mirror = Some(m);
    }
    let kernel_field = pick(&i.kernel, &d.kernel);
    let kernel = p.kernel(&kernel_field)?;
    if let Some(k) = &kernel_field {
        positions.insert("kernel", Pos::of(k));
    }
    let (hash, secret) = match (password, hash) {
        (Some((h, s)), _) => (Some(h), Some(s)),
        (None, Some((h, _))) => (Some(h), None),
        (None, None) => (None, None),
    };
    b.build.password_hash = hash;
    Ok(ImageParams {
        name,
        kind,
        at,
        create: b,
        kernel,
        from: None,
        nodes: None,
        initramfs_given,
        positions,
        password: secret,
    })
}
