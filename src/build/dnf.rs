//! Rocky, AlmaLinux, RHEL and Fedora trees with `dnf --installroot`.
//!
//! Repositories: the config's `dnf_repos:` (with `gpg_keys:`), else the manifest's
//! default repos for the distro (with their key), else the host's `/etc/yum.repos.d`.
//! Signature checking stays on; a build that would run it without a key is refused up
//! front with the config key to set (the reference's most reported failure).
use std::path::{Path, PathBuf};

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::sys::runner::Cmd;

use super::{
    check_target, check_url, classify_failure, config_name, discard_partial, fill, major,
    package_list, BuildSpec, Manifest, RootBuilder,
};

/// Where the repositories of a build come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSource {
    Config,
    Manifest,
    /// The host's repo files (`/etc/yum.repos.d`).
    Host,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub manifest: Manifest,
    pub release: String,
    pub packages: Vec<String>,
    pub groups: Vec<String>,
    /// (name, baseurl) passed with `--repofrompath`; empty with the host's repos.
    pub repos: Vec<(String, String)>,
    pub repo_source: RepoSource,
    pub gpg_keys: Vec<String>,
    pub arch: String,
}

pub struct Dnf;

fn host_repos_dir() -> PathBuf {
    PathBuf::from("/etc/yum.repos.d")
}

pub fn plan(ctx: &Ctx, spec: &BuildSpec) -> Result<Plan> {
    plan_with_repos_dir(ctx, spec, &host_repos_dir())
}

pub(crate) fn plan_with_repos_dir(ctx: &Ctx, spec: &BuildSpec, reposdir: &Path) -> Result<Plan> {
    if spec.distro.is_deb() {
        return Err(Error::invalid(format!(
            "dnf builds Rocky, Alma, RHEL and Fedora trees, not {}",
            spec.distro.as_str()
        )));
    }
    let (m, release) = spec.resolve(ctx)?;
    let distro = spec.distro.as_str();
    let d = m.distro(distro)?.clone();
    let (packages, groups) = package_list(&m, spec, &release)?;
    let arch = spec.arch.rpm().to_string();
    let vars = [
        ("release", release.as_str()),
        ("major", major(&release)),
        ("arch", arch.as_str()),
    ];
    let cfgname = config_name(ctx);
    let hint = d
        .gpg_key_hint
        .as_deref()
        .map(|h| fill(h, &vars))
        .unwrap_or_else(|| "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-...".into());
    let missing_key = |repos: String| Error::GpgKeyMissing {
        distro: format!("{distro} {release}"),
        repos,
        hint: hint.clone(),
        config: cfgname.clone(),
    };
    let (repos, repo_source, gpg_keys) = if !ctx.cfg.dnf_repos.is_empty() {
        let mut repos = Vec::new();
        for (name, url) in &ctx.cfg.dnf_repos {
            check_repo_name(name).map_err(|e| Error::Config {
                file: cfgname.clone(),
                msg: format!("dnf_repos: {e}"),
            })?;
            let url = fill(url, &vars);
            check_url(&url).map_err(|e| Error::Config {
                file: cfgname.clone(),
                msg: format!("dnf_repos.{name}: {e}"),
            })?;
            repos.push((name.clone(), url));
        }
        if spec.gpgcheck && ctx.cfg.gpg_keys.is_empty() {
            return Err(missing_key(
                repos
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        (repos, RepoSource::Config, ctx.cfg.gpg_keys.clone())
    } else if !d.repos.is_empty() {
        let repos: Vec<(String, String)> = d
            .repos
            .iter()
            .map(|(n, u)| (n.clone(), fill(u, &vars)))
            .collect();
        let keys = if !ctx.cfg.gpg_keys.is_empty() {
            ctx.cfg.gpg_keys.clone()
        } else {
            d.gpg_key.iter().map(|k| fill(k, &vars)).collect()
        };
        if spec.gpgcheck && keys.is_empty() {
            return Err(missing_key(
                repos
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        (repos, RepoSource::Manifest, keys)
    } else {
        let sections = host_repo_sections(reposdir);
        if sections.is_empty() {
            return Err(Error::Config {
                file: cfgname.clone(),
                msg: format!(
                    "no dnf repositories for {distro}: set `dnf_repos: {{baseos: URL, appstream: URL}}` and `gpg_keys: [{hint}]`, or build on a host whose {} has them",
                    reposdir.display()
                ),
            });
        }
        if spec.gpgcheck && ctx.cfg.gpg_keys.is_empty() {
            let keyless: Vec<String> = sections
                .iter()
                .filter(|s| s.enabled && s.gpgcheck && !s.has_key)
                .map(|s| s.name.clone())
                .collect();
            if !keyless.is_empty() {
                return Err(missing_key(keyless.join(", ")));
            }
        }
        (Vec::new(), RepoSource::Host, ctx.cfg.gpg_keys.clone())
    };
    for k in &gpg_keys {
        if !(k.starts_with("file:///") || k.starts_with("https://") || k.starts_with("http://")) {
            return Err(Error::Config {
                file: cfgname.clone(),
                msg: format!("gpg_keys: {k:?} must be a file:///... or https://... URL"),
            });
        }
    }
    Ok(Plan {
        manifest: m,
        release,
        packages,
        groups,
        repos,
        repo_source,
        gpg_keys,
        arch,
    })
}

fn check_repo_name(n: &str) -> std::result::Result<(), String> {
    if !n.is_empty()
        && !n.starts_with('-')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        Ok(())
    } else {
        Err(format!(
            "repo name {n:?} is not valid: use letters, digits, - _ . :"
        ))
    }
}

#[derive(Debug)]
struct HostRepo {
    name: String,
    enabled: bool,
    gpgcheck: bool,
    has_key: bool,
}

/// The sections of the host's `.repo` files (enabled, gpgcheck, whether a key is named).
fn host_repo_sections(dir: &Path) -> Vec<HostRepo> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "repo"))
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for l in text.lines() {
            let l = l.trim();
            if let Some(name) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                out.push(HostRepo {
                    name: name.to_string(),
                    enabled: true,
                    gpgcheck: true,
                    has_key: false,
                });
                continue;
            }
            let Some(cur) = out.last_mut() else { continue };
            if let Some((k, v)) = l.split_once('=') {
                let v = v.trim();
                let on = matches!(v, "1" | "yes" | "true" | "True");
                match k.trim() {
                    "enabled" => cur.enabled = on,
                    "gpgcheck" => cur.gpgcheck = on,
                    "gpgkey" => cur.has_key = !v.is_empty(),
                    _ => {}
                }
            }
        }
    }
    out
}

