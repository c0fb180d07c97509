//! Parameters files: batch creation of images (`create --params FILE`).
//!
//! Two formats, told apart by their top-level key:
//! - **reference** (`image_data:`): BlueBanquise's parameters files, unchanged — one image,
//!   `Type.CORE`-style enums, `livenet_size` in MiB, Python list reprs (`['gzip']`),
//!   `True`/`False`, a clear `password`. A reference livenet image gets the compat layout
//!   (`LiveOS/rootfs.img`, of `livenet_size` MiB, `auto` when absent).
//! - **native** (`images:`): several images in one file (livenet, nfs staging, nfs golden
//!   with nodes), with optional `defaults:` applied to every image. See
//!   `share/params/native.yml`.
//!
//! Everything is validated before any work; every error is
//! `FILE:LINE:COLUMN: FIELD: problem (allowed: ...)`. Unknown fields are refused.
//!
//! The distro: native images say `distro:` (or inherit `defaults.distro`); otherwise the
//! `--distro` given on the command line; otherwise `debian`. Reference files have no
//! distro field (the reference was EL-only): `--distro`, else `debian`.
//!
//! The clear password is accepted only here: it is hashed at once (SHA-512 crypt) and
//! the clear text is kept only in memory, in a [`Secret`] that cannot be printed,
//! serialised or cloned, to tell whether an existing image has that password.
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::build::{self, password};
use crate::error::{Error, Result};
use crate::modules::livenet::{self, LivenetCreate, SizeSpec};
use crate::ctx::Ctx;
use crate::store::{self, ImageClass, ImageRecord, Layout, LivenetType, State};
use crate::sys::mountinfo;

/// A position in the parameters file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    const START: Pos = Pos { line: 1, column: 1 };

    fn of<T>(s: &Spanned<T>) -> Pos {
        let l = &s.referenced;
        if l.line() == 0 {
            Pos::START
        } else {
            Pos {
                line: l.line(),
                column: l.column().max(1),
            }
        }
    }
}

/// A clear password, held in memory only: no Debug text, no Serialize, no Clone; its
/// bytes are overwritten when dropped.
pub struct Secret(String);

impl Secret {
    /// Does this password match a stored crypt hash?
    pub fn matches(&self, hash: &str) -> bool {
        password::verify_password(&self.0, hash)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0).into_bytes();
        b.iter_mut().for_each(|x| *x = 0);
        std::hint::black_box(&b);
    }
}

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Reference,
    Native,
}

/// What an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ImageKind {
    #[serde(rename = "livenet")]
    Livenet,
    #[serde(rename = "nfs-staging")]
    NfsStaging,
    #[serde(rename = "nfs-golden")]
    NfsGolden,
}

impl ImageKind {
    pub const NATIVE_NAMES: &'static str = "livenet, nfs-staging, nfs-golden";

    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Livenet => "livenet",
            ImageKind::NfsStaging => "nfs-staging",
            ImageKind::NfsGolden => "nfs-golden",
        }
    }

    pub fn class(self) -> ImageClass {
        match self {
            ImageKind::Livenet => ImageClass::LivenetImage,
            ImageKind::NfsStaging => ImageClass::NfsStagingImage,
            ImageKind::NfsGolden => ImageClass::NfsGoldenImage,
        }
    }
}

/// One image of a parameters file, validated.
#[derive(Debug)]
pub struct ImageParams {
    pub name: String,
    pub kind: ImageKind,
    /// Where the entry starts.
    pub at: Pos,
    /// What to build (livenet and nfs staging): the password is already a hash here.
    pub build: LivenetCreate,
    /// The kernel version the image must end up with (`vmlinuz-` stripped), if given.
    pub kernel: Option<String>,
    /// nfs-golden: the staging image it is made from.
    pub from: Option<String>,
    /// nfs-golden: nodes (a node set) to add.
    pub nodes: Option<String>,
    /// Whether the initramfs flavour was given explicitly (compared only then).
    pub initramfs_given: bool,
    positions: BTreeMap<&'static str, Pos>,
    password: Option<Secret>,
}

