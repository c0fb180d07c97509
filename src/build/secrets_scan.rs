//! The publish check of issue 12: an image tree that anyone on the provisioning network
//! can download (a livenet generation) or mount (an NFS root exported read-only) must
//! hold no private key, no password hash and no BMC password. Run before every publish
//! (livenet create, unmount, ansible/exec, resize; nfs staging and golden create);
//! the first finding refuses it with one line naming the path.
//!
//! What counts, chosen to have no false positives on a stock Debian/EL tree:
//! * a PEM or OpenSSH private key in any regular file up to 1 MiB: a line
//!   `-----BEGIN ... PRIVATE KEY-----` followed by a base64 line (or a `Proc-Type:`
//!   header); ssh-keygen and sshd carry the header as a string, never followed by a key;
//! * a crypt(3) hash (`$1$`, `$5$`, `$6$`, `$y$`, `$gy$`, `$7$`, `$2a$`/`$2b$`/`$2y$`) as
//!   the password field of etc/shadow, etc/shadow-, etc/gshadow or etc/gshadow-;
//! * a password of the BMC secrets file (8 characters or more: shorter ones would match
//!   by chance) in a text file up to 1 MiB.
//!
//! The walk stays on the tree's file system and follows no symlink. Config
//! `secrets_allow` lists image paths (a directory covers what is below it) an admin
//! ships knowingly.
use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};

/// Largest file read.
pub const MAX_FILE: u64 = 1024 * 1024;
/// Shadow-like files whose password fields are checked.
pub const SHADOW_FILES: &[&str] = &["etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-"];
/// crypt(3) prefixes that are hashes (a locked or empty field is none of these).
pub const CRYPT_PREFIXES: &[&str] = &[
    "$1$", "$5$", "$6$", "$y$", "$gy$", "$7$", "$2a$", "$2b$", "$2y$", "$sha1$", "$md5",
];
/// Shortest BMC password searched for.
const MIN_BMC_PASSWORD: usize = 8;

/// One finding: the tree-relative path and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub what: String,
    pub fix: String,
}

/// Whether `data` holds a PEM/OpenSSH private key block.
pub fn has_private_key(data: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut i = 0;
    while let Some(pos) = find(&data[i..], BEGIN) {
        let start = i + pos;
        let line_end = memchr::memchr(b'\n', &data[start..])
            .map(|p| start + p)
            .unwrap_or(data.len());
        let line = &data[start..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.ends_with(b"PRIVATE KEY-----") && line.len() < 80 {
            let next = &data[(line_end + 1).min(data.len())..];
            if next.starts_with(b"Proc-Type:") {
                return true;
            }
            let body = next
                .iter()
                .take_while(|b| {
                    b.is_ascii_alphanumeric() || **b == b'+' || **b == b'/' || **b == b'='
                })
                .count();
            if body >= 16 {
                return true;
            }
        }
        i = start + BEGIN.len();
    }
    false
}

/// memchr's SIMD substring search: the check reads every file of the tree before each
/// publish, and a byte-by-byte window compare made it the slowest step of a pack
/// (91 s for a 650 MB tree in a debug build on a loaded 2-core machine).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The account whose password field in a shadow-like text is a crypt hash.
pub fn hashed_account(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let pw = f.next()?;
        CRYPT_PREFIXES
            .iter()
            .any(|p| pw.starts_with(p) && pw.len() > p.len())
            .then(|| name.to_string())
    })
}

fn allowed(rel: &str, allow: &[String]) -> bool {
    allow
        .iter()
        .any(|a| rel == a || (rel.starts_with(a.as_str()) && rel[a.len()..].starts_with('/')))
}

/// Walks `tree` and returns the first finding (None: nothing secret).
pub fn scan(tree: &Path, allow: &[String], bmc_passwords: &[String]) -> Result<Option<Finding>> {
    let passwords: Vec<&[u8]> = bmc_passwords
        .iter()
        .filter(|p| p.len() >= MIN_BMC_PASSWORD)
        .map(|p| p.as_bytes())
        .collect();
    let walk = walkdir::WalkDir::new(tree)
        .follow_links(false)
        .same_file_system(true)
        .sort_by_file_name();
    for e in walk {
        let e = match e {
            Ok(e) => e,
            // a tree being built may lose a file under us: the next walk sees it
            Err(err)
                if err
                    .io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                continue
            }
            Err(err) => {
                return Err(Error::invalid(format!(
                    "secrets check of {}: {err}",
                    tree.display()
                )))
            }
        };
        if !e.file_type().is_file() {
            continue;
        }
        let Ok(rel) = e.path().strip_prefix(tree) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        if allowed(&rel, allow) {
            continue;
        }
        let Ok(md) = e.metadata() else { continue };
        if md.len() > MAX_FILE {
            continue;
        }
        let data = match std::fs::read(e.path()) {
            Ok(d) => d,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(Error::io(e.path(), err)),
        };
        if has_private_key(&data) {
            let fix = if rel.starts_with("etc/ssh/ssh_host_") {
                "remove it: per-node host keys are delivered at boot, README \"Security\""
                    .to_string()
            } else {
                "remove it, deliver it per node from secrets_dir/extra (README \"Security\"), or list it in secrets_allow".to_string()
            };
            return Ok(Some(Finding {
                path: rel,
                what: "a private key".into(),
                fix,
            }));
        }
        if SHADOW_FILES.contains(&rel.as_str()) {
            if let Some(acct) = hashed_account(&String::from_utf8_lossy(&data)) {
                return Ok(Some(Finding {
                    path: rel,
                    what: format!("a password hash for {acct}"),
                    fix: format!("lock it (`usermod -p '*' {acct}` in the image): root's hash given at creation is delivered per node at boot, README \"Security\""),
                }));
            }
        }
        if !passwords.is_empty()
            && memchr::memchr(0, &data).is_none()
            && passwords.iter().any(|p| find(&data, p).is_some())
        {
            return Ok(Some(Finding {
                path: rel,
                what: "a BMC password of the BMC secrets file".into(),
                fix: "remove it: BMC credentials stay in bmc_secrets_file on the server".into(),
            }));
        }
    }
    Ok(None)
}

