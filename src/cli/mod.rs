//! The command line: clap definitions and the commands that run at the
//! edge (the only place `anyhow` is used). Private to the `mimix` binary.

pub mod block;
pub mod demo;
pub mod keys;
mod localnet;
pub mod logs;
pub mod node;
pub mod packet;
pub mod send;
pub mod sender;
pub mod status;
pub mod testnet;
mod update;
pub mod version;

/// Warns (on standard error) when run as root: the node's files would be
/// owned by root, and the packaged service, running as its own user,
/// could not use them afterwards.
pub fn warn_if_root() {
    if is_root() {
        eprintln!(
            "mimix: warning: running as root; run mimix as the user that runs the node \
             (the Debian package's is _mimix: runuser -u _mimix -- mimix ...)"
        );
    }
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
