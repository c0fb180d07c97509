//! Scale-out: the boot tree pushed to replica boot servers with rsync (to a local path,
//! or over SSH), so that a replica serves a complete generation at every instant.
//!
//! On a replica's `target`:
//!
//! ```text
//! TARGET/releases/N/          one complete copy of the served tree (the web root)
//! TARGET/releases/.incoming/  the copy being made; a killed push resumes it
//! TARGET/current -> releases/N    what the replica's web server serves (its root)
//! ```
//!
//! A push rsyncs the web root into `.incoming` with `--link-dest` against the current
//! release (a file that did not change becomes a hard link: no transfer, no space),
//! renames `.incoming` to `N+1`, then switches `current` by renaming a new symlink over
//! it (one atomic step, so kernels, images and scripts switch together: the scripts are
//! never ahead of the files they name), and keeps the previous release for downloads
//! still running from it. A push killed at any point leaves `current` on a complete
//! release. Never copied: what the built-in server never serves (`image_data.yml` and
//! any YAML, dotfiles, `*.tmp`, and the work/state/log/NFS dirs if a config places them
//! inside the web root): one rule, [`serve::PRIVATE_NAMES`] and [`serve::private_paths`].
//!
//! rsync and ssh run through the runner (argv). For an SSH target the few remote steps
//! (rename, symlink switch, prune) are one `ssh HOST -- CMD` whose words are each quoted
//! for the remote shell by [`quote`]: ssh always hands its command to a shell.
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, Replica};
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::sys::runner::{quote, Cmd};

use super::serve;

const INCOMING: &str = ".incoming";

/// The rsync filter rules of every push and status check, in order: the server's own
/// private rule ([`serve::PRIVATE_NAMES`], [`serve::private_paths`]) plus lock files.
fn filters(cfg: &Config) -> Vec<String> {
    // keep a partial file of a killed push for the next one to resume
    let mut f = vec!["--filter=P .rsync-partial/".to_string()];
    f.extend(
        serve::PRIVATE_NAMES
            .iter()
            .map(|n| format!("--exclude={n}")),
    );
    f.push("--exclude=*.lock".into());
    f.extend(
        serve::private_paths(cfg)
            .into_iter()
            .map(|p| format!("--exclude=/{}", p.trim_matches('/'))),
    );
    f
}

/// What one push did.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct PushReport {
    pub replica: String,
    pub target: String,
    pub ok: bool,
    /// The release the replica serves after the push.
    pub release: Option<u32>,
    pub files_transferred: u64,
    pub bytes_transferred: u64,
    pub error: Option<String>,
    /// Seconds since the epoch.
    pub time: u64,
    /// The store's tree stamp the push copied (see [`tree_stamp`]).
    pub stamp: String,
}

/// How a replica compares with the store.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplicaStatus {
    pub replica: String,
    pub url: String,
    pub target: String,
    pub release: Option<u32>,
    /// Paths whose content (rsync checksum) differs or is missing on the replica, or
    /// that the replica has and the store no longer has (`deleting PATH`).
    pub stale: Vec<String>,
    pub up_to_date: bool,
    pub last_push: Option<PushReport>,
}

/// A local path or `[user@]host:/path`.
#[derive(Debug, Clone, PartialEq)]
enum Site {
    Local(PathBuf),
    Remote { host: String, path: String },
}

impl Site {
    fn of(r: &Replica) -> Site {
        match r.target.split_once(':') {
            Some((host, path)) if !r.target.starts_with('/') => Site::Remote {
                host: host.to_string(),
                path: path.to_string(),
            },
            _ => Site::Local(PathBuf::from(&r.target)),
        }
    }

    /// The rsync destination of `rel` under the target.
    fn rsync_dest(&self, rel: &str) -> String {
        match self {
            Site::Local(p) => format!("{}/{rel}/", p.display()),
            Site::Remote { host, path } => format!("{host}:{path}/{rel}/"),
        }
    }

