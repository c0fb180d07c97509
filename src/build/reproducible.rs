//! Reproducible builds (issue 15): the build's `SOURCE_DATE_EPOCH`, the normalisation
//! of what varies between two builds of the same declaration (measured by building
//! twice and comparing `unsquashfs -lln` listings and contents), and the build record
//! (`build.yml` in the image dir: what `rebuild` needs, nothing secret).
//!
//! The epoch comes from the environment as reproducible-builds.org defines it (a
//! decimal number of seconds since 1970), else it is the build's start time; either way
//! it is recorded. It is passed to mmdebstrap and dnf, every mtime newer than it is
//! clamped in the tree, and mksquashfs gets it as its own `SOURCE_DATE_EPOCH` (the
//! superblock's mkfs time and the same clamp in the image).
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The environment variable reproducible-builds.org defines.
pub const ENV: &str = "SOURCE_DATE_EPOCH";

/// The file of the build record in the image dir (private: `*.yml` is never served).
pub const BUILD_RECORD: &str = "build.yml";

/// The epoch of a build: `SOURCE_DATE_EPOCH` when set, else now.
pub fn epoch() -> Result<u64> {
    epoch_from(std::env::var(ENV).ok().as_deref())
}

/// `SOURCE_DATE_EPOCH` when set, else now (what a repack of a customised tree uses).
pub fn epoch_from(v: Option<&str>) -> Result<u64> {
    match v.map(str::trim) {
        Some(s) if !s.is_empty() => s.parse::<u64>().ok().filter(|e| *e <= u64::from(u32::MAX)).ok_or_else(|| {
            Error::invalid(format!(
                "{ENV}={s:?} is not a number of seconds since 1970-01-01 (e.g. {ENV}=$(date +%s)); unset it to use the build's start time"
            ))
        }),
        _ => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)),
    }
}

/// What a build was made from: enough to make it again (`rebuild`). Never a secret
/// (the password hash stays in `image_data.yml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// `mmdebstrap`, `dnf` or `import`.
    pub builder: String,
    pub distro: String,
    pub release: String,
    pub livenet_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// The extra packages asked for (`--packages`).
    #[serde(default)]
    pub packages: Vec<String>,
    pub optimize: bool,
    pub selinux: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_pub_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    pub source_date_epoch: u64,
    /// `--from`: the imported source (a rebuild reads it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
    /// sha256 of the squashfs of generation 1 (what the build gave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub squashfs_sha256: Option<String>,
    /// sha256 of the initramfs the build gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs_sha256: Option<String>,
    /// The image this one was rebuilt from (`rebuild --as`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_from: Option<String>,
    /// The packages the build installed (what a rebuild pins).
    #[serde(default)]
    pub manifest: Vec<super::pkglist::Package>,
}

pub fn record_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.image_dir(name).join(BUILD_RECORD)
}

pub fn save_record(cfg: &Config, name: &str, r: &BuildRecord) -> Result<()> {
    let text = yaml_serde::to_string(r)
        .map_err(|e| Error::invalid(format!("cannot serialise the build record: {e}")))?;
    fsutil::write_atomic(&record_path(cfg, name), text.as_bytes(), 0o644)
}

/// The build record of an image (None: it has none, e.g. built before issue 15).
pub fn load_record(cfg: &Config, name: &str) -> Result<Option<BuildRecord>> {
    let p = record_path(cfg, name);
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

/// What the normalisation changed (for the log and the tests).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Normalised {
    pub clamped: u64,
    pub emptied: Vec<String>,
    pub removed: Vec<String>,
}

/// Files whose content varies from build to build and that the system recreates or
/// does not need: emptied (kept, so their owners and modes stay).
const EMPTY: &[&str] = &["etc/machine-id"];

/// Removed: caches and logs of the build itself.
const REMOVE: &[&str] = &[
    "var/lib/dbus/machine-id",
    "var/cache/ldconfig/aux-cache",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/passwd-",
    "etc/group-",
    "etc/subuid-",
    "etc/subgid-",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/catalog/database",
    "var/log/journal",
];

