//! What a submitted form or a confirmed popup asks for. Forms and popups produce these;
//! `perform` turns them into ops calls (jobs). Nothing here runs anything.
use disklessset::ops::Request;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Nothing,
    /// Perform this core request as a job.
    Run(Request),
    /// Ask first (the popup names the node directories), then run
    /// `Request::NfsNodesRemove`.
    AskNfsNodesRemove {
        image: String,
        set: String,
    },
    /// Ask with the request's own confirmation (the sentence the CLI prompts with),
    /// then run it; a request the CLI does not ask about runs at once. With `preview`,
    /// the popup first lists what a dry run of the request says (`gc` shows its
    /// `--dry-run` list before asking).
    Ask {
        request: Request,
        preview: bool,
    },
    /// `diff A B`: a query, run as a job whose report lines go to its output pane.
    Diff {
        a: String,
        b: String,
    },
    /// The form's values could not become a request (hashing the password failed, ...).
    Invalid(String),
    /// Cancel the running job (after its own confirmation).
    CancelJob,
    /// Hand the terminal to a command in an image (the UI suspended meanwhile).
    Foreground(Foreground),
}

/// What runs in the foreground with the real terminal: the CLI's `shell`, `exec` and
/// `ansible`, the same ops calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Foreground {
    Shell {
        name: String,
    },
    Exec {
        name: String,
        cmd: Vec<String>,
    },
    Ansible {
        name: String,
        playbook: std::path::PathBuf,
        keep_on_failure: bool,
        args: Vec<String>,
    },
}

impl Foreground {
    pub fn image(&self) -> &str {
        match self {
            Foreground::Shell { name }
            | Foreground::Exec { name, .. }
            | Foreground::Ansible { name, .. } => name,
        }
    }
}
