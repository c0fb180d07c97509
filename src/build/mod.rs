//! Root trees from package repositories: mmdebstrap (Debian/Ubuntu) and
//! `dnf --installroot` (Rocky/Alma/RHEL/Fedora), driven by the livenet manifests in
//! `<data_dir>/modules/livenet/`; then the image setup (password, ssh key, os-release,
//! network, boot marker, SELinux) done by editing the tree.
//!
//! Every external program goes through the runner; nothing secret goes through argv.
use std::path::Path;

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::store::record::LivenetType;
use crate::sys::runner::Cmd;

pub mod dnf;
pub mod image;
pub mod import;
pub mod manifest;
pub mod mmdebstrap;
pub mod password;
pub mod pkglist;
pub mod reproducible;
pub mod secrets_scan;
pub mod setup;
pub mod tree;

pub use manifest::{BuilderKind, Manifest};
pub use password::{hash_password, read_password_file, read_password_stdin};
pub use setup::{setup_tree, SetupSpec};

/// The distros a tree can be built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distro {
    Debian,
    Ubuntu,
    Rocky,
    Alma,
    Rhel,
    Fedora,
}

/// The allowed `distro` values, for messages.
pub const DISTROS: &str = "debian, ubuntu, rocky, alma, rhel, fedora";

impl Distro {
    pub const ALL: [Distro; 6] = [
        Distro::Debian,
        Distro::Ubuntu,
        Distro::Rocky,
        Distro::Alma,
        Distro::Rhel,
        Distro::Fedora,
    ];

    pub fn parse(s: &str) -> Result<Distro> {
        match s.trim().to_ascii_lowercase().as_str() {
            "debian" => Ok(Distro::Debian),
            "ubuntu" => Ok(Distro::Ubuntu),
            "rocky" | "rockylinux" => Ok(Distro::Rocky),
            "alma" | "almalinux" => Ok(Distro::Alma),
            "rhel" | "redhat" => Ok(Distro::Rhel),
            "fedora" => Ok(Distro::Fedora),
            _ => Err(Error::invalid(format!(
                "unknown distro {s:?}: allowed values are {DISTROS}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
            Distro::Rocky => "rocky",
            Distro::Alma => "alma",
            Distro::Rhel => "rhel",
            Distro::Fedora => "fedora",
        }
    }

    /// The manifest family: `debian`, `ubuntu`, `el`, `fedora`.
    pub fn family(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
            Distro::Rocky | Distro::Alma | Distro::Rhel => "el",
            Distro::Fedora => "fedora",
        }
    }

    pub fn is_deb(self) -> bool {
        matches!(self, Distro::Debian | Distro::Ubuntu)
    }
}

/// CPU architectures, named per family (`amd64` for dpkg, `x86_64` for rpm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Ppc64le,
}

impl Arch {
    pub fn parse(s: &str) -> Result<Arch> {
        match s.trim() {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "ppc64le" | "ppc64el" => Ok(Arch::Ppc64le),
            _ => Err(Error::invalid(format!(
                "unknown architecture {s:?}: allowed values are x86_64 (amd64), aarch64 (arm64), ppc64le (ppc64el)"
            ))),
        }
    }

    /// The architecture this program runs on (x86_64 when unknown).
    pub fn host() -> Arch {
        match std::env::consts::ARCH {
            "aarch64" => Arch::Aarch64,
            "powerpc64" => Arch::Ppc64le,
            _ => Arch::X86_64,
        }
    }

    pub fn deb(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
            Arch::Ppc64le => "ppc64el",
        }
    }

    pub fn rpm(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Ppc64le => "ppc64le",
        }
    }

    /// The name the distro's package manager uses.
    pub fn for_distro(self, d: Distro) -> &'static str {
        if d.is_deb() {
            self.deb()
        } else {
            self.rpm()
        }
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildSpec {
    pub distro: Distro,
    /// None: the manifest's default release for the distro. Aliases (`12`, `24.04`) allowed.
    pub release: Option<String>,
    pub livenet_type: LivenetType,
    pub extra_packages: Vec<String>,
    /// Leave out docs, man pages and locales (dpkg path filters / `--nodocs`).
    pub optimize: bool,
    /// Overrides `mirrors:` of the config, the host's sources and the manifest default.
    /// An explicit mirror is used alone (no -updates / -security sources added).
    pub mirror: Option<String>,
    /// Empty: the manifest's components (Debian `main`, Ubuntu `main universe`).
    pub components: Vec<String>,
    pub arch: Arch,
    /// dnf: check package signatures (on by default; off is `--nogpgcheck`).
    pub gpgcheck: bool,
    /// `SOURCE_DATE_EPOCH` given to the package tools (issue 15: reproducible builds).
    pub epoch: Option<u64>,
    /// `rebuild`: (package, version) pins of the recorded manifest.
    pub pins: Vec<(String, String)>,
}

