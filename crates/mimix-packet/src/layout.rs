//! The fixed-size binary layout of a packet (wire format sections 1 and 2).
//!
//! | part | bytes |
//! |------|-------|
//! | header sections 1..10 | 10 x 1024 |
//! | body | 10240 |
//!
//! A header section holds the key ID, the RSA-encrypted header key, the
//! header IV, the AES-encrypted [`InnerHeader`] and a SHA-512 digest. The
//! inner header's 256-byte packet info is an [`IntermediateInfo`] or an
//! [`ExitInfo`].

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::KeyId;
use crate::crypto::digest::{ct_eq, sha512};

/// Size of a packet in bytes.
pub const PACKET_LEN: usize = 20480;
/// Size of one header section.
pub const SECTION_LEN: usize = 1024;
/// Number of header sections, and so the longest chain.
pub const SECTIONS: usize = 10;
/// Offset of the body.
pub const BODY_OFFSET: usize = SECTION_LEN * SECTIONS;
/// Size of the body, and of the largest payload chunk.
pub const BODY_LEN: usize = PACKET_LEN - BODY_OFFSET;
/// Longest chain of remailers.
pub const MAX_HOPS: usize = SECTIONS;
/// Size of the next-hop address field.
pub const NEXT_HOP_LEN: usize = 80;
/// Most chunks in one message.
pub const MAX_CHUNKS: usize = 255;
/// Largest message payload: 255 full bodies.
pub const MAX_MESSAGE_LEN: usize = MAX_CHUNKS * BODY_LEN;

/// Offsets inside a header section.
pub(crate) mod section {
    use std::ops::Range;
    pub const KEY_ID: Range<usize> = 0..16;
    pub const RSA_LEN: Range<usize> = 16..18;
    pub const RSA_START: usize = 18;
    pub const RSA_MAX: usize = 512;
    pub const HEADER_IV: Range<usize> = 530..546;
    pub const INNER: Range<usize> = 546..930;
    pub const PADDING: Range<usize> = 930..960;
    pub const DIGESTED: Range<usize> = 0..960;
    pub const DIGEST: Range<usize> = 960..1024;
}

/// Size of the inner header.
pub const INNER_LEN: usize = 384;
/// Size of the packet info field.
pub const INFO_LEN: usize = 256;

/// Offsets inside the decrypted inner header (wire format 2.1).
pub(crate) mod inner {
    use std::ops::Range;
    pub const PACKET_ID: Range<usize> = 0..16;
    pub const HOP_KEY: Range<usize> = 16..48;
    pub const KIND: usize = 48;
    pub const INFO: Range<usize> = 49..305;
    pub const TIMESTAMP: Range<usize> = 305..307;
    pub const PADDING: Range<usize> = 307..320;
    pub const DIGESTED: Range<usize> = 0..320;
    pub const DIGEST: Range<usize> = 320..384;
}

/// Offsets inside an intermediate hop's packet info (wire format 2.2).
pub(crate) mod intermediate {
    use std::ops::Range;
    /// Nine 16-byte IVs, one per following header section.
    pub const IVS: Range<usize> = 0..144;
    pub const NEXT_HOP: Range<usize> = 144..224;
    pub const ANTITAG: Range<usize> = 224..256;
}

/// Offsets inside the exit hop's packet info (wire format 2.3).
pub(crate) mod exit_info {
    use std::ops::Range;
    pub const CHUNK: usize = 0;
    pub const CHUNKS: usize = 1;
    pub const MSG_ID: Range<usize> = 2..18;
    pub const BODY_IV: Range<usize> = 18..34;
    pub const EXIT_TYPE: usize = 34;
    pub const PAYLOAD_LEN: Range<usize> = 35..37;
    pub const PAYLOAD_DIGEST: Range<usize> = 37..69;
    pub const PADDING: Range<usize> = 69..256;
}

/// One packet: exactly [`PACKET_LEN`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet(Box<[u8; PACKET_LEN]>);

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Packet(..)")
    }
}

impl Packet {
    /// Wraps exactly [`PACKET_LEN`] bytes; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; PACKET_LEN] = bytes.try_into().ok()?;
        Some(Self(Box::new(arr)))
    }

    /// A packet of zero bytes, to be filled in.
    pub(crate) fn zeroed() -> Self {
        Self(Box::new([0u8; PACKET_LEN]))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; PACKET_LEN] {
        &self.0
    }

    /// The raw bytes, mutable (for tests and fuzzers that tamper with packets).
    pub fn as_bytes_mut(&mut self) -> &mut [u8; PACKET_LEN] {
        &mut self.0
    }

    /// Header section `i` (0-based).
    pub(crate) fn section(&self, i: usize) -> &[u8] {
        &self.0[i * SECTION_LEN..(i + 1) * SECTION_LEN]
    }

    /// The body.
    pub(crate) fn body(&self) -> &[u8] {
        &self.0[BODY_OFFSET..]
    }
}

