//! Package manifests (issue 15): the packages of a tree (name, version, architecture)
//! from its dpkg database (`var/lib/dpkg/status`, parsed here: a deb822 file, no crate
//! needed for three fields) or its rpm database (`rpm --root TREE -qa`), stored per
//! generation as `packages/<sha256 of the squashfs>.yml` in the image dir (private:
//! `*.yml` is never served). Keyed by content, a manifest follows its squashfs through
//! publish, rollback and pruning without any bookkeeping.
//!
//! For `rebuild`: the pins of a recorded manifest, given to mmdebstrap as `pkg=version`
//! for the packages asked for and as an apt preferences file for all the others, and to
//! dnf as `name-version` for every one of them.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::sys::runner::Cmd;

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// The installed packages of a dpkg status file, sorted by name and arch. Only
/// packages whose status is `install ok installed` (or half-configured states that
/// still have files: `... unpacked`, `half-configured`) count; `config-files` and
/// `not-installed` do not.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut arch = None;
        let mut status = None;
        for line in stanza.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                continue; // continuation of a multi-line field
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k {
                "Package" => name = Some(v),
                "Version" => version = Some(v),
                "Architecture" => arch = Some(v),
                "Status" => status = Some(v),
                _ => {}
            }
        }
        let installed = status.is_some_and(|s| {
            let st = s.split_whitespace().last().unwrap_or("");
            matches!(
                st,
                "installed"
                    | "unpacked"
                    | "half-configured"
                    | "triggers-awaited"
                    | "triggers-pending"
            )
        });
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.push(Package {
                name: n.to_string(),
                version: v.to_string(),
                arch: arch.unwrap_or("").to_string(),
            });
        }
    }
    out.sort();
    out
}

/// The packages of `tree`: dpkg's status file when there is one, else rpm's database
/// through `rpm --root`; empty when the tree has neither (an imported tree without a
/// package manager).
pub fn read_tree(ctx: &Ctx, tree: &Path) -> Result<Vec<Package>> {
    let status = tree.join("var/lib/dpkg/status");
    if status.is_file() {
        let text = std::fs::read_to_string(&status).at(&status)?;
        return Ok(parse_dpkg_status(&text));
    }
    let rpmdb = ["var/lib/rpm", "usr/lib/sysimage/rpm"]
        .iter()
        .any(|d| tree.join(d).is_dir());
    if !rpmdb {
        return Ok(Vec::new());
    }
    let out = ctx.runner.run(
        &Cmd::new("rpm")
            .package("rpm")
            .arg("--root")
            .arg(tree)
            .arg("-qa")
            .arg("--qf")
            .arg("%{NAME}\\t%|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"),
    )?;
    Ok(parse_rpm_qa(&out.stdout_str()))
}

/// `name\tversion\tarch` lines (what `read_tree` asks rpm for), sorted.
pub fn parse_rpm_qa(text: &str) -> Vec<Package> {
    let mut v: Vec<Package> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Package {
                name: f.next()?.trim().to_string(),
                version: f.next()?.trim().to_string(),
                arch: f.next().unwrap_or("").trim().to_string(),
            })
        })
        .filter(|p| !p.name.is_empty() && p.name != "gpg-pubkey")
        .collect();
    v.sort();
    v
}

fn dir(cfg: &Config, name: &str) -> PathBuf {
    cfg.image_dir(name).join("packages")
}

fn path(cfg: &Config, name: &str, sha256: &str) -> PathBuf {
    dir(cfg, name).join(format!("{sha256}.yml"))
}

/// Stores the manifest of the squashfs whose digest is `sha256`.
pub fn save(cfg: &Config, name: &str, sha256: &str, pkgs: &[Package]) -> Result<()> {
    fsutil::ensure_dir(&dir(cfg, name))?;
    let text = yaml_serde::to_string(pkgs)
        .map_err(|e| Error::invalid(format!("cannot serialise the package manifest: {e}")))?;
    fsutil::write_atomic(&path(cfg, name, sha256), text.as_bytes(), 0o644)
}

/// The manifest of the squashfs whose digest is `sha256` (None: not recorded).
pub fn load(cfg: &Config, name: &str, sha256: &str) -> Result<Option<Vec<Package>>> {
    let p = path(cfg, name, sha256);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&p, e)),
    };
    yaml_serde::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Yaml {
            path: p,
            msg: crate::yaml::describe_error(&e),
        })
}

