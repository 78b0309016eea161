//! Compressed payloads at the exit (draft 2.1: "the content may be
//! compressed"; draft 2.2: "reassembled, decompressed if necessary, and
//! delivered").
//!
//! A reassembled payload that starts with the gzip magic and compression
//! method 8 ([`is_gzip`], RFC 1952 2.3.1) is inflated with [`decompress`]
//! before the header policy sees it (see [`Exit::prepare_outgoing`]). The
//! sender's side is [`crate::sender::compress`].
//!
//! # Bounds
//!
//! The payload comes from an anonymous and possibly hostile sender, so
//! [`decompress`] takes a hard output limit (`exit.max_decompressed_size`,
//! default [`DEFAULT_LIMIT`]) and works in two passes over the input:
//!
//! 1. *Measure.* The stream is inflated into a sink, asking the decoder
//!    for at most `limit + 1` bytes in all; getting that many refuses the
//!    payload ([`GzipError::TooLarge`]) without inflating further. This
//!    pass also checks the CRC-32 and ISIZE trailer and that nothing
//!    follows the member. Nothing is kept, so a bomb costs the time to
//!    inflate `limit + 1` bytes and no memory.
//! 2. *Fill.* The output buffer is allocated once, at the exact size the
//!    first pass counted (never from the header's ISIZE field, which the
//!    sender writes), and the same input is inflated into it again.
//!
//! A buffer grown while inflating would, at each reallocation, briefly
//! hold both the old and the new block: up to one and a half times the
//! limit. The second pass costs one more inflate of at most `limit` bytes
//! (a few milliseconds) and keeps the heap use of a call at the output
//! size plus the decoder's own state (tens of KiB, plus up to 64 KiB for
//! each optional header field, flate2's own cap). `tests/gzip_alloc.rs`
//! measures it.
//!
//! # What is accepted
//!
//! Exactly one gzip member (RFC 1952 2.2), with any of the optional header
//! fields FEXTRA, FNAME, FCOMMENT and FHCRC: flate2 skips them, checks the
//! header CRC and refuses reserved flag bits. MTIME, XFL, OS and the
//! optional fields are ignored. RFC 1952 also allows several members one
//! after another; those are refused ([`GzipError::MultipleMembers`]): a
//! sender compresses one message into one member, and refusing them keeps
//! the work per payload to one decoder. Any other bytes after the member
//! are refused as [`GzipError::TrailingData`].
//!
//! [`Exit::prepare_outgoing`]: super::Exit::prepare_outgoing

use std::io::{self, ErrorKind, Read};

use flate2::bufread::GzDecoder;

/// Default output limit of [`decompress`]: the draft's payload limit
/// (draft 4.1, 255 chunks of its 10236 bytes).
pub const DEFAULT_LIMIT: usize = 2_610_180;

/// Smallest output limit an operator may set.
pub const MIN_LIMIT: usize = 1024;

/// How much of an inflated payload [`peek`] reads: enough for any header
/// block the policy accepts.
pub const PEEK_LEN: usize = 64 * 1024;

/// The first bytes of a gzip member: ID1, ID2 and CM = 8 (deflate).
pub const MAGIC: [u8; 3] = [0x1f, 0x8b, 8];

/// Why a gzip payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GzipError {
    /// The header is invalid: no gzip magic, a compression method other
    /// than deflate, a reserved flag bit set, a header CRC (FHCRC) that
    /// does not match, or a file name or comment longer than 64 KiB.
    #[error("invalid gzip header")]
    BadHeader,
    /// The input ends inside the member: in its header, its deflate data
    /// or its trailer.
    #[error("gzip stream is truncated")]
    Truncated,
    /// The deflate data is invalid, or the trailer's CRC-32 or length
    /// (ISIZE) does not match the inflated data.
    #[error("corrupt gzip stream")]
    Corrupt,
    /// Inflating would produce more than `limit` bytes.
    #[error("gzip output exceeds {limit} bytes")]
    TooLarge {
        /// The limit that was hit.
        limit: usize,
    },
    /// Another gzip member follows the first (see the module docs).
    #[error("more than one gzip member")]
    MultipleMembers,
    /// Bytes that are not a gzip member follow the member.
    #[error("data after the gzip member")]
    TrailingData,
}

impl GzipError {
    /// A short stable name, the suffix of the `gzip_refused_<reason>`
    /// counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadHeader => "bad_header",
            Self::Truncated => "truncated",
            Self::Corrupt => "corrupt",
            Self::TooLarge { .. } => "too_large",
            Self::MultipleMembers => "multi_member",
            Self::TrailingData => "trailing_data",
        }
    }
}

/// Whether `payload` starts like a gzip member: ID1 0x1f, ID2 0x8b and
/// compression method 8 (deflate).
pub fn is_gzip(payload: &[u8]) -> bool {
    payload.starts_with(&MAGIC)
}

/// Inflates the single gzip member `payload`, refusing to produce more
/// than `limit` bytes. Peak heap use is the output plus the decoder's
/// state; see the module docs for the two passes and what is refused.
pub fn decompress(payload: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    let len = measure(payload, limit)?;
    fill(payload, len)
}

/// Up to `max` bytes from the start of the inflated payload, or what
/// could be inflated before an error: for reading the header block of a
/// compressed payload (the mail queue's routing hint) without inflating
/// the rest.
pub fn peek(payload: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if is_gzip(payload) {
        let cap = u64::try_from(max).unwrap_or(u64::MAX);
        // Bytes read before an error are kept: a hint needs no more.
        let _ = GzDecoder::new(payload).take(cap).read_to_end(&mut out);
    }
    out
}

/// First pass: checks the whole member and returns its inflated length,
/// keeping none of the output.
fn measure(payload: &[u8], limit: usize) -> Result<usize, GzipError> {
    if !is_gzip(payload) {
        return Err(GzipError::BadHeader);
    }
    let mut decoder = GzDecoder::new(payload);
    let cap = u64::try_from(limit).map_or(u64::MAX, |l| l.saturating_add(1));
    let produced = io::copy(&mut (&mut decoder).take(cap), &mut io::sink())
        .map_err(|e| classify(&decoder, &e))?;
    let produced = usize::try_from(produced).unwrap_or(usize::MAX);
    if produced > limit {
        return Err(GzipError::TooLarge { limit });
    }
    match decoder.into_inner() {
        [] => Ok(produced),
        rest if is_gzip(rest) => Err(GzipError::MultipleMembers),
        _ => Err(GzipError::TrailingData),
    }
}

/// Second pass: inflates the member, already checked by [`measure`], into
/// a buffer of its exact length.
fn fill(payload: &[u8], len: usize) -> Result<Vec<u8>, GzipError> {
    let mut out = vec![0; len];
    let mut decoder = GzDecoder::new(payload);
    decoder
        .read_exact(&mut out)
        .map_err(|e| classify(&decoder, &e))?;
    Ok(out)
}

/// Maps a decoder error to a [`GzipError`]: flate2 reports running out of
/// input as `UnexpectedEof`, and any other error is in the header if the
/// header was not parsed yet, else in the data or the trailer.
fn classify(decoder: &GzDecoder<&[u8]>, error: &io::Error) -> GzipError {
    if error.kind() == ErrorKind::UnexpectedEof {
        GzipError::Truncated
    } else if decoder.header().is_none() {
        GzipError::BadHeader
    } else {
        GzipError::Corrupt
    }
}

#[cfg(test)]
#[path = "gzip_tests.rs"]
mod tests;
