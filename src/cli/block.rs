//! `mimix block add|remove|list`: the operator's side of the recipient
//! opt-out (see `mimix::exit::optout`). Entries go to the exit's blocklist
//! file (`exit.blocklist`), which a running node reads again as soon as it
//! changes: no restart, no admin command needed.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::node::{ConfigArgs, load_config};
use mimix::exit::optout;

/// `mimix block`.
#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// Block an address (or `@domain`, a domain with its subdomains, or a
    /// `/regex/`): mail to it is dropped, never delivered. Add an entry
    /// only at the request of its owner.
    Add(EntryArgs),
    /// Unblock an entry added before.
    Remove(EntryArgs),
    /// Print the blocklist's entries.
    List(ConfigArgs),
}

/// One entry and the node's configuration.
#[derive(Debug, Args)]
pub struct EntryArgs {
    /// The address, @domain, domain or /regex/.
    entry: String,
    #[command(flatten)]
    config: ConfigArgs,
}

/// Runs a `mimix block` command.
pub fn run(cmd: BlockCmd) -> anyhow::Result<()> {
    match cmd {
        BlockCmd::Add(a) => {
            let path = blocklist(&a.config)?;
            let added = optout::add(&path, &a.entry)
                .with_context(|| format!("blocking in {}", path.display()))?;
            if added {
                println!(
                    "blocked; {} updated (a running node applies it at once)",
                    path.display()
                );
            } else {
                println!("already blocked in {}", path.display());
            }
        }
        BlockCmd::Remove(a) => {
            let path = blocklist(&a.config)?;
            let removed = optout::remove(&path, &a.entry)
                .with_context(|| format!("unblocking in {}", path.display()))?;
            if removed {
                println!("unblocked; {} updated", path.display());
            } else {
                bail!("no such entry in {}", path.display());
            }
        }
        BlockCmd::List(c) => {
            let path = blocklist(&c)?;
            for e in
                optout::entries(&path).with_context(|| format!("reading {}", path.display()))?
            {
                println!("{e}");
            }
        }
    }
    Ok(())
}

/// The configured blocklist file.
fn blocklist(args: &ConfigArgs) -> anyhow::Result<std::path::PathBuf> {
    let config = load_config(args)?;
    let path = config.exit.blocklist.clone();
    if path.as_os_str().is_empty() {
        bail!("no blocklist file: exit.blocklist is empty");
    }
    Ok(path)
}
