//! The image store: records, states derived from facts, creation markers, locks.
pub mod lock;
pub mod record;
pub mod secrets;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::names;
use crate::sys::mountinfo::{self, MountEntry};

pub use lock::{Lock, LockInfo};
pub use record::{ImageClass, ImageRecord, Layout, LivenetType};

/// An image's state, derived from facts (live lock holder, creation marker, mountinfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Created,
    InCreation,
    Mounted,
    Corrupted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::InCreation => "in_creation",
            State::Mounted => "mounted",
            State::Corrupted => "corrupted",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything `list`/`show` report about one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub state: State,
    pub module: Option<String>,
    pub layout: Option<String>,
    pub size_bytes: u64,
    pub kernel: Option<String>,
    pub generation: u32,
    /// `--transient`: `gc` removes it once unassigned and not booted lately.
    pub transient: bool,
    /// sha256 of the published `squashfs.img` (livenet), recorded at publish time.
    pub sha256: Option<String>,
    /// The live process holding the image's lock, if any.
    pub holder: Option<LockInfo>,
    /// A crashed operation's lock (holder dead).
    pub interrupted: Option<LockInfo>,
    /// Mount points below the image's work dir.
    pub mounts: Vec<PathBuf>,
    /// Why it is corrupted, or what looks wrong.
    pub problem: Option<String>,
    pub dir: PathBuf,
    pub record: Option<ImageRecord>,
    /// Issue 15: the build record and the current generation's packages (filled by
    /// `ops::show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<serde_json::Value>,
}

impl ImageInfo {
    /// The state as people read it: `in_creation (pid N)` names the creating process.
    pub fn state_label(&self) -> String {
        match (self.state, &self.holder) {
            (State::InCreation, Some(h)) => format!("in_creation (pid {})", h.pid),
            (s, _) => s.to_string(),
        }
    }
}

/// What a creation marker holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    pid: i32,
    start: u64,
    operation: String,
}

fn marker_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.state_dir.join("creating").join(name)
}

/// Does the store exist? Read-only commands refuse a missing store rather than invent one.
pub fn require_store(cfg: &Config) -> Result<()> {
    if cfg.images_dir.is_dir() || cfg.root.as_ref().map(|r| r.is_dir()).unwrap_or(false) {
        return Ok(());
    }
    let shown = cfg.root.as_ref().unwrap_or(&cfg.images_dir);
    Err(Error::invalid(format!(
        "store {} does not exist: check --root/DISKLESSSET_ROOT or the config's paths, or create an image first",
        shown.display()
    )))
}

/// Creates the store's directories (first mutating command).
pub fn ensure_store(cfg: &Config) -> Result<()> {
    for d in cfg.store_dirs() {
        fsutil::ensure_dir(d)?;
    }
    fsutil::ensure_dir(&cfg.locks_dir())
}

/// Loads an image's record.
pub fn load(cfg: &Config, name: &str) -> Result<ImageRecord> {
    names::image(name)?;
    let p = cfg.image_data_file(name);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if cfg.image_dir(name).exists() || marker_path(cfg, name).exists() {
                return Err(Error::WrongState {
                    name: name.to_string(),
                    state: "corrupted".into(),
                    hint: format!("{} is missing; run `disklessset clear {name}`", p.display()),
                });
            }
            return Err(Error::NoSuchImage(name.to_string()));
        }
        Err(e) => return Err(Error::io(&p, e)),
    };
    let rec = ImageRecord::parse(&text, &p)?;
    if rec.name != name {
        return Err(Error::invalid(format!(
            "{}: name {:?} does not match its directory {name:?}",
            p.display(),
            rec.name
        )));
    }
    Ok(rec)
}

/// Saves an image's record atomically.
pub fn save(cfg: &Config, rec: &ImageRecord) -> Result<()> {
    let text = rec.to_yaml()?;
    fsutil::write_atomic(&cfg.image_data_file(&rec.name), text.as_bytes(), 0o600)
}

