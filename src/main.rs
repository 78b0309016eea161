//! The `mimix` command.

use clap::{Parser, Subcommand};
use mimix::cli::packet::{KeygenArgs, PacketCmd};

/// mimix: a Tor-native anonymous remailer (Mimix protocol v1).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Offline packet tools: build and peel.
    #[command(subcommand)]
    Packet(PacketCmd),
    /// Generate a new RSA key pair and print its key ID.
    Keygen(KeygenArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
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
