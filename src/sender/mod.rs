//! Sending: a message in, chains picked, packets out.
//!
//! [`Remailers`] is what a sender knows: chain candidates with their keys,
//! from a directory snapshot (a node's, or one `mimix remailers update`
//! fetched) or from conf files given by hand. [`plan`] checks the message
//! (not empty, within the payload limit, with a recipient; a missing
//! `From:` is left missing, the exit adds its own), splits it into chunks,
//! picks one chain per chunk and copy with [`chain::select`] (all ending at
//! the same exit) and builds the packets. Posting them is the caller's
//! (the command line posts each to its first hop over Tor).
//!
//! Copies (`--copies N`) send every chunk N times, each through its own
//! chain, with one message ID: the exit delivers the message once
//! (reassembly drops chunks of a message it already delivered).
//!
//! [`plan_compressed`] gzips the message first ([`compress()`]); the exit
//! inflates it after reassembly.
//!
//! [`outbox`] keeps messages queued for later (`mimix send --queue`), and
//! [`cover`] sends them, or dummies, at random times (`mimix sender`).

use std::collections::HashMap;

use mimix_packet::build::{ExitParams, build_packet};
use mimix_packet::layout::{BODY_LEN, MAX_MESSAGE_LEN};
use mimix_packet::{BuildError, ExitType, Hop, Packet, RemailerConf, build_dummy};
use rand::CryptoRng;

use crate::directory::chain::{self, Candidate, ChainError, ChainSpec, Exit, Filters};
use crate::directory::keyring::canonical;
use crate::directory::snapshot::Snapshot;
use crate::exit::gzip;

pub mod compress;
pub mod cover;
pub mod outbox;

pub use compress::{Compressed, compress};

/// Most copies of one message.
pub const MAX_COPIES: usize = 10;

/// Why a message cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message is empty.
    #[error("the message is empty")]
    Empty,
    /// The message is larger than Mimix packets carry.
    #[error("the message is {size} bytes; at most {limit} bytes fit in 255 packets")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The message names nobody to deliver to and no newsgroup.
    #[error("the message has no To, Cc, Bcc or Newsgroups header")]
    NoRecipient,
    /// The copies asked for are out of range.
    #[error("--copies must be 1 to {MAX_COPIES}")]
    Copies,
    /// No chain satisfies the chain string and the filters.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A chosen remailer has no key (an inconsistent directory).
    #[error("no key known for a chosen remailer")]
    NoKey,
    /// Building a packet failed.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The remailers a sender can use: chain candidates and their hops.
#[derive(Debug, Default)]
pub struct Remailers {
    /// For chain selection.
    pub candidates: Vec<Candidate>,
    /// Keys and addresses, by address.
    pub hops: HashMap<String, Hop>,
}

impl Remailers {
    /// The remailers of a directory snapshot usable on `today`.
    pub fn from_snapshot(snapshot: &Snapshot, today: u64) -> Self {
        let (candidates, hops) = snapshot.usable(today);
        Self { candidates, hops }
    }

    /// The remailers of conf files given by hand (valid on `today`);
    /// statistics unknown.
    pub fn from_confs(confs: &[RemailerConf]) -> Self {
        let mut out = Self::default();
        for conf in confs {
            let Some(address) = canonical(&conf.address) else {
                continue;
            };
            out.candidates.push(Candidate {
                name: conf.name.clone(),
                address: address.clone(),
                exit: conf.smtp,
                reliability: None,
                latency: None,
            });
            out.hops.insert(
                address.clone(),
                Hop {
                    key: conf.key.clone(),
                    address,
                },
            );
        }
        out
    }

    fn hops_of(&self, chain: &[&Candidate]) -> Result<Vec<Hop>, SendError> {
        chain
            .iter()
            .map(|c| self.hops.get(&c.address).cloned().ok_or(SendError::NoKey))
            .collect()
    }
}

/// One packet to post, and its chain (addresses, entry first).
#[derive(Debug)]
pub struct Planned {
    /// The packet for the first hop.
    pub packet: Packet,
    /// The chain it takes.
    pub chain: Vec<String>,
}

impl Planned {
    /// The first hop's address.
    pub fn first_hop(&self) -> &str {
        self.chain.first().map(String::as_str).unwrap_or_default()
    }
}

/// Whether the header block of `message` names at least one recipient
/// (`To:`, `Cc:`, `Bcc:`) or newsgroup (`Newsgroups:`).
pub fn has_recipient(message: &[u8]) -> bool {
    let text = String::from_utf8_lossy(message);
    let head = text
        .split("\n\n")
        .next()
        .unwrap_or("")
        .split("\r\n\r\n")
        .next()
        .unwrap_or("");
    head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        ["to:", "cc:", "bcc:", "newsgroups:"]
            .iter()
            .any(|p| l.starts_with(p))
    })
}

