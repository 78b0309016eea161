//! The `mimix` command.

mod cli;

/// jemalloc rather than glibc's malloc. With glibc, the many threads of a
/// busy node (the blocking pool's peels and writes, the storage engine's
/// workers) each get an arena, and memory freed in them stays with the
/// process: a node forwarding 300 packets at a time grew by about 10 MiB
/// per batch, to 153 MiB after 24 batches and still growing; with jemalloc
/// it levels off at about 80 MiB and gives memory back when idle. Measured
/// by `cargo bench --bench load`.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use cli::block::BlockCmd;
use cli::node::{ConfigArgs, InitArgs};
use cli::packet::{KeygenArgs, PacketCmd};
use cli::send::{RemailersArgs, SendArgs};
use cli::status::StatusArgs;
use cli::testnet::TestnetArgs;
use cli::version::VersionArgs;

/// mimix: a Tor-native anonymous remailer (Mimix protocol v1).
#[derive(Debug, Parser)]
#[command(version = cli::version::SHORT, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a commented config, create the data directory and a first key.
    Init(InitArgs),
    /// Run the remailer.
    Run(ConfigArgs),
    /// Print the node's published address (its .onion URL).
    Address(ConfigArgs),
    /// Show the node's state: live from the running node, else from its
    /// store (a table; `--json` for programs).
    Status(StatusArgs),
    /// Print the node's remailer-conf.txt (from the running node, else
    /// rendered from its store and keys).
    Conf(ConfigArgs),
    /// Run a four-node network (over a private Tor network if `tor` is
    /// installed, else on loopback) and send a message through it.
    Demo,
    /// Run a private Tor network on 127.0.0.1 with mimix nodes on it, until
    /// Ctrl-C.
    Testnet(TestnetArgs),
    /// Send a message (from a file or standard input) through a chain of
    /// remailers.
    Send(SendArgs),
    /// Send the outbox (`mimix send --queue`) at random times, and a dummy
    /// whenever nothing is queued (cover traffic), until Ctrl-C.
    Sender(cli::sender::SenderArgs),
    /// Show the remailers this node or sender knows, with their
    /// statistics; `update` fetches them from seeds.
    Remailers(RemailersArgs),
    /// Offline packet tools: build and peel.
    #[command(subcommand)]
    Packet(PacketCmd),
    /// Generate a new RSA key pair and print its key ID.
    Keygen(KeygenArgs),
    /// Back up or restore the node's keys (remailer keys and onion
    /// identity).
    #[command(subcommand)]
    Keys(cli::keys::KeysCmd),
    /// The exit's blocklist: add, remove and list addresses whose owners
    /// asked not to get mail from this remailer (see /blockme.txt).
    #[command(subcommand)]
    Block(BlockCmd),
    /// Print the version; `--verbose` adds the commit, features and Arti.
    Version(VersionArgs),
}

fn main() -> std::process::ExitCode {
    // Everything mimix writes (store, keys, Tor state, configs, packets)
    // is for its user alone, whatever the shell's umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Init(a) => cli::node::init(a),
        Cmd::Run(a) => cli::node::run(a),
        Cmd::Address(a) => cli::node::address(a),
        Cmd::Status(a) => cli::status::status(a),
        Cmd::Conf(a) => cli::status::conf(a),
        Cmd::Demo => cli::demo::run(),
        Cmd::Testnet(a) => cli::testnet::run(a),
        Cmd::Send(a) => cli::send::send(a),
        Cmd::Sender(a) => cli::sender::run(a),
        Cmd::Remailers(a) => cli::send::remailers(a),
        Cmd::Packet(c) => cli::packet::run(c),
        Cmd::Keygen(a) => cli::packet::keygen(a),
        Cmd::Keys(c) => cli::keys::run(c),
        Cmd::Block(c) => cli::block::run(c),
        Cmd::Version(a) => cli::version::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("mimix: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
