//! Livenet manifests: package sets per type (standard / small / core) and per distro
//! family, read at run time from `<data_dir>/modules/livenet/<family>.yml`.
//!
//! ```yaml
//! family: debian                 # must match the file name
//! builder: mmdebstrap            # mmdebstrap | dnf
//! distros:                       # the distros of this family and their defaults
//!   debian:
//!     default_release: bookworm
//!     mirror: http://deb.debian.org/debian      # mmdebstrap
//!     keyring: /usr/share/keyrings/...          # mmdebstrap, optional
//!     updates: ["deb {mirror} {release}-updates {components}"]
//!     updates_except: [sid]
//!     packages: []               # added to every type for this distro (rocky-release)
//!     repos: {baseos: URL}       # dnf defaults when the config has no dnf_repos
//!     gpg_key: URL               # the key of those default repos
//!     gpg_key_hint: URL          # shown in the "set gpg_keys:" error
//! releases: [bookworm, ...]      # allowed releases
//! release_aliases: {"12": bookworm}
//! allow_minor: false             # dnf: "9.4" allowed when "9" is
//! numeric_release_min: 38        # dnf: any number >= this is allowed
//! release_drop: {bullseye: [systemd-resolved]}
//! components: [main]
//! kernel: {amd64: linux-image-amd64}   # or one name for every arch
//! types:
//!   core: {variant: minbase, packages: [...], groups: [], kernel: ...}
//!   small: {extends: core, packages: [...]}
//!   standard: {extends: small, groups: [core], packages: [...]}
//! optimize: {path_exclude: [...], path_include: [...], nodocs: true, install_langs: "C:en"}
//! ```
//! Placeholders in URLs and source lines: `{mirror}`, `{release}`, `{major}`, `{arch}`,
//! `{components}`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::store::record::LivenetType;

/// What every type must contain (the kernel is always added from `kernel:`).
pub const MUST_HAVE: [&str; 2] = ["systemd", "openssh-server"];

/// Which tool builds the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderKind {
    Mmdebstrap,
    Dnf,
}

/// A kernel package name, one for all architectures or one per architecture.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum KernelPackage {
    One(String),
    PerArch(BTreeMap<String, String>),
}

