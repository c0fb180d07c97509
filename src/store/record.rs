//! Image records: `image_data.yml`, read as the reference (Python) wrote it, written as
//! clean YAML. Unknown keys are kept and written back untouched.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use yaml_serde::{Mapping, Value};

use crate::error::{Error, Result};
use crate::yaml::{describe_error, py_bool, py_enum, py_list, scalar_string};

/// The reference's `image_class` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum ImageClass {
    LivenetImage,
    NfsStagingImage,
    NfsGoldenImage,
    DemoImage,
}

impl ImageClass {
    pub const ALL: [ImageClass; 4] = [
        ImageClass::LivenetImage,
        ImageClass::NfsStagingImage,
        ImageClass::NfsGoldenImage,
        ImageClass::DemoImage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImageClass::LivenetImage => "LivenetImage",
            ImageClass::NfsStagingImage => "NfsStagingImage",
            ImageClass::NfsGoldenImage => "NfsGoldenImage",
            ImageClass::DemoImage => "DemoImage",
        }
    }

    pub fn parse(s: &str) -> Result<ImageClass> {
        let t = s.trim();
        ImageClass::ALL
            .into_iter()
            .find(|c| c.as_str() == t)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown image_class {t:?}: allowed values are {}",
                    ImageClass::ALL
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The module that handles this class.
    pub fn module(self) -> &'static str {
        match self {
            ImageClass::LivenetImage => "livenet",
            ImageClass::NfsStagingImage | ImageClass::NfsGoldenImage => "nfs",
            ImageClass::DemoImage => "demo",
        }
    }
}

/// Livenet size classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LivenetType {
    Standard,
    Small,
    Core,
}

impl LivenetType {
    pub const ALL: [LivenetType; 3] =
        [LivenetType::Standard, LivenetType::Small, LivenetType::Core];

    pub fn as_str(self) -> &'static str {
        match self {
            LivenetType::Standard => "standard",
            LivenetType::Small => "small",
            LivenetType::Core => "core",
        }
    }

    /// Accepts `Type.CORE`, `core`, `CORE`, and the reference's `minimal` for core.
    pub fn parse(s: &str) -> Result<LivenetType> {
        match py_enum(s).as_str() {
            "standard" => Ok(LivenetType::Standard),
            "small" => Ok(LivenetType::Small),
            "core" | "minimal" => Ok(LivenetType::Core),
            _ => Err(Error::invalid(format!(
                "unknown livenet type {s:?}: allowed values are standard, small, core (or Type.STANDARD, Type.SMALL, Type.CORE)"
            ))),
        }
    }
}

/// Livenet image layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// The root tree itself is the squashfs; overlay on tmpfs at boot.
    Native,
    /// squashfs holding `LiveOS/rootfs.img` (ext4 of `livenet_size`), the reference's layout.
    Compat,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Native => "native",
            Layout::Compat => "compat",
        }
    }

    pub fn parse(s: &str) -> Result<Layout> {
        match s.trim().to_ascii_lowercase().as_str() {
            "native" => Ok(Layout::Native),
            "compat" => Ok(Layout::Compat),
            _ => Err(Error::invalid(format!(
                "unknown layout {s:?}: allowed values are native, compat"
            ))),
        }
    }
}

/// One image's metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRecord {
    pub name: String,
    pub image_class: ImageClass,
    /// SHA-512 crypt hash of the root password (never the clear password).
    pub password: Option<String>,
    /// `vmlinuz-<version>`.
    pub kernel: Option<String>,
    /// The initramfs file name in the kernels dir.
    pub image: Option<String>,
    pub livenet_type: Option<LivenetType>,
    /// MiB.
    pub livenet_size: Option<u64>,
    pub selinux: bool,
    pub optimize: bool,
    pub ssh_pub_key: Option<String>,
    pub additional_packages: Vec<String>,
    pub release_version: Option<String>,
    pub is_mounted: bool,
    pub creation_date: Option<String>,
    /// Golden images: nodes, as a folded node set.
    pub nodes: Option<String>,
    // ---- native additions ----
    pub distro: Option<String>,
    pub layout: Option<Layout>,
    /// Published generation number (livenet), starting at 1.
    pub generation: u32,
    /// Demo images' message.
    pub message: Option<String>,
    /// Golden images: the staging image they were made from.
    pub source_image: Option<String>,
    /// Initramfs flavour: `own` or `dracut`.
    pub initramfs_flavour: Option<String>,
    /// Keys this version does not know, kept as they were.
    pub extra: BTreeMap<String, Value>,
}

