//! Typed errors of the core. Every message names the input at fault and, where
//! there is one, the fix. Front-ends print them on one line.
use std::path::PathBuf;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {kind} name {name:?}: {rule}")]
    InvalidName {
        kind: &'static str,
        name: String,
        rule: &'static str,
    },

    #[error("config {file}: {msg}")]
    Config { file: String, msg: String },

    #[error("{path}: {msg}")]
    Yaml { path: PathBuf, msg: String },

    /// A parameters file's value at fault: `FILE:LINE:COLUMN: FIELD: problem (allowed: ...)`.
    #[error("{file}:{line}:{column}: {field}: {problem}")]
    Param {
        file: PathBuf,
        line: u64,
        column: u64,
        field: String,
        problem: String,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Invalid(String),

    #[error("image {0} does not exist (see `disklessset list`)")]
    NoSuchImage(String),

    #[error("image {0} already exists: choose another name or remove it first")]
    ImageExists(String),

    #[error("image {name} is locked by pid {pid} ({operation})")]
    Locked {
        name: String,
        pid: i32,
        operation: String,
    },

    #[error("the store is locked by pid {pid} ({operation})")]
    StoreLocked { pid: i32, operation: String },

    #[error("command failed: {cmdline}: {status}{tail}")]
    Command {
        cmdline: String,
        status: String,
        tail: String,
    },

    #[error("cannot run {program}: {source} (install it, e.g. with `apt-get install {package}`)")]
    Spawn {
        program: String,
        package: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },

    #[error("refusing to remove {path}: {mount} is still mounted below it (unmount it by hand, then retry)")]
    StillMounted { path: PathBuf, mount: PathBuf },

    #[error("refusing to remove {path}: it is on another filesystem than {root} (a mount that vanished from mountinfo?)")]
    CrossesFilesystem { path: PathBuf, root: PathBuf },

    #[error("{0} requires confirmation: stdin is not a terminal, pass --yes")]
    NeedsConfirmation(String),

    #[error("cancelled")]
    Cancelled,

    #[error("image {name} is {state}: {hint}")]
    WrongState {
        name: String,
        state: String,
        hint: String,
    },

    #[error("{0}")]
    Module(String),

    /// The package manager could not find packages the build asked for.
    #[error("package not found: {packages} (looked in {sources}): check the spelling, the release, and the components / repositories")]
    PackageNotFound { packages: String, sources: String },

    /// A package mirror or repository did not answer.
    #[error("cannot reach the package mirror {url}: {reason} ({fix})")]
    MirrorUnreachable {
        url: String,
        reason: String,
        fix: String,
    },

    /// dnf with gpgcheck on and no key to check with: the reference's most reported failure.
    #[error("refusing to build {distro} with gpgcheck on: no GPG key is configured for repo(s) {repos}: set `gpg_keys: [{hint}]` in {config} (the key that signs these repos)")]
    GpgKeyMissing {
        distro: String,
        repos: String,
        hint: String,
        config: String,
    },

    /// A BMC that did not do what was asked: `BMC 10.0.0.41 timed out after 10 s`.
    #[error("BMC {address} {msg}")]
    Bmc { address: String, msg: String },

    /// A root tree that lacks what an image needs.
    #[error("{tree}: {msg}")]
    Tree { tree: PathBuf, msg: String },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// Extension to attach a path to `std::io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
