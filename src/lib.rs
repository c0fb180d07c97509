//! disklessset core library: image store, system layer, modules, operations.
//! No terminal, no argument parsing: the front-ends (CLI, TUI, bootset) live in `src/bin/`.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod boot;
pub mod build;
pub mod cluster;
pub mod config;
pub mod ctx;
pub mod error;
pub mod fsutil;
pub mod kernel;
pub mod logging;
pub mod modules;
pub mod names;
pub mod ops;
pub mod pack;
pub mod params;
pub mod power;
pub mod store;
pub mod sys;
pub mod yaml;

pub use config::Config;
pub use ctx::Ctx;
pub use error::{Error, Result};