impl ImageRecord {
    pub fn new(name: &str, class: ImageClass) -> Self {
        ImageRecord {
            name: name.to_string(),
            image_class: class,
            password: None,
            kernel: None,
            image: None,
            livenet_type: None,
            livenet_size: None,
            selinux: false,
            optimize: false,
            ssh_pub_key: None,
            additional_packages: Vec::new(),
            release_version: None,
            is_mounted: false,
            creation_date: Some(today()),
            nodes: None,
            distro: None,
            layout: None,
            generation: 0,
            message: None,
            source_image: None,
            initramfs_flavour: None,
            extra: BTreeMap::new(),
        }
    }

    /// Kernel version from `vmlinuz-<ver>`.
    pub fn kernel_version(&self) -> Option<&str> {
        self.kernel
            .as_deref()
            .map(|k| k.strip_prefix("vmlinuz-").unwrap_or(k))
    }

    /// Parses `image_data.yml` text (reference or native). `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<ImageRecord> {
        let doc: Value = yaml_serde::from_str(text).map_err(|e| Error::Yaml {
            path: origin.to_path_buf(),
            msg: describe_error(&e),
        })?;
        let bad = |msg: String| Error::Yaml {
            path: origin.to_path_buf(),
            msg,
        };
        let map = match doc.get("image_data") {
            Some(Value::Mapping(m)) => m.clone(),
            Some(_) => return Err(bad("image_data: must be a mapping".into())),
            None => return Err(bad("no `image_data:` mapping at the top".into())),
        };
        from_mapping(&map).map_err(|e| bad(e.to_string()))
    }

    /// Serialises as clean YAML under `image_data:`.
    pub fn to_yaml(&self) -> Result<String> {
        let mut m = Mapping::new();
        let mut put = |k: &str, v: Value| {
            m.insert(Value::String(k.to_string()), v);
        };
        let s = |v: &str| Value::String(v.to_string());
        put("name", s(&self.name));
        put("image_class", s(self.image_class.as_str()));
        if let Some(v) = &self.password {
            put("password", s(v));
        }
        if let Some(v) = &self.kernel {
            put("kernel", s(v));
        }
        if let Some(v) = &self.image {
            put("image", s(v));
        }
        if let Some(v) = self.livenet_type {
            put("livenet_type", s(v.as_str()));
        }
        if let Some(v) = self.livenet_size {
            put("livenet_size", Value::Number(v.into()));
        }
        put("selinux", Value::Bool(self.selinux));
        put("optimize", Value::Bool(self.optimize));
        if let Some(v) = &self.ssh_pub_key {
            put("ssh_pub_key", s(v));
        }
        put(
            "additional_packages",
            Value::Sequence(self.additional_packages.iter().map(|p| s(p)).collect()),
        );
        if let Some(v) = &self.release_version {
            put("release_version", s(v));
        }
        put("is_mounted", Value::Bool(self.is_mounted));
        if let Some(v) = &self.creation_date {
            put("creation_date", s(v));
        }
        if let Some(v) = &self.nodes {
            put("nodes", s(v));
        }
        if let Some(v) = &self.distro {
            put("distro", s(v));
        }
        if let Some(v) = self.layout {
            put("layout", s(v.as_str()));
        }
        if self.generation > 0 {
            put("generation", Value::Number(self.generation.into()));
        }
        if let Some(v) = &self.message {
            put("message", s(v));
        }
        if let Some(v) = &self.source_image {
            put("source_image", s(v));
        }
        if let Some(v) = &self.initramfs_flavour {
            put("initramfs_flavour", s(v));
        }
        for (k, v) in &self.extra {
            put(k, v.clone());
        }
        let mut top = Mapping::new();
        top.insert(Value::String("image_data".into()), Value::Mapping(m));
        yaml_serde::to_string(&Value::Mapping(top))
            .map_err(|e| Error::invalid(format!("cannot serialise image record: {e}")))
    }
}

const KNOWN: &[&str] = &[
    "name",
    "image_class",
    "password",
    "kernel",
    "image",
    "livenet_type",
    "livenet_size",
    "selinux",
    "optimize",
    "ssh_pub_key",
    "additional_packages",
    "release_version",
    "is_mounted",
    "creation_date",
    "nodes",
    "distro",
    "layout",
    "generation",
    "message",
    "source_image",
    "initramfs_flavour",
];

fn opt_string(m: &Mapping, key: &str) -> Option<String> {
    m.get(key)
        .and_then(scalar_string)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "None")
}