    /// The release `current` points to.
    fn current(&self, ctx: &Ctx) -> Result<Option<u32>> {
        let link = match self {
            Site::Local(p) => match std::fs::read_link(p.join("current")) {
                Ok(l) => l.to_string_lossy().into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).at(p.join("current")),
            },
            Site::Remote { host, path } => {
                let out = ctx.runner.run_unchecked(
                    &Cmd::new("ssh")
                        .package("openssh-client")
                        .read_only()
                        .args(["-o", "BatchMode=yes", host.as_str(), "--"])
                        .arg(remote_cmd(&["readlink", &format!("{path}/current")])),
                )?;
                if !out.success {
                    return Ok(None);
                }
                out.stdout_str().trim().to_string()
            }
        };
        Ok(link
            .strip_prefix("releases/")
            .and_then(|n| n.parse::<u32>().ok()))
    }

    /// Makes `releases/` exist.
    fn prepare(&self, ctx: &Ctx) -> Result<()> {
        match self {
            Site::Local(p) => {
                if ctx.runner.dry_run() {
                    return Ok(());
                }
                fsutil::ensure_dir(&p.join("releases"))
            }
            Site::Remote { host, path } => {
                ctx.runner.run(&ssh(
                    host,
                    &["mkdir", "-p", "--", &format!("{path}/releases")],
                ))?;
                Ok(())
            }
        }
    }

    /// `.incoming` becomes release `n`, `current` points to it (atomically), releases
    /// older than `keep_from` are removed.
    fn switch(&self, ctx: &Ctx, n: u32, keep_from: u32) -> Result<()> {
        match self {
            Site::Local(p) => {
                if ctx.runner.dry_run() {
                    ctx.runner.note(format!(
                        "rename {}/releases/{INCOMING} to releases/{n} and point current at it",
                        p.display()
                    ));
                    return Ok(());
                }
                let rel = p.join("releases");
                let dst = rel.join(n.to_string());
                std::fs::rename(rel.join(INCOMING), &dst).at(&dst)?;
                fsutil::sync_dir(&rel)?;
                let tmp = p.join(".current.new");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(format!("releases/{n}"), &tmp).at(&tmp)?;
                std::fs::rename(&tmp, p.join("current")).at(p.join("current"))?;
                fsutil::sync_dir(p)?;
                for e in std::fs::read_dir(&rel).at(&rel)?.flatten() {
                    let old = e
                        .file_name()
                        .to_str()
                        .and_then(|s| s.parse::<u32>().ok())
                        .filter(|o| *o < keep_from);
                    if old.is_some() {
                        crate::sys::remove::remove_tree(&ctx.runner, &e.path())?;
                    }
                }
                Ok(())
            }
            Site::Remote { host, path } => {
                let rel = format!("{path}/releases");
                let steps = [
                    remote_cmd(&[
                        "mv",
                        "-T",
                        "--",
                        &format!("{rel}/{INCOMING}"),
                        &format!("{rel}/{n}"),
                    ]),
                    remote_cmd(&[
                        "ln",
                        "-sfn",
                        "--",
                        &format!("releases/{n}"),
                        &format!("{path}/.current.new"),
                    ]),
                    remote_cmd(&[
                        "mv",
                        "-T",
                        "--",
                        &format!("{path}/.current.new"),
                        &format!("{path}/current"),
                    ]),
                ];
                let mut line = steps.join(" && ");
                for old in 0..keep_from.min(n) {
                    line.push_str(&format!(
                        " && {}",
                        remote_cmd(&["rm", "-rf", "--", &format!("{rel}/{old}")])
                    ));
                }
                ctx.runner.run(
                    &Cmd::new("ssh")
                        .package("openssh-client")
                        .args(["-o", "BatchMode=yes", host.as_str(), "--"])
                        .arg(line),
                )?;
                Ok(())
            }
        }
    }
}

