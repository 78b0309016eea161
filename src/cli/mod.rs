//! The command line: clap definitions and the commands that run at the
//! edge (the only place `anyhow` is used). Private to the `mimix` binary.

pub mod demo;
mod localnet;
pub mod logs;
pub mod node;
pub mod packet;
pub mod send;
pub mod status;
pub mod testnet;
mod update;
pub mod version;
