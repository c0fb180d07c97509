//! Debian and Ubuntu trees with mmdebstrap.
use std::path::{Path, PathBuf};

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::sys::runner::Cmd;

use super::{
    check_target, classify_failure, config_name, discard_partial, fill, package_list, BuildSpec,
    Manifest, RootBuilder,
};

/// Where the mirror of a build comes from (shown by `describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorSource {
    Spec,
    Config,
    Host(PathBuf),
    Manifest,
}

impl MirrorSource {
    fn label(&self, distro: &str) -> String {
        match self {
            MirrorSource::Spec => "given for this build".into(),
            MirrorSource::Config => format!("config mirrors.{distro}"),
            MirrorSource::Host(f) => format!("the host's apt sources, {}", f.display()),
            MirrorSource::Manifest => "manifest default".into(),
        }
    }
}

/// Everything the mmdebstrap command is made of.
#[derive(Debug, Clone)]
pub struct Plan {
    pub manifest: Manifest,
    pub release: String,
    pub variant: String,
    pub packages: Vec<String>,
    pub components: Vec<String>,
    pub mirror: String,
    pub mirror_source: MirrorSource,
    /// Extra `deb ...` lines (updates, security) when the mirror was not explicit.
    pub extra_sources: Vec<String>,
    pub keyring: Option<PathBuf>,
    pub arch: String,
}

impl Plan {
    /// The base URLs of every source, for error messages.
    pub fn source_urls(&self) -> Vec<String> {
        let mut v = vec![self.mirror.clone()];
        for l in &self.extra_sources {
            if let Some(u) = l.split_whitespace().nth(1) {
                if !v.iter().any(|x| x == u) {
                    v.push(u.to_string());
                }
            }
        }
        v
    }
}

/// The mmdebstrap builder.
pub struct Mmdebstrap;

/// Resolves the spec against the manifest, the config and the host.
pub fn plan(ctx: &Ctx, spec: &BuildSpec) -> Result<Plan> {
    plan_with_host_root(ctx, spec, Path::new("/"))
}

pub(crate) fn plan_with_host_root(ctx: &Ctx, spec: &BuildSpec, host: &Path) -> Result<Plan> {
    if !spec.distro.is_deb() {
        return Err(Error::invalid(format!(
            "mmdebstrap builds Debian and Ubuntu trees, not {}",
            spec.distro.as_str()
        )));
    }
    let (m, release) = spec.resolve(ctx)?;
    let d = m.distro(spec.distro.as_str())?.clone();
    let (packages, _groups) = package_list(&m, spec, &release)?;
    let rt = m.resolve_type(spec.livenet_type).map_err(Error::invalid)?;
    let variant = rt.variant.unwrap_or_else(|| "minbase".to_string());
    let components = if spec.components.is_empty() {
        m.components.clone()
    } else {
        spec.components.clone()
    };
    if components.is_empty() {
        return Err(Error::Yaml {
            path: m.path.clone(),
            msg: "components: at least one component (main) is needed".into(),
        });
    }
    let distro = spec.distro.as_str();
    let (mirror, mirror_source) = if let Some(u) = &spec.mirror {
        (u.clone(), MirrorSource::Spec)
    } else if let Some(u) = ctx.cfg.mirror(distro) {
        super::check_url(u).map_err(|e| Error::Config {
            file: config_name(ctx),
            msg: format!("mirrors.{distro}: {e}"),
        })?;
        (u.to_string(), MirrorSource::Config)
    } else if let Some((u, f)) = host_mirror(host, distro) {
        (u, MirrorSource::Host(f))
    } else {
        let u = d.mirror.clone().ok_or_else(|| Error::Yaml {
            path: m.path.clone(),
            msg: format!("distros.{distro}.mirror: missing"),
        })?;
        (u, MirrorSource::Manifest)
    };
    let mirror = mirror.trim_end_matches('/').to_string();
    let explicit = matches!(mirror_source, MirrorSource::Spec | MirrorSource::Config);
    let comps = components.join(" ");
    let extra_sources = if explicit || d.updates_except.contains(&release) {
        Vec::new()
    } else {
        d.updates
            .iter()
            .map(|l| {
                fill(
                    l,
                    &[
                        ("mirror", &mirror),
                        ("release", &release),
                        ("components", &comps),
                    ],
                )
            })
            .collect()
    };
    Ok(Plan {
        release,
        variant,
        packages,
        components,
        mirror,
        mirror_source,
        extra_sources,
        keyring: d.keyring.as_ref().map(PathBuf::from),
        arch: spec.arch.deb().to_string(),
        manifest: m,
    })
}