/// A malformed field inside a decrypted inner header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The SHA-512 over the inner header does not match.
    #[error("inner header digest mismatch")]
    InnerDigest,
    /// The packet type byte is neither `'0'` nor `'1'`.
    #[error("unknown packet type byte {0:#04x}")]
    PacketType(u8),
    /// The next-hop field is empty, not printable ASCII, or has bytes after
    /// its NUL padding.
    #[error("malformed next-hop address")]
    NextHop,
    /// Chunk number and count are not 1 <= chunk <= chunks.
    #[error("chunk {chunk} of {chunks} is not a valid chunk number")]
    Chunk {
        /// Chunk number.
        chunk: u8,
        /// Chunk count.
        chunks: u8,
    },
    /// The exit type is neither SMTP (0) nor dummy (1).
    #[error("unknown exit type {0}")]
    ExitType(u8),
    /// The payload length exceeds the body.
    #[error("payload length {0} exceeds the body")]
    PayloadLength(u16),
}

/// The packet type, an ASCII character in the inner header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `'0'`: forward to the next hop.
    Intermediate,
    /// `'1'`: this hop is the exit.
    Exit,
}

impl PacketKind {
    fn byte(self) -> u8 {
        match self {
            Self::Intermediate => b'0',
            Self::Exit => b'1',
        }
    }
}

/// What the exit does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitType {
    /// Deliver by SMTP (0).
    Smtp,
    /// Discard (1).
    Dummy,
}

impl ExitType {
    /// The wire value.
    pub fn byte(self) -> u8 {
        match self {
            Self::Smtp => 0,
            Self::Dummy => 1,
        }
    }

    /// The name used in JSON output: `smtp` or `dummy`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Dummy => "dummy",
        }
    }

    /// The exit type with wire value `b`, if it is one.
    pub fn from_byte(b: u8) -> Result<Self, LayoutError> {
        match b {
            0 => Ok(Self::Smtp),
            1 => Ok(Self::Dummy),
            other => Err(LayoutError::ExitType(other)),
        }
    }
}

/// The decrypted inner header (wire format 2.1).
pub struct InnerHeader {
    /// Random ID for replay detection.
    pub packet_id: [u8; 16],
    /// The hop key for the following sections and the body.
    pub hop_key: Zeroizing<[u8; 32]>,
    /// Intermediate or exit.
    pub kind: PacketKind,
    /// Packet info, parsed according to `kind`.
    pub info: [u8; INFO_LEN],
    /// Days since 1970-01-01 UTC.
    pub timestamp: u16,
}

impl InnerHeader {
    /// Serialises with the given random padding and appends the digest.
    pub fn to_bytes(&self, padding: &[u8; 13]) -> Zeroizing<[u8; INNER_LEN]> {
        let mut out = Zeroizing::new([0u8; INNER_LEN]);
        out[inner::PACKET_ID].copy_from_slice(&self.packet_id);
        out[inner::HOP_KEY].copy_from_slice(&*self.hop_key);
        out[inner::KIND] = self.kind.byte();
        out[inner::INFO].copy_from_slice(&self.info);
        out[inner::TIMESTAMP].copy_from_slice(&self.timestamp.to_le_bytes());
        out[inner::PADDING].copy_from_slice(padding);
        let digest = sha512(&out[inner::DIGESTED]);
        out[inner::DIGEST].copy_from_slice(&digest);
        out
    }

    /// Parses decrypted bytes, checking the digest first.
    pub fn parse(plain: &[u8; INNER_LEN]) -> Result<Self, LayoutError> {
        if !ct_eq(&sha512(&plain[inner::DIGESTED]), &plain[inner::DIGEST]) {
            return Err(LayoutError::InnerDigest);
        }
        let kind = match plain[inner::KIND] {
            b'0' => PacketKind::Intermediate,
            b'1' => PacketKind::Exit,
            other => return Err(LayoutError::PacketType(other)),
        };
        let mut packet_id = [0u8; 16];
        packet_id.copy_from_slice(&plain[inner::PACKET_ID]);
        let mut hop_key = Zeroizing::new([0u8; 32]);
        hop_key.copy_from_slice(&plain[inner::HOP_KEY]);
        let mut info = [0u8; INFO_LEN];
        info.copy_from_slice(&plain[inner::INFO]);
        let mut timestamp = [0u8; 2];
        timestamp.copy_from_slice(&plain[inner::TIMESTAMP]);
        let timestamp = u16::from_le_bytes(timestamp);
        Ok(Self {
            packet_id,
            hop_key,
            kind,
            info,
            timestamp,
        })
    }
}

/// Packet info of an intermediate hop (wire format 2.2).
pub struct IntermediateInfo {
    /// IVs for header sections 2..10; `ivs[8]` also decrypts the body.
    pub ivs: [[u8; 16]; 9],
    /// Base URL of the next remailer.
    pub next_hop: String,
    /// SHA-256 of section 2 and the body as received.
    pub antitag: [u8; 32],
}