/// The dnf command of a plan.
pub fn command(plan: &Plan, spec: &BuildSpec, target: &Path) -> Cmd {
    let mut c = Cmd::new("dnf")
        .package("dnf")
        .env("LC_ALL", "C.UTF-8")
        .arg("-y")
        .arg(format!("--installroot={}", target.display()))
        .arg(format!("--releasever={}", plan.release))
        .arg("--setopt=install_weak_deps=False")
        .arg("--setopt=keepcache=False");
    // issue 15: rpm's scriptlets and tools that honour it see the build's epoch.
    if let Some(e) = spec.epoch {
        c = c.env(super::reproducible::ENV, e.to_string());
    }
    if plan.arch != super::Arch::host().rpm() {
        c = c.arg(format!("--forcearch={}", plan.arch));
    }
    if spec.optimize && plan.manifest.optimize.nodocs {
        c = c.arg("--nodocs");
    }
    for (name, url) in &plan.repos {
        c = c.arg(format!("--repofrompath={name},{url}"));
    }
    for (name, _) in &plan.repos {
        c = c.arg(format!("--repo={name}"));
    }
    if spec.gpgcheck {
        let keys = plan.gpg_keys.join(",");
        if plan.repos.is_empty() {
            if !keys.is_empty() {
                c = c.arg(format!("--setopt=*.gpgkey={keys}"));
            }
        } else {
            for (name, _) in &plan.repos {
                c = c
                    .arg(format!("--setopt={name}.gpgcheck=1"))
                    .arg(format!("--setopt={name}.gpgkey={keys}"));
            }
        }
    } else {
        c = c.arg("--nogpgcheck");
    }
    if plan.repo_source == RepoSource::Host && uses_dnf5() {
        // dnf5 reads the installroot's config unless told otherwise.
        c = c.arg("--use-host-config");
    }
    c = c.arg("install");
    // issue 15: a rebuild asks for every recorded version (dnf has no pin file)
    for p in super::pkglist::pinned_rpm_specs(&plan.packages, &spec.pins) {
        c = c.arg(p);
    }
    for g in &plan.groups {
        c = c.arg(format!("@{g}"));
    }
    c
}