fn from_mapping(m: &Mapping) -> Result<ImageRecord> {
    let name = opt_string(m, "name").ok_or_else(|| Error::invalid("name: missing"))?;
    crate::names::image(&name)?;
    let class = ImageClass::parse(
        &opt_string(m, "image_class").ok_or_else(|| Error::invalid("image_class: missing"))?,
    )?;
    let mut r = ImageRecord::new(&name, class);
    r.creation_date = opt_string(m, "creation_date");
    r.password = opt_string(m, "password");
    r.kernel = opt_string(m, "kernel");
    r.image = opt_string(m, "image");
    if let Some(t) = opt_string(m, "livenet_type") {
        r.livenet_type = Some(LivenetType::parse(&t)?);
    }
    if let Some(s) = opt_string(m, "livenet_size") {
        r.livenet_size = Some(crate::fsutil::parse_size_mib(&s).map_err(|_| {
            Error::invalid(format!(
                "livenet_size: {s:?} is not a size in MiB (e.g. 1500)"
            ))
        })?);
    }
    let boolean = |k: &str| -> Result<bool> {
        match m.get(k) {
            None => Ok(false),
            Some(v) => py_bool(v)
                .ok_or_else(|| Error::invalid(format!("{k}: {v:?} is not a boolean (True/False)"))),
        }
    };
    r.selinux = boolean("selinux")?;
    r.optimize = boolean("optimize")?;
    r.is_mounted = boolean("is_mounted")?;
    r.ssh_pub_key = opt_string(m, "ssh_pub_key");
    if let Some(v) = m.get("additional_packages") {
        r.additional_packages = py_list(v).ok_or_else(|| {
            Error::invalid("additional_packages: must be a list like ['gzip', 'vim']")
        })?;
    }
    r.release_version = opt_string(m, "release_version");
    r.nodes = opt_string(m, "nodes");
    r.distro = opt_string(m, "distro");
    if let Some(l) = opt_string(m, "layout") {
        r.layout = Some(Layout::parse(&l)?);
    }
    if let Some(g) = opt_string(m, "generation") {
        r.generation = g
            .parse()
            .map_err(|_| Error::invalid(format!("generation: {g:?} is not a number")))?;
    }
    r.message = opt_string(m, "message");
    r.source_image = opt_string(m, "source_image");
    r.initramfs_flavour = opt_string(m, "initramfs_flavour");
    for (k, v) in m {
        if let Some(k) = k.as_str() {
            if !KNOWN.contains(&k) {
                r.extra.insert(k.to_string(), v.clone());
            }
        }
    }
    if r.image_class == ImageClass::LivenetImage && r.layout.is_none() {
        // The reference's images are all LiveOS/rootfs.img squashfs images.
        r.layout = Some(Layout::Compat);
    }
    Ok(r)
}

/// Today's date as YYYY-MM-DD (UTC), like the reference's creation_date.
/// Issue 15: a transient (per-host) image carries `transient: true` (kept in `extra`, so
/// older versions read and write it back untouched).
pub const TRANSIENT_KEY: &str = "transient";

pub fn set_transient(rec: &mut ImageRecord) {
    rec.extra.insert(TRANSIENT_KEY.into(), Value::Bool(true));
}

pub fn is_transient(rec: &ImageRecord) -> bool {
    matches!(rec.extra.get(TRANSIENT_KEY), Some(Value::Bool(true)))
}

pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_date(secs / 86_400)
}

/// Days since 1970-01-01 to YYYY-MM-DD (Howard Hinnant's algorithm).
pub fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reference_livenet_record() {
        let text = "image_data:\n    name: livenetimg1\n    kernel: vmlinuz-4.18.0-147.el8.x86_64\n    image: initramfs-kernel-4.18.0-147.el8.x86_64\n    password: $6$fUfb9XQ2RCxHO15O$TubY\n    livenet_type: Type.STANDARD\n    livenet_size: '1500'\n    selinux: False\n    optimize: False\n    additional_packages: ['gzip']\n    is_mounted: False\n    image_class: LivenetImage\n    creation_date: 2020-10-21\n";
        let r = ImageRecord::parse(text, Path::new("x")).unwrap();
        assert_eq!(r.livenet_type, Some(LivenetType::Standard));
        assert_eq!(r.livenet_size, Some(1500));
        assert_eq!(r.additional_packages, vec!["gzip"]);
        assert_eq!(r.kernel_version(), Some("4.18.0-147.el8.x86_64"));
        assert_eq!(r.layout, Some(Layout::Compat));
        let back = ImageRecord::parse(&r.to_yaml().unwrap(), Path::new("y")).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn unknown_class_lists_allowed() {
        let e = ImageRecord::parse(
            "image_data:\n  name: a\n  image_class: FooImage\n",
            Path::new("f.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("FooImage") && e.contains("NfsGoldenImage"),
            "{e}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_000), "2022-01-08");
    }
}
