//! Peeling one layer off a packet, as a remailer does (wire format 5).
//!
//! The checks run in this order, and [`peel`] returns the packet ID only
//! after **all** of them pass, so a caller that records IDs in its replay
//! log never lets a copy tampered in what this hop checks (header sections
//! 1 and 2, the body) burn the genuine packet's ID (the reference logs the
//! ID before the anti-tag and payload checks). Sections 3..10 are not
//! covered by this hop's anti-tag: a copy with one of them flipped passes
//! here and is caught by a later hop, after this one recorded its ID
//! (`tests/tagging.rs`; a limit of the wire format).
//!
//! 1. SHA-512 digest of header section 1;
//! 2. secret key lookup by key ID;
//! 3. RSA length field equals the key's modulus size;
//! 4. RSA-OAEP decryption to a 32-byte header key;
//! 5. AES-CFB8 decryption and SHA-512 digest of the inner header, and its
//!    packet type;
//! 6. the timestamp lies inside the accepted window;
//! 7. intermediate: the next-hop field and the anti-tag digest; exit: the
//!    exit info and the payload digest.

use rand_core::CryptoRng;

use crate::crypto::cfb8;
use crate::crypto::digest::{ct_eq, sha256, sha512};
use crate::crypto::rsa::RsaError;
use crate::crypto::{KeyId, SecretKey};
use crate::layout::{
    BODY_OFFSET, ExitInfo, ExitType, INNER_LEN, InnerHeader, IntermediateInfo, LayoutError,
    PACKET_LEN, Packet, PacketKind, SECTION_LEN, section, section_key_id,
};

/// Secret keys a remailer decrypts with.
pub trait KeyRing {
    /// The secret key with this ID, if we hold it.
    fn secret_key(&self, id: &KeyId) -> Option<&SecretKey>;
}

impl KeyRing for [SecretKey] {
    fn secret_key(&self, id: &KeyId) -> Option<&SecretKey> {
        self.iter().find(|k| k.key_id() == *id)
    }
}

impl KeyRing for Vec<SecretKey> {
    fn secret_key(&self, id: &KeyId) -> Option<&SecretKey> {
        self.as_slice().secret_key(id)
    }
}

/// Which timestamps a hop accepts, in days since 1970-01-01 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Today, as the caller's clock says.
    pub today: u64,
    /// Oldest accepted age in days. Must stay inside the replay log's
    /// retention, or an old packet could be replayed after its ID expired.
    pub max_age_days: u64,
    /// How far in the future a timestamp may be, in days.
    pub max_future_days: u64,
}

impl TimeWindow {
    /// A window of `max_age_days` into the past and one day into the future.
    pub fn new(today: u64, max_age_days: u64) -> Self {
        Self {
            today,
            max_age_days,
            max_future_days: 1,
        }
    }

    fn check(&self, ts: u16) -> Result<(), PeelError> {
        let ts = u64::from(ts);
        if ts.saturating_add(self.max_age_days) < self.today {
            return Err(PeelError::TooOld {
                age_days: self.today - ts,
            });
        }
        if ts > self.today.saturating_add(self.max_future_days) {
            return Err(PeelError::FromFuture {
                days_ahead: ts - self.today,
            });
        }
        Ok(())
    }
}

/// Why a packet was rejected. Each variant names the failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeelError {
    /// The SHA-512 digest of header section 1 does not match.
    #[error("header digest mismatch")]
    HeaderDigest,
    /// We hold no secret key with the packet's key ID.
    #[error("unknown recipient key {0}")]
    UnknownKey(KeyId),
    /// The RSA length field is not our key's modulus size.
    #[error("RSA length field {got} does not match the {expected}-byte key")]
    RsaLength {
        /// The length field.
        got: usize,
        /// Our modulus size in bytes.
        expected: usize,
    },
    /// RSA-OAEP decryption failed.
    #[error("RSA decryption failed")]
    Rsa,
    /// RSA decryption gave a plaintext that is not a 32-byte key.
    #[error("RSA plaintext is {0} bytes, not 32")]
    RsaPlaintextLength(usize),
    /// The inner header's SHA-512 digest does not match.
    #[error("inner header digest mismatch")]
    InnerDigest,
    /// A field of the inner header is malformed.
    #[error("malformed inner header: {0}")]
    Malformed(LayoutError),
    /// The timestamp is older than the accepted window.
    #[error("timestamp is {age_days} days old")]
    TooOld {
        /// Age in days.
        age_days: u64,
    },
    /// The timestamp is further in the future than allowed.
    #[error("timestamp is {days_ahead} days in the future")]
    FromFuture {
        /// Days ahead of today.
        days_ahead: u64,
    },
    /// The anti-tag digest over section 2 and the body does not match.
    #[error("anti-tag digest mismatch")]
    AntiTag,
    /// The exit payload's SHA-256 does not match.
    #[error("payload digest mismatch")]
    PayloadDigest,
}

impl PeelError {
    /// A short stable name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::HeaderDigest => "header_digest",
            Self::UnknownKey(_) => "unknown_key",
            Self::RsaLength { .. } => "rsa_length",
            Self::Rsa => "rsa",
            Self::RsaPlaintextLength(_) => "rsa_plaintext_length",
            Self::InnerDigest => "inner_digest",
            Self::Malformed(_) => "malformed",
            Self::TooOld { .. } => "too_old",
            Self::FromFuture { .. } => "from_future",
            Self::AntiTag => "antitag",
            Self::PayloadDigest => "payload_digest",
        }
    }
}

impl From<LayoutError> for PeelError {
    fn from(e: LayoutError) -> Self {
        match e {
            LayoutError::InnerDigest => Self::InnerDigest,
            other => Self::Malformed(other),
        }
    }
}

