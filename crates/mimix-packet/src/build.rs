//! Building packets, as a client does (wire format 4 and 7.2).
//!
//! The packet is built from the exit backwards: the exit hop's section is
//! made first, then each earlier hop encrypts everything built so far and
//! puts its own section in front.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::crypto::PublicKey;
use crate::crypto::cfb8;
use crate::crypto::digest::{sha256, sha512};
use crate::crypto::rsa::RsaError;
use crate::layout::{
    BODY_LEN, BODY_OFFSET, ExitInfo, ExitType, InnerHeader, IntermediateInfo, MAX_CHUNKS, MAX_HOPS,
    MAX_MESSAGE_LEN, NEXT_HOP_LEN, PACKET_LEN, Packet, PacketKind, SECTION_LEN, section,
};

/// The payload of dummy messages, as the reference's `inject_dummy` sends.
pub const DUMMY_PAYLOAD: &[u8] = b"From: dummy@dummy\nTo: dummy@dummy\n\npayload";

/// Most days a timestamp is backdated by (draft 4.3.1: a random 0 to 3).
pub const MAX_BACKDATE_DAYS: u64 = 3;

/// One remailer of a chain.
#[derive(Debug, Clone)]
pub struct Hop {
    /// Its public key.
    pub key: PublicKey,
    /// Its base URL, e.g. `http://xyz.onion` (no trailing slash).
    pub address: String,
}

/// Why a packet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The chain is empty or longer than 10 hops.
    #[error("a chain has 1 to 10 hops, not {0}")]
    ChainLength(usize),
    /// A next-hop address is empty, too long or not printable ASCII.
    #[error("remailer address is empty, longer than 80 bytes or not printable ASCII")]
    Address,
    /// The payload is empty.
    #[error("the message is empty")]
    Empty,
    /// The payload is larger than 255 chunks, or a chunk larger than the body.
    #[error("the message is {0} bytes; at most {MAX_MESSAGE_LEN} fit in 255 packets")]
    TooLarge(usize),
    /// The chunk numbers are not 1 <= chunk <= chunks.
    #[error("chunk {chunk} of {chunks} is not a valid chunk number")]
    Chunk {
        /// Chunk number.
        chunk: u8,
        /// Chunk count.
        chunks: u8,
    },
    /// Chunks of one message must leave the network at the same exit.
    #[error("all chunks of a message must use the same exit remailer")]
    ExitMismatch,
    /// RSA encryption to a hop's key failed.
    #[error("RSA encryption failed: {0}")]
    Rsa(#[from] RsaError),
}

/// The exit fields of one packet.
#[derive(Debug, Clone, Copy)]
pub struct ExitParams {
    /// Chunk number, 1-based.
    pub chunk: u8,
    /// Number of chunks.
    pub chunks: u8,
    /// Message ID shared by all chunks.
    pub msg_id: [u8; 16],
    /// SMTP or dummy.
    pub exit_type: ExitType,
}

fn random<const N: usize, R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

/// A timestamp for `today` backdated by a random 0 to 3 days.
fn timestamp<R: CryptoRng + ?Sized>(rng: &mut R, today: u64) -> u16 {
    let back = u64::from(rng.next_u32()) % (MAX_BACKDATE_DAYS + 1);
    u16::try_from(today.saturating_sub(back)).unwrap_or(u16::MAX)
}

fn check_address(address: &str) -> Result<(), BuildError> {
    let ok = !address.is_empty()
        && address.len() <= NEXT_HOP_LEN
        && address.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(()) } else { Err(BuildError::Address) }
}

/// Builds one packet carrying `chunk` (at most 10240 bytes) through `chain`
/// (entry first, exit last). `today` is the current epoch day; each layer's
/// timestamp is backdated by a random 0 to 3 days.
pub fn build_packet<R: CryptoRng + ?Sized>(
    rng: &mut R,
    chain: &[Hop],
    exit: &ExitParams,
    chunk: &[u8],
    today: u64,
) -> Result<Packet, BuildError> {
    if chain.is_empty() || chain.len() > MAX_HOPS {
        return Err(BuildError::ChainLength(chain.len()));
    }
    if chunk.len() > BODY_LEN {
        return Err(BuildError::TooLarge(chunk.len()));
    }
    if exit.chunk == 0 || exit.chunk > exit.chunks {
        return Err(BuildError::Chunk {
            chunk: exit.chunk,
            chunks: exit.chunks,
        });
    }
    for hop in &chain[1..] {
        check_address(&hop.address)?;
    }

    // The exit hop: the body carries the encrypted payload, then random fill.
    let mut body = vec![0u8; BODY_LEN];
    let hop_key = Zeroizing::new(random::<32, R>(rng));
    let body_iv = random::<16, R>(rng);
    body[..chunk.len()].copy_from_slice(chunk);
    cfb8::encrypt(&hop_key, &body_iv, &mut body[..chunk.len()]);
    rng.fill_bytes(&mut body[chunk.len()..]);
    let info = ExitInfo {
        chunk: exit.chunk,
        chunks: exit.chunks,
        msg_id: exit.msg_id,
        body_iv,
        exit_type: exit.exit_type,
        payload_len: u16::try_from(chunk.len()).map_err(|_| BuildError::TooLarge(chunk.len()))?,
        payload_digest: sha256(&[chunk]),
    };
    let exit_hop = chain.len() - 1;
    let info = info.to_bytes(&random::<187, R>(rng));
    let mut sections: Vec<[u8; SECTION_LEN]> = Vec::with_capacity(chain.len());
    sections.push(make_section(
        rng,
        &chain[exit_hop].key,
        PacketKind::Exit,
        hop_key,
        info,
        today,
    )?);

    // Earlier hops, from the exit backwards.
    for i in (0..exit_hop).rev() {
        let hop_key = Zeroizing::new(random::<32, R>(rng));
        let mut ivs = [[0u8; 16]; 9];
        for iv in &mut ivs {
            rng.fill_bytes(iv);
        }
        for (s, iv) in sections.iter_mut().zip(&ivs) {
            cfb8::encrypt(&hop_key, iv, s);
        }
        cfb8::encrypt(&hop_key, &ivs[8], &mut body);
        let antitag = sha256(&[&sections[0], &body]);
        let info = IntermediateInfo {
            ivs,
            next_hop: chain[i + 1].address.clone(),
            antitag,
        }
        .to_bytes();
        let s = make_section(
            rng,
            &chain[i].key,
            PacketKind::Intermediate,
            hop_key,
            info,
            today,
        )?;
        sections.insert(0, s);
    }

    let mut packet = Packet::zeroed();
    let out = packet.as_bytes_mut();
    for (i, s) in sections.iter().enumerate() {
        out[i * SECTION_LEN..(i + 1) * SECTION_LEN].copy_from_slice(s);
    }
    rng.fill_bytes(&mut out[sections.len() * SECTION_LEN..BODY_OFFSET]);
    out[BODY_OFFSET..PACKET_LEN].copy_from_slice(&body);
    Ok(packet)
}