/// The host's own mirror for `distro`, when the host runs that distro: the first `deb`
/// source whose suites include the host's codename (so not the security archive).
pub fn host_mirror(root: &Path, distro: &str) -> Option<(String, PathBuf)> {
    let osr = std::fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
        .ok()?;
    let val = |k: &str| {
        osr.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    if val("ID")? != distro {
        return None;
    }
    let codename = val("VERSION_CODENAME")?;
    let mut files = vec![root.join("etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir(root.join("etc/apt/sources.list.d")) {
        let mut more: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let found = if f.extension().is_some_and(|x| x == "sources") {
            deb822_mirror(&text, &codename)
        } else {
            one_line_mirror(&text, &codename)
        };
        if let Some(u) = found {
            return Some((u, f));
        }
    }
    None
}

fn one_line_mirror(text: &str, codename: &str) -> Option<String> {
    for l in text.lines() {
        let l = l.trim();
        let Some(rest) = l.strip_prefix("deb ") else {
            continue;
        };
        // Skip `[ options ]`.
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']').map(|(_, a)| a).unwrap_or(""),
            None => rest,
        };
        let mut w = rest.split_whitespace();
        let (Some(url), Some(suite)) = (w.next(), w.next()) else {
            continue;
        };
        if suite == codename && super::check_url(url).is_ok() {
            return Some(url.to_string());
        }
    }
    None
}

fn deb822_mirror(text: &str, codename: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let mut types = "";
        let mut uris = "";
        let mut suites = "";
        let mut enabled = true;
        for l in stanza.lines() {
            if l.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = l.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "types" => types = v.trim(),
                    "uris" => uris = v.trim(),
                    "suites" => suites = v.trim(),
                    "enabled" => enabled = v.trim() != "no",
                    _ => {}
                }
            }
        }
        if enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == codename)
        {
            if let Some(u) = uris
                .split_whitespace()
                .find(|u| super::check_url(u).is_ok())
            {
                return Some(u.to_string());
            }
        }
    }
    None
}

/// The mmdebstrap command of a plan.
pub fn command(plan: &Plan, spec: &BuildSpec, target: &Path) -> Cmd {
    let mut c = Cmd::new("mmdebstrap")
        .package("mmdebstrap")
        // Debian's own initramfs in the tree is useless for livenet: skip it (-24 s).
        .env("INITRD", "No")
        // apt's messages in English: the failure classifier reads them.
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .arg(format!("--variant={}", plan.variant))
        .arg(format!("--arch={}", plan.arch))
        .arg(format!("--components={}", plan.components.join(",")))
        .arg(format!(
            "--include={}",
            super::pkglist::pinned_includes(&plan.packages, &spec.pins).join(",")
        ))
        .arg("--aptopt=Acquire::Retries \"3\"")
        .arg("--aptopt=APT::Install-Recommends \"false\"");
    // Reproducible builds (issue 15): mmdebstrap's reproducible mode reads the epoch;
    // a rebuild pins every package of the recorded manifest (build::pkglist).
    if let Some(e) = spec.epoch {
        c = c.env(super::reproducible::ENV, e.to_string());
    }
    c = super::pkglist::pin_mmdebstrap(c, &spec.pins, target);
    if let Some(k) = &plan.keyring {
        c = c.arg(format!("--keyring={}", k.display()));
    }
    if spec.optimize {
        for p in &plan.manifest.optimize.path_exclude {
            c = c.arg(format!("--dpkgopt=path-exclude={p}"));
        }
        for p in &plan.manifest.optimize.path_include {
            c = c.arg(format!("--dpkgopt=path-include={p}"));
        }
    }
    c = c.arg(&plan.release).arg(target).arg(&plan.mirror);
    for l in &plan.extra_sources {
        c = c.arg(l);
    }
    c
}

fn mirror_fix(ctx: &Ctx, distro: &str) -> String {
    format!(
        "check the URL and the network/proxy; set the mirror with `mirrors: {{{distro}: URL}}` in {} or per build",
        config_name(ctx)
    )
}