impl BuildSpec {
    /// A spec with the defaults: the manifest's release, host arch, gpgcheck on.
    pub fn new(distro: &str, livenet_type: LivenetType) -> Result<BuildSpec> {
        Ok(BuildSpec {
            distro: Distro::parse(distro)?,
            release: None,
            livenet_type,
            extra_packages: Vec::new(),
            optimize: false,
            mirror: None,
            components: Vec::new(),
            arch: Arch::host(),
            gpgcheck: true,
            epoch: None,
            pins: Vec::new(),
        })
    }

    /// Checks everything that does not need the manifest: package names, mirror URL,
    /// components.
    pub fn validate(&self) -> Result<()> {
        for p in &self.extra_packages {
            manifest::check_package(p)
                .map_err(|e| Error::invalid(format!("extra packages: {e}")))?;
        }
        if let Some(m) = &self.mirror {
            check_url(m).map_err(|e| Error::invalid(format!("mirror: {e}")))?;
        }
        for c in &self.components {
            if c.is_empty()
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_/.".contains(ch))
            {
                return Err(Error::invalid(format!(
                    "component {c:?} is not valid: use names like main, contrib, universe"
                )));
            }
        }
        Ok(())
    }

    /// Loads the manifest of the spec's family and checks the release against it;
    /// returns the manifest and the canonical release.
    pub fn resolve(&self, ctx: &Ctx) -> Result<(Manifest, String)> {
        self.validate()?;
        let m = Manifest::load(&ctx.cfg.data_dir, self.distro.family())?;
        let release = match &self.release {
            Some(r) => m.check_release(r).map_err(Error::invalid)?,
            None => m.distro(self.distro.as_str())?.default_release.clone(),
        };
        Ok((m, release))
    }
}

/// A URL usable as a mirror or repo base: http(s), ftp or file, no whitespace.
pub fn check_url(u: &str) -> std::result::Result<(), String> {
    let ok_scheme = ["http://", "https://", "ftp://", "file:/"]
        .iter()
        .any(|s| u.starts_with(s));
    if !ok_scheme || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{u:?} is not a valid URL: write http://HOST/PATH (or https://, file:///)"
        ));
    }
    Ok(())
}

/// Builds a root tree.
pub trait RootBuilder {
    /// The tool it runs (`mmdebstrap`, `dnf`).
    fn tool(&self) -> &'static str;
    /// The exact command `build` runs: what `--dry-run` shows and the tests check.
    fn command(&self, ctx: &Ctx, spec: &BuildSpec, target: &Path) -> Result<Cmd>;
    /// Human lines: distro, release, type, packages, where they come from.
    fn describe(&self, ctx: &Ctx, spec: &BuildSpec) -> Result<Vec<String>>;
    /// Builds the tree into `target` (absent or an empty directory). On failure the
    /// partial tree is removed and the error names the package or mirror at fault.
    fn build(&self, ctx: &Ctx, spec: &BuildSpec, target: &Path) -> Result<()>;
}

/// The builder for a distro.
pub fn builder_for(distro: Distro) -> Box<dyn RootBuilder> {
    if distro.is_deb() {
        Box::new(mmdebstrap::Mmdebstrap)
    } else {
        Box::new(dnf::Dnf)
    }
}

/// The packages of a build: the type's set, the distro's own, the kernel, the extras,
/// minus what the release does not have; each once, in order.
pub(crate) fn package_list(
    m: &Manifest,
    spec: &BuildSpec,
    release: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let t = m.resolve_type(spec.livenet_type).map_err(|e| Error::Yaml {
        path: m.path.clone(),
        msg: format!("types.{}: {e}", spec.livenet_type.as_str()),
    })?;
    let arch = spec.arch.for_distro(spec.distro);
    let kernel = t.kernel.as_ref().unwrap_or(&m.kernel);
    let kernel = kernel.for_arch(arch).ok_or_else(|| Error::Yaml {
        path: m.path.clone(),
        msg: format!("kernel: no kernel package for architecture {arch}"),
    })?;
    let drop = m.release_drop.get(release).cloned().unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    let distro_pkgs = &m.distro(spec.distro.as_str())?.packages;
    for p in t
        .packages
        .iter()
        .chain(distro_pkgs.iter())
        .chain(std::iter::once(&kernel.to_string()))
        .chain(spec.extra_packages.iter())
    {
        if !out.contains(p) && !drop.contains(p) {
            out.push(p.clone());
        }
    }
    Ok((out, t.groups))
}