/// Removes the manifests of squashfs files that no longer exist (`keep`: the digests
/// of the generations still there).
pub fn prune(cfg: &Config, name: &str, keep: &[String]) {
    let Ok(rd) = std::fs::read_dir(dir(cfg, name)) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(d) = n.strip_suffix(".yml") {
            if !keep.iter().any(|k| k == d) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// After a publish: the manifest of `tree` stored under the new current digest, and
/// the manifests of squashfs files no longer kept removed.
pub fn record_generation(ctx: &Ctx, name: &str, tree: &Path) -> Result<()> {
    let cfg = &ctx.cfg;
    let Some(digest) = crate::pack::generations::current_digest(cfg, name) else {
        return Ok(());
    };
    let pkgs = read_tree(ctx, tree)?;
    save(cfg, name, &digest, &pkgs)?;
    let rec_gen = crate::store::load(cfg, name)
        .map(|r| r.generation)
        .unwrap_or(0);
    let keep: Vec<String> = crate::pack::generations::list(cfg, name, rec_gen + 1)
        .into_iter()
        .filter_map(|g| g.sha256)
        .chain(std::iter::once(digest))
        .collect();
    prune(cfg, name, &keep);
    Ok(())
}

/// Name -> version (first of each name: multi-arch copies share their version).
pub fn versions(pkgs: &[Package]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for p in pkgs {
        m.entry(p.name.clone()).or_insert_with(|| p.version.clone());
    }
    m
}

/// The (name, version) pins of a manifest.
pub fn pins_of(pkgs: &[Package]) -> Vec<(String, String)> {
    versions(pkgs).into_iter().collect()
}

/// The preferences file mmdebstrap's apt reads during a pinned rebuild (next to the
/// target, outside the tree).
pub fn pin_file(target: &Path) -> PathBuf {
    target.with_file_name("disklessset-rebuild-pins.pref")
}

/// The apt option naming the pin file, as given to mmdebstrap (and taken back out of
/// the tree's `99mmdebstrap` after the build, so the tree is the original's).
pub fn pin_aptopt(target: &Path) -> String {
    format!("Dir::Etc::Preferences \"{}\"", pin_file(target).display())
}

/// Adds the pins to an mmdebstrap command: `--aptopt` naming the preferences file
/// (written by [`write_pin_file`] before the run) and `pkg=version` in `--include`.
pub fn pin_mmdebstrap(c: Cmd, pins: &[(String, String)], target: &Path) -> Cmd {
    if pins.is_empty() {
        return c;
    }
    c.arg(format!("--aptopt={}", pin_aptopt(target)))
}

/// `packages` with their pinned version where the manifest has one, as `name{sep}version`.
fn with_pins(packages: &[String], pins: &[(String, String)], sep: char) -> Vec<String> {
    packages
        .iter()
        .map(|p| match pins.iter().find(|(n, _)| n == p) {
            Some((n, v)) => format!("{n}{sep}{v}"),
            None => p.clone(),
        })
        .collect()
}

/// mmdebstrap's `--include` items: `pkg=version` where pinned (the other packages of
/// the manifest are held by the preferences file).
pub fn pinned_includes(packages: &[String], pins: &[(String, String)]) -> Vec<String> {
    with_pins(packages, pins, '=')
}

/// What to ask dnf for: dnf has no preferences file, so every package of the manifest
/// is asked for as `name-[epoch:]version-release` (the format [`read_tree`] records from
/// rpm), the plan's own names among them. rpm's `gpg-pubkey` entries are keys, not
/// packages: left out. Without pins: the names as planned.
pub fn pinned_rpm_specs(packages: &[String], pins: &[(String, String)]) -> Vec<String> {
    let mut out = with_pins(packages, pins, '-');
    out.extend(
        pins.iter()
            .filter(|(n, _)| n != "gpg-pubkey" && !packages.contains(n))
            .map(|(n, v)| format!("{n}-{v}")),
    );
    out
}

/// Writes the preferences file of the pins (priority 1001: an older version wins).
pub fn write_pin_file(target: &Path, pins: &[(String, String)]) -> Result<()> {
    let mut s = String::new();
    for (name, ver) in pins {
        s.push_str(&format!(
            "Package: {name}\nPin: version {ver}\nPin-Priority: 1001\n\n"
        ));
    }
    fsutil::write_atomic(&pin_file(target), s.as_bytes(), 0o644)
}

/// After a pinned build: the pin option out of the tree's apt configuration and the
/// pin file removed.
pub fn unpin_tree(target: &Path) -> Result<()> {
    let conf = target.join("etc/apt/apt.conf.d/99mmdebstrap");
    if let Ok(text) = std::fs::read_to_string(&conf) {
        let opt = pin_aptopt(target);
        let kept: String = text
            .split_inclusive('\n')
            .filter(|l| !l.contains(&opt))
            .collect();
        if kept != text {
            fsutil::write_in_root(
                target,
                "etc/apt/apt.conf.d/99mmdebstrap",
                kept.as_bytes(),
                0o644,
            )
            .at(&conf)?;
        }
    }
    let _ = std::fs::remove_file(pin_file(target));
    Ok(())
}

/// The packages of `want` the built tree does not have at the pinned version: the
/// mirror no longer has those versions (apt ignores a pin it cannot satisfy).
pub fn unmet_pins(want: &[(String, String)], got: &[Package]) -> Vec<String> {
    let have = versions(got);
    want.iter()
        .filter(|(n, v)| have.get(n) != Some(v))
        .map(|(n, v)| match have.get(n) {
            Some(h) => format!("{n} {v} (got {h})"),
            None => format!("{n} {v} (not installed)"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: base-files\nEssential: yes\nStatus: install ok installed\nPriority: required\nArchitecture: amd64\nVersion: 12.4+deb12u5\nDescription: Debian base system miscellaneous files\n This package contains the basic filesystem hierarchy\n Package: not-a-field\n\nPackage: removed-pkg\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\nPackage: libc6\nStatus: install ok installed\nMulti-Arch: same\nArchitecture: amd64\nVersion: 2.36-9+deb12u7\nConffiles:\n /etc/ld.so.conf.d/x86_64-linux-gnu.conf 593ad12389ab2b6f952e7ede67b8fbbf\n\nPackage: adduser\nStatus: install ok installed\nArchitecture: all\nVersion: 3.134\n";

    #[test]
    fn dpkg_status_installed_packages_only() {
        let p = parse_dpkg_status(STATUS);
        assert_eq!(
            p,
            vec![
                Package {
                    name: "adduser".into(),
                    version: "3.134".into(),
                    arch: "all".into()
                },
                Package {
                    name: "base-files".into(),
                    version: "12.4+deb12u5".into(),
                    arch: "amd64".into()
                },
                Package {
                    name: "libc6".into(),
                    version: "2.36-9+deb12u7".into(),
                    arch: "amd64".into()
                },
            ]
        );
        assert!(parse_dpkg_status("").is_empty());
    }

    #[test]
    fn rpm_lines() {
        let p = parse_rpm_qa(
            "bash\t5.1.8-9.el9\tx86_64\ngpg-pubkey\tx-y\t(none)\nkernel\t1:5.14.0-1\tx86_64\n\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].version, "1:5.14.0-1");
    }

    #[test]
    fn pins_and_unmet() {
        let got = parse_dpkg_status(STATUS);
        let pins = pins_of(&got);
        assert_eq!(pins[0], ("adduser".to_string(), "3.134".to_string()));
        assert_eq!(
            pinned_includes(&["adduser".into(), "vim".into()], &pins),
            vec!["adduser=3.134", "vim"]
        );
        assert!(unmet_pins(&pins, &got).is_empty());
        let want = vec![
            ("adduser".to_string(), "9.9".to_string()),
            ("gone".to_string(), "1".to_string()),
        ];
        assert_eq!(
            unmet_pins(&want, &got),
            vec!["adduser 9.9 (got 3.134)", "gone 1 (not installed)"]
        );
    }

    #[test]
    fn manifest_roundtrip_by_digest() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::under_root(d.path()).unwrap();
        std::fs::create_dir_all(cfg.image_dir("a")).unwrap();
        let p = parse_dpkg_status(STATUS);
        save(&cfg, "a", "abc", &p).unwrap();
        assert_eq!(load(&cfg, "a", "abc").unwrap().unwrap(), p);
        assert!(load(&cfg, "a", "def").unwrap().is_none());
        prune(&cfg, "a", &["def".into()]);
        assert!(load(&cfg, "a", "abc").unwrap().is_none());
    }
}