impl IntermediateInfo {
    /// Serialises. The address must fit [`NEXT_HOP_LEN`] (checked by the builder).
    pub fn to_bytes(&self) -> [u8; INFO_LEN] {
        let mut out = [0u8; INFO_LEN];
        for (slot, iv) in out[intermediate::IVS].chunks_exact_mut(16).zip(&self.ivs) {
            slot.copy_from_slice(iv);
        }
        let addr = self.next_hop.as_bytes();
        let n = addr.len().min(NEXT_HOP_LEN);
        out[intermediate::NEXT_HOP][..n].copy_from_slice(&addr[..n]);
        out[intermediate::ANTITAG].copy_from_slice(&self.antitag);
        out
    }

    /// Parses; the next hop must be printable ASCII followed only by NULs.
    pub fn parse(info: &[u8; INFO_LEN]) -> Result<Self, LayoutError> {
        let mut ivs = [[0u8; 16]; 9];
        for (iv, bytes) in ivs.iter_mut().zip(info[intermediate::IVS].chunks_exact(16)) {
            iv.copy_from_slice(bytes);
        }
        let field = &info[intermediate::NEXT_HOP];
        let end = field.iter().position(|&b| b == 0).unwrap_or(NEXT_HOP_LEN);
        let (addr, rest) = field.split_at(end);
        if addr.is_empty()
            || rest.iter().any(|&b| b != 0)
            || !addr.iter().all(|b| b.is_ascii_graphic())
        {
            return Err(LayoutError::NextHop);
        }
        let next_hop = String::from_utf8_lossy(addr).into_owned();
        let mut antitag = [0u8; 32];
        antitag.copy_from_slice(&info[intermediate::ANTITAG]);
        Ok(Self {
            ivs,
            next_hop,
            antitag,
        })
    }
}

/// Packet info of the exit hop (wire format 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// Chunk number, 1-based.
    pub chunk: u8,
    /// Number of chunks.
    pub chunks: u8,
    /// Random message ID shared by all chunks.
    pub msg_id: [u8; 16],
    /// IV for the body.
    pub body_iv: [u8; 16],
    /// SMTP or dummy.
    pub exit_type: ExitType,
    /// How many leading body bytes are payload.
    pub payload_len: u16,
    /// SHA-256 of the payload.
    pub payload_digest: [u8; 32],
}

impl ExitInfo {
    /// Serialises with the given random padding.
    pub fn to_bytes(&self, padding: &[u8; 187]) -> [u8; INFO_LEN] {
        let mut out = [0u8; INFO_LEN];
        out[exit_info::CHUNK] = self.chunk;
        out[exit_info::CHUNKS] = self.chunks;
        out[exit_info::MSG_ID].copy_from_slice(&self.msg_id);
        out[exit_info::BODY_IV].copy_from_slice(&self.body_iv);
        out[exit_info::EXIT_TYPE] = self.exit_type.byte();
        out[exit_info::PAYLOAD_LEN].copy_from_slice(&self.payload_len.to_le_bytes());
        out[exit_info::PAYLOAD_DIGEST].copy_from_slice(&self.payload_digest);
        out[exit_info::PADDING].copy_from_slice(padding);
        out
    }

    /// Parses and checks the chunk numbers, exit type and length.
    pub fn parse(info: &[u8; INFO_LEN]) -> Result<Self, LayoutError> {
        let (chunk, chunks) = (info[exit_info::CHUNK], info[exit_info::CHUNKS]);
        if chunk == 0 || chunk > chunks {
            return Err(LayoutError::Chunk { chunk, chunks });
        }
        let exit_type = ExitType::from_byte(info[exit_info::EXIT_TYPE])?;
        let mut len = [0u8; 2];
        len.copy_from_slice(&info[exit_info::PAYLOAD_LEN]);
        let payload_len = u16::from_le_bytes(len);
        if usize::from(payload_len) > BODY_LEN {
            return Err(LayoutError::PayloadLength(payload_len));
        }
        let mut msg_id = [0u8; 16];
        msg_id.copy_from_slice(&info[exit_info::MSG_ID]);
        let mut body_iv = [0u8; 16];
        body_iv.copy_from_slice(&info[exit_info::BODY_IV]);
        let mut payload_digest = [0u8; 32];
        payload_digest.copy_from_slice(&info[exit_info::PAYLOAD_DIGEST]);
        Ok(Self {
            chunk,
            chunks,
            msg_id,
            body_iv,
            exit_type,
            payload_len,
            payload_digest,
        })
    }
}

/// The key ID at the start of a header section.
pub(crate) fn section_key_id(s: &[u8]) -> KeyId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&s[section::KEY_ID]);
    KeyId(id)
}
