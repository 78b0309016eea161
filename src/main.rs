//! The `mimix` command.

use clap::{Parser, Subcommand};
use mimix::cli::node::{ConfigArgs, InitArgs, SendArgs};
use mimix::cli::packet::{KeygenArgs, PacketCmd};
use mimix::cli::testnet::TestnetArgs;

/// mimix: a Tor-native anonymous remailer (Mimix protocol v1).
#[derive(Debug, Parser)]
#[command(version, about)]
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
    /// Print the node's counters and queue sizes.
    Status(ConfigArgs),
    /// Run a four-node network (over a private Tor network if `tor` is
    /// installed, else on loopback) and send a message through it.
    Demo,
    /// Run a private Tor network on 127.0.0.1 with mimix nodes on it, until
    /// Ctrl-C.
    Testnet(TestnetArgs),
    /// Send a message (or a dummy) through a chain of remailers.
    Send(SendArgs),
    /// Offline packet tools: build and peel.
    #[command(subcommand)]
    Packet(PacketCmd),
    /// Generate a new RSA key pair and print its key ID.
    Keygen(KeygenArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Init(a) => mimix::cli::node::init(a),
        Cmd::Run(a) => mimix::cli::node::run(a),
        Cmd::Address(a) => mimix::cli::node::address(a),
        Cmd::Status(a) => mimix::cli::node::status(a),
        Cmd::Demo => mimix::cli::demo::run(),
        Cmd::Testnet(a) => mimix::cli::testnet::run(a),
        Cmd::Send(a) => mimix::cli::node::send(a),
        Cmd::Packet(c) => mimix::cli::packet::run(c),
        Cmd::Keygen(a) => mimix::cli::packet::keygen(a),
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