impl KernelPackage {
    /// The package for an architecture (named the family's way: amd64 / x86_64).
    pub fn for_arch(&self, arch: &str) -> Option<&str> {
        match self {
            KernelPackage::One(s) => Some(s),
            KernelPackage::PerArch(m) => m.get(arch).map(String::as_str),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistroDefaults {
    pub default_release: String,
    #[serde(default)]
    pub mirror: Option<String>,
    #[serde(default)]
    pub keyring: Option<String>,
    #[serde(default)]
    pub updates: Vec<String>,
    #[serde(default)]
    pub updates_except: Vec<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub repos: BTreeMap<String, String>,
    #[serde(default)]
    pub gpg_key: Option<String>,
    #[serde(default)]
    pub gpg_key_hint: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeSet {
    #[serde(default)]
    pub extends: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub kernel: Option<KernelPackage>,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Types {
    pub core: TypeSet,
    pub small: TypeSet,
    pub standard: TypeSet,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimize {
    /// dpkg `path-exclude` filters (mmdebstrap).
    #[serde(default)]
    pub path_exclude: Vec<String>,
    /// dpkg `path-include` filters, applied after the excludes.
    #[serde(default)]
    pub path_include: Vec<String>,
    /// dnf `--nodocs`.
    #[serde(default)]
    pub nodocs: bool,
    /// rpm `%_install_langs` (dnf).
    #[serde(default)]
    pub install_langs: Option<String>,
}

/// One family's manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub family: String,
    pub builder: BuilderKind,
    pub distros: BTreeMap<String, DistroDefaults>,
    pub releases: Vec<String>,
    #[serde(default)]
    pub release_aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_minor: bool,
    #[serde(default)]
    pub numeric_release_min: Option<u32>,
    #[serde(default)]
    pub release_drop: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub components: Vec<String>,
    pub kernel: KernelPackage,
    pub types: Types,
    #[serde(default)]
    pub optimize: Optimize,
    /// The file it was read from (for messages).
    #[serde(skip)]
    pub path: PathBuf,
}

/// What one type resolves to, inheritance applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolvedType {
    pub variant: Option<String>,
    pub kernel: Option<KernelPackage>,
    pub packages: Vec<String>,
    pub groups: Vec<String>,
}

/// The directory holding the livenet manifests.
pub fn manifests_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("modules/livenet")
}

impl Manifest {
    /// Reads `<data_dir>/modules/livenet/<family>.yml`.
    pub fn load(data_dir: &Path, family: &str) -> Result<Manifest> {
        let path = manifests_dir(data_dir).join(format!("{family}.yml"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Yaml {
            path: path.clone(),
            msg: format!(
                "cannot read the livenet manifest ({e}): check data_dir in the config or DISKLESSSET_DATA"
            ),
        })?;
        Manifest::parse(&text, &path, family)
    }

    /// Parses and checks a manifest; errors name the file (and the key when one is wrong).
    pub fn parse(text: &str, path: &Path, family: &str) -> Result<Manifest> {
        let err = |msg: String| Error::Yaml {
            path: path.to_path_buf(),
            msg,
        };
        let mut m: Manifest =
            yaml_serde::from_str(text).map_err(|e| err(crate::yaml::describe_error(&e)))?;
        m.path = path.to_path_buf();
        if m.family != family {
            return Err(err(format!(
                "family: {:?} does not match the file name (expected {family:?})",
                m.family
            )));
        }
        if m.distros.is_empty() {
            return Err(err("distros: at least one distro is needed".into()));
        }
        for (d, dd) in &m.distros {
            m.check_release(&dd.default_release).map_err(|e| {
                err(format!(
                    "distros.{d}.default_release: {e} (add it to releases:)"
                ))
            })?;
            for p in &dd.packages {
                check_package(p).map_err(|e| err(format!("distros.{d}.packages: {e}")))?;
            }
            if m.builder == BuilderKind::Mmdebstrap && dd.mirror.is_none() {
                return Err(err(format!(
                    "distros.{d}.mirror: a default mirror is needed for mmdebstrap families"
                )));
            }
        }
        for (alias, target) in &m.release_aliases {
            if !m.releases.contains(target) {
                return Err(err(format!(
                    "release_aliases.{alias}: {target:?} is not in releases:"
                )));
            }
        }
        for t in [LivenetType::Core, LivenetType::Small, LivenetType::Standard] {
            let r = m
                .resolve_type(t)
                .map_err(|e| err(format!("types.{}: {e}", t.as_str())))?;
            for p in r.packages.iter().chain(r.groups.iter()) {
                check_package(p).map_err(|e| err(format!("types.{}: {e}", t.as_str())))?;
            }
            for must in MUST_HAVE {
                if !r.packages.iter().any(|p| p == must) {
                    return Err(err(format!(
                        "types.{}: every type must contain {must} (add it to packages:)",
                        t.as_str()
                    )));
                }
            }
        }
        Ok(m)
    }

    fn type_set(&self, t: LivenetType) -> &TypeSet {
        match t {
            LivenetType::Core => &self.types.core,
            LivenetType::Small => &self.types.small,
            LivenetType::Standard => &self.types.standard,
        }
    }

    /// The packages, groups, variant and kernel of a type, `extends:` applied.
    pub fn resolve_type(&self, t: LivenetType) -> std::result::Result<ResolvedType, String> {
        let mut chain = vec![t];
        let mut cur = t;
        while let Some(parent) = &self.type_set(cur).extends {
            let p = LivenetType::parse(parent).map_err(|e| format!("extends: {e}"))?;
            if chain.contains(&p) {
                return Err(format!("extends: {parent} makes a loop"));
            }
            chain.push(p);
            cur = p;
        }
        let mut r = ResolvedType::default();
        // Base first, so the most specific type's variant and kernel win.
        for ty in chain.iter().rev() {
            let s = self.type_set(*ty);
            if s.variant.is_some() {
                r.variant = s.variant.clone();
            }
            if s.kernel.is_some() {
                r.kernel = s.kernel.clone();
            }
            for p in &s.packages {
                if !r.packages.contains(p) {
                    r.packages.push(p.clone());
                }
            }
            for g in &s.groups {
                if !r.groups.contains(g) {
                    r.groups.push(g.clone());
                }
            }
        }
        Ok(r)
    }

    /// The defaults of one distro of this family.
    pub fn distro(&self, distro: &str) -> Result<&DistroDefaults> {
        self.distros.get(distro).ok_or_else(|| Error::Yaml {
            path: self.path.clone(),
            msg: format!(
                "distros: {distro} is missing (this manifest has {})",
                self.distros.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// Checks a release against this family; returns the canonical name (aliases applied).
    pub fn check_release(&self, release: &str) -> std::result::Result<String, String> {
        let r = release.trim();
        if let Some(t) = self.release_aliases.get(r) {
            return Ok(t.clone());
        }
        if self.releases.iter().any(|x| x == r) {
            return Ok(r.to_string());
        }
        let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        let (major, minor) = match r.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (r, None),
        };
        if self.allow_minor
            && minor.is_some_and(numeric)
            && self.releases.iter().any(|x| x == major)
        {
            return Ok(r.to_string());
        }
        if let (Some(min), None) = (self.numeric_release_min, minor) {
            if numeric(major) && major.parse::<u32>().is_ok_and(|n| n >= min) {
                return Ok(r.to_string());
            }
        }
        let mut allowed = self.releases.join(", ");
        if !self.release_aliases.is_empty() {
            allowed.push_str(&format!(
                " (or {})",
                self.release_aliases
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.allow_minor {
            allowed.push_str(", with an optional .minor");
        }
        if let Some(min) = self.numeric_release_min {
            allowed.push_str(&format!(", or a number >= {min}"));
        }
        Err(format!(
            "release {r:?} is not a {} release: allowed values are {allowed}",
            self.family
        ))
    }
}

/// A package (or group) name safe to pass in argv and in mmdebstrap's comma list:
/// no leading '-', no comma, no whitespace or control characters.
pub fn check_package(p: &str) -> std::result::Result<(), String> {
    let ok = !p.is_empty()
        && !p.starts_with('-')
        && p.len() <= 200
        && p.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '+' | '.' | '_' | '-' | ':' | '=' | '/' | '~' | '@')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "package name {p:?} is not valid: use letters, digits and + . _ - : = / ~ (not starting with -)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_manifest(family: &str) -> Manifest {
        Manifest::load(Path::new(env!("CARGO_MANIFEST_DIR")), family).unwrap()
    }

    #[test]
    fn shipped_manifests_load_and_hold_the_musts() {
        for f in ["debian", "ubuntu", "el", "fedora"] {
            let m = repo_manifest(f);
            for t in LivenetType::ALL {
                let r = m.resolve_type(t).unwrap();
                for must in MUST_HAVE {
                    assert!(r.packages.iter().any(|p| p == must), "{f} {t:?} {must}");
                }
            }
        }
    }

    #[test]
    fn types_inherit() {
        let m = repo_manifest("debian");
        let core = m.resolve_type(LivenetType::Core).unwrap();
        let small = m.resolve_type(LivenetType::Small).unwrap();
        let std = m.resolve_type(LivenetType::Standard).unwrap();
        assert!(core.packages.iter().all(|p| small.packages.contains(p)));
        assert!(small.packages.iter().all(|p| std.packages.contains(p)));
        assert!(core.packages.len() < small.packages.len());
        assert!(small.packages.len() < std.packages.len());
        assert_eq!(std.variant.as_deref(), Some("minbase"));
        let el = repo_manifest("el");
        assert_eq!(
            el.resolve_type(LivenetType::Standard).unwrap().groups,
            vec!["core".to_string()]
        );
        assert!(el
            .resolve_type(LivenetType::Core)
            .unwrap()
            .groups
            .is_empty());
    }

    #[test]
    fn most_specific_kernel_wins() {
        let m = repo_manifest("ubuntu");
        let core = m.resolve_type(LivenetType::Core).unwrap();
        let std = m.resolve_type(LivenetType::Standard).unwrap();
        assert_eq!(
            core.kernel.unwrap().for_arch("amd64"),
            Some("linux-image-virtual")
        );
        assert_eq!(
            std.kernel.unwrap().for_arch("amd64"),
            Some("linux-image-generic")
        );
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("modules/livenet/debian.yml"),
        )
        .unwrap()
        .replace("components: [main]", "componentz: [main]");
        let e = Manifest::parse(&text, Path::new("/x/debian.yml"), "debian")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/debian.yml"), "{e}");
        assert!(e.contains("componentz"), "{e}");
        let text2 = text.replace("componentz", "components").replace(
            "    variant: minbase",
            "    variant: minbase\n    pakages: [x]",
        );
        let e = Manifest::parse(&text2, Path::new("/x/debian.yml"), "debian")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pakages"), "{e}");
    }

    #[test]
    fn missing_must_have_is_refused() {
        let text = "family: debian\nbuilder: mmdebstrap\ndistros: {debian: {default_release: bookworm, mirror: http://x}}\nreleases: [bookworm]\nkernel: linux-image-amd64\ntypes:\n  core: {packages: [systemd]}\n  small: {extends: core}\n  standard: {extends: small, packages: [openssh-server]}\n";
        let e = Manifest::parse(text, Path::new("m.yml"), "debian")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("types.core") && e.contains("openssh-server"),
            "{e}"
        );
    }

    #[test]
    fn extends_loop_is_refused() {
        let text = "family: debian\nbuilder: mmdebstrap\ndistros: {debian: {default_release: bookworm, mirror: http://x}}\nreleases: [bookworm]\nkernel: k\ntypes:\n  core: {extends: standard, packages: [systemd, openssh-server]}\n  small: {extends: core}\n  standard: {extends: small}\n";
        let e = Manifest::parse(text, Path::new("m.yml"), "debian")
            .unwrap_err()
            .to_string();
        assert!(e.contains("loop"), "{e}");
    }

    #[test]
    fn releases_per_family() {
        let deb = repo_manifest("debian");
        assert_eq!(deb.check_release("bookworm").unwrap(), "bookworm");
        assert_eq!(deb.check_release("12").unwrap(), "bookworm");
        let e = deb.check_release("jammy").unwrap_err();
        assert!(e.contains("bookworm") && e.contains("trixie"), "{e}");
        let el = repo_manifest("el");
        assert!(el.check_release("9").is_ok());
        assert!(el.check_release("9.4").is_ok());
        assert!(el.check_release("7").is_err());
        assert!(el.check_release("9.x").is_err());
        let fed = repo_manifest("fedora");
        assert!(fed.check_release("42").is_ok());
        assert!(fed.check_release("rawhide").is_ok());
        assert!(fed.check_release("30").is_err());
        assert!(fed.check_release("42.1").is_err());
    }

    #[test]
    fn package_names() {
        assert!(check_package("linux-image-amd64").is_ok());
        assert!(check_package("libstdc++6").is_ok());
        assert!(check_package("NetworkManager").is_ok());
        assert!(check_package("vim=2:9.0").is_ok());
        assert!(check_package("-oAPT::x").is_err());
        assert!(check_package("a,b").is_err());
        assert!(check_package("a b").is_err());
        assert!(check_package("").is_err());
    }
}