impl RootBuilder for Mmdebstrap {
    fn tool(&self) -> &'static str {
        "mmdebstrap"
    }

    fn command(&self, ctx: &Ctx, spec: &BuildSpec, target: &Path) -> Result<Cmd> {
        let p = plan(ctx, spec)?;
        Ok(command(&p, spec, target))
    }

    fn describe(&self, ctx: &Ctx, spec: &BuildSpec) -> Result<Vec<String>> {
        let p = plan(ctx, spec)?;
        let distro = spec.distro.as_str();
        let mut v = vec![
            format!(
                "{distro} {} ({}), {}, mmdebstrap --variant={}",
                p.release,
                spec.livenet_type.as_str(),
                p.arch,
                p.variant
            ),
            format!("packages: {}", p.packages.join(" ")),
            format!(
                "mirror: {} ({}), components: {}",
                p.mirror,
                p.mirror_source.label(distro),
                p.components.join(" ")
            ),
        ];
        for l in &p.extra_sources {
            v.push(format!("also: {l}"));
        }
        if spec.optimize {
            v.push(format!(
                "optimize: dpkg excludes {}",
                p.manifest.optimize.path_exclude.join(" ")
            ));
        }
        Ok(v)
    }

    fn build(&self, ctx: &Ctx, spec: &BuildSpec, target: &Path) -> Result<()> {
        let p = plan(ctx, spec)?;
        check_target(target)?;
        if let Some(k) = &p.keyring {
            if !k.is_file() && !ctx.runner.dry_run() {
                let pkg = if spec.distro == super::Distro::Ubuntu {
                    "ubuntu-keyring"
                } else {
                    "debian-archive-keyring"
                };
                return Err(Error::invalid(format!(
                    "the archive keyring {} is missing: install it (e.g. `apt-get install {pkg}`) or set keyring: in {}",
                    k.display(),
                    p.manifest.path.display()
                )));
            }
        }
        let existed = target.exists();
        if !spec.pins.is_empty() && !ctx.runner.dry_run() {
            super::pkglist::write_pin_file(target, &spec.pins)?;
        }
        let cmd = command(&p, spec, target);
        let out = ctx.runner.run_unchecked(&cmd)?;
        if !spec.pins.is_empty() && !ctx.runner.dry_run() && target.exists() {
            super::pkglist::unpin_tree(target)?;
        }
        if !out.success {
            discard_partial(ctx, target, existed);
            let fix = mirror_fix(ctx, spec.distro.as_str());
            return Err(classify_failure(&out.tail, &p.source_urls(), &fix)
                .unwrap_or_else(|| crate::sys::runner::command_error(&cmd, &out)));
        }
        if ctx.runner.dry_run() {
            return Ok(());
        }
        clean_apt(ctx, target)?;
        // A tree without a kernel or without /etc/shadow is not an image: say so now,
        // not at setup or boot time.
        super::kernel_version(target)?;
        if !target.join("etc/shadow").is_file() {
            return Err(Error::Tree {
                tree: target.to_path_buf(),
                msg: "mmdebstrap succeeded but etc/shadow is missing: the tree is incomplete"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Removes apt's package lists and caches (mmdebstrap does most of it already).
fn clean_apt(ctx: &Ctx, tree: &Path) -> Result<()> {
    for dir in ["var/lib/apt/lists", "var/cache/apt"] {
        let d = tree.join(dir);
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let keep = name == "lock" || name == "partial" || name == "archives";
            if !keep {
                crate::sys::remove::remove_tree(&ctx.runner, &e.path())?;
            }
        }
    }
    let arch = tree.join("var/cache/apt/archives");
    if let Ok(rd) = std::fs::read_dir(&arch) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                crate::sys::remove::remove_tree(&ctx.runner, &e.path())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{testutil, Arch};
    use crate::store::record::LivenetType;

    fn args(c: &Cmd) -> Vec<String> {
        c.get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn spec(t: LivenetType) -> BuildSpec {
        let mut s = BuildSpec::new("debian", t).unwrap();
        s.arch = Arch::X86_64;
        s
    }

    #[test]
    fn command_for_core_bookworm() {
        let d = tempfile::tempdir().unwrap();
        let ctx = testutil::ctx(d.path());
        let s = spec(LivenetType::Core);
        let p = plan_with_host_root(&ctx, &s, d.path()).unwrap();
        assert_eq!(p.mirror_source, MirrorSource::Manifest);
        let c = command(&p, &s, Path::new("/t/tree"));
        let a = args(&c);
        assert_eq!(c.program(), "mmdebstrap");
        assert!(a.contains(&"--variant=minbase".to_string()), "{a:?}");
        assert!(a.contains(&"--arch=amd64".to_string()));
        assert!(a.contains(&"--components=main".to_string()));
        let inc = a.iter().find(|x| x.starts_with("--include=")).unwrap();
        for pkg in ["systemd", "openssh-server", "linux-image-amd64", "udev"] {
            assert!(inc.split([',', '=']).any(|x| x == pkg), "{inc}");
        }
        let pos = a.iter().position(|x| x == "bookworm").unwrap();
        assert_eq!(a[pos + 1], "/t/tree");
        assert_eq!(a[pos + 2], "http://deb.debian.org/debian");
        assert!(a[pos + 3..]
            .iter()
            .any(|l| l == "deb http://deb.debian.org/debian bookworm-updates main"));
        assert!(a[pos + 3..].iter().any(|l| l.contains("bookworm-security")));
        assert!(!a.iter().any(|x| x.starts_with("--dpkgopt")));
        assert!(c.display().contains("INITRD=No"));
    }

    #[test]
    fn explicit_mirror_is_used_alone_and_optimize_filters() {
        let d = tempfile::tempdir().unwrap();
        let mut ctx = testutil::ctx(d.path());
        let mut s = spec(LivenetType::Standard);
        s.optimize = true;
        s.components = vec!["main".into(), "contrib".into()];
        ctx.cfg
            .mirrors
            .insert("debian".into(), "http://mirror.local/debian/".into());
        let p = plan_with_host_root(&ctx, &s, d.path()).unwrap();
        assert_eq!(p.mirror, "http://mirror.local/debian");
        assert_eq!(p.mirror_source, MirrorSource::Config);
        assert!(p.extra_sources.is_empty());
        let a = args(&command(&p, &s, Path::new("/t")));
        assert!(a.contains(&"--components=main,contrib".to_string()));
        assert!(a.contains(&"--dpkgopt=path-exclude=/usr/share/doc/*".to_string()));
        assert!(a.contains(&"--dpkgopt=path-include=/usr/share/doc/*/copyright".to_string()));
        // the spec wins over the config
        s.mirror = Some("http://other/debian".into());
        let p = plan_with_host_root(&ctx, &s, d.path()).unwrap();
        assert_eq!(p.mirror, "http://other/debian");
        assert_eq!(p.mirror_source, MirrorSource::Spec);
    }

    #[test]
    fn host_sources_are_used_for_the_same_distro() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        std::fs::create_dir_all(h.join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(
            h.join("etc/os-release"),
            "ID=debian\nVERSION_CODENAME=bookworm\n",
        )
        .unwrap();
        std::fs::write(
            h.join("etc/apt/sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://local.mirror/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\n# comment\nURIs: http://local.mirror/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
        )
        .unwrap();
        let (u, f) = host_mirror(h, "debian").unwrap();
        assert_eq!(u, "http://local.mirror/debian");
        assert!(f.ends_with("debian.sources"));
        assert!(host_mirror(h, "ubuntu").is_none());
        std::fs::write(
            h.join("etc/apt/sources.list"),
            "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://one.line/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            host_mirror(h, "debian").unwrap().0,
            "http://one.line/debian"
        );
        let ctx = testutil::ctx(h);
        let p = plan_with_host_root(&ctx, &spec(LivenetType::Core), h).unwrap();
        assert!(matches!(p.mirror_source, MirrorSource::Host(_)));
        assert!(p
            .extra_sources
            .iter()
            .any(|l| l == "deb http://one.line/debian bookworm-updates main"));
    }

    #[test]
    fn ubuntu_uses_universe_and_its_keyring() {
        let d = tempfile::tempdir().unwrap();
        let ctx = testutil::ctx(d.path());
        let mut s = BuildSpec::new("ubuntu", LivenetType::Core).unwrap();
        s.arch = Arch::X86_64;
        let p = plan_with_host_root(&ctx, &s, d.path()).unwrap();
        assert_eq!(p.release, "noble");
        let a = args(&command(&p, &s, Path::new("/t")));
        assert!(a.contains(&"--components=main,universe".to_string()));
        assert!(a.iter().any(|x| x.contains("ubuntu-archive-keyring.gpg")));
        assert!(a.iter().any(|x| x.contains("linux-image-virtual")));
    }

    #[test]
    fn describe_names_the_mirror_source() {
        let d = tempfile::tempdir().unwrap();
        let mut ctx = testutil::ctx(d.path());
        ctx.cfg
            .mirrors
            .insert("debian".into(), "http://m/debian".into());
        let lines = Mmdebstrap.describe(&ctx, &spec(LivenetType::Core)).unwrap();
        assert!(lines[0].starts_with("debian bookworm (core)"), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.contains("config mirrors.debian")),
            "{lines:?}"
        );
    }

    #[test]
    fn dry_run_records_the_command_and_touches_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut ctx = testutil::ctx(d.path());
        ctx.runner = crate::sys::runner::Runner::new(true);
        let target = d.path().join("tree");
        Mmdebstrap
            .build(&ctx, &spec(LivenetType::Core), &target)
            .unwrap();
        assert!(!target.exists());
        let plan = ctx.runner.plan();
        assert!(
            plan.iter()
                .any(|l| l.starts_with("+ INITRD=No") && l.contains("mmdebstrap")),
            "{plan:?}"
        );
    }
}