/// One header section for a hop.
fn make_section<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &PublicKey,
    kind: PacketKind,
    hop_key: Zeroizing<[u8; 32]>,
    info: [u8; 256],
    today: u64,
) -> Result<[u8; SECTION_LEN], BuildError> {
    let inner = InnerHeader {
        packet_id: random::<16, R>(rng),
        hop_key,
        kind,
        info,
        timestamp: timestamp(rng, today),
    };
    let mut inner = inner.to_bytes(&random::<13, R>(rng));
    let header_key = Zeroizing::new(random::<32, R>(rng));
    let header_iv = random::<16, R>(rng);
    cfb8::encrypt(&header_key, &header_iv, &mut *inner);
    let rsa = key.encrypt_header_key(rng, &header_key)?;

    let mut s = [0u8; SECTION_LEN];
    rng.fill_bytes(&mut s);
    s[section::KEY_ID].copy_from_slice(&key.key_id().0);
    let rsa_len = u16::try_from(rsa.len()).map_err(|_| RsaError::Encrypt)?;
    s[section::RSA_LEN].copy_from_slice(&rsa_len.to_le_bytes());
    s[section::RSA_START..section::RSA_START + rsa.len()].copy_from_slice(&rsa);
    s[section::HEADER_IV].copy_from_slice(&header_iv);
    s[section::INNER].copy_from_slice(&*inner);
    debug_assert_eq!(section::PADDING.end, section::DIGESTED.end);
    let digest = sha512(&s[section::DIGESTED]);
    s[section::DIGEST].copy_from_slice(&digest);
    Ok(s)
}

/// Splits `payload` into chunks and builds one packet per chunk. Each chunk
/// takes the chain `chain_for(chunk_number)` returns; all must end at the
/// same exit remailer.
pub fn build_message_with<R, F>(
    rng: &mut R,
    exit_type: ExitType,
    payload: &[u8],
    today: u64,
    mut chain_for: F,
) -> Result<Vec<Packet>, BuildError>
where
    R: CryptoRng + ?Sized,
    F: FnMut(u8) -> Vec<Hop>,
{
    if payload.is_empty() {
        return Err(BuildError::Empty);
    }
    if payload.len() > MAX_MESSAGE_LEN {
        return Err(BuildError::TooLarge(payload.len()));
    }
    let pieces: Vec<&[u8]> = payload.chunks(BODY_LEN).collect();
    let chunks = u8::try_from(pieces.len()).map_err(|_| BuildError::TooLarge(payload.len()))?;
    debug_assert!(pieces.len() <= MAX_CHUNKS);
    let msg_id = random::<16, R>(rng);
    let mut exit_address: Option<String> = None;
    let mut packets = Vec::with_capacity(pieces.len());
    for (n, piece) in (1..=chunks).zip(pieces) {
        let chain = chain_for(n);
        let exit = chain.last().map(|h| h.address.clone());
        match (&exit_address, exit) {
            (_, None) => return Err(BuildError::ChainLength(0)),
            (None, Some(a)) => exit_address = Some(a),
            (Some(prev), Some(a)) if *prev != a => return Err(BuildError::ExitMismatch),
            _ => {}
        }
        let params = ExitParams {
            chunk: n,
            chunks,
            msg_id,
            exit_type,
        };
        packets.push(build_packet(rng, &chain, &params, piece, today)?);
    }
    Ok(packets)
}

/// Builds the packets of a message sent through one chain.
pub fn build_message<R: CryptoRng + ?Sized>(
    rng: &mut R,
    chain: &[Hop],
    exit_type: ExitType,
    payload: &[u8],
    today: u64,
) -> Result<Vec<Packet>, BuildError> {
    build_message_with(rng, exit_type, payload, today, |_| chain.to_vec())
}

/// Builds a dummy packet through `chain`: the exit discards it.
pub fn build_dummy<R: CryptoRng + ?Sized>(
    rng: &mut R,
    chain: &[Hop],
    today: u64,
) -> Result<Packet, BuildError> {
    let params = ExitParams {
        chunk: 1,
        chunks: 1,
        msg_id: random::<16, R>(rng),
        exit_type: ExitType::Dummy,
    };
    build_packet(rng, chain, &params, DUMMY_PAYLOAD, today)
}