/// One exit chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitChunk {
    /// Random ID shared by all chunks of the message.
    pub msg_id: [u8; 16],
    /// Chunk number, 1-based.
    pub chunk: u8,
    /// Number of chunks.
    pub chunks: u8,
    /// SMTP or dummy.
    pub exit_type: ExitType,
    /// The verified payload bytes of this chunk.
    pub payload: Vec<u8>,
}

/// What to do with a peeled packet.
#[derive(Debug)]
pub enum Outcome {
    /// Send `packet` to the remailer at `next_hop`.
    Forward {
        /// Base URL of the next remailer, as the sender wrote it.
        next_hop: String,
        /// The packet for the next hop.
        packet: Packet,
    },
    /// This hop is the exit.
    Exit(ExitChunk),
}

/// A packet that passed every check.
#[derive(Debug)]
pub struct Peeled {
    /// The key it was encrypted to.
    pub key_id: KeyId,
    /// Its packet ID: record it in the replay log.
    pub packet_id: [u8; 16],
    /// Its timestamp in days since the epoch.
    pub timestamp: u16,
    /// Forward or exit.
    pub outcome: Outcome,
}

/// Peels one layer off `packet` with `keys`.
///
/// `rng` fills the new last header section of a forwarded packet.
pub fn peel<K, R>(
    packet: &Packet,
    keys: &K,
    window: &TimeWindow,
    rng: &mut R,
) -> Result<Peeled, PeelError>
where
    K: KeyRing + ?Sized,
    R: CryptoRng + ?Sized,
{
    let s1 = packet.section(0);
    if !ct_eq(&sha512(&s1[section::DIGESTED]), &s1[section::DIGEST]) {
        return Err(PeelError::HeaderDigest);
    }
    let key_id = section_key_id(s1);
    let key = keys
        .secret_key(&key_id)
        .ok_or(PeelError::UnknownKey(key_id))?;

    let rsa_len = usize::from(u16::from_le_bytes([s1[16], s1[17]]));
    let expected = key.public().size();
    if rsa_len != expected || rsa_len > section::RSA_MAX {
        return Err(PeelError::RsaLength {
            got: rsa_len,
            expected,
        });
    }
    let rsa_block = &s1[section::RSA_START..section::RSA_START + rsa_len];
    let header_key = key.decrypt_header_key(rsa_block).map_err(|e| match e {
        RsaError::PlaintextLength(n) => PeelError::RsaPlaintextLength(n),
        RsaError::Length { got, expected } => PeelError::RsaLength { got, expected },
        RsaError::Decrypt | RsaError::Encrypt => PeelError::Rsa,
    })?;

    let mut iv = [0u8; 16];
    iv.copy_from_slice(&s1[section::HEADER_IV]);
    let mut inner = zeroize::Zeroizing::new([0u8; INNER_LEN]);
    inner.copy_from_slice(&s1[section::INNER]);
    cfb8::decrypt(&header_key, &iv, &mut *inner);
    let inner = InnerHeader::parse(&inner)?;
    window.check(inner.timestamp)?;

    let outcome = match inner.kind {
        PacketKind::Intermediate => forward(packet, &inner, rng)?,
        PacketKind::Exit => Outcome::Exit(exit(packet, &inner)?),
    };
    Ok(Peeled {
        key_id,
        packet_id: inner.packet_id,
        timestamp: inner.timestamp,
        outcome,
    })
}

fn forward<R: CryptoRng + ?Sized>(
    packet: &Packet,
    inner: &InnerHeader,
    rng: &mut R,
) -> Result<Outcome, PeelError> {
    let info = IntermediateInfo::parse(&inner.info)?;
    let antitag = sha256(&[packet.section(1), packet.body()]);
    if !ct_eq(&antitag, &info.antitag) {
        return Err(PeelError::AntiTag);
    }
    let src = packet.as_bytes();
    let mut next = Packet::zeroed();
    let out = next.as_bytes_mut();
    // Sections 2..10 move up to 1..9, each decrypted with its own IV.
    for (i, iv) in info.ivs.iter().enumerate() {
        let from = (i + 1) * SECTION_LEN;
        let to = i * SECTION_LEN;
        out[to..to + SECTION_LEN].copy_from_slice(&src[from..from + SECTION_LEN]);
        cfb8::decrypt(&inner.hop_key, iv, &mut out[to..to + SECTION_LEN]);
    }
    // The new last section is fresh random bytes.
    rng.fill_bytes(&mut out[9 * SECTION_LEN..BODY_OFFSET]);
    out[BODY_OFFSET..PACKET_LEN].copy_from_slice(&src[BODY_OFFSET..]);
    cfb8::decrypt(&inner.hop_key, &info.ivs[8], &mut out[BODY_OFFSET..]);
    Ok(Outcome::Forward {
        next_hop: info.next_hop,
        packet: next,
    })
}

fn exit(packet: &Packet, inner: &InnerHeader) -> Result<ExitChunk, PeelError> {
    let info = ExitInfo::parse(&inner.info)?;
    // CFB decryption of a prefix does not depend on what follows it, so
    // only the payload bytes are decrypted.
    let mut payload = packet.body()[..usize::from(info.payload_len)].to_vec();
    cfb8::decrypt(&inner.hop_key, &info.body_iv, &mut payload);
    if !ct_eq(&sha256(&[&payload]), &info.payload_digest) {
        return Err(PeelError::PayloadDigest);
    }
    Ok(ExitChunk {
        msg_id: info.msg_id,
        chunk: info.chunk,
        chunks: info.chunks,
        exit_type: info.exit_type,
        payload,
    })
}
