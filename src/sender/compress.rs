//! Compression on the sender's side (`mimix send --gzip`, draft 2.1: "the
//! content may be compressed before splitting"). The exit inflates the
//! reassembled payload ([`crate::exit::gzip`]).
//!
//! [`compress`] writes the best (level 9) deflate compression behind a
//! fixed header: MTIME 0, no optional fields, XFL 2 ("best compression"),
//! OS 255 ("unknown"), so the payload carries no file name, no time and
//! nothing about the sender's system.

use std::io::Write;

use flate2::{Compression, GzBuilder};
use mimix_packet::layout::BODY_LEN;

/// What compressing a message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// The gzip member to send.
    pub payload: Vec<u8>,
    /// The message's size before compression.
    pub plain_len: usize,
}

impl Compressed {
    /// Compresses `message` ([`compress`]).
    pub fn of(message: &[u8]) -> Self {
        Self {
            payload: compress(message),
            plain_len: message.len(),
        }
    }

    /// Packets the message needs uncompressed.
    pub fn packets_before(&self) -> usize {
        packets(self.plain_len)
    }

    /// Packets the compressed payload needs.
    pub fn packets_after(&self) -> usize {
        packets(self.payload.len())
    }

    /// Packets saved (negative when compression cost a packet).
    pub fn packets_saved(&self) -> i64 {
        let signed = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        signed(self.packets_before()) - signed(self.packets_after())
    }
}

/// Gzips `message` at the best compression level, with the fixed header
/// described in the module docs.
pub fn compress(message: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new().mtime(0).operating_system(255).write(
        Vec::with_capacity(message.len() / 2 + 64),
        Compression::best(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(message);
    encoder.finish().unwrap_or_default()
}

/// Packets a payload of `len` bytes is split into (even an empty one
/// takes one).
pub fn packets(len: usize) -> usize {
    len.div_ceil(BODY_LEN).max(1)
}