/// Makes a built tree the same from build to build at the same `epoch`: the files that
/// carry the build's time or randomness are emptied or removed, every log under
/// `var/log` emptied, `/etc/shadow`'s last-change day set from the epoch, and every
/// mtime newer than the epoch clamped to it (symlinks included, never followed).
pub fn normalise_tree(tree: &Path, epoch: u64) -> Result<Normalised> {
    let mut out = Normalised::default();
    for rel in EMPTY {
        let p = tree.join(rel);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() > 0) {
            fsutil::write_in_root(tree, rel, b"", 0o444).at(&p)?;
            out.emptied.push(rel.to_string());
        }
    }
    for rel in REMOVE {
        let p = tree.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                // the journal directory: its files, not the directory
                for e in std::fs::read_dir(&p).at(&p)?.flatten() {
                    let ep = e.path();
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        std::fs::remove_dir_all(&ep).at(&ep)?;
                    } else {
                        std::fs::remove_file(&ep).at(&ep)?;
                    }
                    out.removed
                        .push(format!("{rel}/{}", e.file_name().to_string_lossy()));
                }
            }
            Ok(_) => {
                std::fs::remove_file(&p).at(&p)?;
                out.removed.push(rel.to_string());
            }
            Err(_) => {}
        }
    }
    // Logs: apt's and dpkg's history, alternatives.log, bootstrap.log, ... emptied.
    let log = tree.join("var/log");
    if std::fs::symlink_metadata(&log).is_ok_and(|m| m.is_dir()) {
        for e in walkdir::WalkDir::new(&log)
            .same_file_system(true)
            .into_iter()
            .flatten()
        {
            if e.file_type().is_file() && e.metadata().is_ok_and(|m| m.len() > 0) {
                let rel = e
                    .path()
                    .strip_prefix(tree)
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or_default();
                std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(e.path())
                    .at(e.path())?;
                out.emptied.push(rel);
            }
        }
    }
    // SSH host keys are random: a tree whose sshd makes its missing keys at boot (the
    // setup's keygen unit) ships none. (The secrets branch removes them in the setup
    // itself; this is then a no-op.)
    if tree
        .join("etc/systemd/system")
        .join(super::setup::SSH_KEYGEN_UNIT)
        .is_file()
    {
        if let Ok(rd) = std::fs::read_dir(tree.join("etc/ssh")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("ssh_host_") && e.file_type().is_ok_and(|t| t.is_file()) {
                    std::fs::remove_file(e.path()).at(e.path())?;
                    out.removed.push(format!("etc/ssh/{n}"));
                }
            }
        }
    }
    if set_shadow_lastchg(tree, epoch)? {
        out.emptied.push("etc/shadow (last change day)".into());
    }
    out.clamped = clamp_mtimes(tree, epoch)?;
    Ok(out)
}

/// `/etc/shadow`'s third field (days since 1970 of the last password change) set to the
/// epoch's day, where it is set; true when the file changed.
fn set_shadow_lastchg(tree: &Path, epoch: u64) -> Result<bool> {
    let p = tree.join("etc/shadow");
    let Ok(m) = std::fs::symlink_metadata(&p) else {
        return Ok(false);
    };
    if !m.is_file() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&p).at(&p)?;
    let new = shadow_with_lastchg(&text, epoch / 86_400);
    if new == text {
        return Ok(false);
    }
    let mode = m.mode() & 0o7777;
    fsutil::write_in_root(tree, "etc/shadow", new.as_bytes(), mode).at(&p)?;
    std::os::unix::fs::chown(&p, Some(m.uid()), Some(m.gid())).at(&p)?;
    Ok(true)
}

/// The shadow text with every non-empty last-change field set to `day`.
pub fn shadow_with_lastchg(text: &str, day: u64) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let mut f: Vec<&str> = body.split(':').collect();
        let day_s = day.to_string();
        if f.len() >= 3 && !f[2].is_empty() && f[2] != "0" {
            f[2] = &day_s;
            out.push_str(&f.join(":"));
        } else {
            out.push_str(body);
        }
        out.push_str(nl);
    }
    out
}