/// The check before publishing `image` from `tree`: refuses with one line on the
/// first finding.
pub fn check_publish(cfg: &Config, image: &str, tree: &Path) -> Result<()> {
    // The BMC secrets file is optional; an unreadable one is reported by power commands.
    let bmc: Vec<String> = crate::power::secrets::Secrets::load(cfg)
        .map(|s| s.passwords().map(|p| p.expose().to_string()).collect())
        .unwrap_or_default();
    let t = std::time::Instant::now();
    let found = scan(tree, &cfg.secrets_allow, &bmc)?;
    tracing::info!(
        "secrets check of image {image}: {} in {:.1} s",
        if found.is_some() { "refused" } else { "clean" },
        t.elapsed().as_secs_f64()
    );
    match found {
        None => Ok(()),
        Some(f) => Err(Error::invalid(format!(
            "refusing to publish image {image}: {} holds {} ({})",
            f.path, f.what, f.fix
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn keys_are_found_the_header_alone_is_not() {
        assert!(has_private_key(KEY.as_bytes()));
        assert!(has_private_key(
            b"x\r\n-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\n"
        ));
        // what ssh-keygen's binary carries
        assert!(!has_private_key(
            b"\0-----BEGIN OPENSSH PRIVATE KEY-----\n\0-----END OPENSSH PRIVATE KEY-----\n\0"
        ));
        assert!(!has_private_key(
            b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC\n"
        ));
    }

    #[test]
    fn shadow_hashes_but_not_locked_fields() {
        assert_eq!(
            hashed_account("root:*:1:0:::\nbob:$6$salt$digest:1::::\n").as_deref(),
            Some("bob")
        );
        assert_eq!(hashed_account("root:!:1::::\nx:!$6$a$b:1::::\n"), None);
        assert_eq!(
            hashed_account("root:$y$j9T$a$b:1::::\n").as_deref(),
            Some("root")
        );
    }

    #[test]
    fn scan_names_the_first_finding_and_honours_allow() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        std::fs::create_dir_all(t.join("etc/ssh")).unwrap();
        std::fs::create_dir_all(t.join("opt/site")).unwrap();
        std::fs::write(t.join("etc/shadow"), "root:*:1:0:::\n").unwrap();
        std::fs::write(t.join("opt/site/conf"), "bmc = Sup3rSecretPw\n").unwrap();
        assert_eq!(scan(t, &[], &[]).unwrap(), None);
        let f = scan(t, &[], &["Sup3rSecretPw".into()]).unwrap().unwrap();
        assert_eq!(f.path, "opt/site/conf");
        std::fs::write(t.join("etc/ssh/ssh_host_ed25519_key"), KEY).unwrap();
        let f = scan(t, &[], &[]).unwrap().unwrap();
        assert_eq!(f.path, "etc/ssh/ssh_host_ed25519_key");
        assert!(f.fix.contains("delivered at boot"), "{f:?}");
        assert_eq!(scan(t, &["etc/ssh".into()], &[]).unwrap(), None);
        // a symlink to a key elsewhere is not followed
        std::fs::remove_file(t.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
        let o = tempfile::tempdir().unwrap();
        std::fs::write(o.path().join("k"), KEY).unwrap();
        std::os::unix::fs::symlink(o.path().join("k"), t.join("etc/ssh/link")).unwrap();
        assert_eq!(scan(t, &[], &[]).unwrap(), None);
        std::fs::write(t.join("etc/shadow"), "root:$6$ab$cd:1:0:::\n").unwrap();
        let f = scan(t, &[], &[]).unwrap().unwrap();
        assert_eq!(
            (f.path.as_str(), f.what.as_str()),
            ("etc/shadow", "a password hash for root")
        );
    }
}
