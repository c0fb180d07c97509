//! The image half of the secrets store (issue 12): `<secrets_dir>/images/IMAGE/`
//! holds what an image's tree no longer carries: `root.hash` (the root password hash
//! given at creation; the tree's etc/shadow has root locked) and `authorized_keys`.
//! Directories 0700, files 0600; never under the web root (config `secrets_dir`).
//! The node half (host keys, the bundle) is boot::secrets.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, IoContext, Result};

/// `<secrets_dir>/images/IMAGE`.
pub fn image_dir(cfg: &Config, image: &str) -> PathBuf {
    cfg.secrets_dir.join("images").join(image)
}

/// Creates `dir` and its parents up to (and including) `secrets_dir`, each 0700.
pub fn ensure_private_dir(cfg: &Config, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).at(dir)?;
    let mut p = dir.to_path_buf();
    loop {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).at(&p)?;
        if p == cfg.secrets_dir || !p.starts_with(&cfg.secrets_dir) || !p.pop() {
            break;
        }
    }
    Ok(())
}

/// Stores an image's root hash and root's authorized keys (None removes them), 0600.
pub fn store_image_secrets(
    cfg: &Config,
    image: &str,
    root_hash: Option<&str>,
    authorized_keys: Option<&str>,
) -> Result<()> {
    crate::names::image(image)?;
    let dir = image_dir(cfg, image);
    ensure_private_dir(cfg, &dir)?;
    for (name, value) in [
        ("root.hash", root_hash),
        ("authorized_keys", authorized_keys),
    ] {
        let p = dir.join(name);
        match value {
            Some(v) => crate::fsutil::write_atomic(&p, v.trim_end().as_bytes(), 0o600)?,
            None => match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&p, e)),
            },
        }
    }
    Ok(())
}

/// The root hash stored for an image, if any.
pub fn image_root_hash(cfg: &Config, image: &str) -> Option<String> {
    let text = std::fs::read_to_string(image_dir(cfg, image).join("root.hash")).ok()?;
    let h = text.trim().to_string();
    (!h.is_empty()).then_some(h)
}

/// Copies an image's secrets to a new name (clone); nothing to copy is fine.
pub fn copy_image_secrets(cfg: &Config, from: &str, to: &str) -> Result<()> {
    let src = image_dir(cfg, from);
    if !src.is_dir() {
        return Ok(());
    }
    let dst = image_dir(cfg, to);
    ensure_private_dir(cfg, &dst)?;
    for name in ["root.hash", "authorized_keys"] {
        let s = src.join(name);
        if let Ok(data) = std::fs::read(&s) {
            crate::fsutil::write_atomic(&dst.join(name), &data, 0o600)?;
        }
    }
    Ok(())
}

/// Removes an image's secrets (image removed).
pub fn remove_image_secrets(cfg: &Config, image: &str) -> Result<()> {
    remove_dir_quiet(&image_dir(cfg, image))
}

fn remove_dir_quiet(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}