/// Checks the build target: absolute, and absent or an empty directory.
pub(crate) fn check_target(target: &Path) -> Result<()> {
    if !target.is_absolute() {
        return Err(Error::invalid(format!(
            "build target {} must be an absolute path",
            target.display()
        )));
    }
    if target.parent().is_none() {
        return Err(Error::invalid("refusing to build into /"));
    }
    match std::fs::read_dir(target) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::invalid(format!(
                    "build target {} is not empty: remove it or choose another directory",
                    target.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Removes a partial tree after a failed build (safely: unmounts what a tool left below).
pub(crate) fn discard_partial(ctx: &Ctx, target: &Path, existed: bool) {
    let res = if existed {
        crate::sys::remove::clear_dir(&ctx.runner, target)
    } else {
        crate::sys::remove::remove_tree(&ctx.runner, target)
    };
    if let Err(e) = res {
        tracing::warn!(
            "could not remove the partial tree {}: {e} (remove it by hand)",
            target.display()
        );
    }
}

/// What a failed package-manager run says, as a typed error when it is recognised:
/// packages that do not exist, a mirror that does not answer.
pub fn classify_failure(tail: &str, sources: &[String], fix_mirror: &str) -> Option<Error> {
    let mut missing: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        let p = p.trim().trim_matches(|c| c == '\'' || c == '"' || c == '`');
        if !p.is_empty() && !missing.iter().any(|m| m == p) {
            missing.push(p.to_string());
        }
    };
    for line in tail.lines() {
        let l = line.trim();
        let l = l.strip_prefix("E: ").unwrap_or(l);
        if let Some(p) = l.strip_prefix("Unable to locate package ") {
            add(p);
        } else if let Some(rest) = l.strip_prefix("Package '") {
            if let Some((p, _)) = rest.split_once("' has no installation candidate") {
                add(p);
            }
        } else if let Some(rest) = l.strip_prefix("Couldn't find any package by ") {
            // "glob 'x'" / "regex 'x'"
            if let Some((_, p)) = rest.split_once(' ') {
                add(p);
            }
        } else if let Some(p) = l.strip_prefix("No match for argument: ") {
            add(p);
        } else if let Some(ps) = l.strip_prefix("Error: Unable to find a match: ") {
            for p in ps.split_whitespace() {
                add(p);
            }
        } else if let Some(rest) = l.strip_prefix("Version '") {
            if let Some((_, p)) = rest.split_once("' for '") {
                add(p.trim_end_matches("' was not found"));
            }
        }
    }
    if !missing.is_empty() {
        return Some(Error::PackageNotFound {
            packages: missing.join(", "),
            sources: sources.join(", "),
        });
    }
    // Mirror problems: name the configured source whose URL the failing fetch starts with.
    let source_of = |url: &str| -> String {
        sources
            .iter()
            .filter(|s| url.starts_with(s.trim_end_matches('/')))
            .max_by_key(|s| s.len())
            .cloned()
            .unwrap_or_else(|| url.to_string())
    };
    for line in tail.lines() {
        let l = line.trim();
        let l = l.strip_prefix("E: ").unwrap_or(l);
        if let Some(rest) = l.strip_prefix("Failed to fetch ") {
            let (url, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return Some(Error::MirrorUnreachable {
                url: source_of(url),
                reason: reason.trim().to_string(),
                fix: fix_mirror.to_string(),
            });
        }
        if let Some(rest) = l.strip_prefix("The repository '") {
            if let Some((what, _)) = rest.split_once("' does not have a Release file") {
                let url = what.split_whitespace().next().unwrap_or(what);
                return Some(Error::MirrorUnreachable {
                    url: source_of(url),
                    reason: format!(
                        "it has no Release file for {what:?} (wrong release for this mirror?)"
                    ),
                    fix: fix_mirror.to_string(),
                });
            }
        }
        // dnf 4 / 5
        if let Some(rest) = l.strip_prefix("Error: Failed to download metadata for repo '") {
            let repo = rest.split('\'').next().unwrap_or(rest);
            return Some(Error::MirrorUnreachable {
                url: sources
                    .iter()
                    .find(|s| s.starts_with(&format!("{repo}=")))
                    .cloned()
                    .unwrap_or_else(|| format!("repo {repo}")),
                reason: "cannot download its metadata".into(),
                fix: fix_mirror.to_string(),
            });
        }
    }
    None
}

/// The kernel versions present in a tree: `usr/lib/modules/<ver>` (or `lib/modules`)
/// with `boot/vmlinuz-<ver>` or `modules/<ver>/vmlinuz`, newest last.
pub fn kernel_versions(tree: &Path) -> Result<Vec<String>> {
    let mut dirs = vec![tree.join("usr/lib/modules")];
    // `lib` is a symlink to `usr/lib` on merged-/usr trees: only a real directory adds.
    let lib = tree.join("lib");
    if std::fs::symlink_metadata(&lib).is_ok_and(|m| m.is_dir()) {
        dirs.push(lib.join("modules"));
    }
    let mut out: Vec<String> = Vec::new();
    for d in dirs {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&d, e)),
        };
        for e in rd {
            let e = e.at(&d)?;
            let ver = e.file_name().to_string_lossy().into_owned();
            if !std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let has_image = tree.join("boot").join(format!("vmlinuz-{ver}")).is_file()
                || e.path().join("vmlinuz").is_file();
            if has_image && !out.contains(&ver) {
                out.push(ver);
            }
        }
    }
    out.sort_by(|a, b| version_cmp(a, b));
    Ok(out)
}

