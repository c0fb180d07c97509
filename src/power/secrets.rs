//! The BMC secrets file (`bmc_secrets_file`): the only place BMC passwords live. A YAML
//! mapping whose keys say which BMCs an entry is for, most specific first:
//!
//! ```yaml
//! c001: {user: admin, password: "..."}   # one node
//! 10.0.0.41: "..."                       # one BMC address (a plain string: the password)
//! "@compute": {password: "..."}          # every node of a group
//! "*": {user: root, password: "..."}     # everyone else
//! ```
//!
//! The file must belong to the user running the tool (root) and have no group or other
//! permission bits (0600 or 0400): anything wider is refused before any BMC is
//! contacted. It must not lie in the web root. Passwords are held in [`Secret`], whose
//! `Debug` prints `***` and which has no `Serialize`: they cannot reach a log line, a
//! plan or a JSON report by accident.
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use yaml_serde::Value;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::yaml::{describe_error, scalar_string};

/// A password. Never printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The clear text, for the one place that hands it to the BMC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One entry: the password and optionally the user name (overrides the inventory's).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub user: Option<String>,
    pub password: Secret,
}

/// The parsed secrets file.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub file: PathBuf,
    /// False when the file does not exist (every BMC is contacted without credentials).
    pub present: bool,
    entries: BTreeMap<String, Entry>,
}

impl Secrets {
    /// Reads `cfg.bmc_secrets_file`; a missing file is an empty set, a file readable by
    /// others or inside the web root is refused.
    pub fn load(cfg: &Config) -> Result<Secrets> {
        let file = cfg.bmc_secrets_file.clone();
        let meta = match std::fs::metadata(&file) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Secrets {
                    file,
                    ..Default::default()
                })
            }
            Err(e) => return Err(Error::io(&file, e)),
        };
        check_location(cfg, &file)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::invalid(format!(
                "BMC secrets file {}: mode {mode:04o} lets others read the passwords; refused: run `chmod 600 {}`",
                file.display(),
                file.display()
            )));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(Error::invalid(format!(
                "BMC secrets file {}: owned by uid {}, not by uid {me} running this command; refused: run `chown {me} {}`",
                file.display(),
                meta.uid(),
                file.display()
            )));
        }
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let entries = parse(&text, &file)?;
        Ok(Secrets {
            file,
            present: true,
            entries,
        })
    }

    /// The entry for a node: by node name, by BMC address, by its groups in order, then
    /// `*`.
    pub fn lookup(&self, node: &str, address: &str, groups: &[String]) -> Option<&Entry> {
        self.entries
            .get(node)
            .or_else(|| self.entries.get(address))
            .or_else(|| {
                groups
                    .iter()
                    .find_map(|g| self.entries.get(&format!("@{g}")))
            })
            .or_else(|| self.entries.get("*"))
    }

    /// Every password in the file (tests and the leak checks of callers).
    pub fn passwords(&self) -> impl Iterator<Item = &Secret> {
        self.entries.values().map(|e| &e.password)
    }
}

/// The secrets file must not be served: refuse a path inside the web root.
fn check_location(cfg: &Config, file: &Path) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canon(file).starts_with(canon(&cfg.web_root)) {
        return Err(Error::invalid(format!(
            "BMC secrets file {} is inside the web root {}: anyone could download it; move it (e.g. to /etc/disklessset/bmc-secrets.yml) and set bmc_secrets_file",
            file.display(),
            cfg.web_root.display()
        )));
    }
    Ok(())
}

/// Parses the file's text. Error messages name the key, never a value.
pub fn parse(text: &str, path: &Path) -> Result<BTreeMap<String, Entry>> {
    let bad = |msg: String| Error::Yaml {
        path: path.to_path_buf(),
        msg,
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let doc: Value = yaml_serde::from_str(text).map_err(|e| bad(describe_error(&e)))?;
    let Value::Mapping(top) = doc else {
        return Err(bad(
            "the top level must be a mapping of NODE, BMC address, @group or \"*\": {user, password}".into(),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in &top {
        let key = scalar_string(k).ok_or_else(|| bad("keys must be strings".into()))?;
        let entry = match v {
            Value::Mapping(m) => {
                for fk in m.keys() {
                    let f = fk.as_str().unwrap_or_default();
                    if f != "user" && f != "password" {
                        return Err(bad(format!(
                            "{key}.{f}: unknown field; allowed fields are user, password"
                        )));
                    }
                }
                let password = m
                    .get("password")
                    .and_then(scalar_string)
                    .ok_or_else(|| bad(format!("{key}: password is missing")))?;
                Entry {
                    user: m.get("user").and_then(scalar_string),
                    password: Secret(password),
                }
            }
            other => Entry {
                user: None,
                password: Secret(scalar_string(other).ok_or_else(|| {
                    bad(format!(
                        "{key}: must be a password or a mapping {{user, password}}"
                    ))
                })?),
            },
        };
        out.insert(key, entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lookup_order_and_masking() {
        let text = "c1: {user: u1, password: p1}\n10.0.0.2: p2\n'@gpu': {password: p3}\n'*': {user: root, password: p4}\n";
        let s = Secrets {
            entries: parse(text, Path::new("s.yml")).unwrap(),
            present: true,
            ..Default::default()
        };
        let g = |n: &str, a: &str, gs: &[&str]| {
            let gs: Vec<String> = gs.iter().map(|s| s.to_string()).collect();
            s.lookup(n, a, &gs).map(|e| e.password.expose().to_string())
        };
        assert_eq!(g("c1", "x", &[]).as_deref(), Some("p1"));
        assert_eq!(g("c2", "10.0.0.2", &["gpu"]).as_deref(), Some("p2"));
        assert_eq!(g("c3", "x", &["cpu", "gpu"]).as_deref(), Some("p3"));
        assert_eq!(g("c4", "x", &[]).as_deref(), Some("p4"));
        let e = s.lookup("c1", "", &[]).unwrap();
        assert!(!format!("{e:?}").contains("p1"), "{e:?}");
        let e = parse("c1: {pasword: x}\n", Path::new("s.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c1.pasword") && !e.contains(": x"), "{e}");
    }

    #[test]
    fn shipped_example_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("share/bmc-secrets.yml");
        let e = parse(&std::fs::read_to_string(&p).unwrap(), &p).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e["c001"].user.as_deref(), Some("admin"));
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::under_root(d.path()).unwrap();
        assert!(!Secrets::load(&cfg).unwrap().present);
        std::fs::write(&cfg.bmc_secrets_file, "c1: pw\n").unwrap();
        std::fs::set_permissions(
            &cfg.bmc_secrets_file,
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = Secrets::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(
            &cfg.bmc_secrets_file,
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let s = Secrets::load(&cfg).unwrap();
        assert_eq!(s.passwords().count(), 1);
    }
}