fn uses_dnf5() -> bool {
    std::fs::canonicalize("/usr/bin/dnf")
        .map(|p| p.file_name().is_some_and(|n| n == "dnf5"))
        .unwrap_or(false)
}

impl RootBuilder for Dnf {
    fn tool(&self) -> &'static str {
        "dnf"
    }

    fn command(&self, ctx: &Ctx, spec: &BuildSpec, target: &Path) -> Result<Cmd> {
        let p = plan(ctx, spec)?;
        Ok(command(&p, spec, target))
    }

    fn describe(&self, ctx: &Ctx, spec: &BuildSpec) -> Result<Vec<String>> {
        let p = plan(ctx, spec)?;
        let mut v = vec![
            format!(
                "{} {} ({}), {}, dnf --installroot",
                spec.distro.as_str(),
                p.release,
                spec.livenet_type.as_str(),
                p.arch
            ),
            format!(
                "packages: {}{}",
                p.packages.join(" "),
                p.groups
                    .iter()
                    .map(|g| format!(" @{g}"))
                    .collect::<String>()
            ),
        ];
        match p.repo_source {
            RepoSource::Host => v.push("repos: the host's /etc/yum.repos.d".into()),
            ref s => {
                let from = if *s == RepoSource::Config {
                    format!("config {}", config_name(ctx))
                } else {
                    "manifest default".into()
                };
                for (n, u) in &p.repos {
                    v.push(format!("repo {n}: {u} ({from})"));
                }
            }
        }
        if spec.gpgcheck {
            v.push(format!(
                "gpgcheck on, keys: {}",
                if p.gpg_keys.is_empty() {
                    "the host repos' own".to_string()
                } else {
                    p.gpg_keys.join(" ")
                }
            ));
        } else {
            v.push("gpgcheck OFF (--nogpgcheck)".into());
        }
        Ok(v)
    }

    fn build(&self, ctx: &Ctx, spec: &BuildSpec, target: &Path) -> Result<()> {
        let p = plan(ctx, spec)?;
        check_target(target)?;
        for k in &p.gpg_keys {
            if let Some(path) = k.strip_prefix("file://") {
                if !Path::new(path).is_file() && !ctx.runner.dry_run() {
                    return Err(Error::Config {
                        file: config_name(ctx),
                        msg: format!(
                            "gpg_keys: {path} does not exist on this host: install the distro's key package or give the key's https:// URL"
                        ),
                    });
                }
            }
        }
        let existed = target.exists();
        let r = &ctx.runner;
        super::tree::mkdir(r, target, "", 0o755)?;
        if spec.optimize {
            if let Some(langs) = &p.manifest.optimize.install_langs {
                super::tree::write(
                    r,
                    target,
                    "etc/rpm/macros.image-language-conf",
                    format!("%_install_langs {langs}\n").as_bytes(),
                    0o644,
                    "rpm: install only these languages",
                )?;
            }
        }
        let cmd = command(&p, spec, target);
        let out = match r.run_unchecked(&cmd) {
            Ok(o) => o,
            Err(e) => {
                discard_partial(ctx, target, existed);
                return Err(e);
            }
        };
        if !out.success {
            discard_partial(ctx, target, existed);
            let sources: Vec<String> = p.repos.iter().map(|(n, u)| format!("{n}={u}")).collect();
            let fix = format!(
                "check the URL and the network/proxy; set repos with `dnf_repos:` in {}",
                config_name(ctx)
            );
            return Err(classify_failure(&out.tail, &sources, &fix)
                .unwrap_or_else(|| crate::sys::runner::command_error(&cmd, &out)));
        }
        if r.dry_run() {
            return Ok(());
        }
        let cache = target.join("var/cache/dnf");
        if cache.is_dir() {
            crate::sys::remove::clear_dir(r, &cache)?;
        }
        super::kernel_version(target)?;
        if !target.join("etc/shadow").is_file() {
            return Err(Error::Tree {
                tree: target.to_path_buf(),
                msg: "dnf succeeded but etc/shadow is missing: the tree is incomplete".into(),
            });
        }
        Ok(())
    }
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

    fn spec(distro: &str, t: LivenetType) -> BuildSpec {
        let mut s = BuildSpec::new(distro, t).unwrap();
        s.arch = Arch::host();
        s
    }

    #[test]
    fn a_rebuild_asks_for_every_recorded_version() {
        let d = tempfile::tempdir().unwrap();
        let ctx = testutil::ctx(d.path());
        let mut s = spec("rocky", LivenetType::Core);
        s.pins = vec![
            ("bash".into(), "5.1.8-9.el9".into()),
            ("gpg-pubkey".into(), "350d275d-6279464b".into()),
            ("kernel".into(), "5.14.0-427.13.1.el9_4".into()),
            ("shadow-utils".into(), "2:4.9-8.el9".into()),
        ];
        let p = plan_with_repos_dir(&ctx, &s, d.path()).unwrap();
        assert!(
            p.packages.contains(&"kernel".to_string()),
            "{:?}",
            p.packages
        );
        let a = args(&command(&p, &s, Path::new("/t/root")));
        let inst = a.iter().position(|x| x == "install").unwrap();
        let asked = &a[inst + 1..];
        for want in [
            "bash-5.1.8-9.el9",
            "kernel-5.14.0-427.13.1.el9_4",
            "shadow-utils-2:4.9-8.el9",
        ] {
            assert!(asked.contains(&want.to_string()), "{want} not in {asked:?}");
        }
        // the plan's kernel only pinned, no key pseudo-package, the rest of the plan kept
        assert!(!asked.contains(&"kernel".to_string()), "{asked:?}");
        assert!(
            !asked.iter().any(|x| x.starts_with("gpg-pubkey")),
            "{asked:?}"
        );
        assert!(asked.contains(&"openssh-server".to_string()), "{asked:?}");
        // without pins: the names as planned
        s.pins.clear();
        let a = args(&command(&p, &s, Path::new("/t/root")));
        assert!(a.contains(&"kernel".to_string()));
    }

    #[test]
    fn default_repos_with_their_key() {
        let d = tempfile::tempdir().unwrap();
        let ctx = testutil::ctx(d.path());
        let s = spec("rocky", LivenetType::Standard);
        let p = plan_with_repos_dir(&ctx, &s, d.path()).unwrap();
        assert_eq!(p.repo_source, RepoSource::Manifest);
        let a = args(&command(&p, &s, Path::new("/t/root")));
        let arch = Arch::host().rpm();
        for want in [
            "-y".to_string(),
            "--installroot=/t/root".to_string(),
            "--releasever=9".to_string(),
            "--setopt=install_weak_deps=False".to_string(),
            format!(
                "--repofrompath=baseos,https://dl.rockylinux.org/pub/rocky/9/BaseOS/{arch}/os/"
            ),
            "--repo=baseos".to_string(),
            "--repo=appstream".to_string(),
            "--setopt=baseos.gpgcheck=1".to_string(),
            "--setopt=baseos.gpgkey=https://dl.rockylinux.org/pub/rocky/RPM-GPG-KEY-Rocky-9"
                .to_string(),
            "@core".to_string(),
            "rocky-release".to_string(),
            "kernel".to_string(),
            "openssh-server".to_string(),
        ] {
            assert!(a.contains(&want), "{want} not in {a:?}");
        }
        let inst = a.iter().position(|x| x == "install").unwrap();
        assert!(a[..inst].iter().all(|x| x.starts_with('-')), "{a:?}");
        assert!(!a.contains(&"--nodocs".to_string()));
        assert!(!a.contains(&"--nogpgcheck".to_string()));
    }

    #[test]
    fn config_repos_without_keys_are_refused_naming_gpg_keys() {
        let d = tempfile::tempdir().unwrap();
        let mut ctx = testutil::ctx(d.path());
        ctx.cfg.dnf_repos.insert(
            "baseos".into(),
            "http://mirror.local/rocky/{release}/BaseOS/{arch}/os/".into(),
        );
        let s = spec("rocky", LivenetType::Core);
        let e = plan_with_repos_dir(&ctx, &s, d.path()).unwrap_err();
        assert!(matches!(e, Error::GpgKeyMissing { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("gpg_keys:"), "{e}");
        assert!(e.contains("baseos"), "{e}");
        assert!(e.contains("RPM-GPG-KEY-Rocky-9"), "{e}");
        assert!(e.contains("/etc/disklessset/config.yaml"), "{e}");
        // with a key: built, the key passed explicitly
        ctx.cfg.gpg_keys = vec!["file:///etc/pki/rpm-gpg/RPM-GPG-KEY-Rocky-9".into()];
        let p = plan_with_repos_dir(&ctx, &s, d.path()).unwrap();
        let a = args(&command(&p, &s, Path::new("/t")));
        assert!(a.contains(&format!(
            "--repofrompath=baseos,http://mirror.local/rocky/9/BaseOS/{}/os/",
            Arch::host().rpm()
        )));
        assert!(a.contains(
            &"--setopt=baseos.gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-Rocky-9".to_string()
        ));
        // gpgcheck off: allowed, and said
        ctx.cfg.gpg_keys.clear();
        let mut s2 = s.clone();
        s2.gpgcheck = false;
        let p = plan_with_repos_dir(&ctx, &s2, d.path()).unwrap();
        assert!(args(&command(&p, &s2, Path::new("/t"))).contains(&"--nogpgcheck".to_string()));
    }

    #[test]
    fn rhel_uses_host_repos_and_checks_their_keys() {
        let d = tempfile::tempdir().unwrap();
        let ctx = testutil::ctx(d.path());
        let s = spec("rhel", LivenetType::Small);
        let e = plan_with_repos_dir(&ctx, &s, d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dnf_repos") && e.contains("gpg_keys"), "{e}");
        std::fs::write(
            d.path().join("redhat.repo"),
            "[rhel-9-baseos]\nbaseurl=https://cdn/x\nenabled=1\ngpgcheck=1\n\n[off]\nenabled=0\n",
        )
        .unwrap();
        let e = plan_with_repos_dir(&ctx, &s, d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rhel-9-baseos") && !e.contains("off"), "{e}");
        std::fs::write(
            d.path().join("redhat.repo"),
            "[rhel-9-baseos]\nbaseurl=https://cdn/x\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release\n",
        )
        .unwrap();
        let p = plan_with_repos_dir(&ctx, &s, d.path()).unwrap();
        assert_eq!(p.repo_source, RepoSource::Host);
        let a = args(&command(&p, &s, Path::new("/t")));
        assert!(!a.iter().any(|x| x.starts_with("--repo")), "{a:?}");
        assert!(a.contains(&"redhat-release".to_string()));
    }

    #[test]
    fn optimize_means_nodocs_and_fedora_numbers() {
        let d = tempfile::tempdir().unwrap();
        let mut ctx = testutil::ctx(d.path());
        ctx.cfg.gpg_keys = vec!["https://example.org/key".into()];
        let mut s = spec("fedora", LivenetType::Core);
        s.optimize = true;
        s.release = Some("42".into());
        let p = plan_with_repos_dir(&ctx, &s, d.path()).unwrap();
        let a = args(&command(&p, &s, Path::new("/t")));
        assert!(a.contains(&"--nodocs".to_string()));
        assert!(a.contains(&"--releasever=42".to_string()));
        assert!(a.contains(&"--setopt=updates.gpgkey=https://example.org/key".to_string()));
        s.release = Some("bookworm".into());
        let e = plan_with_repos_dir(&ctx, &s, d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rawhide") && e.contains(">= 38"), "{e}");
    }

    #[test]
    fn missing_dnf_says_install_it() {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("dnf").exists()))
            .unwrap_or(false);
        if on_path {
            eprintln!("dnf is installed: skipping the missing-program test");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let ctx = testutil::ctx(d.path());
        let target = d.path().join("root");
        let e = Dnf
            .build(&ctx, &spec("rocky", LivenetType::Core), &target)
            .unwrap_err();
        assert!(matches!(e, Error::Spawn { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("cannot run dnf") && e.contains("install"), "{e}");
        assert!(!target.exists(), "the partial tree is removed");
    }

    #[test]
    fn dry_run_plan_has_the_command() {
        let d = tempfile::tempdir().unwrap();
        let mut ctx = testutil::ctx(d.path());
        ctx.runner = crate::sys::runner::Runner::new(true);
        let target = d.path().join("root");
        let mut s = spec("alma", LivenetType::Core);
        s.optimize = true;
        Dnf.build(&ctx, &s, &target).unwrap();
        let plan = ctx.runner.plan();
        assert!(
            plan.iter()
                .any(|l| l.contains("macros.image-language-conf")),
            "{plan:?}"
        );
        assert!(
            plan.iter().any(|l| l.contains("dnf -y --installroot=")),
            "{plan:?}"
        );
        assert!(!target.exists());
        let lines = Dnf.describe(&ctx, &s).unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("repo baseos: https://repo.almalinux.org")),
            "{lines:?}"
        );
    }
}