/// The kernel version of a tree (the newest when there are several).
pub fn kernel_version(tree: &Path) -> Result<String> {
    kernel_versions(tree)?.pop().ok_or_else(|| Error::Tree {
        tree: tree.to_path_buf(),
        msg: "the image has no kernel (no usr/lib/modules/<version> with a matching boot/vmlinuz-<version>): add the kernel package".into(),
    })
}

/// Compares versions numerically where they are numbers: 6.1.0-10 < 6.1.0-9 is false.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, String)> {
        let mut v: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match v.last_mut() {
                Some((ld, t)) if *ld == d => t.push(c),
                _ => v.push((d, c.to_string())),
            }
        }
        v
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let (xs, ys) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys))
            }
            _ => x.1.cmp(&y.1),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The config file name for messages ("the config file" when built-in defaults).
pub(crate) fn config_name(ctx: &Ctx) -> String {
    ctx.cfg
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| crate::config::DEFAULT_CONFIG.to_string())
}

/// Replaces `{key}` placeholders.
pub(crate) fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// `9.4` -> `9`.
pub(crate) fn major(release: &str) -> &str {
    release.split('.').next().unwrap_or(release)
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::config::Config;
    use crate::ctx::Ctx;
    use crate::sys::runner::Runner;

    /// A context whose data_dir is the source tree (the shipped manifests).
    pub fn ctx(dir: &std::path::Path) -> Ctx {
        let mut cfg = Config::under_root(dir).unwrap();
        cfg.data_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Ctx::new(cfg, Runner::new(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distro_errors_list_allowed_values() {
        let e = Distro::parse("centos").unwrap_err().to_string();
        assert!(
            e.contains("debian, ubuntu, rocky, alma, rhel, fedora"),
            "{e}"
        );
        assert_eq!(Distro::parse("AlmaLinux").unwrap(), Distro::Alma);
        assert_eq!(Distro::Rocky.family(), "el");
    }

    #[test]
    fn spec_validation() {
        let mut s = BuildSpec::new("debian", LivenetType::Core).unwrap();
        assert!(s.validate().is_ok());
        s.extra_packages = vec!["--allow-unauthenticated".into()];
        assert!(s.validate().is_err());
        s.extra_packages = vec!["vim".into()];
        s.mirror = Some("deb.debian.org/debian".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("mirror") && e.contains("http://"), "{e}");
        s.mirror = None;
        s.components = vec!["main contrib".into()];
        assert!(s.validate().is_err());
    }

    #[test]
    fn release_resolution() {
        let d = tempfile::tempdir().unwrap();
        let ctx = testutil::ctx(d.path());
        let mut s = BuildSpec::new("debian", LivenetType::Core).unwrap();
        assert_eq!(s.resolve(&ctx).unwrap().1, "bookworm");
        s.release = Some("13".into());
        assert_eq!(s.resolve(&ctx).unwrap().1, "trixie");
        s.release = Some("noble".into());
        let e = s.resolve(&ctx).unwrap_err().to_string();
        assert!(e.contains("noble") && e.contains("bookworm"), "{e}");
        let s = BuildSpec::new("rocky", LivenetType::Core).unwrap();
        assert_eq!(s.resolve(&ctx).unwrap().1, "9");
    }

    #[test]
    fn packages_include_kernel_and_extras_once() {
        let d = tempfile::tempdir().unwrap();
        let ctx = testutil::ctx(d.path());
        let mut s = BuildSpec::new("debian", LivenetType::Small).unwrap();
        s.arch = Arch::X86_64;
        s.extra_packages = vec!["vim".into(), "systemd".into()];
        let (m, rel) = s.resolve(&ctx).unwrap();
        let (p, g) = package_list(&m, &s, &rel).unwrap();
        assert!(g.is_empty());
        assert!(p.contains(&"linux-image-amd64".to_string()));
        assert!(p.contains(&"vim".to_string()));
        assert!(p.contains(&"systemd-resolved".to_string()));
        assert_eq!(p.iter().filter(|x| *x == "systemd").count(), 1);
        // bullseye has no separate systemd-resolved
        let (p, _) = package_list(&m, &s, "bullseye").unwrap();
        assert!(!p.contains(&"systemd-resolved".to_string()));
        s.arch = Arch::Aarch64;
        let (p, _) = package_list(&m, &s, &rel).unwrap();
        assert!(p.contains(&"linux-image-arm64".to_string()));
    }

    #[test]
    fn classifies_apt_failures() {
        let tail = "Building dependency tree...\nE: Unable to locate package nosuchpkg-xyz\nE: setup failed: E: apt-get ... failed\nE: mmdebstrap failed to run";
        let e = classify_failure(tail, &["http://deb.debian.org/debian".into()], "fix")
            .unwrap()
            .to_string();
        assert!(
            e.contains("nosuchpkg-xyz") && e.contains("deb.debian.org"),
            "{e}"
        );
        let tail = "E: Package 'foo' has no installation candidate";
        assert!(classify_failure(tail, &[], "")
            .unwrap()
            .to_string()
            .contains("foo"));
        let tail = "Err:1 http://127.0.0.1:9/debian bookworm InRelease\n  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\nE: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\nE: Some index files failed to download.";
        let e = classify_failure(
            tail,
            &[
                "http://127.0.0.1:9/debian".into(),
                "http://security.debian.org/debian-security".into(),
            ],
            "set mirrors.debian",
        )
        .unwrap();
        match &e {
            Error::MirrorUnreachable { url, reason, .. } => {
                assert_eq!(url, "http://127.0.0.1:9/debian");
                assert!(reason.contains("Connection refused"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let tail = "No match for argument: nosuch\nError: Unable to find a match: nosuch other";
        let e = classify_failure(tail, &[], "").unwrap().to_string();
        assert!(e.contains("nosuch, other"), "{e}");
        assert!(classify_failure("E: something else", &[], "").is_none());
    }

    #[test]
    fn kernel_version_finds_the_newest_with_an_image() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        let e = kernel_version(t).unwrap_err().to_string();
        assert!(e.contains("add the kernel package"), "{e}");
        for v in ["6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-11-amd64"] {
            std::fs::create_dir_all(t.join("usr/lib/modules").join(v)).unwrap();
        }
        std::fs::create_dir_all(t.join("boot")).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.join("lib")).unwrap();
        // modules without an image do not count
        assert!(kernel_version(t).is_err());
        std::fs::write(t.join("boot/vmlinuz-6.1.0-9-amd64"), b"k").unwrap();
        std::fs::write(t.join("boot/vmlinuz-6.1.0-10-amd64"), b"k").unwrap();
        assert_eq!(kernel_version(t).unwrap(), "6.1.0-10-amd64");
        // EL style: the image inside the modules dir
        std::fs::write(t.join("usr/lib/modules/6.1.0-11-amd64/vmlinuz"), b"k").unwrap();
        assert_eq!(
            kernel_versions(t).unwrap(),
            vec!["6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-11-amd64"]
        );
    }

    #[test]
    fn target_must_be_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(check_target(&d.path().join("new")).is_ok());
        assert!(check_target(d.path()).is_ok());
        std::fs::write(d.path().join("x"), b"").unwrap();
        assert!(check_target(d.path()).is_err());
        assert!(check_target(Path::new("rel/dir")).is_err());
    }
}
