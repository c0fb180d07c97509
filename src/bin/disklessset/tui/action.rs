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
    /// The form's values could not become a request (hashing the password failed, ...).
    Invalid(String),
    /// Cancel the running job (after its own confirmation).
    CancelJob,
}
