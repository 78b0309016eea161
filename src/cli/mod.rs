//! The command line: clap definitions and the commands that run at the
//! edge (the only place `anyhow` is used).

pub mod demo;
pub mod node;
pub mod packet;
pub mod testnet;