/// One remote command: each word quoted for the remote shell.
fn remote_cmd(words: &[&str]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

fn ssh(host: &str, words: &[&str]) -> Cmd {
    Cmd::new("ssh")
        .package("openssh-client")
        .args(["-o", "BatchMode=yes", host, "--"])
        .arg(remote_cmd(words))
}

/// The web root with a trailing slash (rsync: its content, not the directory itself);
/// refused when a part of the boot tree the nodes need lives outside it.
fn source(cfg: &Config) -> Result<String> {
    for (key, p) in [
        ("images_dir", &cfg.images_dir),
        ("kernels_dir", &cfg.kernels_dir),
        ("nodes_ipxe_dir", &cfg.nodes_ipxe_dir),
    ] {
        if !p.starts_with(&cfg.web_root) {
            return Err(Error::invalid(format!(
                "{key} {} is outside web_root {}: replicas copy the web root only (move {key} under it)",
                p.display(),
                cfg.web_root.display()
            )));
        }
    }
    if !cfg.web_root.is_dir() {
        return Err(Error::invalid(format!(
            "web root {} does not exist: create an image first",
            cfg.web_root.display()
        )));
    }
    Ok(format!("{}/", cfg.web_root.display()))
}

/// The replicas named (all when `names` is empty), or an error naming an unknown one.
pub fn select<'a>(cfg: &'a Config, names: &[String]) -> Result<Vec<&'a Replica>> {
    if cfg.replicas.is_empty() {
        return Err(Error::invalid(
            "no replicas in the config: add a `replicas:` list (name, url, target)",
        ));
    }
    if names.is_empty() {
        return Ok(cfg.replicas.iter().collect());
    }
    names.iter().map(|n| cfg.replica(n)).collect()
}

/// A digest of what a push copies: every path with its type, size and mtime, under the
/// same filter as the push. Cheap (stat only), so `list` can tell a stale replica.
pub fn tree_stamp(cfg: &Config) -> String {
    let mut h = Sha256::new();
    let root = &cfg.web_root;
    let private = serve::private_paths(cfg);
    let mut entries: Vec<(String, String)> = walkdir::WalkDir::new(root)
        .same_file_system(true)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name().to_string_lossy();
            let rel = e.path().strip_prefix(root).unwrap_or(e.path());
            !(serve::is_private_name(&n)
                || n.ends_with(".lock")
                || private.iter().any(|p| rel == Path::new(p)))
        })
        .flatten()
        .filter_map(|e| {
            use std::os::unix::fs::MetadataExt;
            let m = e.path().symlink_metadata().ok()?;
            let rel = e
                .path()
                .strip_prefix(root)
                .ok()?
                .to_string_lossy()
                .into_owned();
            let kind = if m.is_dir() {
                "d"
            } else if m.file_type().is_symlink() {
                "l"
            } else {
                "f"
            };
            let size = if m.is_dir() { 0 } else { m.len() };
            Some((
                rel,
                format!("{kind} {size} {}.{}", m.mtime(), m.mtime_nsec()),
            ))
        })
        .collect();
    entries.sort();
    for (p, meta) in entries {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(meta.as_bytes());
        h.update([b'\n']);
    }
    let d = h.finalize();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn record_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.state_dir.join("replicas").join(format!("{name}.json"))
}

/// The last push recorded for `name`.
pub fn last_push(cfg: &Config, name: &str) -> Option<PushReport> {
    let text = std::fs::read_to_string(record_path(cfg, name)).ok()?;
    serde_json::from_str(&text).ok()
}

fn save(cfg: &Config, rep: &PushReport) -> Result<()> {
    let p = record_path(cfg, &rep.replica);
    if let Some(d) = p.parent() {
        fsutil::ensure_dir(d)?;
    }
    let text = serde_json::to_vec_pretty(rep)
        .map_err(|e| Error::invalid(format!("replica record: {e}")))?;
    fsutil::write_atomic(&p, &text, 0o600)
}