/// Sets every mtime newer than `epoch` to it, without following symlinks
/// or leaving the tree's filesystem; returns how many entries it changed.
pub fn clamp_mtimes(tree: &Path, epoch: u64) -> Result<u64> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(epoch as libc::time_t, 0);
    let mut n = 0;
    for e in walkdir::WalkDir::new(tree)
        .same_file_system(true)
        .contents_first(true)
        .into_iter()
    {
        let e = e.map_err(|e| Error::Tree {
            tree: tree.to_path_buf(),
            msg: format!("cannot walk it: {e}"),
        })?;
        let m = e.metadata().map_err(|err| Error::Tree {
            tree: tree.to_path_buf(),
            msg: format!("{}: {err}", e.path().display()),
        })?;
        if m.mtime() > epoch as i64 {
            // atimes are not packed (squashfs keeps one time); reading changes them
            utimensat(
                nix::fcntl::AT_FDCWD,
                e.path(),
                &TimeSpec::UTIME_OMIT,
                &t,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|err| Error::io(e.path(), std::io::Error::from(err)))?;
            n += 1;
        }
    }
    Ok(n)
}

/// The pin file a rebuild plants for apt (`Pin: version` for every package of the
/// manifest, priority 1001 so a version older than the candidate wins), taken out of
/// the tree before it is set up.
pub const APT_PIN_FILE: &str = "etc/apt/preferences.d/disklessset-rebuild-pins";

/// apt preferences pinning every package of `pins` (name, version).
pub fn apt_pins(pins: &[(String, String)]) -> String {
    let mut s = String::new();
    for (name, ver) in pins {
        s.push_str(&format!(
            "Package: {name}\nPin: version {ver}\nPin-Priority: 1001\n\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_from_env_or_now() {
        assert_eq!(epoch_from(Some("1700000000")).unwrap(), 1_700_000_000);
        let e = epoch_from(Some("yesterday")).unwrap_err().to_string();
        assert!(
            e.contains("SOURCE_DATE_EPOCH") && e.contains("yesterday"),
            "{e}"
        );
        assert!(epoch_from(Some("-5")).is_err());
        assert!(epoch_from(None).unwrap() > 1_700_000_000);
        assert!(epoch_from(Some("")).unwrap() > 1_700_000_000);
    }

    #[test]
    fn shadow_lastchg_is_set_where_set() {
        let t = "root:$6$x$y:19000:0:99999:7:::\nnobody:*:19001:0:99999:7:::\nnew:!::0:99999:7:::\nforce:!:0:0:99999:7:::\n";
        assert_eq!(
            shadow_with_lastchg(t, 19676),
            "root:$6$x$y:19676:0:99999:7:::\nnobody:*:19676:0:99999:7:::\nnew:!::0:99999:7:::\nforce:!:0:0:99999:7:::\n"
        );
    }

    #[test]
    fn normalise_clamps_and_empties() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::fs::create_dir_all(t.join("var/log/apt")).unwrap();
        std::fs::create_dir_all(t.join("var/cache/ldconfig")).unwrap();
        std::fs::write(t.join("etc/machine-id"), "0123456789abcdef\n").unwrap();
        std::fs::write(t.join("var/log/apt/history.log"), "Start-Date: now\n").unwrap();
        std::fs::write(t.join("var/cache/ldconfig/aux-cache"), "x").unwrap();
        std::os::unix::fs::symlink("/nowhere", t.join("link")).unwrap();
        let r = normalise_tree(t, 1_000_000).unwrap();
        assert_eq!(std::fs::read(t.join("etc/machine-id")).unwrap(), b"");
        assert_eq!(
            std::fs::read(t.join("var/log/apt/history.log")).unwrap(),
            b""
        );
        assert!(!t.join("var/cache/ldconfig/aux-cache").exists());
        assert!(r.clamped >= 8, "{r:?}");
        for e in walkdir::WalkDir::new(t) {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            assert_eq!(m.mtime(), 1_000_000, "{}", e.path().display());
        }
        // a second pass changes nothing
        assert_eq!(clamp_mtimes(t, 1_000_000).unwrap(), 0);
    }
}