/// Checks `message` and builds its packets: every chunk, `copies` times,
/// each through its own chain for `spec` under `filters`, all ending at one
/// exit.
pub fn plan<R: CryptoRng + ?Sized>(
    rng: &mut R,
    message: &[u8],
    spec: &ChainSpec,
    remailers: &Remailers,
    filters: &Filters,
    copies: usize,
    today: u64,
) -> Result<Vec<Planned>, SendError> {
    check(message, MAX_MESSAGE_LEN)?;
    build(rng, message, spec, remailers, filters, copies, today)
}

/// As [`plan`], with the message gzipped first ([`compress`]). The message
/// may be as large as an exit inflates by default
/// ([`gzip::DEFAULT_LIMIT`]) as long as its compressed form fits in 255
/// packets; the [`Compressed`] tells how many packets that saved.
pub fn plan_compressed<R: CryptoRng + ?Sized>(
    rng: &mut R,
    message: &[u8],
    spec: &ChainSpec,
    remailers: &Remailers,
    filters: &Filters,
    copies: usize,
    today: u64,
) -> Result<(Vec<Planned>, Compressed), SendError> {
    check(message, gzip::DEFAULT_LIMIT)?;
    let compressed = Compressed::of(message);
    let planned = build(
        rng,
        &compressed.payload,
        spec,
        remailers,
        filters,
        copies,
        today,
    )?;
    Ok((planned, compressed))
}

/// Checks `message` as [`plan`] (or, with `gzip`, [`plan_compressed`])
/// checks it, without building anything: for a message queued to be sent
/// later.
pub fn check_message(message: &[u8], gzip: bool) -> Result<(), SendError> {
    if !gzip {
        return check(message, MAX_MESSAGE_LEN);
    }
    check(message, gzip::DEFAULT_LIMIT)?;
    let size = compress(message).len();
    if size > MAX_MESSAGE_LEN {
        return Err(SendError::TooLarge {
            size,
            limit: MAX_MESSAGE_LEN,
        });
    }
    Ok(())
}

/// Refuses an empty message, one over `limit` bytes, and one naming
/// nobody.
fn check(message: &[u8], limit: usize) -> Result<(), SendError> {
    if message.is_empty() {
        return Err(SendError::Empty);
    }
    if message.len() > limit {
        return Err(SendError::TooLarge {
            size: message.len(),
            limit,
        });
    }
    if !has_recipient(message) {
        return Err(SendError::NoRecipient);
    }
    Ok(())
}

/// Splits `payload` into chunks and builds their packets (see [`plan`]).
fn build<R: CryptoRng + ?Sized>(
    rng: &mut R,
    payload: &[u8],
    spec: &ChainSpec,
    remailers: &Remailers,
    filters: &Filters,
    copies: usize,
    today: u64,
) -> Result<Vec<Planned>, SendError> {
    let too_large = || SendError::TooLarge {
        size: payload.len(),
        limit: MAX_MESSAGE_LEN,
    };
    if payload.len() > MAX_MESSAGE_LEN {
        return Err(too_large());
    }
    if !(1..=MAX_COPIES).contains(&copies) {
        return Err(SendError::Copies);
    }
    let pieces: Vec<&[u8]> = payload.chunks(BODY_LEN).collect();
    let chunks = u8::try_from(pieces.len()).map_err(|_| too_large())?;
    let chains = chain::select(
        spec,
        &remailers.candidates,
        filters,
        Exit::Required,
        pieces.len() * copies,
        rng,
    )?;
    let mut msg_id = [0u8; 16];
    rng.fill_bytes(&mut msg_id);
    let mut out = Vec::with_capacity(chains.len());
    for (i, chain) in chains.iter().enumerate() {
        let n = i % pieces.len();
        let exit = ExitParams {
            chunk: u8::try_from(n + 1).unwrap_or(u8::MAX),
            chunks,
            msg_id,
            exit_type: ExitType::Smtp,
        };
        let hops = remailers.hops_of(chain)?;
        let piece = pieces.get(n).copied().unwrap_or_default();
        out.push(Planned {
            packet: build_packet(rng, &hops, &exit, piece, today)?,
            chain: chain.iter().map(|c| c.address.clone()).collect(),
        });
    }
    Ok(out)
}

/// Builds a dummy through a chain for `spec` (no exit needed).
pub fn plan_dummy<R: CryptoRng + ?Sized>(
    rng: &mut R,
    spec: &ChainSpec,
    remailers: &Remailers,
    filters: &Filters,
    today: u64,
) -> Result<Planned, SendError> {
    let chains = chain::select(spec, &remailers.candidates, filters, Exit::Any, 1, rng)?;
    let chain = chains.first().ok_or(SendError::NoKey)?;
    let hops = remailers.hops_of(chain)?;
    Ok(Planned {
        packet: build_dummy(rng, &hops, today)?,
        chain: chain.iter().map(|c| c.address.clone()).collect(),
    })
}

#[cfg(test)]
mod tests;