/// `Number of regular files transferred: N` and `Total transferred file size: N bytes`
/// from rsync's `--stats`.
fn parse_stats(out: &str) -> (u64, u64) {
    let num = |key: &str| -> u64 {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .replace(',', "")
                    .parse()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    (
        num("Number of regular files transferred:"),
        num("Total transferred file size:"),
    )
}

/// Pushes the boot tree to each replica named (all when empty). A replica that fails
/// is reported (and recorded) without stopping the others.
pub fn push(ctx: &Ctx, names: &[String]) -> Result<Vec<PushReport>> {
    let cfg = &ctx.cfg;
    let replicas = select(cfg, names)?;
    let src = source(cfg)?;
    let mut out = Vec::new();
    for r in replicas {
        let stamp = tree_stamp(cfg);
        let mut rep = PushReport {
            replica: r.name.clone(),
            target: r.target.clone(),
            time: now(),
            stamp,
            ..Default::default()
        };
        match push_one(ctx, r, &src) {
            Ok((release, files, bytes)) => {
                rep.ok = true;
                rep.release = Some(release);
                rep.files_transferred = files;
                rep.bytes_transferred = bytes;
            }
            Err(e) => {
                rep.error = Some(e.to_string());
                rep.release = Site::of(r).current(ctx).ok().flatten();
            }
        }
        if ctx.runner.dry_run() {
            out.push(rep);
            continue;
        }
        tracing::info!(
            "replicate {}: {}",
            r.name,
            match &rep.error {
                None => format!(
                    "release {} ({} files, {} bytes transferred)",
                    rep.release.unwrap_or(0),
                    rep.files_transferred,
                    rep.bytes_transferred
                ),
                Some(e) => format!("failed: {e}"),
            }
        );
        save(cfg, &rep)?;
        out.push(rep);
    }
    Ok(out)
}

fn push_one(ctx: &Ctx, r: &Replica, src: &str) -> Result<(u32, u64, u64)> {
    let site = Site::of(r);
    site.prepare(ctx)?;
    let current = site.current(ctx)?;
    let next = current.map_or(1, |c| c + 1);
    let mut cmd = Cmd::new("rsync")
        .package("rsync")
        .args(["-a", "-H", "--numeric-ids", "--stats", "--mkpath"])
        .args([
            "--delete",
            "--delete-excluded",
            "--partial-dir=.rsync-partial",
        ])
        .args(filters(&ctx.cfg));
    if let Some(c) = current {
        // relative to the destination directory
        cmd = cmd.arg(format!("--link-dest=../{c}"));
    }
    if ctx.cfg.replicate_bwlimit_kib > 0 {
        cmd = cmd.arg(format!("--bwlimit={}", ctx.cfg.replicate_bwlimit_kib));
    }
    let cmd = cmd
        .arg(src)
        .arg(site.rsync_dest(&format!("releases/{INCOMING}")));
    let o = ctx.runner.run(&cmd)?;
    let (files, bytes) = parse_stats(&o.stdout_str());
    // keep the release served until now: downloads may still read from it
    site.switch(ctx, next, current.unwrap_or(next))?;
    Ok((next, files, bytes))
}

/// Compares each replica named with the store, by content (rsync `--checksum`, dry run).
pub fn status(ctx: &Ctx, names: &[String]) -> Result<Vec<ReplicaStatus>> {
    let cfg = &ctx.cfg;
    let replicas = select(cfg, names)?;
    let src = source(cfg)?;
    let mut out = Vec::new();
    for r in replicas {
        let site = Site::of(r);
        let release = site.current(ctx)?;
        let mut stale = Vec::new();
        match release {
            None => stale.push("(nothing published on the replica yet)".to_string()),
            Some(_) => {
                let cmd = Cmd::new("rsync")
                    .package("rsync")
                    .read_only()
                    .args(["-n", "-a", "-H", "-c", "-i", "--delete"])
                    .args(filters(&ctx.cfg))
                    .arg(src.as_str())
                    .arg(site.rsync_dest("current"));
                let o = ctx.runner.run(&cmd)?;
                for line in o.stdout_str().lines() {
                    if let Some(p) = line.strip_prefix("*deleting ") {
                        stale.push(format!("deleting {}", p.trim()));
                        continue;
                    }
                    // YXcstpoguax PATH: a file (f) or link (L) to send; directories
                    // whose attributes alone differ are not staleness.
                    let Some((flags, path)) = line.split_once(' ') else {
                        continue;
                    };
                    let kind = flags.chars().nth(1).unwrap_or(' ');
                    if flags.starts_with(['>', 'c', 'h']) && kind != 'd' {
                        stale.push(path.trim().to_string());
                    }
                }
            }
        }
        out.push(ReplicaStatus {
            replica: r.name.clone(),
            url: r.url.clone(),
            target: r.target.clone(),
            release,
            up_to_date: stale.is_empty(),
            stale,
            last_push: last_push(cfg, &r.name),
        });
    }
    Ok(out)
}

/// One line per replica for `list`: whether its last push copied the store as it is now
/// (by [`tree_stamp`], no contact with the replica).
pub fn notes(cfg: &Config) -> Vec<String> {
    if cfg.replicas.is_empty() {
        return Vec::new();
    }
    let stamp = tree_stamp(cfg);
    cfg.replicas
        .iter()
        .map(|r| match last_push(cfg, &r.name) {
            None => format!("replica {}: never pushed (run `disklessset replicate {}`)", r.name, r.name),
            Some(p) if !p.ok => format!(
                "replica {}: STALE, its last push failed: {} (it still serves release {})",
                r.name,
                p.error.unwrap_or_default(),
                p.release.map_or("none".into(), |n| n.to_string())
            ),
            Some(p) if p.stamp != stamp => format!(
                "replica {}: STALE, the store changed since its last push (release {}): run `disklessset replicate {}`",
                r.name,
                p.release.unwrap_or(0),
                r.name
            ),
            Some(p) => format!(
                "replica {}: up to date (release {})",
                r.name,
                p.release.unwrap_or(0)
            ),
        })
        .collect()
}

/// The path on the replica of a store path under one of the NFS dirs: `nfs_root` of the
/// replica replaces the store's root of those dirs (their common parent).
pub fn nfs_path_on(cfg: &Config, r: &Replica, p: &Path) -> PathBuf {
    let Some(root) = &r.nfs_root else {
        return p.to_path_buf();
    };
    for dir in [
        &cfg.nfs_staging_dir,
        &cfg.nfs_golden_dir,
        &cfg.nfs_nodes_dir,
    ] {
        if let (Ok(rest), Some(name)) = (p.strip_prefix(dir), dir.file_name()) {
            return root.join(name).join(rest);
        }
    }
    p.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parsed() {
        let s = "Number of files: 12 (reg: 8, dir: 4)\nNumber of regular files transferred: 3\nTotal file size: 1,234 bytes\nTotal transferred file size: 1,024 bytes\n";
        assert_eq!(parse_stats(s), (3, 1024));
        assert_eq!(parse_stats(""), (0, 0));
    }

    #[test]
    fn private_rule_is_the_servers() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Config::under_root(d.path()).unwrap();
        cfg.state_dir = cfg.web_root.join("state");
        let f = filters(&cfg);
        for n in serve::PRIVATE_NAMES {
            assert!(f.contains(&format!("--exclude={n}")), "{f:?}");
        }
        assert!(f.contains(&"--exclude=/state".to_string()), "{f:?}");
        for (n, private) in [
            ("image_data.yml", true),
            (".x", true),
            ("a.tmp", true),
            ("b.yaml", true),
            ("boot.ipxe", false),
            ("squashfs.img", false),
        ] {
            assert_eq!(serve::is_private_name(n), private, "{n}");
        }
    }

    #[test]
    fn remote_words_quoted() {
        assert_eq!(
            remote_cmd(&["mv", "-T", "--", "/a b", "/c;rm -rf /"]),
            "mv -T -- '/a b' '/c;rm -rf /'"
        );
    }

    #[test]
    fn sites() {
        let r = |t: &str| Replica {
            name: "a".into(),
            url: "http://x".into(),
            target: t.into(),
            nfs_root: None,
        };
        assert_eq!(Site::of(&r("/srv/a")), Site::Local("/srv/a".into()));
        assert_eq!(
            Site::of(&r("root@b:/srv/a")),
            Site::Remote {
                host: "root@b".into(),
                path: "/srv/a".into()
            }
        );
    }
}
