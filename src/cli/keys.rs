//! `mimix keys export FILE` and `mimix keys import FILE`: a backup of the
//! node's remailer keys and onion identity, and its restore into a fresh
//! data directory (see [`mimix::keystore::backup`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use mimix::keystore::backup;

use super::node::{ConfigArgs, load_config};

/// `mimix keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Write the node's remailer keys and onion identity key to a new file
    /// (mode 0600). The node must be stopped.
    Export(KeysArgs),
    /// Restore a backup into a node without keys (a fresh data directory):
    /// same remailer keys, same onion address. The node must be stopped.
    Import(KeysArgs),
}

/// Arguments of `mimix keys export` and `import`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The backup file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

/// Runs a `mimix keys` subcommand.
pub fn run(cmd: KeysCmd) -> anyhow::Result<()> {
    super::warn_if_root();
    let (export, a) = match cmd {
        KeysCmd::Export(a) => (true, a),
        KeysCmd::Import(a) => (false, a),
    };
    let what = if export { "export" } else { "import" };
    let config = load_config(&a.config)?;
    let (store, keys, tor) = (config.store_dir(), config.keys_dir(), &config.tor);
    let result = if export {
        backup::export(&store, &keys, tor, &a.file)
    } else {
        backup::import(&a.file, &store, &keys, tor)
    };
    let done = result.map_err(|e| match e {
        backup::BackupError::Store(s) if s.is_locked() => {
            anyhow::anyhow!("the node is running: stop it first (its store is locked)")
        }
        e => anyhow::Error::new(e),
    });
    let summary = done.with_context(|| format!("keys {what} {}", a.file.display()))?;
    let verb = if export { "wrote" } else { "restored" };
    println!(
        "{verb} {} remailer key(s): {}",
        summary.key_ids.len(),
        summary.key_ids.join(", ")
    );
    match &summary.onion_address {
        Some(a) => println!("onion address: http://{a}"),
        None => println!("no onion identity (the node has not made one yet)"),
    }
    Ok(())
}
