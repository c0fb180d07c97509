//! Booting nodes: iPXE scripts (image scripts, bootset's entry and node scripts) and the HTTP boot server.
pub mod bootset;
pub mod discovery;
pub mod http;
pub mod install;
pub mod ipxe;
pub mod render;
pub mod replicate;
pub mod secrets;
pub mod seen;
pub mod serve;
