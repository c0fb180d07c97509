//! Booting nodes: the inventory, node sets, bootset's iPXE scripts and the HTTP server.
pub mod bootset;
pub mod http;
pub mod inventory;
pub mod nodeset;
pub mod serve;
