//! The system layer: the command runner, mounts, mountinfo, safe removal, processes.
pub mod mount;
pub mod mountinfo;
pub mod ns;
pub mod proc;
pub mod reaper;
pub mod remove;
pub mod runner;

pub use runner::{Cmd, Output, Runner};