impl ImageParams {
    /// Where `field` was written (the entry's start when it was not).
    pub fn pos(&self, field: &str) -> Pos {
        self.positions.get(field).copied().unwrap_or(self.at)
    }
}

/// A parsed and validated parameters file.
#[derive(Debug)]
pub struct ParamsFile {
    pub path: PathBuf,
    pub format: Format,
    pub images: Vec<ImageParams>,
}

/// Allowed `image_class` values in a reference parameters file.
pub const REFERENCE_CLASSES: &str = "LivenetImage, NfsStagingImage";

/// Is creating NFS images available in this build?
pub const NFS_AVAILABLE: bool = true;

// ------------------------------------------------------------------ raw documents

type S = Spanned<String>;

/// A list: a YAML sequence, a Python list repr (`"['gzip', 'vim']"`), or a comma list.
#[derive(Debug, Default, Clone)]
struct PyList(Vec<String>);

impl<'de> Deserialize<'de> for PyList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PyList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list such as ['gzip', 'vim'] or [gzip, vim]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<PyList, E> {
                crate::yaml::py_list(&yaml_serde::Value::String(v.to_string()))
                    .map(PyList)
                    .ok_or_else(|| E::custom("not a list"))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<PyList, E> {
                Ok(PyList::default())
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<PyList, E> {
                Ok(PyList::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<PyList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(PyList(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefDoc {
    image_data: Spanned<RefImage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefImage {
    name: Option<S>,
    image_class: Option<S>,
    password: Option<S>,
    kernel: Option<S>,
    livenet_type: Option<S>,
    livenet_size: Option<S>,
    ssh_pub_key: Option<S>,
    selinux: Option<S>,
    optimize: Option<S>,
    additional_packages: Option<Spanned<PyList>>,
    release_version: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeDoc {
    version: Option<S>,
    defaults: Option<Spanned<NativeImage>>,
    images: Spanned<Vec<Spanned<NativeImage>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeImage {
    name: Option<S>,
    kind: Option<S>,
    distro: Option<S>,
    release: Option<S>,
    #[serde(rename = "type")]
    livenet_type: Option<S>,
    layout: Option<S>,
    size: Option<S>,
    password: Option<S>,
    password_hash: Option<S>,
    ssh_pub_key: Option<S>,
    selinux: Option<S>,
    optimize: Option<S>,
    packages: Option<Spanned<PyList>>,
    mirror: Option<S>,
    initramfs: Option<S>,
    kernel: Option<S>,
    from: Option<S>,
    nodes: Option<S>,
}

// ------------------------------------------------------------------ errors

fn perr(file: &Path, pos: Pos, field: &str, problem: impl Into<String>) -> Error {
    Error::Param {
        file: file.to_path_buf(),
        line: pos.line,
        column: pos.column,
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A YAML (syntax or shape) error as `FILE:LINE:COLUMN: FIELD: problem`.
fn yaml_error(file: &Path, text: &str, e: &serde_saphyr::Error) -> Error {
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
fn key_on_line(text: &str, pos: Pos) -> Option<String> {
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
struct P<'a> {
    file: &'a Path,
}

impl P<'_> {
    /// A scalar's text, trimmed; None when absent, empty or Python's `None`.
    fn text(&self, v: &Option<S>) -> Option<(String, Pos)> {
        let s = v.as_ref()?;
        let t = s.value.trim();
        if t.is_empty() || t == "None" {
            None
        } else {
            Some((t.to_string(), Pos::of(s)))
        }
    }

    fn boolean(&self, field: &str, v: &Option<S>) -> Result<Option<bool>> {
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

    fn err(&self, pos: Pos, field: &str, problem: impl Into<String>) -> Error {
        perr(self.file, pos, field, problem)
    }

    /// Rewraps a core validation error at a field's position.
    fn wrap(&self, pos: Pos, field: &str, e: Error) -> Error {
        self.err(pos, field, e.to_string())
    }

    fn name(&self, v: &Option<S>, at: Pos) -> Result<(String, Pos)> {
        let (n, pos) = self
            .text(v)
            .ok_or_else(|| self.err(at, "name", "missing (every image needs a name)"))?;
        crate::names::image(&n).map_err(|e| self.wrap(pos, "name", e))?;
        Ok((n, pos))
    }

    fn packages(&self, field: &str, v: &Option<Spanned<PyList>>) -> Result<Option<Vec<String>>> {
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

    fn kernel(&self, v: &Option<S>) -> Result<Option<String>> {
        let Some((k, pos)) = self.text(v) else {
            return Ok(None);
        };
        let ver = k.strip_prefix("vmlinuz-").unwrap_or(&k).to_string();
        crate::names::kernel(&ver).map_err(|e| self.wrap(pos, "kernel", e))?;
        Ok(Some(ver))
    }

    /// A clear password: hashed at once; the clear text stays in a Secret.
    fn password(&self, v: &Option<S>) -> Result<Option<(String, Secret)>> {
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

    fn ssh_key(&self, v: &Option<S>) -> Option<(PathBuf, Pos)> {
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

fn reference_image(p: &P, img: &Spanned<RefImage>, distro: Option<&str>) -> Result<ImageParams> {
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
    b.distro = distro.unwrap_or("debian").to_string();
    if let Some((rel, pos)) = p.text(&r.release_version) {
        b.release = Some(rel);
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
                    "not used by NfsStagingImage (allowed: name, password, kernel, ssh_pub_key, selinux, optimize, additional_packages, release_version, image_class)",
                ));
            }
        }
        b.livenet_type = LivenetType::Standard;
    } else {
        if let Some((t, pos)) = p.text(&r.livenet_type) {
            b.livenet_type = LivenetType::parse(&t).map_err(|_| {
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
        b.ssh_pub_key_file = Some(k);
        positions.insert("ssh_pub_key", pos);
    }
    b.selinux = p.boolean("selinux", &r.selinux)?.unwrap_or(false);
    b.optimize = p.boolean("optimize", &r.optimize)?.unwrap_or(false);
    b.packages = p
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
    b.password_hash = hash;
    Ok(ImageParams {
        name,
        kind,
        at,
        build: b,
        kernel,
        from: None,
        nodes: None,
        initramfs_given: false,
        positions,
        password: secret,
    })
}

/// A size: `livenet_size: 700` (MiB), `size: 1.5G`, `auto`.
fn size_mib(p: &P, pos: Pos, field: &str, s: &str) -> Result<SizeSpec> {
    SizeSpec::parse(s).map_err(|_| {
        p.err(
            pos,
            field,
            format!("{s:?} is not a livenet size (allowed: 100 to 51200 MiB, e.g. 700, 700M, 1.5G, or auto)"),
        )
    })
}

fn native_images(p: &P, doc: &NativeDoc, distro: Option<&str>) -> Result<Vec<ImageParams>> {
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

fn native_image(
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
    let build_fields: [(&str, &Option<S>); 12] = [
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
                crate::boot::nodeset::expand(&n, &|_| Some(Vec::new()))
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
            build: b,
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
            b.distro = t.to_ascii_lowercase();
        }
        None => b.distro = distro.unwrap_or("debian").to_string(),
    }
    if let Some((r, pos)) = p.text(&pick(&i.release, &d.release)) {
        b.release = Some(r);
        positions.insert("release", pos);
    }
    b.livenet_type = if kind == ImageKind::NfsStaging {
        LivenetType::Standard
    } else {
        LivenetType::Core
    };
    if let Some((t, pos)) = p.text(&pick(&i.livenet_type, &d.livenet_type)) {
        b.livenet_type = LivenetType::parse(&t).map_err(|_| {
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
        b.ssh_pub_key_file = Some(k);
        positions.insert("ssh_pub_key", pos);
    }
    b.selinux = match p.boolean("selinux", &i.selinux)? {
        Some(v) => v,
        None => p.boolean("selinux", &d.selinux)?.unwrap_or(false),
    };
    b.optimize = match p.boolean("optimize", &i.optimize)? {
        Some(v) => v,
        None => p.boolean("optimize", &d.optimize)?.unwrap_or(false),
    };
    let pk = if i.packages.is_some() {
        &i.packages
    } else {
        &d.packages
    };
    b.packages = p.packages("packages", pk)?.unwrap_or_default();
    if let Some(l) = pk {
        positions.insert("packages", Pos::of(l));
    }
    if let Some((m, pos)) = p.text(&pick(&i.mirror, &d.mirror)) {
        build::check_url(&m).map_err(|e| p.err(pos, "mirror", e))?;
        b.mirror = Some(m);
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
    b.password_hash = hash;
    Ok(ImageParams {
        name,
        kind,
        at,
        build: b,
        kernel,
        from: None,
        nodes: None,
        initramfs_given,
        positions,
        password: secret,
    })
}

/// Reads, parses and validates a parameters file against this installation: releases
/// (against the distro's manifest), SSH key files, NFS availability, golden sources.
/// Nothing is changed.
pub fn load(ctx: &Ctx, path: &Path, distro: Option<&str>) -> Result<ParamsFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!(
            "parameters file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let mut pf = parse(&text, path, distro)?;
    let p = P { file: path };
    let names_in_store = if ctx.cfg.images_dir.is_dir() {
        store::names(&ctx.cfg)?
    } else {
        Vec::new()
    };
    for ip in &mut pf.images {
        if ip.kind != ImageKind::Livenet && !NFS_AVAILABLE {
            return Err(p.err(
                if pf.format == Format::Reference {
                    ip.pos("image_class")
                } else {
                    ip.pos("kind")
                },
                if pf.format == Format::Reference {
                    "image_class"
                } else {
                    "kind"
                },
                format!(
                    "nfs images are not available in this build (allowed: {})",
                    if pf.format == Format::Reference {
                        "LivenetImage"
                    } else {
                        "livenet"
                    }
                ),
            ));
        }
        if ip.kind == ImageKind::NfsGolden {
            continue;
        }
        let mut spec = build::BuildSpec::new(&ip.build.distro, ip.build.livenet_type)?;
        spec.release = ip.build.release.clone();
        spec.extra_packages = ip.build.packages.clone();
        spec.mirror = ip.build.mirror.clone();
        let (_, release) = spec.resolve(ctx).map_err(|e| {
            let mut msg = e.to_string();
            if pf.format == Format::Reference && distro.is_none() {
                msg.push_str(&format!(
                    "; reference files carry no distro: this one was taken as {} (pass --distro rocky, alma, rhel or fedora for an EL release)",
                    ip.build.distro
                ));
            }
            let field = match pf.format {
                Format::Reference => "release_version",
                Format::Native => "release",
            };
            p.err(ip.pos("release"), field, msg)
        })?;
        ip.build.release = Some(release);
        if let Some(k) = &ip.build.ssh_pub_key_file {
            let text = std::fs::read_to_string(k).map_err(|e| {
                p.err(
                    ip.pos("ssh_pub_key"),
                    "ssh_pub_key",
                    format!("cannot read {}: {e}", k.display()),
                )
            })?;
            build::setup::check_ssh_keys(&text)
                .map_err(|e| p.wrap(ip.pos("ssh_pub_key"), "ssh_pub_key", e))?;
        }
    }
    for ip in &pf.images {
        if let Some(from) = &ip.from {
            let in_file = pf.images.iter().any(|o| &o.name == from);
            if !in_file && !names_in_store.contains(from) {
                return Err(p.err(
                    ip.pos("from"),
                    "from",
                    format!("no image {from} in the store nor earlier in this file (allowed: an nfs-staging image)"),
                ));
            }
        }
    }
    Ok(pf)
}

// ------------------------------------------------------------------ comparison

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
    let b = &ip.build;
    cmp(
        "distro",
        b.distro.clone(),
        rec.distro.clone().unwrap_or_else(|| "unknown".into()),
    );
    cmp(
        "release",
        b.release.clone().unwrap_or_else(none),
        rec.release_version.clone().unwrap_or_else(none),
    );
    cmp(
        "type",
        b.livenet_type.as_str().to_string(),
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
    cmp("selinux", b.selinux.to_string(), rec.selinux.to_string());
    cmp("optimize", b.optimize.to_string(), rec.optimize.to_string());
    let mut want = b.packages.clone();
    want.sort();
    let mut have = rec.additional_packages.clone();
    have.sort();
    cmp("packages", format!("{want:?}"), format!("{have:?}"));
    cmp(
        "ssh_pub_key",
        b.ssh_pub_key_file
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
    let pw_ok = match (&ip.password, &b.password_hash, &rec.password) {
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

// ------------------------------------------------------------------ the operation

/// Options of `create --params`.
#[derive(Debug, Clone, Default)]
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
            (_, Some(rec)) => differences(ip, rec),
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
                    crate::ops::clear(ctx, &ip.name)?;
                } else {
                    crate::ops::remove(ctx, &ip.name)?;
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
                let rep = livenet::create(ctx, &ip.build)?;
                Some(rep.kernel)
            }
            ImageKind::NfsStaging => {
                let b = &ip.build;
                let mut o = crate::modules::nfs::StagingCreate::new(&ip.name);
                o.distro = b.distro.clone();
                o.release = b.release.clone();
                o.livenet_type = b.livenet_type;
                o.password_hash = b.password_hash.clone();
                o.ssh_pub_key_file = b.ssh_pub_key_file.clone();
                o.selinux = b.selinux;
                o.optimize = b.optimize;
                o.packages = b.packages.clone();
                o.mirror = b.mirror.clone();
                o.initramfs = b.initramfs.clone();
                Some(crate::modules::nfs::create_staging(ctx, &o)?.kernel)
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
                    crate::modules::nfs::create_golden(ctx, &ip.name, &from)?;
                    if let Some(n) = &ip.nodes {
                        crate::modules::nfs::nodes_add(ctx, &ip.name, n)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed README's livenet example, verbatim.
    pub const SEED_LIVENET: &str = "  image_data:\n\n      name: livenet1\n      password: root\n      kernel: vmlinuz-4.18.0-305.el8.x86_64\n      livenet_type: Type.CORE\n      livenet_size: 700\n      ssh_pub_key: /root/.ssh/id_rsa.pub\n      selinux: False\n      optimize: False\n      additional_packages: ['gzip']\n      release_version: 8\n      image_class: LivenetImage\n";

    pub const SEED_NFS: &str = "  image_data:\n\n      name: nfs1\n      password: root\n      kernel: vmlinuz-4.18.0-305.el8.x86_64\n      additional_packages: ['gzip']\n      release_version: 8\n      image_class: NfsStagingImage\n    \n";

    fn f() -> &'static Path {
        Path::new("p.yml")
    }

    #[test]
    fn seed_livenet_example_parses() {
        let pf = parse(SEED_LIVENET, f(), None).unwrap();
        assert_eq!(pf.format, Format::Reference);
        let i = &pf.images[0];
        assert_eq!(i.name, "livenet1");
        assert_eq!(i.kind, ImageKind::Livenet);
        assert_eq!(i.build.livenet_type, LivenetType::Core);
        assert_eq!(i.build.layout, Layout::Compat);
        assert_eq!(i.build.size, Some(SizeSpec::Mib(700)));
        assert_eq!(i.build.packages, vec!["gzip"]);
        assert_eq!(i.build.release.as_deref(), Some("8"));
        assert_eq!(i.kernel.as_deref(), Some("4.18.0-305.el8.x86_64"));
        assert_eq!(i.build.distro, "debian");
        assert_eq!(
            i.build.ssh_pub_key_file.as_deref(),
            Some(Path::new("/root/.ssh/id_rsa.pub"))
        );
        let h = i.build.password_hash.as_deref().unwrap();
        assert!(h.starts_with("$6$") && password::verify_password("root", h));
        assert!(
            !format!("{pf:?}").contains("root\""),
            "the clear password leaks"
        );
        let pf = parse(SEED_LIVENET, f(), Some("rocky")).unwrap();
        assert_eq!(pf.images[0].build.distro, "rocky");
    }

    #[test]
    fn seed_nfs_example_parses() {
        let pf = parse(SEED_NFS, f(), None).unwrap();
        let i = &pf.images[0];
        assert_eq!(i.kind, ImageKind::NfsStaging);
        assert_eq!(i.build.packages, vec!["gzip"]);
    }

    #[test]
    fn shipped_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("share/params");
        let r = dir.join("reference-livenet.yml");
        let pf = parse(&std::fs::read_to_string(&r).unwrap(), &r, None).unwrap();
        assert_eq!(pf.format, Format::Reference);
        let n = dir.join("native.yml");
        let pf = parse(&std::fs::read_to_string(&n).unwrap(), &n, None).unwrap();
        assert_eq!(pf.format, Format::Native);
        let kinds: Vec<ImageKind> = pf.images.iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ImageKind::Livenet,
                ImageKind::Livenet,
                ImageKind::NfsStaging,
                ImageKind::NfsGolden
            ]
        );
        assert_eq!(pf.images[1].build.layout, Layout::Compat);
        assert_eq!(pf.images[3].nodes.as_deref(), Some("c[001-004]"));
    }

    fn err(text: &str) -> String {
        parse(text, f(), None).unwrap_err().to_string()
    }

    #[test]
    fn errors_have_file_line_column_field_and_allowed_values() {
        let e = err("image_data:\n  name: a\n  image_class: FooImage\n");
        assert_eq!(
            e,
            "p.yml:3:16: image_class: unknown image class \"FooImage\" (allowed: LivenetImage, NfsStagingImage)"
        );
        let e = err("image_data:\n  name: a\n  image_class: LivenetImage\n  colour: blue\n");
        assert!(
            e.starts_with("p.yml:4:3: colour: unknown field (allowed: name, image_class"),
            "{e}"
        );
        let e =
            err("image_data:\n  name: a\n  image_class: LivenetImage\n  livenet_type: Type.HUGE\n");
        assert!(
            e.starts_with("p.yml:4:17: livenet_type: ") && e.contains("Type.CORE"),
            "{e}"
        );
        let e = err("image_data:\n  name: a\n  image_class: LivenetImage\n  livenet_size: 20\n");
        assert!(
            e.starts_with("p.yml:4:17: livenet_size: ") && e.contains("allowed"),
            "{e}"
        );
        let e = err("image_data:\n  name: a\n  image_class: LivenetImage\n  selinux: Maybe\n");
        assert!(
            e.starts_with("p.yml:4:12: selinux: ") && e.contains("allowed: true, false"),
            "{e}"
        );
        let e = err("image_data:\n  name: a b\n  image_class: LivenetImage\n");
        assert!(e.starts_with("p.yml:2:9: name: "), "{e}");
        let e = err("image_data:\n  name: [a\n");
        assert!(e.starts_with("p.yml:2:"), "{e}");
        let e = err("image_data:\n  name: a\n  name: b\n");
        assert!(e.starts_with("p.yml:3:3: name: given twice"), "{e}");
        let e = err("image_data:\n  name: {x: 1}\n");
        assert!(e.starts_with("p.yml:2:9: name: "), "{e}");
        let e = err("hello: world\n");
        assert!(
            e.starts_with("p.yml:1:1: (top level): ") && e.contains("allowed: image_data, images"),
            "{e}"
        );
        let e = err("");
        assert!(e.starts_with("p.yml:1:1: (top level)"), "{e}");
        let e = err("images:\n  - name: a\n    kind: livenet\n    layout: native\n    size: 1G\n");
        assert!(
            e.starts_with("p.yml:5:11: size: only for the compat layout"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: squash\n");
        assert!(
            e.starts_with("p.yml:3:11: kind: ")
                && e.contains("allowed: livenet, nfs-staging, nfs-golden"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: livenet\n  - name: a\n    kind: livenet\n");
        assert!(
            e.starts_with("p.yml:4:11: name: image a is declared twice"),
            "{e}"
        );
        let e =
            err("images:\n  - name: g\n    kind: nfs-golden\n    from: s\n    distro: debian\n");
        assert!(
            e.starts_with("p.yml:5:13: distro: not used by nfs-golden"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: livenet\n    distro: centos\n");
        assert!(
            e.contains("distro: unknown distro") && e.contains("allowed: debian, ubuntu"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: livenet\n    packages: ['-oops']\n");
        assert!(e.starts_with("p.yml:4:15: packages: "), "{e}");
    }

    #[test]
    fn native_defaults_and_password_hash() {
        let h = password::hash_password("x").unwrap();
        let text = format!(
            "version: 1\ndefaults:\n  distro: debian\n  release: bookworm\n  password_hash: '{h}'\n  packages: [python3]\nimages:\n  - name: a\n    kind: livenet\n  - name: b\n    kind: livenet\n    packages: []\n    type: small\n"
        );
        let pf = parse(&text, f(), Some("rocky")).unwrap();
        assert_eq!(pf.images[0].build.distro, "debian");
        assert_eq!(pf.images[0].build.packages, vec!["python3"]);
        assert!(pf.images[1].build.packages.is_empty());
        assert_eq!(pf.images[1].build.livenet_type, LivenetType::Small);
        assert_eq!(
            pf.images[0].build.password_hash.as_deref(),
            Some(h.as_str())
        );
    }

    #[test]
    fn comparison() {
        let pf = parse(SEED_LIVENET, f(), None).unwrap();
        let ip = &pf.images[0];
        let mut rec = ImageRecord::new("livenet1", ImageClass::LivenetImage);
        rec.distro = Some("debian".into());
        rec.release_version = Some("8".into());
        rec.livenet_type = Some(LivenetType::Core);
        rec.layout = Some(Layout::Compat);
        rec.livenet_size = Some(700);
        rec.additional_packages = vec!["gzip".into()];
        rec.ssh_pub_key = Some("/root/.ssh/id_rsa.pub".into());
        rec.kernel = Some("vmlinuz-4.18.0-305.el8.x86_64".into());
        rec.password = Some(password::hash_password("root").unwrap());
        assert!(
            differences(ip, &rec).is_empty(),
            "{:?}",
            differences(ip, &rec)
        );
        rec.password = Some(password::hash_password("other").unwrap());
        rec.livenet_size = Some(950); // grown to fit: the reference size is a floor
        assert_eq!(
            differences(ip, &rec).len(),
            1,
            "{:?}",
            differences(ip, &rec)
        );
        rec.livenet_size = Some(600);
        let d = differences(ip, &rec);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().all(|x| !x.contains("root")), "{d:?}");
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        fn yamlish() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                Just("image_data".to_string()),
                Just("images".to_string()),
                Just("defaults".to_string()),
                Just("name".to_string()),
                Just("image_class".to_string()),
                Just("kind".to_string()),
                Just("livenet_type".to_string()),
                Just("livenet_size".to_string()),
                Just("size".to_string()),
                Just("layout".to_string()),
                Just("additional_packages".to_string()),
                Just("packages".to_string()),
                Just("selinux".to_string()),
                Just("release_version".to_string()),
                Just("kernel".to_string()),
                Just("from".to_string()),
                Just("nodes".to_string()),
                Just("- name".to_string()),
                Just("<<".to_string()),
                "[a-z_]{1,8}",
            ];
            let value = prop_oneof![
                Just(String::new()),
                Just("LivenetImage".to_string()),
                Just("livenet".to_string()),
                Just("nfs-golden".to_string()),
                Just("Type.CORE".to_string()),
                Just("['gzip', 'vim']".to_string()),
                Just("[a, [b]]".to_string()),
                Just("{a: 1}".to_string()),
                Just("True".to_string()),
                Just("700".to_string()),
                Just("1.5G".to_string()),
                Just("&a x".to_string()),
                Just("*a".to_string()),
                Just("c[001-004]".to_string()),
                Just("'unterminated".to_string()),
                Just("\"q\\u00e9\"".to_string()),
                Just("|".to_string()),
                "[ -~]{0,12}",
            ];
            let line =
                (0usize..8, key, value).prop_map(|(i, k, v)| format!("{}{k}: {v}", " ".repeat(i)));
            prop::collection::vec(line, 0..14).prop_map(|l| l.join("\n"))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

            #[test]
            fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,300}") {
                let _ = parse(&s, Path::new("f.yml"), None);
            }

            #[test]
            fn parser_never_panics_on_yamlish_text(s in yamlish()) {
                match parse(&s, Path::new("f.yml"), None) {
                    Ok(pf) => prop_assert!(!pf.images.is_empty()),
                    Err(e) => {
                        let m = e.to_string();
                        prop_assert!(!m.contains('\n'), "{}", m);
                    }
                }
            }
        }
    }
}
