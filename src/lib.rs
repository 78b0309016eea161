//! mimix: a Tor-native anonymous remailer for the Mimix protocol v1.
//!
//! # Layout
//!
//! Data flows one way through the daemon:
//!
//! 1. [`transport`] accepts `POST /collector.py/msg` over HTTP (over onion
//!    services in production; a plain loopback transport for development
//!    and tests) and hands the armoured text on.
//! 2. [`mimix_packet`] (its own crate, sans-IO) checks and peels one layer:
//!    every integrity check passes before the packet ID is even looked at.
//! 3. [`store`] records the packet ID in the replay log and the peeled result
//!    in the pool in one durable batch; only then does the transport answer
//!    200.
//! 4. [`pool`] runs the timed dynamic pool and the dummy policy, moving
//!    packets to the outbound queue or to the exit.
//! 5. [`transport`] delivers queued packets to the next hop; [`exit`]
//!    reassembles chunks, inflates compressed payloads, applies the header
//!    policy and the destination blocklist, and delivers by SMTP (or posts
//!    to Usenet, by NNTP or through a mail2news gateway).
//!
//! Around that path: [`keystore`] owns our RSA keys, their rotation and the
//! `remailer-conf.txt` we publish; [`directory`] knows the other remailers;
//! [`queue`] is the one worker behind every durable queue (outbound posts,
//! mail); [`config`] aggregates the TOML configuration, each table owned by
//! its subsystem; [`node`] wires it all together; [`clock`] injects time so
//! that time-driven code is testable; [`net`] says what a host name is;
//! [`safelog`] keeps identifying data out of the logs, and [`logging`]
//! says where they go (standard error, the journal, a log file); [`admin`]
//! shows the operator the running node (status, metrics, a status page) on
//! a local listener.
//! The hidden `fuzzing` module (feature `fuzzing`) holds the properties
//! the fuzz targets under `fuzz/` and `tests/fuzz_corpus.rs` check.

pub mod admin;
pub mod clock;
pub mod config;
pub mod directory;
pub mod exit;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod keystore;
pub mod logging;
pub mod net;
pub mod node;
pub mod pool;
pub mod queue;
pub mod safelog;
pub mod sender;
pub mod store;
pub mod transport;