/// Names of all images: directories of the images dir plus creations in progress.
pub fn names(cfg: &Config) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for dir in [cfg.images_dir.clone(), cfg.state_dir.join("creating")] {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for e in rd {
            let e = e.at(&dir)?;
            let n = e.file_name().to_string_lossy().into_owned();
            if names::image(&n).is_err() {
                continue; // temp files, dotfiles, foreign names
            }
            if dir == cfg.images_dir && !e.path().is_dir() {
                continue;
            }
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Derives the state of one image from facts.
pub fn info(cfg: &Config, name: &str, mounts: &[MountEntry]) -> ImageInfo {
    let dir = cfg.image_dir(name);
    let holder = lock::holder(cfg, name);
    let interrupted = lock::stale(cfg, name);
    let work = cfg.image_workdir(name);
    let mounted: Vec<PathBuf> = mountinfo::below(mounts, &work)
        .into_iter()
        .map(|m| m.mount_point.clone())
        .collect();
    let marker = read_marker(cfg, name);
    let loaded = if cfg.image_data_file(name).exists() {
        Some(load(cfg, name))
    } else {
        None
    };
    let (record, load_err) = match loaded {
        Some(Ok(r)) => (Some(r), None),
        Some(Err(e)) => (None, Some(e.to_string())),
        None => (None, None),
    };
    let (state, problem) = if let Some(m) = &marker {
        match &holder {
            Some(h) if h.pid == m.pid => (State::InCreation, None),
            _ => (
                State::Corrupted,
                Some(format!(
                    "{} by pid {} did not finish; run `disklessset clear {name}`",
                    m.operation, m.pid
                )),
            ),
        }
    } else if let Some(e) = load_err {
        (State::Corrupted, Some(e))
    } else if record.is_none() {
        (
            State::Corrupted,
            Some(format!(
                "no image_data.yml in {}; run `disklessset clear {name}`",
                dir.display()
            )),
        )
    } else {
        let mnt = work.join("mnt");
        if mounted.iter().any(|m| m == &mnt) {
            (State::Mounted, None)
        } else if !mounted.is_empty() && holder.is_none() {
            (
                State::Created,
                Some(format!(
                    "leftover mounts below {}; run `disklessset recover`",
                    work.display()
                )),
            )
        } else {
            (State::Created, None)
        }
    };
    let problem = problem.or_else(|| {
        interrupted
            .as_ref()
            .filter(|_| state != State::Corrupted)
            .map(|i| {
                format!(
                    "{} by pid {} was interrupted; run `disklessset recover`",
                    i.operation, i.pid
                )
            })
    });
    ImageInfo {
        name: name.to_string(),
        state,
        module: record.as_ref().map(|r| r.image_class.module().to_string()),
        layout: record
            .as_ref()
            .and_then(|r| r.layout.map(|l| l.as_str().to_string())),
        size_bytes: fsutil::tree_size(&dir),
        kernel: record.as_ref().and_then(|r| r.kernel.clone()),
        generation: record.as_ref().map(|r| r.generation).unwrap_or(0),
        transient: record.as_ref().is_some_and(record::is_transient),
        sha256: fsutil::read_digest(&dir.join("squashfs.img")),
        holder,
        interrupted,
        mounts: mounted,
        problem,
        dir,
        record,
        build: None,
    }
}

/// All images with their states.
pub fn list(cfg: &Config) -> Result<Vec<ImageInfo>> {
    let mounts = mountinfo::read()?;
    Ok(names(cfg)?.iter().map(|n| info(cfg, n, &mounts)).collect())
}

fn read_marker(cfg: &Config, name: &str) -> Option<Marker> {
    let text = fs::read_to_string(marker_path(cfg, name)).ok()?;
    serde_json::from_str(&text).ok().or(Some(Marker {
        pid: 0,
        start: 0,
        operation: "creation".into(),
    }))
}

/// A creation in progress: holds the image lock and the creation marker. Dropping it
/// without `finish` (an error, a panic, a kill) leaves the image `corrupted`.
#[derive(Debug)]
pub struct Creation {
    lock: Lock,
    name: String,
    marker: PathBuf,
}

impl Creation {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks the creation complete.
    pub fn finish(self) -> Result<()> {
        fs::remove_file(&self.marker).at(&self.marker)?;
        if let Some(d) = self.marker.parent() {
            fsutil::sync_dir(d)?;
        }
        drop(self.lock);
        Ok(())
    }
}

/// Reserves `name` for a new image: store lock, image lock, marker, image directory.
pub fn begin_creation(cfg: &Config, name: &str, operation: &str) -> Result<Creation> {
    names::image(name)?;
    ensure_store(cfg)?;
    let _store = lock::lock_store(cfg, operation)?;
    let marker = marker_path(cfg, name);
    if marker.exists() {
        if let Some(h) = lock::holder(cfg, name) {
            return Err(Error::Locked {
                name: name.to_string(),
                pid: h.pid,
                operation: h.operation,
            });
        }
        return Err(Error::WrongState {
            name: name.to_string(),
            state: "corrupted".into(),
            hint: format!(
                "an earlier creation did not finish; run `disklessset clear {name}` first"
            ),
        });
    }
    if cfg.image_dir(name).exists() {
        return Err(Error::ImageExists(name.to_string()));
    }
    let lock = lock::lock_image(cfg, name, operation)?;
    let m = Marker {
        pid: std::process::id() as i32,
        start: crate::sys::proc::self_start_time(),
        operation: operation.to_string(),
    };
    fsutil::write_atomic(
        &marker,
        serde_json::to_string(&m).unwrap_or_default().as_bytes(),
        0o644,
    )?;
    fs::create_dir_all(cfg.image_dir(name)).at(cfg.image_dir(name))?;
    Ok(Creation {
        lock,
        name: name.to_string(),
        marker,
    })
}

/// Removes the creation marker of a cleared image.
pub fn drop_marker(cfg: &Config, name: &str) -> Result<()> {
    let p = marker_path(cfg, name);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}

/// Path helper used by modules: is `p` inside `root`?
pub fn is_inside(p: &Path, root: &Path) -> bool {
    p.starts_with(root)
}
